"""Cached, cache-write and reasoning tokens through the gateway: reported to clients in
their own format (read by the official openai and anthropic SDKs), stored on the usage
row and priced at their own rates.

The simulator's rules (providers_app/simulator/behaviour.py): a prompt of at least
1024 tokens (words) seen before is a cache read, reported in whole 128-token blocks by
OpenAI and Gemini; reasoning models (``o3-mini``, ids containing ``thinking``) spend
REASONING_TOKENS hidden output tokens.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import anthropic
import openai
import pytest

from providers_app.simulator.behaviour import REASONING_TOKENS

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT_WORDS = 1300
CACHED = 1280  # PROMPT_WORDS in whole 128-token blocks


def long_prompt() -> str:
    """A system prompt unique to the test (no other test warmed its cache) that makes
    PROMPT_WORDS words with the one-word user message ``think``."""
    return f"{uuid.uuid4().hex} " + "context " * (PROMPT_WORDS - 2)


def cached_conversation() -> list[dict]:
    return [{"role": "system", "content": long_prompt()}, {"role": "user", "content": "think"}]


def openai_client(world, gateway_server) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


def anthropic_client(world, gateway_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=world.secret, base_url=gateway_server.url, max_retries=0)


def model_of(world, provider_type: str, model: str) -> str:
    return f"{world.providers[provider_type].name}/{model}"


# -- reported: OpenAI chat completions ------------------------------------------


def test_it_reports_cached_prompt_tokens_to_an_openai_client(world, gateway_server):
    client = openai_client(world, gateway_server)
    messages = cached_conversation()
    model = model_of(world, "openai", "gpt-4o-mini")
    first = client.chat.completions.create(model=model, messages=messages)
    second = client.chat.completions.create(model=model, messages=messages)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens == PROMPT_WORDS
    assert second.usage.prompt_tokens_details.cached_tokens == CACHED


@pytest.mark.parametrize(
    "provider_type,model", [("openai", "o3-mini"), ("gemini", "gemini-2.5-flash-thinking")]
)
def test_it_reports_reasoning_tokens_inside_completion_tokens_to_an_openai_client(
    world, gateway_server, provider_type, model
):
    client = openai_client(world, gateway_server)
    reply = client.chat.completions.create(
        model=model_of(world, provider_type, model),
        messages=[{"role": "user", "content": "think"}],
    )
    # "Simulated reply to: think" is 4 visible tokens
    assert reply.usage.completion_tokens == 4 + REASONING_TOKENS
    assert reply.usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert reply.choices[0].message.content == "Simulated reply to: think"


def test_it_reports_the_details_in_the_usage_chunk_of_an_openai_stream(world, gateway_server):
    client = openai_client(world, gateway_server)
    messages = cached_conversation()
    model = model_of(world, "openai", "o3-mini")
    client.chat.completions.create(model=model, messages=messages)
    chunks = list(
        client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage.prompt_tokens_details.cached_tokens == CACHED
    assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert usage.completion_tokens == 4 + REASONING_TOKENS


# -- reported: Anthropic messages -----------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_reports_cache_reads_apart_from_input_tokens_to_an_anthropic_client(
    world, gateway_server, stream
):
    client = anthropic_client(world, gateway_server)
    kwargs = {
        "model": model_of(world, "openai", "gpt-4o-mini"),
        "max_tokens": 100,
        "system": long_prompt(),
        "messages": [{"role": "user", "content": "think"}],
    }
    client.messages.create(**kwargs)
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    # Anthropic's input_tokens EXCLUDES the cache reads
    assert message.usage.input_tokens == PROMPT_WORDS - CACHED
    assert message.usage.cache_read_input_tokens == CACHED
    assert message.usage.cache_creation_input_tokens == 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_reports_thinking_tokens_inside_output_tokens_to_an_anthropic_client(
    world, gateway_server, stream
):
    client = anthropic_client(world, gateway_server)
    kwargs = {
        "model": model_of(world, "anthropic", "claude-sonnet-4-6-thinking"),
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "think"}],
    }
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert message.usage.output_tokens == 4 + REASONING_TOKENS
    assert message.usage.output_tokens_details.thinking_tokens == REASONING_TOKENS
    assert message.usage.input_tokens == 1


# -- stored and priced ----------------------------------------------------------


def test_it_stores_prices_and_charges_cached_and_reasoning_tokens_at_their_own_rates(
    world, gateway_server, make_key
):
    from asgiref.sync import async_to_sync
    from django.utils import timezone

    from aipk_site.gateway.admission import usage_now
    from aipk_site.gateway.usage import usage_flush
    from tenants_app.models import Pricing, UsageRecord
    from tenants_app.services.billing import invoice_generate
    from tenants_app.services.pricing import pricing_cache_clear

    provider = world.providers["openai"]
    Pricing.objects.create(
        provider=provider,
        provider_type="openai",
        model="o3-mini",
        input_per_million=Decimal("2"),
        output_per_million=Decimal("8"),
        cached_input_per_million=Decimal("0.5"),
    )
    pricing_cache_clear()
    # a budget, so admission reserves and settles money on the key's counter
    key, secret = make_key(world.tenant, name="budgeted", monthly_budget_usd=Decimal(100))
    client = openai.OpenAI(api_key=secret, base_url=gateway_server.openai_base_url, max_retries=0)
    messages = cached_conversation()
    first = client.chat.completions.create(
        model=model_of(world, "openai", "o3-mini"), messages=messages
    )
    second = client.chat.completions.create(
        model=model_of(world, "openai", "o3-mini"), messages=messages
    )
    usage_flush()

    completion = 4 + REASONING_TOKENS
    cold = UsageRecord.objects.get(request_id=first.id)
    warm = UsageRecord.objects.get(request_id=second.id)
    assert (cold.prompt_tokens, cold.cached_tokens, cold.cache_write_tokens) == (PROMPT_WORDS, 0, 0)
    assert (warm.prompt_tokens, warm.cached_tokens, warm.cache_write_tokens) == (
        PROMPT_WORDS,
        CACHED,
        0,
    )
    assert (warm.completion_tokens, warm.reasoning_tokens) == (completion, REASONING_TOKENS)
    # input $2/M, cached input $0.5/M, output (reasoning included) $8/M
    assert cold.cost_usd == Decimal(PROMPT_WORDS * 2 + completion * 8) / 1_000_000
    assert (
        warm.cost_usd
        == (Decimal((PROMPT_WORDS - CACHED) * 2 + completion * 8) + CACHED * Decimal("0.5"))
        / 1_000_000
    )
    spent = async_to_sync(usage_now)(key_id=key.pk, tenant_id=world.tenant.pk)
    assert spent["key"]["spend_micro_usd"] == int((cold.cost_usd + warm.cost_usd) * 1_000_000)
    invoice = invoice_generate(tenant=world.tenant, period=timezone.now().date())
    assert invoice.total_usd == cold.cost_usd + warm.cost_usd
