"""Budgets and rate limits as clients see them: reserve-then-settle under concurrency."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from aipk_site.gateway.usage import usage_flush
from tenants_app.models import Pricing, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

# Prompts free, replies $0.10 a token: a request with max_tokens 10 reserves at most $1
# (its prompt, however long, costs nothing here)
SLOW_MODEL = "gpt-4o-mini-delay-300ms"


async def burst(gateway_server, secret: str, n: int, **body) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    gateway_server.openai_base_url + "/chat/completions",
                    json={
                        "model": f"openai/{SLOW_MODEL}",
                        "messages": [{"role": "user", "content": "hi"}],
                        "max_tokens": 10,
                        **body,
                    },
                    headers={"authorization": f"Bearer {secret}"},
                )
                for _ in range(n)
            )
        )


@pytest.fixture
def priced(world):
    Pricing.objects.update_or_create(
        provider_type="openai",
        provider=None,
        model=SLOW_MODEL,
        defaults={"input_per_million": 0, "output_per_million": 100_000},
    )


@pytest.mark.parametrize("whose", ["key", "tenant"])
def test_it_admits_only_the_budgets_worth_of_50_concurrent_requests(
    world, gateway_server, make_key, priced, whose
):
    if whose == "key":
        key, secret = make_key(world.tenant, name="ten dollars", monthly_budget_usd=Decimal(10))
    else:
        world.tenant.monthly_budget_usd = Decimal(10)
        world.tenant.save()
        key, secret = make_key(world.tenant, name="tenant budget")
    replies = asyncio.run(burst(gateway_server, secret, 50))
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(200) == 10 and statuses.count(429) == 40
    refusal = next(r for r in replies if r.status_code == 429).json()["error"]
    assert refusal["code"] == f"{whose}_budget" and "budget" in refusal["message"]
    usage_flush()
    spent = sum(r.cost_usd for r in UsageRecord.objects.filter(virtual_key=key))
    assert 0 < spent <= Decimal(10)
    assert UsageRecord.objects.filter(virtual_key=key).count() == 50


def test_it_limits_concurrent_streams(world, gateway_server, make_key, priced):
    key, secret = make_key(world.tenant, name="two streams", max_concurrent_streams=2)
    replies = asyncio.run(burst(gateway_server, secret, 6, stream=True))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 200, 429, 429, 429, 429]
    assert {r.json()["error"]["code"] for r in replies if r.status_code == 429} == {
        "key_concurrency"
    }


def test_it_counts_tokens_per_minute(world, gateway_server, make_key):
    key, secret = make_key(world.tenant, name="small tpm", tpm=30)
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    first = httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={**body, "max_tokens": 20},
        headers={"authorization": f"Bearer {secret}"},
    )
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "30"
    second = httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={**body, "max_tokens": 29},
        headers={"authorization": f"Bearer {secret}"},
    )
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "key_tpm"
