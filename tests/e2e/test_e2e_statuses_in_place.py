"""Statuses that follow an action without a reload: after "Test connection" (or a key's
"Test") every place the page shows that provider's or key's last check changes in place.

Each test marks the page first (a property on ``window``): had the page reloaded, the
mark would be gone."""

from playwright.sync_api import expect

from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create

MARK = "() => { window.aipkNotReloaded = true; }"
NOT_RELOADED = "() => window.aipkNotReloaded === true"


def simulated_openai(simulator, *, secret: str = "sk-sim-e2e-in-place-0001"):
    provider = provider_create(
        name="openai-e2e", type="openai", base_url=simulator.url + "/openai/v1"
    )
    key = api_key_add(provider=provider, label="primary", secret=secret)
    return provider, key


def test_it_updates_the_last_check_after_test_connection_without_a_reload(
    console, console_user, simulator
):
    provider, key = simulated_openai(simulator)
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))
    console.goto(f"/console/providers/{provider.pk}/")
    last_check = page.locator("#last-check")
    expect(last_check).to_contain_text("not checked")
    expect(page.locator("#provider-history")).to_contain_text("No checks yet.")
    page.evaluate(MARK)

    page.get_by_role("button", name="Test connection").click()

    expect(last_check).not_to_contain_text("not checked")
    expect(last_check.locator(".badge")).to_have_text("healthy")
    expect(last_check).to_contain_text(" ms, ")
    expect(page.locator("#provider-history tbody tr")).to_have_count(1)
    assert page.evaluate(NOT_RELOADED)
    console.shot("last-check-in-place")


def test_it_updates_the_providers_list_health_badge_without_a_reload(
    console, console_user, simulator
):
    provider, _key = simulated_openai(simulator)
    broken = provider_create(
        name="broken-e2e", type="openai", base_url=simulator.url + "/openai/v1"
    )
    api_key_add(provider=broken, label="bad", secret="invalid-e2e-key-0002")
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))
    console.goto("/console/providers/")
    good_row = page.get_by_role("row").filter(has_text="openai-e2e")
    bad_row = page.get_by_role("row").filter(has_text="broken-e2e")
    expect(good_row.locator(".badge").last).to_have_text("not checked")
    page.evaluate(MARK)

    good_row.get_by_role("button", name="Test").click()
    bad_row.get_by_role("button", name="Test").click()

    expect(good_row.locator(f".provider-check-{provider.pk} .badge")).to_have_text("healthy")
    expect(bad_row.locator(f".provider-check-{broken.pk} .badge")).to_have_text("unhealthy")
    expect(bad_row).to_contain_text("authentication_error")
    assert page.evaluate(NOT_RELOADED)
    console.shot("providers-list-in-place")


def test_it_updates_a_keys_last_check_everywhere_on_the_page_after_its_test(
    console, console_user, simulator
):
    provider, key = simulated_openai(simulator)
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))
    console.goto(f"/console/providers/{provider.pk}/")
    # the key's table row, and the "Credentials' last checks" list only after a first check
    row = page.locator(f"#key-{key.pk}")
    expect(row.locator(".key-last-check")).to_contain_text("not checked")
    page.evaluate(MARK)

    row.get_by_role("button", name="Test").click()

    expect(row.get_by_role("status")).to_have_text("works")
    expect(row.locator(f".key-check-{key.pk} .badge")).to_have_text("healthy")
    assert page.evaluate(NOT_RELOADED)

    console.goto("/console/credentials/")
    row = page.locator(f"#key-{key.pk}")
    expect(row.locator(f".key-check-{key.pk} .badge")).to_have_text("healthy")
    # the provider revoked the key meanwhile: the next test fails, and both copies on the
    # provider's page (its table row, "Credentials' last checks") say so in place
    key.secret = "invalid-e2e-key-0003"
    key.save()
    console.goto(f"/console/providers/{provider.pk}/")
    copies = page.locator(f".key-check-{key.pk}")
    expect(copies).to_have_count(2)
    expect(copies.locator(".badge")).to_have_text(["healthy", "healthy"])
    page.evaluate(MARK)

    page.locator(f"#key-{key.pk}").get_by_role("button", name="Test").click()

    expect(page.locator(f"#key-{key.pk}").get_by_role("status")).to_contain_text(
        "failed: authentication_error"
    )
    expect(copies.locator(".badge")).to_have_text(["unhealthy", "unhealthy"])
    expect(copies.nth(0)).to_contain_text("authentication_error")
    expect(copies.nth(1)).to_contain_text("authentication_error")
    assert page.evaluate(NOT_RELOADED)
    console.shot("key-check-in-place")
