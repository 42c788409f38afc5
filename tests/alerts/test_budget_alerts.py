"""Budget thresholds crossed by real /v1 requests through the gateway (daphne on loopback,
the simulator upstream): 50, 80 and 100 % of a key's and of a tenant's monthly budget,
each announced once."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from aipk_site.gateway.usage import usage_flush
from tenants_app.models import AlertDelivery, Pricing, UsageRecord
from tenants_app.services.alerts import alert_channel_create

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "gpt-4o-mini"


@pytest.fixture
def priced(world):
    Pricing.objects.update_or_create(
        provider_type="openai",
        provider=None,
        model=MODEL,
        defaults={"input_per_million": 0, "output_per_million": 100_000},
    )


def ask(gateway_server, secret: str, max_tokens: int = 1) -> httpx.Response:
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={
            "model": f"openai/{MODEL}",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens,
        },
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


def thresholds(receiver) -> list[tuple[str, int]]:
    return [
        (b["data"]["scope"], b["data"]["threshold_percent"])
        for b in receiver.bodies()
        if b["event"] == "budget.threshold"
    ]


def test_it_announces_50_80_and_100_percent_of_a_keys_budget_once_each(
    world,
    gateway_server,
    make_key,
    priced,
    receiver,
    other_tenant,
):
    # one output token at $0.10 per request: a $1 budget is crossed at requests 5, 8 and 10
    key, secret = make_key(world.tenant, name="one dollar", monthly_budget_usd=Decimal(1))
    alert_channel_create(
        tenant=world.tenant,
        name="ops",
        kind="webhook",
        target=receiver.url,
        events=["budget.threshold"],
    )
    alert_channel_create(tenant=other_tenant, name="theirs", kind="slack", target=receiver.url)
    seen = {}
    for n in range(1, 13):
        reply = ask(gateway_server, secret)
        usage_flush()
        seen[n] = (reply.status_code, thresholds(receiver))

    assert seen[4] == (200, [])
    assert seen[5] == (200, [("key", 50)])
    assert seen[7] == (200, [("key", 50)])
    assert seen[8] == (200, [("key", 50), ("key", 80)])
    assert seen[10] == (200, [("key", 50), ("key", 80), ("key", 100)])
    # refused from now on, and no alert again for the same crossings
    assert seen[12] == (429, [("key", 50), ("key", 80), ("key", 100)])
    last = receiver.bodies()[-1]
    assert last["tenant"] == "acme"
    assert last["data"] == {
        "scope": "key",
        "key": f"one dollar ({key.prefix}…)",
        "tenant": "acme",
        "threshold_percent": 100,
        "spent_usd": "1.0000",
        "budget_usd": "1.0000",
        "month": last["data"]["month"],
    }
    assert secret not in str(receiver.bodies())
    assert AlertDelivery.objects.filter(status="sent").count() == 3
    assert not AlertDelivery.objects.filter(channel__tenant=other_tenant).exists()


def test_it_announces_a_tenants_budget_crossed_by_all_its_keys_together(
    world,
    gateway_server,
    make_key,
    priced,
    receiver,
):
    world.tenant.monthly_budget_usd = Decimal("0.4")
    world.tenant.save()
    _, first = make_key(world.tenant, name="first")
    _, second = make_key(world.tenant, name="second")
    alert_channel_create(tenant=None, name="org", kind="webhook", target=receiver.url)

    for secret in (first, second):  # 2 x $0.10 = 50 %
        assert ask(gateway_server, secret).status_code == 200
    usage_flush()
    assert thresholds(receiver) == [("tenant", 50)]
    for secret in (first, second):  # 100 %, passing 80 % on the way
        assert ask(gateway_server, secret).status_code == 200
        usage_flush()

    assert thresholds(receiver) == [("tenant", 50), ("tenant", 80), ("tenant", 100)]
    assert {b["tenant"] for b in receiver.bodies()} == {"acme"}


def test_it_stays_quiet_for_keys_without_a_budget(
    world,
    gateway_server,
    priced,
    receiver,
):
    alert_channel_create(tenant=world.tenant, name="ops", kind="webhook", target=receiver.url)
    for _ in range(3):
        assert ask(gateway_server, world.secret).status_code == 200
    usage_flush()
    assert UsageRecord.objects.count() == 3
    assert len(receiver) == 0
