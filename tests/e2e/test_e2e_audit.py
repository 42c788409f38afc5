"""The audit log in a real browser: staff narrow it down with the filters (htmx swaps the
table and the URL follows), page through it, and see a bad filter explained in place."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aipk_site.infra.audit import audit_record
from providers_app.services.providers import provider_create
from tenants_app.models import Tenant


@pytest.fixture
def staff_with_history(console_user):
    ada = console_user("ada", is_staff=True)
    acme = Tenant.objects.create(name="Acme", slug="acme")
    globex = Tenant.objects.create(name="Globex", slug="globex")
    provider_create(name="openai", type="openai", base_url="http://127.0.0.1:9/v1", actor=ada)
    for n in range(55):
        audit_record(
            action="key.touch", object_type="k", object_id=str(n), actor=ada, tenant=globex
        )
    audit_record(
        action="route.create",
        object_type="tenants_app.ModelRoute",
        object_id="1",
        actor=ada,
        tenant=acme,
        changes={"alias": "smart"},
        ip_address="203.0.113.5",
    )
    return ada


def rows(page):
    return page.locator("#audit-results tbody tr")


def test_it_lets_staff_filter_and_page_the_audit_log(console, staff_with_history):
    page = console.page
    console.sign_in(staff_with_history)
    console.goto("/console/audit/")
    expect(page.locator("#audit-count")).to_have_text("57 events · page 1 of 2")
    expect(rows(page)).to_have_count(50)
    console.shot("audit-all")

    page.get_by_role("link", name="Older →").click()
    expect(page).to_have_url(re.compile(r"/console/audit/\?.*page=2"))
    expect(rows(page)).to_have_count(7)
    expect(page.locator("#audit-results")).to_contain_text("provider.create")
    console.shot("audit-page-2")

    page.get_by_label("Tenant", exact=True).select_option("acme")
    expect(page).to_have_url(re.compile(r"tenant=acme"))
    expect(rows(page)).to_have_count(1)
    row = rows(page).first
    expect(row).to_contain_text("route.create")
    expect(row).to_contain_text("Acme")
    expect(row).to_contain_text("alias: smart")
    expect(row).to_contain_text("203.0.113.5")
    console.shot("audit-acme")

    page.get_by_label("Tenant", exact=True).select_option("(none)")
    page.get_by_label("Action", exact=True).fill("provider.")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=provider\."))
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("provider.create")
    console.shot("audit-no-tenant-provider-events")

    page.get_by_label("From", exact=True).fill("2030-01-02")
    page.get_by_label("To", exact=True).fill("2030-01-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("To: must be on or after the From date")).to_be_visible()
    expect(page.locator("#audit-results tbody")).to_have_count(0)
    console.shot("audit-bad-dates")

    page.get_by_role("link", name="Clear filters").click()
    expect(page.locator("#audit-count")).to_have_text("57 events · page 1 of 2")
