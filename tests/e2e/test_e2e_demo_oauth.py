"""The seeded demo in a real browser, offline: the console's *Connect* on a seeded OAuth
provider goes to the simulator's authorisation server and comes back connected, and the
seeded Qwen provider's device code is approved on the simulator's verification page."""

import io
import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from providers_app.models import OAuthCredential


@pytest.fixture
def seeded(transactional_db, settings, simulator, gateway_server):
    settings.DEBUG = True  # seed_demo refuses a DEBUG-off database without --force
    call_command(
        "seed_demo",
        simulator_url=simulator.url,
        base_url=gateway_server.url,
        quiet=True,
        # the health checks run an event loop, which Playwright's on this thread forbids;
        # tests/gateway/test_demo_offline.py covers them
        check_timeout=0,
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )


def test_it_connects_the_seeded_anthropic_account_in_the_browser(
    seeded, console, console_user, simulator
):
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))
    console.goto("/console/credentials/")

    page.get_by_role("button", name="Connect anthropic", exact=True).click()

    expect(page.get_by_role("heading", name="anthropic connected")).to_be_visible()
    assert page.url.startswith(console.url + "/oauth/callback/anthropic/")
    credential = OAuthCredential.objects.get(provider__name="anthropic")
    assert credential.access_token not in page.content()
    console.shot("seeded-anthropic-connected")


def test_it_approves_the_seeded_qwen_device_code_on_the_simulators_page(
    seeded, console, console_user, simulator
):
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))
    console.goto("/console/credentials/")
    page.get_by_role("button", name="Connect qwen with a device code").click()
    code = page.locator(".user-code").inner_text()
    status = page.locator("#device-status")
    expect(status).to_contain_text("waiting for approval")

    # the verification link opens the simulator's page in another tab, as on chat.qwen.ai
    link = page.get_by_role("link", name=re.compile(r"oauth.device.code="))
    with page.context.expect_page() as opened:
        link.click()
    verification = opened.value
    expect(verification.get_by_text(code)).to_be_visible()
    console.shot("device-code-waiting")
    verification.get_by_role("button", name="Approve").click()
    expect(verification.get_by_text("Device approved")).to_be_visible()
    verification.close()

    expect(status).to_contain_text("Connected:", timeout=30_000)
    credential = OAuthCredential.objects.get(provider__name="qwen")
    assert credential.access_token not in page.content()
    console.shot("seeded-qwen-connected")
