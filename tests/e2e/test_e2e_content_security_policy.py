"""The console under its Content-Security-Policy in a real browser: chromium reports every
blocked script, style or connection on the console; a walk through the pages that use
scripts, charts and the websocket must report none (docs/SECURITY.md)."""

from __future__ import annotations

from playwright.sync_api import expect

from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import Membership, ModelRoute, Role, Tenant
from tenants_app.services.routes import route_create


def test_it_runs_the_console_without_a_policy_violation(console, console_user, simulator):
    provider = provider_create(
        name="openai",
        type="openai",
        base_url=simulator.url + "/openai/v1",
        default_model="gpt-4o-mini",
    )
    api_key_add(provider=provider, label="simulator", secret="sk-sim-csp-0001")
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    route_create(
        tenant=tenant,
        alias="chat",
        candidates=[{"provider": "openai", "model": "gpt-4o-mini"}],
        actor=None,
    )
    ada = console_user("ada", is_staff=True, is_superuser=True)
    Membership.objects.create(user=ada, tenant=tenant, role=Role.OWNER)
    page = console.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.url)
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    console.sign_in(ada)
    for path in ("/console/", "/console/providers/", "/console/credentials/", "/admin/"):
        console.goto(path)
        page.wait_for_load_state("networkidle")

    # the playground's websocket (connect-src)
    console.goto("/console/playground/")
    expect(page.get_by_role("status").filter(has_text="Connected as Acme")).to_be_visible()

    # a new key's "Copy secret" button (console.js, no inline onclick)
    console.goto("/console/tenants/acme/keys/")
    page.get_by_label("Name", exact=True).fill("csp bot")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-secret").inner_text().strip()
    page.get_by_role("button", name="Copy secret").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret

    # deleting a route asks first (console.js, no inline onsubmit): no, then yes
    console.goto("/console/tenants/acme/routes/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete chat").click()
    assert ModelRoute.objects.filter(alias="chat").exists()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete chat").click()
    page.wait_for_load_state("networkidle")
    assert not ModelRoute.objects.filter(alias="chat").exists()

    # the usage charts (vendored Chart.js, figures from a JSON element)
    console.goto("/console/tenants/acme/usage/")
    page.wait_for_load_state("networkidle")
    console.shot("usage-under-csp")

    assert violations == []
