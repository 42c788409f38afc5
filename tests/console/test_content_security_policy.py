"""The console's Content-Security-Policy: scripts from this site's files only, never inline.

The browser tests (tests/e2e) run every console page under this policy in
chromium, which refuses what it forbids; these tests check the header on each
page and that no template carries an inline script or handler the policy would
block.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "/console/",
    "/console/providers/",
    "/console/credentials/",
    "/console/tenants/",
    "/console/tenants/acme/",
    "/console/tenants/acme/keys/",
    "/console/tenants/acme/routes/",
    "/console/tenants/acme/usage/",
    "/console/playground/",
    "/console/audit/",
    "/admin/",
]
# inline <script> (one without src=), on*= handler attributes, javascript: URLs
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
JS_URL = re.compile(r"javascript:", re.IGNORECASE)


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("path", PAGES)
def test_it_sends_the_policy_on_every_console_page(client_as, staff, tenant, path):
    response = client_as(staff).get(path)

    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]


def test_it_lets_the_playground_open_its_websocket_on_this_host(client_as, staff, tenant):
    response = client_as(staff).get("/console/playground/", HTTP_HOST="localhost:8000")

    connect = directives(response["Content-Security-Policy"])["connect-src"]
    assert connect == ["'self'", "ws://localhost:8000", "wss://localhost:8000"]


@pytest.mark.django_db
def test_it_sends_the_policy_on_the_sign_in_page(client):
    response = client.get("/console/login/")

    assert directives(response["Content-Security-Policy"])["script-src"] == ["'self'"]


@pytest.mark.parametrize(
    "path",
    sorted(
        str(p.relative_to(ROOT))
        for p in [*ROOT.glob("templates/**/*.html"), *ROOT.glob("*_app/templates/**/*.html")]
    ),
)
def test_it_has_no_inline_script_the_policy_would_block(path):
    text = (ROOT / path).read_text()

    assert not INLINE_SCRIPT.search(text), "inline <script>: move it to a file under static/"
    assert not INLINE_HANDLER.search(text), "on*= handler: use a data- attribute + console.js"
    assert not JS_URL.search(text)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/docs", "/v1/docs"])
def test_it_serves_the_swagger_pages_under_the_policy(client, path):
    # Swagger UI from django-ninja's bundled files on /static/, its settings in a JSON
    # block read by a script file: nothing inline to run, nothing from outside
    response = client.get(path)

    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
