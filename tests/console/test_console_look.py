"""The console's look without a browser: the favicon is served, the stored theme is applied
from <head> before the stylesheet, the phone menu and theme picker are on every signed-in
page, every table can scroll on its own, and long names carry their full text in a title
(tests/e2e/test_e2e_look_and_feel.py checks how it all renders)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from tenants_app.models import VirtualKey

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
LONG_NAME = "A tenant whose name goes on and on well past what any table cell can show"


def test_it_serves_the_favicon_at_the_root_and_from_static(db):
    client = Client()
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.png"

    png = client.get("/static/favicon.png")
    assert png.status_code == 200
    assert png["Content-Type"] == "image/png"
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200
    assert svg["Content-Type"] == "image/svg+xml"


def test_it_applies_the_stored_theme_from_head_before_the_stylesheet(db):
    body = Client().get("/console/login/").content.decode()
    head = body.split("</head>", 1)[0]
    theme_script = re.search(r"<script [^>]*src=\"/static/console/theme\.js\"[^>]*>", head)
    assert theme_script, "theme.js is not loaded in <head>"
    # blocking on purpose: deferred, it would run after the first paint
    assert "defer" not in theme_script.group() and "async" not in theme_script.group()
    assert head.index("theme.js") < head.index("console.css")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in head


@pytest.mark.parametrize("who", ["staff", "owner", "teammate", "outsider"])
def test_it_offers_the_menu_button_and_theme_picker_on_every_page(request, client_as, who):
    user = request.getfixturevalue(who)
    body = client_as(user).get("/console/tenants/").content.decode()

    assert re.search(
        r'<button type="button" class="nav-toggle small" data-nav-toggle '
        r'aria-expanded="false" aria-controls="console-nav">Menu</button>',
        body,
    )
    assert 'id="console-nav"' in body
    assert re.search(r"<select data-theme-picker>\s*<option value=\"system\">", body)


def test_it_wraps_every_console_table_in_a_scrolling_box():
    for template in TEMPLATES.rglob("*.html"):
        source = template.read_text()
        tables = len(re.findall(r"<table\b", source))
        wrapped = len(re.findall(r'<div class="table-scroll"><table\b', source))
        assert tables == wrapped, f"{template.relative_to(TEMPLATES)}: a table without a wrapper"


def test_it_keeps_a_long_tenant_name_whole_in_a_title(client_as, owner, teammate, tenant):
    tenant.name = LONG_NAME
    tenant.save()

    for user in (owner, teammate):
        body = client_as(user).get("/console/tenants/").content.decode()
        assert f'<span class="truncate" title="{LONG_NAME}"><a href="/console/tenants/' in body
        page = client_as(user).get(f"/console/tenants/{tenant.slug}/").content.decode()
        assert f'<h1 title="{LONG_NAME}">{LONG_NAME}' in page


def test_it_keeps_a_long_key_name_whole_in_a_title(client_as, owner, tenant):
    name = "nightly-batch-summariser-for-the-customer-support-knowledge-base"
    VirtualKey.objects.create(tenant=tenant, name=name, prefix="aipk-abc", key_hash="x" * 64)

    body = client_as(owner).get(f"/console/tenants/{tenant.slug}/keys/").content.decode()

    assert f'<span class="truncate" title="{name}">{name}</span>' in body


def test_it_escapes_a_name_in_its_title(client_as, owner, tenant):
    tenant.name = 'Quote " and <tag>'
    tenant.save()

    body = client_as(owner).get("/console/tenants/").content.decode()

    assert 'title="Quote &quot; and &lt;tag&gt;"' in body
