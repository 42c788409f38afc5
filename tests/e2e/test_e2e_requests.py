"""The requests page in a real browser against the real server and the simulator:
filters change the address and the rows; the live tail adds a row for a real gateway
request without a reload; a row opens the drawer with the request's attempt trail (a
failover, OpenAI refusing the model and Anthropic answering); a member of another tenant
sees none of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from aipk_site.gateway.usage import usage_flush
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import Membership, ModelRoute, Role, Tenant, UsageRecord, UsageStatus
from tenants_app.services.keys import virtual_key_create


@dataclass
class Shop:
    ada: object  # owner of Acme
    bob: object  # owner of Globex only
    secret: str  # an Acme key's secret


@pytest.fixture
def shop(console, console_user, simulator) -> Iterator[Shop]:
    openai = provider_create(
        name="openai",
        type="openai",
        base_url=simulator.url + "/openai/v1",
        default_model="gpt-4o-mini",
    )
    api_key_add(provider=openai, label="openai sim", secret="sk-sim-openai-e2e-0001")
    anthropic = provider_create(
        name="anthropic",
        type="anthropic",
        base_url=simulator.url + "/anthropic",
        default_model="claude-3-5-haiku-20241022",
    )
    api_key_add(provider=anthropic, label="anthropic sim", secret="sk-sim-anthropic-e2e-0001")
    acme = Tenant.objects.create(name="Acme", slug="acme")
    globex = Tenant.objects.create(name="Globex", slug="globex")
    ada, bob = console_user("ada"), console_user("bob")
    Membership.objects.create(user=ada, tenant=acme, role=Role.OWNER)
    Membership.objects.create(user=bob, tenant=globex, role=Role.OWNER)
    # OpenAI refuses this model (403 for it alone); Anthropic answers instead
    ModelRoute.objects.create(
        tenant=acme,
        alias="smart",
        candidates=[
            {"provider": "openai", "model": "gpt-4o-mini-fail-model_permission"},
            {"provider": "anthropic", "model": "claude-3-5-haiku-20241022"},
        ],
    )
    key, secret = virtual_key_create(tenant=acme, name="support-bot", actor=ada)
    now = timezone.now()
    for n, status in enumerate([UsageStatus.SUCCESS, UsageStatus.ERROR, UsageStatus.SUCCESS]):
        UsageRecord.objects.create(
            request_id=f"seeded-{n}",
            tenant=acme,
            virtual_key=key,
            provider_name="openai",
            model="gpt-4o-mini",
            status=status,
            error_type="rate_limit" if status == UsageStatus.ERROR else "",
            prompt_tokens=100,
            completion_tokens=20,
            cost_usd=Decimal("0.001"),
            created_at=now - timezone.timedelta(minutes=10 + n),
        )
    yield Shop(ada=ada, bob=bob, secret=secret)
    usage_flush()


def chat(console, secret: str, model: str) -> str:
    """A real request through the gateway (the same server the browser uses); its id."""
    reply = httpx.post(
        console.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hello"}]},
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return reply.headers["x-request-id"]


def rows(console):
    return console.page.locator("#requests-rows tr[data-request-row]")


def test_it_filters_by_the_address_and_the_rows(console, shop):
    console.sign_in(shop.ada)
    console.goto("/console/requests/")
    expect(rows(console)).to_have_count(3)

    console.page.get_by_label("Status").select_option("error")
    console.page.wait_for_url(re.compile(r".*status=error.*"))
    expect(rows(console)).to_have_count(1)
    expect(rows(console).first).to_contain_text("rate_limit")

    console.page.get_by_label("Range").select_option("hour")
    console.page.wait_for_url(re.compile(r".*range=hour.*status=error.*"))
    expect(rows(console)).to_have_count(1)
    console.shot("filtered")

    # a bad value in the address: a message on the page, no rows
    console.goto("/console/requests/?range=custom&since=yesterday")
    expect(console.page.get_by_text("Write an ISO date or time", exact=False)).to_be_visible()
    expect(console.page.get_by_text("Fix the filters above to see requests.")).to_be_visible()


def test_it_adds_a_new_request_to_the_live_tail_without_a_reload(console, shop):
    console.sign_in(shop.ada)
    console.goto("/console/requests/")
    expect(rows(console)).to_have_count(3)
    console.page.evaluate("window.__stillTheSamePage = true")
    console.page.get_by_label("Live").check()

    request_id = chat(console, shop.secret, "smart")
    usage_flush()

    new_row = console.page.locator("#requests-rows tr").first
    expect(new_row).to_contain_text("smart", timeout=20_000)
    expect(rows(console)).to_have_count(4)
    expect(new_row.locator("[data-request-link]")).to_have_attribute(
        "href", f"/console/requests/{request_id}/"
    )
    assert console.page.evaluate("window.__stillTheSamePage") is True
    # the next poll asks after the new row, so it is not added twice
    newest = UsageRecord.objects.get(request_id=request_id).pk
    expect(console.page.locator("#requests-live-poller")).to_have_attribute(
        "hx-get", re.compile(rf"after={newest}$")
    )
    expect(rows(console)).to_have_count(4)
    console.shot("live-tail")


def test_it_opens_the_drawer_with_the_attempt_trail(console, shop):
    request_id = chat(console, shop.secret, "smart")
    usage_flush()
    console.sign_in(shop.ada)
    console.goto("/console/requests/")

    row = console.page.locator(f"#request-{UsageRecord.objects.get(request_id=request_id).pk}")
    row.locator("td").nth(3).click()  # anywhere on the row
    drawer = console.page.locator("#request-drawer")
    expect(drawer).to_be_visible()
    attempts = drawer.locator("tr[data-attempt]")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("openai")
    expect(attempts.nth(0)).to_contain_text("gpt-4o-mini-fail-model_permission")
    expect(attempts.nth(0)).to_contain_text("403")
    expect(attempts.nth(1)).to_contain_text("anthropic")
    expect(drawer).to_contain_text("anthropic sim …0001")  # the label, never the secret
    expect(drawer).not_to_contain_text("sk-sim-anthropic-e2e-0001")
    expect(drawer).to_contain_text("Body capture was off")
    expect(console.page.locator("#request-drawer-title")).to_be_focused()
    console.shot("drawer")

    console.page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(row.locator("[data-request-link]")).to_be_focused()


def test_it_shows_a_member_nothing_of_another_tenant(console, shop):
    request_id = chat(console, shop.secret, "smart")
    usage_flush()
    console.sign_in(shop.bob)
    console.goto("/console/requests/")
    expect(console.page.get_by_text("No requests match these filters")).to_be_visible()
    expect(rows(console)).to_have_count(0)
    expect(console.page.get_by_label("Tenant").locator("option")).to_have_text(
        ["All tenants", "Globex"]
    )
    response = console.goto(f"/console/requests/{request_id}/")
    assert response.status == 404
