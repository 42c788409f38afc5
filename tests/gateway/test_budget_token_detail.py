"""A budget is spent at the real price of every part of a reply: reasoning (thinking)
tokens at the output rate, not at an estimate that counts only the visible reply.

The simulator's thinking models (an id containing ``thinking``) spend REASONING_TOKENS
hidden output tokens and report them inside the output tokens, as Anthropic does
(providers_app/simulator/behaviour.py). Cache reads and writes are priced on the same
path (``pricing.charge``, tests/tenants/test_cache_pricing.py); a cache write cannot be
provoked through the gateway until Anthropic ``cache_control`` is passed on.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
from asgiref.sync import async_to_sync

from aipk_site.gateway.formats.anthropic_format import parse_messages
from aipk_site.gateway.formats.common import InputLimits
from aipk_site.gateway.usage import usage_flush
from providers_app.simulator.behaviour import REASONING_TOKENS
from tenants_app.models import Pricing, UsageRecord
from tenants_app.services.pricing import acost_bound, pricing_cache_clear

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "claude-sonnet-4-5-thinking"
# USD per million: dear output, so hidden reasoning is most of a reply's cost
INPUT, OUTPUT = Decimal(1), Decimal(1000)


def body() -> dict:
    return {
        "model": f"anthropic/{MODEL}",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": f"think about {uuid.uuid4().hex}"}],
    }


def post(gateway_server, secret: str, payload: dict) -> httpx.Response:
    return httpx.post(
        gateway_server.url + "/v1/messages",
        json=payload,
        headers={"x-api-key": secret, "anthropic-version": "2023-06-01"},
        timeout=30,
    )


def micro(usd: Decimal) -> int:
    return int(usd * 1_000_000)


def test_it_refuses_the_next_request_once_reasoning_priced_as_output_spent_the_budget(
    world, gateway_server, make_key
):
    provider = world.providers["anthropic"]
    Pricing.objects.create(
        provider=provider,
        provider_type="anthropic",
        model=MODEL,
        input_per_million=INPUT,
        output_per_million=OUTPUT,
    )
    pricing_cache_clear()

    # a probe of the same shape on a key without a budget: what such a reply costs
    probe = post(gateway_server, world.secret, body())
    assert probe.status_code == 200, probe.text
    usage_flush()
    row = UsageRecord.objects.get(request_id=probe.headers["x-request-id"])
    assert row.reasoning_tokens == REASONING_TOKENS < row.completion_tokens
    real = (row.prompt_tokens * INPUT + row.completion_tokens * OUTPUT) / 1_000_000
    assert row.cost_usd == real
    # what it would cost were only the visible reply charged as output
    naive = (
        row.prompt_tokens * INPUT + (row.completion_tokens - row.reasoning_tokens) * OUTPUT
    ) / 1_000_000

    # what admission reserves for such a request (the most it can cost)
    limits = InputLimits(max_messages=100, max_message_chars=100_000, max_tools=16)
    bound = async_to_sync(acost_bound)(
        [(provider, MODEL)], parse_messages(body(), limits).request
    ).cost_micro
    # a budget that holds one reservation plus the naive cost of a reply, not the real one
    budget = bound + (micro(naive) + micro(real)) // 2
    assert bound + micro(naive) < budget < bound + micro(real)
    _, secret = make_key(
        world.tenant, name="budgeted", monthly_budget_usd=Decimal(budget) / 1_000_000
    )

    first = post(gateway_server, secret, body())
    assert first.status_code == 200, first.text
    second = post(gateway_server, secret, body())
    assert second.status_code == 429, second.text
    error = second.json()["error"]
    assert error["type"] == "rate_limit_error" and "budget" in error["message"]
    usage_flush()
    spent = UsageRecord.objects.get(request_id=first.headers["x-request-id"])
    assert (spent.reasoning_tokens, spent.cost_usd) == (REASONING_TOKENS, real)
