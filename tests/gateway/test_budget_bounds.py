"""A budget holds under concurrency even when prompts are dense and max_tokens is unset.

The reservation made before a call must bound the call's cost from above: the prompt
counted so it cannot undercount (UTF-8 bytes, never 4 characters a token) and the reply
as long as the request allows (max_tokens, else the model's known maximum output).
The simulator's ``dense`` model ids report one token per character -- more than a
4-characters-a-token estimate, as real tokenizers do on code, numbers or CJK text.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from aipk_site.gateway.usage import usage_flush
from providers_app.models import DiscoveredModel
from tenants_app.models import Pricing, UsageRecord
from tenants_app.services.pricing import pricing_cache_clear

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "gpt-4o-dense-delay-50ms"  # dense usage; 50 ms a word keeps the ten in flight together
PRICE = Decimal(10)  # USD per million tokens, in and out
MAX_OUTPUT = 4096  # the model's maximum output, as discovery recorded it
# 4,000 words, 39,999 characters: $0.40 of prompt at one token per character
BIG_PROMPT = " ".join(f"lorem{i:04d}" for i in range(4000))


@pytest.fixture
def dense_model(world):
    Pricing.objects.create(
        provider_type="openai",
        model=MODEL,
        input_per_million=PRICE,
        output_per_million=PRICE,
        source="manual",
    )
    DiscoveredModel.objects.create(
        provider=world.providers["openai"],
        model_id=MODEL,
        name=MODEL,
        max_output_tokens=MAX_OUTPUT,
        discovered_at=timezone.now(),
    )
    pricing_cache_clear()


async def ten_at_once(gateway_server, secret: str, **body) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    gateway_server.openai_base_url + "/chat/completions",
                    json={
                        "model": f"openai/{MODEL}",
                        # the big text first, a short last turn: the simulator echoes the last
                        "messages": [
                            {"role": "system", "content": BIG_PROMPT},
                            {"role": "user", "content": f"summarise, please ({n})"},
                        ],
                        **body,
                    },
                    headers={"authorization": f"Bearer {secret}"},
                )
                for n in range(10)
            )
        )


def test_it_records_at_most_the_budget_for_ten_concurrent_dense_prompts_without_max_tokens(
    world, gateway_server, make_key, dense_model
):
    key, secret = make_key(world.tenant, name="one dollar", monthly_budget_usd=Decimal(1))

    replies = asyncio.run(ten_at_once(gateway_server, secret))

    usage_flush()
    rows = list(UsageRecord.objects.filter(virtual_key=key))
    spent = sum(row.cost_usd for row in rows)
    served = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 429]
    print(f"served {len(served)} of 10, recorded ${spent} against a $1.00 budget")
    assert spent <= Decimal(1), f"recorded ${spent} against a $1.00 budget"
    assert len(served) + len(refused) == 10 and served, [r.text for r in replies]
    assert {r.json()["error"]["code"] for r in refused} == {"key_budget"}
    # each served call really cost more than a 4-characters-a-token estimate said
    for reply in served:
        assert reply.json()["usage"]["prompt_tokens"] > len(BIG_PROMPT) / 4
    assert len(rows) == 10


def test_it_reserves_only_max_tokens_of_output_when_the_request_sets_it(
    world, gateway_server, make_key, dense_model
):
    # with max_tokens 16 the reply costs next to nothing, so the prompt alone decides:
    # two fit $1.00 ($0.40 each plus replies), never three
    key, secret = make_key(world.tenant, name="one dollar", monthly_budget_usd=Decimal(1))

    replies = asyncio.run(ten_at_once(gateway_server, secret, max_tokens=16))

    usage_flush()
    spent = sum(row.cost_usd for row in UsageRecord.objects.filter(virtual_key=key))
    assert sorted(r.status_code for r in replies) == [200] * 2 + [429] * 8
    assert spent <= Decimal(1)


OVERRUN_MODEL = "gpt-4o-overrun-dense"  # the provider returns max_tokens + 10 %


def test_it_can_exceed_the_budget_only_by_what_providers_return_beyond_max_tokens(
    world, gateway_server, make_key
):
    # The bound that remains (docs/GATEWAY.md): a reservation trusts max_tokens. Replies
    # are $100 per million tokens, prompts free: max_tokens 1000 reserves exactly $0.10,
    # so ten fit $1.00 -- and each then bills 1,100 tokens.
    Pricing.objects.create(
        provider_type="openai",
        model=OVERRUN_MODEL,
        input_per_million=0,
        output_per_million=100,
        source="manual",
    )
    pricing_cache_clear()
    key, secret = make_key(world.tenant, name="one dollar", monthly_budget_usd=Decimal(1))

    async def twelve() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        gateway_server.openai_base_url + "/chat/completions",
                        json={
                            "model": f"openai/{OVERRUN_MODEL}",
                            "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": 1000,
                        },
                        headers={"authorization": f"Bearer {secret}"},
                    )
                    for _ in range(12)
                )
            )

    replies = asyncio.run(twelve())

    usage_flush()
    spent = sum(row.cost_usd for row in UsageRecord.objects.filter(virtual_key=key))
    served = [r for r in replies if r.status_code == 200]
    print(f"overrun: served {len(served)} of 12, recorded ${spent} against a $1.00 budget")
    assert len(served) == 10
    assert all(r.json()["usage"]["completion_tokens"] == 1100 for r in served)
    # over by exactly the excess: 10 requests x 100 tokens x $100 per million
    assert spent == Decimal("1.10")
