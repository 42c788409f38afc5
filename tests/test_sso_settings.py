"""Single sign-on settings are read from the environment and refused at start-up when
they could only fail later: each case loads aipk_site.settings in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json
from django.conf import settings
print(json.dumps({name: getattr(settings, name) for name in (
    "OIDC_ISSUER", "OIDC_DISCOVERY_URL", "OIDC_SCOPES", "OIDC_STAFF_GROUPS",
    "OIDC_GROUPS_CLAIM", "LOCAL_PASSWORDS_ENABLED",
)}))
"""


def run_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OIDC_") and k != "LOCAL_PASSWORDS_ENABLED"
    }
    clean["DJANGO_SETTINGS_MODULE"] = "aipk_site.settings"
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True
    )


def test_it_has_sso_off_and_local_passwords_on_by_default():
    proc = run_settings()
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout.splitlines()[-1])
    assert values["OIDC_DISCOVERY_URL"] == ""
    assert values["LOCAL_PASSWORDS_ENABLED"] is True
    assert values["OIDC_GROUPS_CLAIM"] == "groups"


def test_it_finds_the_discovery_document_under_the_issuer():
    proc = run_settings(
        OIDC_ISSUER="https://login.example.com/",
        OIDC_CLIENT_ID="aipk",
        OIDC_STAFF_GROUPS="ops,platform",
        LOCAL_PASSWORDS_ENABLED="false",
    )
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout.splitlines()[-1])
    assert values["OIDC_ISSUER"] == "https://login.example.com"
    assert values["OIDC_DISCOVERY_URL"] == (
        "https://login.example.com/.well-known/openid-configuration"
    )
    assert values["OIDC_STAFF_GROUPS"] == ["ops", "platform"]
    assert values["LOCAL_PASSWORDS_ENABLED"] is False


def test_it_refuses_to_turn_passwords_off_with_no_way_in_left():
    proc = run_settings(LOCAL_PASSWORDS_ENABLED="false")
    assert proc.returncode != 0
    assert "LOCAL_PASSWORDS_ENABLED is off but single sign-on is not configured" in proc.stderr


def test_it_refuses_scopes_without_openid():
    proc = run_settings(OIDC_ISSUER="https://login.example.com", OIDC_SCOPES="email profile")
    assert proc.returncode != 0
    assert "OIDC_SCOPES must include 'openid'" in proc.stderr


def test_it_refuses_a_tenant_role_pattern_without_its_named_groups():
    broken = run_settings(OIDC_TENANT_ROLE_PATTERN="aipk:(")
    unnamed = run_settings(OIDC_TENANT_ROLE_PATTERN=r"^aipk:([a-z]+):(owner|admin)$")
    assert "OIDC_TENANT_ROLE_PATTERN is not a regular expression" in broken.stderr
    assert "needs the named groups" in unnamed.stderr
