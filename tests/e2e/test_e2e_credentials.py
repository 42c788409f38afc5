"""Credentials in a real browser: test and rotate a key, connect an OAuth account through the
simulator's authorisation server, and finish a device-code flow that updates by itself."""

import re

from playwright.sync_api import expect

from providers_app.models import ApiKey, OAuthCredential
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create

OLD_SECRET = "sk-sim-e2e-old-key-1111"
NEW_SECRET = "sk-sim-e2e-new-key-2222"


def test_it_tests_and_rotates_a_key_and_the_old_one_shows_retiring(
    console, console_user, simulator
):
    provider = provider_create(
        name="openai-e2e", type="openai", base_url=simulator.url + "/openai/v1"
    )
    old = api_key_add(provider=provider, label="primary", secret=OLD_SECRET)
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))

    console.goto("/console/credentials/")
    row = page.locator(f"#key-{old.pk}")
    expect(row).to_contain_text("…1111")
    row.get_by_role("button", name="Test").click()
    expect(row.get_by_role("status")).to_have_text("works")
    console.shot("key-tested")

    row.get_by_role("link", name="Rotate").click()
    expect(page.get_by_role("heading", name=re.compile("Rotate primary"))).to_be_visible()
    page.get_by_label("New secret").fill(NEW_SECRET)
    page.get_by_label("Label").fill("primary v2")
    page.get_by_label("Grace period (minutes)").fill("45")
    console.shot("rotate-form")
    page.get_by_role("button", name="Rotate key").click()

    expect(page.get_by_text(re.compile(r"New key primary v2 \(…2222\) is active"))).to_be_visible()
    expect(page.locator(f"#key-{old.pk}")).to_contain_text("retiring until")
    new = ApiKey.objects.get(label="primary v2")
    expect(page.locator(f"#key-{new.pk}")).to_contain_text("active")
    content = page.content()
    assert OLD_SECRET not in content and NEW_SECRET not in content
    console.shot("key-rotated")


def test_it_connects_an_oauth_account_through_the_authorisation_server(
    console, console_user, simulator
):
    provider_create(
        name="openai-oauth",
        type="openai",
        base_url=simulator.url + "/openai/v1",
        oauth_client_id="sim-e2e-oauth",
        oauth_authorize_url=simulator.url + "/oauth/authorize",
        oauth_token_url=simulator.url + "/oauth/token",
    )
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))

    console.goto("/console/credentials/")
    expect(page.get_by_text("No OAuth accounts.")).to_be_visible()
    console.shot("credentials-before-connect")
    # Connect → the simulator's authorize page (approves at once) → /oauth/callback/…
    page.get_by_role("button", name="Connect openai-oauth", exact=True).click()

    expect(page.get_by_role("heading", name="openai-oauth connected")).to_be_visible()
    assert "/oauth/callback/openai-oauth/" in page.url
    console.shot("callback-success")
    page.get_by_role("link", name="Back to the credentials in the console").click()

    accounts = page.locator("table.oauth-accounts")
    expect(accounts).to_contain_text("sim-user@example.com")
    expect(accounts.locator(".badge")).to_have_text("active")
    credential = OAuthCredential.objects.get()
    content = page.content()
    assert credential.access_token not in content and credential.refresh_token not in content
    console.shot("oauth-account-active")


def test_it_completes_a_device_code_flow_without_a_reload(console, console_user, simulator):
    provider_create(
        name="qwen-device",
        type="qwen",
        base_url=simulator.url + "/qwen/v1",
        oauth_client_id="sim-e2e-qwen",
        # the simulator answers authorization_pending twice, then hands out tokens
        oauth_device_url=simulator.url
        + "/qwen-oauth/api/v1/oauth2/device/code?interval=0&pending_polls=2",
        oauth_token_url=simulator.url + "/qwen-oauth/api/v1/oauth2/token",
    )
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))

    console.goto("/console/credentials/")
    page.get_by_role("button", name="Connect qwen-device with a device code").click()

    code = page.locator(".user-code")
    expect(code).to_be_visible()
    expect(code).to_have_text(re.compile(r"\S{4,}"))
    expect(page.get_by_role("link", name=re.compile(r"oauth.device.code="))).to_be_visible()
    expect(page.locator("#device-status")).to_contain_text("waiting for approval")
    console.shot("device-code")
    page.evaluate("window.stillTheSamePage = true")

    status = page.locator("#device-status")
    expect(status).to_contain_text("Connected:", timeout=30_000)
    assert page.evaluate("window.stillTheSamePage") is True  # updated in place, no reload
    expect(status).not_to_have_attribute("hx-trigger", re.compile(".*"))
    credential = OAuthCredential.objects.get()
    assert credential.access_token not in page.content()
    console.shot("device-connected")

    status.get_by_role("link", name="Back to credentials").click()
    expect(page.locator("table.oauth-accounts .badge")).to_have_text("active")
    console.shot("device-account-listed")
