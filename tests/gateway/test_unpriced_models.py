"""A model with no price cannot be used to get round a budget.

Without a price a request costs $0, so a key refused on ``gpt-4o`` for its budget used
to be served every time on ``gpt-4o-2024-11-20`` (a dated snapshot the bundled table
does not list). While a key or tenant budget applies, such a request is refused up front
in the caller's format, naming the model -- unless an admin priced it (a Pricing row) or
gave its provider a fallback price. Without a budget it is served as before.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import aiohttp
import httpx
import pytest

from aipk_site.gateway.routing import routing_cache_clear
from aipk_site.gateway.usage import usage_flush
from providers_app.services.provider_settings import (
    ProviderSettingsError,
    validate_provider_settings,
)
from providers_app.services.providers import provider_update
from tenants_app.models import Pricing, UsageRecord
from tenants_app.services.pricing import pricing_cache_clear

pytestmark = pytest.mark.django_db(transaction=True)

SNAPSHOT = "gpt-4o-2024-11-20"  # not in the bundled price table
MESSAGES = [{"role": "user", "content": "hi"}]


def openai_chat(gateway_server, secret: str, model: str, **body) -> httpx.Response:
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={"model": model, "messages": MESSAGES, "max_tokens": 2000, **body},
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


def anthropic_messages(gateway_server, secret: str, model: str) -> httpx.Response:
    return httpx.post(
        gateway_server.openai_base_url + "/messages",
        json={"model": model, "messages": MESSAGES, "max_tokens": 2000},
        headers={"x-api-key": secret, "anthropic-version": "2023-06-01"},
        timeout=30,
    )


def websocket_chat(gateway_server, secret: str, model: str) -> dict:
    url = gateway_server.url.replace("http://", "ws://", 1) + "/ws/chat/"

    async def main() -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, headers={"authorization": f"Bearer {secret}"}) as ws:
                await ws.send_json(
                    {
                        "type": "chat.request",
                        "id": "r1",
                        "model": model,
                        "messages": MESSAGES,
                        "options": {"max_tokens": 2000},
                    }
                )
                while True:
                    message = await ws.receive(timeout=20)
                    assert message.type == aiohttp.WSMsgType.TEXT, message
                    event = json.loads(message.data)
                    if event["type"] in ("chat.done", "chat.error"):
                        return event

    return asyncio.run(main())


@pytest.fixture
def budget_key(world, make_key):
    """A key whose one-cent budget cannot hold gpt-4o with max_tokens 2000 ($0.02)."""
    # the bundled row (a transactional test before this one may have flushed it)
    Pricing.objects.update_or_create(
        provider_type="openai",
        provider=None,
        model="gpt-4o",
        defaults={"input_per_million": Decimal("2.50"), "output_per_million": Decimal("10.00")},
    )
    pricing_cache_clear()
    return make_key(world.tenant, name="one cent", monthly_budget_usd=Decimal("0.01"))


def test_it_refuses_an_unpriced_model_while_a_key_budget_applies(world, gateway_server, budget_key):
    key, secret = budget_key
    priced = openai_chat(gateway_server, secret, "openai/gpt-4o")
    assert priced.status_code == 429 and priced.json()["error"]["code"] == "key_budget"

    replies = [openai_chat(gateway_server, secret, f"openai/{SNAPSHOT}") for _ in range(5)]

    assert [r.status_code for r in replies] == [400] * 5, [r.text for r in replies]
    error = replies[0].json()["error"]
    assert error["code"] == "model_unpriced" and error["param"] == "model"
    assert SNAPSHOT in error["message"] and "price" in error["message"]
    usage_flush()
    rows = UsageRecord.objects.filter(virtual_key=key, model=SNAPSHOT)
    assert sorted(rows.values_list("status", flat=True)) == ["refused"] * 5


def test_it_refuses_an_unpriced_model_while_the_tenant_budget_applies(
    world, gateway_server, make_key
):
    world.tenant.monthly_budget_usd = Decimal(100)
    world.tenant.save()
    _, secret = make_key(world.tenant, name="no budget of its own")

    reply = openai_chat(gateway_server, secret, f"openai/{SNAPSHOT}")

    assert reply.status_code == 400 and reply.json()["error"]["code"] == "model_unpriced"


def test_it_refuses_in_the_anthropic_format_and_on_the_websocket(world, gateway_server, budget_key):
    _, secret = budget_key

    anthropic = anthropic_messages(gateway_server, secret, f"openai/{SNAPSHOT}")
    event = websocket_chat(gateway_server, secret, f"openai/{SNAPSHOT}")

    assert anthropic.status_code == 400
    body = anthropic.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert SNAPSHOT in body["error"]["message"]
    assert event["type"] == "chat.error" and event["code"] == "model_unpriced"
    assert SNAPSHOT in event["message"]


def test_it_serves_an_unpriced_model_without_a_budget(world, gateway_server):
    reply = openai_chat(gateway_server, world.secret, f"openai/{SNAPSHOT}")

    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"].startswith("Simulated reply")


def test_it_serves_a_model_an_admin_priced(world, gateway_server, make_key):
    _, secret = make_key(world.tenant, name="ten dollars", monthly_budget_usd=Decimal(10))
    Pricing.objects.create(
        provider_type="openai",
        model=SNAPSHOT,
        input_per_million=Decimal("2.50"),
        output_per_million=Decimal("10.00"),
        source="manual",
    )
    pricing_cache_clear()

    reply = openai_chat(gateway_server, secret, f"openai/{SNAPSHOT}")

    assert reply.status_code == 200, reply.text


def test_it_charges_a_providers_fallback_price_for_models_it_has_no_price_for(
    world, gateway_server, make_key
):
    key, secret = make_key(world.tenant, name="ten dollars", monthly_budget_usd=Decimal(10))
    Pricing.objects.update_or_create(
        provider_type="openai",
        provider=None,
        model="gpt-4o-mini",
        defaults={"input_per_million": Decimal("0.15"), "output_per_million": Decimal("0.60")},
    )
    provider = world.providers["openai"]
    provider_update(
        provider=provider,
        settings={
            **(provider.settings or {}),
            "fallback_input_per_million": "100",
            "fallback_output_per_million": "200",
        },
    )
    pricing_cache_clear()
    routing_cache_clear()

    reply = openai_chat(gateway_server, secret, f"openai/{SNAPSHOT}")

    assert reply.status_code == 200, reply.text
    usage = reply.json()["usage"]
    usage_flush()
    [row] = UsageRecord.objects.filter(virtual_key=key, model=SNAPSHOT)
    expected = (
        Decimal(usage["prompt_tokens"]) * 100 + Decimal(usage["completion_tokens"]) * 200
    ) / 1_000_000
    assert row.cost_usd == expected > 0
    # a model with a price of its own keeps it: the fallback is for the unpriced only
    assert openai_chat(gateway_server, secret, "openai/gpt-4o-mini").status_code == 200
    usage_flush()
    mini = UsageRecord.objects.get(virtual_key=key, model="gpt-4o-mini")
    assert mini.cost_usd < expected


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"fallback_input_per_million": "-1", "fallback_output_per_million": "2"}, "input"),
        ({"fallback_input_per_million": "1", "fallback_output_per_million": "x"}, "output"),
        ({"fallback_input_per_million": "1"}, "output"),
        ({"fallback_output_per_million": "1e9", "fallback_input_per_million": "1"}, "output"),
    ],
)
def test_it_validates_the_fallback_price(settings, field):
    with pytest.raises(ProviderSettingsError) as refused:
        validate_provider_settings("openai", settings)
    assert any(field in name for name in refused.value.errors), refused.value.errors


def test_it_stores_a_fallback_price_as_text():
    stored = validate_provider_settings(
        "anthropic", {"fallback_input_per_million": 3, "fallback_output_per_million": "15.5"}
    )
    assert stored == {"fallback_input_per_million": "3", "fallback_output_per_million": "15.5"}


def test_it_lets_staff_set_the_fallback_price_in_the_console_provider_form(world):
    from django.contrib.auth import get_user_model
    from django.test import Client

    staff = get_user_model().objects.create_user("ops", password="pw-123456", is_staff=True)
    client = Client()
    client.force_login(staff)
    provider = world.providers["openai"]
    url = f"/console/providers/{provider.pk}/edit/"
    assert 'name="settings_fallback_input_per_million"' in client.get(url).content.decode()
    form = {
        "base_url": provider.base_url,
        "default_model": provider.default_model,
        "enabled": "on",
        "key_strategy": provider.key_strategy,
        "settings_fallback_input_per_million": "4",
        "settings_fallback_output_per_million": "12.5",
    }

    bad = client.post(url, {**form, "settings_fallback_output_per_million": "-1"})
    saved = client.post(url, form)

    assert bad.status_code == 422 and "greater than or equal to 0" in bad.content.decode()
    assert saved.status_code == 302, saved.content.decode()[:2000]
    provider.refresh_from_db()
    assert provider.settings["fallback_input_per_million"] == "4"
    assert provider.settings["fallback_output_per_million"] == "12.5"
