"""The tenants pages in a real browser: staff create a tenant, add a member, create a
virtual key (its secret shown once, copyable, gone on reload), revoke it, and read
the usage charts."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tenants_app.models import Membership, Role, Tenant, UsageRecord, UsageStatus, VirtualKey


def test_it_runs_a_tenant_from_creation_to_usage_charts(console, console_user):
    ada = console_user("ada", is_staff=True)
    console_user("bob")
    page = console.page
    console.sign_in(ada)

    # a new tenant, from the list
    console.goto("/console/tenants/")
    expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    console.shot("tenant-list")
    page.get_by_label("Name", exact=True).fill("Initech")
    page.get_by_label("Requests per minute").fill("120")
    page.get_by_role("button", name="Create tenant").click()
    page.wait_for_url(re.compile(r".*/console/tenants/initech/$"))
    expect(page.get_by_role("heading", name="Initech")).to_be_visible()
    expect(page.locator("#flash")).to_contain_text("Tenant Initech created.")
    console.shot("tenant-overview")

    # a member
    page.get_by_role("navigation", name="Tenant sections").get_by_role(
        "link", name="Members"
    ).click()
    page.wait_for_url(re.compile(r".*/members/$"))
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("#flash")).to_contain_text("bob added as member.")
    expect(page.locator("#member-bob")).to_contain_text("member")
    console.shot("members")

    # a virtual key: the secret once, copyable; a reload shows it no more
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.url)
    page.get_by_role("navigation", name="Tenant sections").get_by_role("link", name="Keys").click()
    page.wait_for_url(re.compile(r".*/keys/$"))
    console.shot("keys-empty")
    page.get_by_label("Name", exact=True).fill("ci bot")
    page.get_by_role("button", name="Create key").click()
    secret_box = page.locator(".secret-once")
    expect(secret_box).to_be_visible()
    secret = page.locator("#new-key-secret").inner_text().strip()
    key = VirtualKey.objects.get(tenant__slug="initech")
    assert secret.startswith(key.prefix) and secret.startswith("aipk-")
    assert page.url.endswith("/console/tenants/initech/keys/")  # the secret is in no address
    page.get_by_role("button", name="Copy secret").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    console.shot("key-created-secret-once")

    page.reload()
    expect(page.get_by_role("heading", name="Virtual keys")).to_be_visible()
    expect(page.locator(".secret-once")).to_have_count(0)
    assert secret not in page.content()
    expect(page.locator(f"#key-{key.pk}")).to_contain_text(f"{key.prefix}…")
    console.shot("keys-after-reload")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke ci bot").click()
    expect(page.locator(f"#key-{key.pk} .badge-revoked")).to_have_text("revoked")
    expect(page.get_by_role("status")).to_contain_text("revoked")
    key.refresh_from_db()
    assert key.revoked_at is not None
    console.shot("key-revoked")

    # usage: charts drawn from the tenant's usage rows
    tenant = Tenant.objects.get(slug="initech")
    now = timezone.now()
    for n, (status, cost) in enumerate(
        [(UsageStatus.SUCCESS, "0.40"), (UsageStatus.SUCCESS, "0.10"), (UsageStatus.ERROR, "0")]
    ):
        UsageRecord.objects.create(
            request_id=f"e2e-{n}",
            tenant=tenant,
            virtual_key=key,
            provider_name="openai-prod",
            model="gpt-4o-mini",
            status=status,
            prompt_tokens=200,
            completion_tokens=50,
            cost_usd=Decimal(cost),
            created_at=now,
        )
    page.get_by_role("navigation", name="Tenant sections").get_by_role("link", name="Usage").click()
    page.wait_for_url(re.compile(r".*/usage/$"))
    expect(page.locator('.dash-chart canvas[data-drawn="true"]')).to_have_count(3)
    for title in ("Requests per day", "Tokens per day", "Spend per day"):
        expect(page.get_by_role("region", name=title).locator("canvas")).to_be_visible()
    expect(page.locator(".stats")).to_contain_text("$0.5000")
    expect(page.get_by_role("link", name="Download CSV")).to_have_attribute(
        "href", re.compile(r"^/api/tenants/initech/usage/csv\?from=\d{4}-\d\d-01&to=")
    )
    console.shot("usage-charts")


LONG_USERNAME = "kristina.alexandrovna.vasquezmontgomery@researchdivision.example.com"
# the username's text against the visible part of its table's scrolling wrapper: whole
# (not clipped by its own box) and inside what the wrapper shows without scrolling
USERNAME_FULLY_VISIBLE = """(name) => {
  const span = [...document.querySelectorAll('.member-username')]
    .find((node) => node.textContent === name);
  if (!span) { return 'missing'; }
  const wrapper = span.closest('.table-scroll').getBoundingClientRect();
  const cell = span.closest('td');
  const box = span.getBoundingClientRect();
  if (cell.scrollWidth > cell.clientWidth) { return 'clipped by its cell'; }
  if (box.left < wrapper.left - 0.5 || box.right > wrapper.right + 0.5) {
    return 'outside the visible table: ' + box.right + ' > ' + wrapper.right;
  }
  return 'ok';
}"""


@pytest.mark.parametrize("width", [390, 1400])
def test_it_shows_a_long_username_in_full_on_the_members_page(console, console_user, width):
    ada = console_user("ada", is_staff=True)
    tenant = Tenant.objects.create(name="Initech " + "with a long name " * 4, slug="initech")
    Membership.objects.create(user=console_user(LONG_USERNAME), tenant=tenant, role=Role.MEMBER)
    page = console.page
    page.set_viewport_size({"width": width, "height": 860})
    console.sign_in(ada)

    console.goto("/console/tenants/initech/members/")

    expect(page.locator(".member-username")).to_have_text(LONG_USERNAME)
    assert page.evaluate(USERNAME_FULLY_VISIBLE, LONG_USERNAME) == "ok"
    # the tenant's long name still stops at an ellipsis, whole in its title
    heading = page.locator(".page-head h1")
    expect(heading).to_have_attribute("title", tenant.name)
    console.shot(f"members-long-username-{width}")
