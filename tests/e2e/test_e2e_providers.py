"""Providers in a real browser: add one on the simulator, give it a key, test it, see models."""

import re

from playwright.sync_api import expect

from providers_app.models import ApiKey, Provider

SECRET = "sk-sim-e2e-provider-key-4321"


def test_it_adds_a_provider_and_a_key_then_tests_the_connection(console, console_user, simulator):
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))

    console.goto("/console/providers/")
    expect(page.get_by_text("No providers yet.")).to_be_visible()
    console.shot("providers-empty")
    page.get_by_role("link", name="Add provider").click()
    expect(page.get_by_role("heading", name="Add a provider")).to_be_visible()
    console.shot("choose-type")
    page.get_by_role("link", name="OpenAI", exact=True).click()

    expect(page.get_by_role("heading", name="New provider: OpenAI")).to_be_visible()
    page.get_by_label(re.compile(r"^Name")).fill("openai-e2e")
    page.get_by_label("Base URL").fill(simulator.url + "/openai/v1")
    page.get_by_label("Default model").fill("gpt-4o-mini")
    page.get_by_label("Organization").fill("org-e2e")
    console.shot("provider-form")
    page.get_by_role("button", name="Add provider").click()

    expect(page.get_by_text("Provider openai-e2e added.")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("openai-e2e"))).to_be_visible()
    assert Provider.objects.get(name="openai-e2e").settings == {"organization": "org-e2e"}
    console.shot("provider-detail-new")

    page.get_by_role("link", name="Add an API key").click()
    expect(page.get_by_label("Provider")).to_have_value(str(Provider.objects.get().pk))
    page.get_by_label("Label").fill("e2e key")
    page.get_by_label("Secret").fill(SECRET)
    page.get_by_role("button", name="Add key").click()

    expect(page.get_by_text("API key e2e key (…4321) added to openai-e2e.")).to_be_visible()
    keys = page.locator("table.api-keys")
    expect(keys.get_by_role("cell", name="…4321")).to_be_visible()
    assert SECRET not in page.content()
    assert ApiKey.objects.get().secret == SECRET
    console.shot("credentials-with-key")

    keys.get_by_role("link", name="openai-e2e").click()
    page.get_by_role("button", name="Test connection").click()
    result = page.locator("#health-result")
    expect(result).to_contain_text("healthy")
    expect(result).to_contain_text(" ms")
    expect(result).not_to_contain_text("unhealthy")
    console.shot("connection-tested")

    page.get_by_role("button", name="Refresh models").click()
    expect(page.get_by_text(re.compile(r"\d+ models discovered for openai-e2e\."))).to_be_visible()
    expect(page.get_by_role("cell", name="gpt-4o-mini", exact=True)).to_be_visible()
    assert SECRET not in page.content()
    console.shot("models-refreshed")

    console.goto("/console/providers/")
    row = page.get_by_role("row", name=re.compile("openai-e2e"))
    expect(row).to_contain_text("healthy")
    console.shot("providers-list")


def test_it_shows_a_mistake_next_to_its_field(console, console_user, simulator):
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))

    console.goto("/console/providers/add/openai-compatible/")
    page.get_by_label(re.compile(r"^Name")).fill("needs a url")
    page.get_by_role("button", name="Add provider").click()

    expect(page.get_by_text("Name: Enter a valid “slug”")).to_be_visible()
    expect(page.get_by_text("Please correct the fields marked below.")).to_be_visible()
    assert not Provider.objects.exists()
    console.shot("provider-form-errors")
