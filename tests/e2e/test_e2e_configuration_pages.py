"""The configuration pages in a real browser: staff add and edit a global route and see
which tenant shadows it, edit a price from the built-in table (a bad figure is explained
beside its field first), and narrow the model catalogue with its filters (htmx swaps the
results and the URL follows). A member reads routes and prices without the forms."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from providers_app.models import DiscoveredModel
from providers_app.services.providers import provider_create
from tenants_app.models import Membership, ModelRoute, Role, Tenant
from tenants_app.services.pricing import pricing_load_bundled


@pytest.fixture
def organisation(console_user):
    ada = console_user("ada", is_staff=True)
    bob = console_user("bob")
    acme = Tenant.objects.create(name="Acme", slug="acme")
    Membership.objects.create(user=bob, tenant=acme, role=Role.MEMBER)
    openai = provider_create(
        name="openai-prod", type="openai", base_url="http://127.0.0.1:9/v1", actor=ada
    )
    claude = provider_create(
        name="claude", type="anthropic", base_url="http://127.0.0.1:9/v1", actor=ada
    )
    now = timezone.now()
    for provider, model_id, tools in [
        (openai, "gpt-4o-mini", True),
        (openai, "house-embedder", False),
        (claude, "claude-haiku-4-5-20251001", True),
    ]:
        DiscoveredModel.objects.create(
            provider=provider,
            model_id=model_id,
            name=model_id,
            supports_tools=tools,
            discovered_at=now,
        )
    # a test database starts empty between browser tests: the table as a fresh install has it
    pricing_load_bundled()
    ModelRoute.objects.create(
        tenant=acme, alias="smart", candidates=[{"provider": "claude", "model": "x"}]
    )
    return ada, bob


def test_it_lets_staff_add_and_edit_a_global_route(console, organisation):
    ada, bob = organisation
    page = console.page
    console.sign_in(ada)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Routes").click()
    expect(page).to_have_url(re.compile(r"/console/routes/$"))
    expect(page.get_by_text("No global routes")).to_be_visible()

    form = page.locator("form.stacked")
    form.get_by_label("Alias").fill("smart")
    form.get_by_label("Candidates").fill(
        "openai-prod/gpt-4o-mini\nclaude/claude-haiku-4-5-20251001"
    )
    form.get_by_role("button", name="Create route").click()
    expect(page.get_by_text("Global route smart created.")).to_be_visible()
    row = page.locator("tbody tr", has_text="smart")
    expect(row.locator("ol.candidates li")).to_have_text(
        ["openai-prod/gpt-4o-mini", "claude/claude-haiku-4-5-20251001"]
    )
    expect(row.get_by_role("link", name="Acme")).to_be_visible()  # Acme's own smart wins
    console.shot("global-route-created")

    form.get_by_label("Alias").fill("bad")
    form.get_by_label("Candidates").fill("nowhere/model")
    form.get_by_role("button", name="Create route").click()
    expect(page.get_by_text("Line 1: unknown provider 'nowhere'")).to_be_visible()
    console.shot("global-route-refused")

    page.get_by_role("link", name="Edit smart").click()
    page.get_by_label("Strategy").select_option("cheapest_first")
    page.get_by_label("Candidates").fill("claude/claude-haiku-4-5-20251001")
    console.shot("global-route-edit")
    page.get_by_role("button", name="Save route").click()
    expect(page.get_by_text("Global route smart saved.")).to_be_visible()
    row = page.locator("tbody tr", has_text="smart")
    expect(row).to_contain_text("Cheapest First")
    expect(row.locator("ol.candidates li")).to_have_text(["claude/claude-haiku-4-5-20251001"])
    console.shot("global-route-saved")


def test_it_lets_staff_edit_a_price_and_shows_its_new_source(console, organisation):
    ada, _bob = organisation
    page = console.page
    console.sign_in(ada)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Pricing").click()
    row = page.locator("tbody tr", has=page.locator('[title="gpt-4o-mini"]'))
    expect(row).to_contain_text("built-in table")
    expect(row).to_contain_text("0.075")
    console.shot("pricing")

    row.get_by_role("link", name="Edit the price of gpt-4o-mini").click()
    page.get_by_label("Input").fill("-0.2")
    page.get_by_role("button", name="Save price").click()
    expect(page.get_by_text("Ensure this value is greater than or equal to 0.")).to_be_visible()
    console.shot("price-refused")

    page.get_by_label("Input").fill("0.2")
    page.get_by_label("Cached read").fill("")
    page.get_by_role("button", name="Save price").click()
    expect(page.get_by_text("Price of gpt-4o-mini saved.")).to_be_visible()
    row = page.locator("tbody tr", has=page.locator('[title="gpt-4o-mini"]'))
    expect(row).to_contain_text("set by an admin")
    expect(row.locator("td").nth(2)).to_have_text("0.2")
    expect(row.locator("td").nth(4)).to_have_text("= input")
    console.shot("price-saved")


def test_it_lets_staff_filter_the_model_catalogue(console, organisation):
    ada, _bob = organisation
    page = console.page
    console.sign_in(ada)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Models").click()
    results = page.locator("#catalogue-results tbody tr")
    expect(results).to_have_count(3)
    console.shot("models-all")

    page.get_by_label("Provider").select_option(label="openai-prod")
    expect(page).to_have_url(re.compile(r"provider=\d+"))
    expect(results).to_have_count(2)

    page.get_by_label("Capability").select_option("tools")
    expect(page).to_have_url(re.compile(r"capability=tools"))
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("gpt-4o-mini")
    expect(results.first).to_contain_text("0.15 / 0.6")
    console.shot("models-openai-tools")

    page.get_by_label("Search").fill("nothing-like-this")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No models match.")).to_be_visible()
    console.shot("models-none")


def test_it_shows_a_member_routes_and_prices_to_read_only(console, organisation):
    _ada, bob = organisation
    page = console.page
    console.sign_in(bob)
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="Models")).to_have_count(0)

    nav.get_by_role("link", name="Routes").click()
    expect(page.get_by_text("Staff change global routes; you may read them.")).to_be_visible()
    expect(page.get_by_role("button", name="Create route")).to_have_count(0)

    nav.get_by_role("link", name="Pricing").click()
    expect(page.get_by_text("Staff set prices; you may read them.")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Edit the price"))).to_have_count(0)
    console.shot("pricing-member")
