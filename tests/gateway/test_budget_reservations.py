"""What a budget reservation holds: the most a request can cost, never less.

The prompt is bounded by the UTF-8 bytes of everything sent (a BPE token is never
shorter than a byte) plus allowances; the reply by max_tokens, else the model's
maximum output. tests/gateway/test_budget_bounds.py checks the same over HTTP.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from providers_app.kit.types import ChatRequest, Message, Tool, ToolCall
from providers_app.models import DiscoveredModel, Provider
from tenants_app.models import Pricing
from tenants_app.services.pricing import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    MAX_RESERVED_MICRO,
    PROMPT_TOOLS_OVERHEAD_TOKENS,
    Price,
    acost_bound,
    amax_output_tokens,
    aprice_for,
    pricing_cache_clear,
    prompt_tokens_upper_bound,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_cache():
    pricing_cache_clear()
    yield
    pricing_cache_clear()


def request(*texts: str, **fields) -> ChatRequest:
    return ChatRequest(
        model="m", messages=[Message(role="user", content=t) for t in texts], **fields
    )


def test_it_bounds_the_prompt_by_its_utf8_bytes_never_by_characters():
    ascii_text = "x" * 4000
    cjk_text = "漢" * 4000  # 3 bytes each; a tokenizer may spend a token per byte
    assert prompt_tokens_upper_bound(request(ascii_text)) >= 4000
    assert prompt_tokens_upper_bound(request(cjk_text)) >= 12_000
    # a lone surrogate is measured, not an exception
    assert prompt_tokens_upper_bound(request("\ud800")) > 0


def test_it_counts_tool_schemas_tool_calls_and_pass_through_fields():
    plain = prompt_tokens_upper_bound(request("hi"))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "x" * 500}},
    }
    with_tools = request(
        "hi", tools=[Tool(name="weather", description="d" * 300, parameters=schema)]
    )
    assert prompt_tokens_upper_bound(with_tools) >= plain + PROMPT_TOOLS_OVERHEAD_TOKENS + 800
    call = Message(
        role="assistant", tool_calls=[ToolCall(id="c1", name="weather", arguments="a" * 700)]
    )
    with_call = ChatRequest(model="m", messages=[Message(role="user", content="hi"), call])
    assert prompt_tokens_upper_bound(with_call) >= plain + 700
    extra = request("hi", extra_body={"prediction": {"content": "p" * 900}})
    assert prompt_tokens_upper_bound(extra) >= plain + 900


@pytest.fixture
def provider():
    return Provider.objects.create(name="oa", type="openai", base_url="http://127.0.0.1:9/v1")


async def test_it_takes_the_longest_reply_from_discovery_then_the_catalogue_then_a_default(
    provider,
):
    # gpt-4o is in the openai adapter's static catalogue with 16,384
    assert await amax_output_tokens(provider, "gpt-4o") == (16_384, True)
    await DiscoveredModel.objects.acreate(
        provider=provider,
        model_id="gpt-4o",
        name="gpt-4o",
        max_output_tokens=4096,
        discovered_at=timezone.now(),
    )
    pricing_cache_clear()
    assert await amax_output_tokens(provider, "gpt-4o") == (4096, True)
    # a dated snapshot inherits nothing from its base model
    longest, known = await amax_output_tokens(provider, "gpt-4o-2099-01-01")
    assert not known and longest >= 128_000
    other = await Provider.objects.acreate(name="x", type="openai-compatible", base_url="")
    assert await amax_output_tokens(other, "anything") == (DEFAULT_MAX_OUTPUT_TOKENS, False)


async def test_it_reserves_max_tokens_or_else_the_models_longest_reply(provider):
    await Pricing.objects.acreate(
        provider_type="openai", model="gpt-4o", input_per_million=1, output_per_million=10
    )
    prompt = request("hello")
    bound = prompt_tokens_upper_bound(prompt)

    unset = await acost_bound([(provider, "gpt-4o")], prompt)
    assert unset.cost_micro == bound * 1 + 16_384 * 10 and unset.unpriced == ()
    capped = await acost_bound([(provider, "gpt-4o")], request("hello", max_tokens=100))
    assert capped.cost_micro == bound + 100 * 10
    # more than the model can give: the model's maximum bounds it (the provider refuses)
    huge = await acost_bound([(provider, "gpt-4o")], request("hello", max_tokens=2**62))
    assert huge.cost_micro == unset.cost_micro


async def test_it_names_unpriced_candidates_and_reserves_the_dearest_priced_one(provider):
    await Pricing.objects.acreate(
        provider_type="openai", model="cheap", input_per_million=1, output_per_million=1
    )
    await Pricing.objects.acreate(
        provider_type="openai", model="dear", input_per_million=5, output_per_million=5
    )
    candidates = [(provider, "cheap"), (provider, "no-price"), (provider, "dear")]
    bound = await acost_bound(candidates, request("hi", max_tokens=10))
    assert bound.unpriced == (1,)
    assert bound.cost_micro == (prompt_tokens_upper_bound(request("hi")) + 10) * 5


async def test_it_caps_a_reservation_for_a_model_of_unknown_size(provider):
    await Pricing.objects.acreate(
        provider_type="openai",
        model="mystery",
        input_per_million=999_999,
        output_per_million=999_999,
    )
    bound = await acost_bound([(provider, "mystery")], request("hi", max_tokens=2**62))
    assert bound.cost_micro == MAX_RESERVED_MICRO


async def test_it_uses_the_providers_fallback_price_only_where_no_row_applies(provider):
    await Pricing.objects.acreate(
        provider_type="openai", model="gpt-4o", input_per_million=2, output_per_million=8
    )
    assert await aprice_for(provider, "gpt-4o-2024-11-20") is None
    provider.settings = {"fallback_input_per_million": "20", "fallback_output_per_million": "80"}
    assert await aprice_for(provider, "gpt-4o-2024-11-20") == Price(Decimal(20), Decimal(80))
    assert await aprice_for(provider, "gpt-4o") == Price(Decimal(2), Decimal(8))


async def test_it_keeps_its_price_caches_bounded_whatever_model_ids_clients_send(
    provider, monkeypatch
):
    from tenants_app.services import pricing

    monkeypatch.setattr(pricing._prices, "_max_entries", 50)
    monkeypatch.setattr(pricing._output_limits, "_max_entries", 50)
    for n in range(120):
        await aprice_for(provider, f"made-up-{n}")
        await amax_output_tokens(provider, f"made-up-{n}")
    assert len(pricing._prices) <= 50 and len(pricing._output_limits) <= 50
