"""HTTPS settings: secure by default with DEBUG off, plain http with DEBUG on, probes exempt.

The documented production environment (docs/SECURITY.md) must pass
``manage.py check --deploy`` without a warning; each case runs in a fresh
interpreter with a controlled environment.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Everything the security part of settings.py reads; scrubbed so each case starts clean.
SCRUBBED = (
    "DEBUG",
    "DJANGO_SECRET_KEY",
    "FERNET_KEYS",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "METRICS_TOKEN",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "X_FRAME_OPTIONS",
    "SECURE_REFERRER_POLICY",
)


def production_env() -> dict[str, str]:
    """The production environment docs/SECURITY.md documents (behind a TLS proxy)."""
    return {
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FERNET_KEYS": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "aipk.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://aipk.example.com",
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        "SECURE_PROXY_SSL_HEADER": "true",
    }


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env, "DJANGO_SETTINGS_MODULE": "aipk_site.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )


PROBE = """
import json, django
django.setup()
from django.conf import settings
names = ["SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
         "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
         "SECURE_PROXY_SSL_HEADER", "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS",
         "SECURE_REFERRER_POLICY", "SECURE_REDIRECT_EXEMPT"]
print(json.dumps({name: getattr(settings, name) for name in names}))
"""


def security_settings(**env: str) -> dict:
    result = run(["-c", PROBE], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_passes_the_deploy_check_in_the_documented_production_environment():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production_env())

    print(result.stdout, result.stderr)
    assert result.returncode == 0
    assert "System check identified no issues" in result.stdout


def test_it_names_an_open_metrics_endpoint_in_the_deploy_check():
    env = {**production_env(), "METRICS_TOKEN": ""}
    result = run(["manage.py", "check", "--deploy"], **env)

    assert "aipk.W001" in result.stderr + result.stdout
    assert "security.W0" not in result.stderr + result.stdout


def test_it_is_secure_by_default_with_debug_off():
    values = security_settings(**{**production_env(), "SECURE_PROXY_SSL_HEADER": ""})

    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31_536_000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is True
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["SECURE_REFERRER_POLICY"] == "same-origin"
    # trusting X-Forwarded-Proto is opt-in: without a proxy a client could claim https
    assert values["SECURE_PROXY_SSL_HEADER"] is None


def test_it_keeps_local_http_working_with_debug_on():
    values = security_settings(DEBUG="true")

    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["CSRF_COOKIE_SECURE"] is False


def test_it_reads_each_setting_from_the_environment():
    values = security_settings(
        **production_env(),
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="3600",
        SECURE_HSTS_PRELOAD="false",
        X_FRAME_OPTIONS="SAMEORIGIN",
    )

    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 3600
    assert values["SECURE_HSTS_PRELOAD"] is False
    assert values["X_FRAME_OPTIONS"] == "SAMEORIGIN"
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.fixture
def behind_a_tls_proxy(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.mark.django_db
def test_it_redirects_plain_http_to_https(client, behind_a_tls_proxy):
    response = client.get("/console/login/")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/console/login/"


@pytest.mark.django_db
def test_it_serves_https_through_the_proxy_with_hsts(client, behind_a_tls_proxy):
    response = client.get("/console/login/", headers={"X-Forwarded-Proto": "https"})

    assert response.status_code == 200
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/metrics.json"])
def test_it_lets_probes_and_scrapers_use_plain_http(client, behind_a_tls_proxy, path):
    response = client.get(path)

    assert response.status_code in (200, 503)  # answered, not redirected
    assert response["Content-Type"].split(";")[0] in ("application/json", "text/plain")
