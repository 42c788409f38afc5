"""The audit log in a real browser: staff narrow it down with the filters (htmx swaps the
table and the URL follows), page through it, and see a bad filter explained in place."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aipk_site.infra.audit import audit_record
from providers_app.services.providers import provider_create
from tenants_app.models import Membership, Role, Tenant
from tenants_app.services.keys import virtual_key_create, virtual_key_update


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
    expect(row).to_contain_text("Alias: smart")
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


def test_it_names_objects_readably_and_filters_by_chosen_actor_and_object_type(
    console, console_user
):
    olga = console_user("olga")
    acme = Tenant.objects.create(name="Acme", slug="acme")
    Membership.objects.create(user=olga, tenant=acme, role=Role.OWNER)
    key, _secret = virtual_key_create(tenant=acme, name="nightly-batch", actor=olga, rpm=10)
    virtual_key_update(key=key, actor=olga, rpm=60)
    audit_record(action="tenant.update", obj=acme, actor=None, tenant=acme)
    page = console.page
    console.sign_in(olga)
    console.goto("/console/audit/")
    expect(rows(page)).to_have_count(3)

    page.get_by_label("Actor", exact=True).select_option("olga")
    expect(page).to_have_url(re.compile(r"actor=olga"))
    expect(rows(page)).to_have_count(2)
    page.get_by_label("Object type", exact=True).select_option(label="Virtual key")
    expect(page).to_have_url(re.compile(r"object_type=tenants_app.VirtualKey"))
    update = rows(page).first
    expect(update).to_contain_text("virtual_key.update")
    expect(update).to_contain_text("Rpm: 10 → 60")
    requests = update.get_by_role("link", name="Requests")
    expect(requests).to_have_attribute("href", f"/console/requests/?tenant=acme&key={key.pk}")
    console.shot("audit-readable-key-events")

    update.get_by_role("link", name="Virtual key nightly-batch (acme)").click()
    expect(page).to_have_url(re.compile(rf"/console/tenants/acme/keys/{key.pk}/$"))
    page.go_back()
    expect(page.get_by_label("Object type", exact=True)).to_have_value("tenants_app.VirtualKey")
    expect(page.get_by_label("Actor", exact=True)).to_have_value("olga")
