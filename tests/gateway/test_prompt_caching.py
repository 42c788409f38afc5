"""Anthropic prompt caching through the gateway: ``cache_control`` breakpoints reach the
provider where the client put them (system blocks, message blocks, tools), so the second
call reads the cache, the anthropic SDK sees ``cache_read_input_tokens`` and the usage row
prices the read and the write at their own rates.

The simulator caches an Anthropic prompt only up to a block marked ``cache_control``
and only when that prefix has at least 1024 tokens (words), as Anthropic does."""

from __future__ import annotations

import uuid
from decimal import Decimal

import anthropic
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM_WORDS = 1200
MARK = {"type": "ephemeral"}


def long_text() -> str:
    """SYSTEM_WORDS words no other test sent (so its cache is cold)."""
    return f"{uuid.uuid4().hex} " + "context " * (SYSTEM_WORDS - 1)


@pytest.fixture
def client(world, gateway_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=world.secret, base_url=gateway_server.url, max_retries=0)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_reads_the_anthropic_cache_on_the_second_call_of_a_marked_system_prompt(
    world, client, stream
):
    kwargs = {
        "model": world.model("anthropic"),
        "max_tokens": 100,
        "system": [
            {"type": "text", "text": long_text(), "cache_control": MARK},
            {"type": "text", "text": "Today is Sunday."},
        ],
        "messages": [{"role": "user", "content": "hello"}],
    }
    first = client.messages.create(**kwargs)
    if stream:
        with client.messages.stream(**kwargs) as events:
            second = events.get_final_message()
    else:
        second = client.messages.create(**kwargs)
    # the breakpoint sat on the first system block: exactly that block is cached
    assert first.usage.cache_creation_input_tokens == SYSTEM_WORDS
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == SYSTEM_WORDS
    assert second.usage.cache_creation_input_tokens == 0
    # Anthropic's input_tokens excludes the cache: "Today is Sunday." + "hello"
    assert second.usage.input_tokens == 4


def test_it_caches_up_to_a_marked_message_block_and_a_marked_tool(client, world):
    text = long_text()
    tools = [
        {
            "name": "lookup",
            "description": "Look a word up",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            "cache_control": MARK,
        }
    ]
    kwargs = {
        "model": world.model("anthropic"),
        "max_tokens": 100,
        "tools": tools,
        "tool_choice": {"type": "none"},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text, "cache_control": {**MARK, "ttl": "1h"}},
                    {"type": "text", "text": "and then"},
                ],
            }
        ],
    }
    client.messages.create(**kwargs)
    second = client.messages.create(**kwargs)
    assert second.usage.cache_read_input_tokens == SYSTEM_WORDS


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_passes_a_top_level_cache_control_to_anthropic_for_automatic_caching(
    client, world, stream
):
    """The top-level mark (Anthropic's automatic caching) caches the whole prompt: the
    second call, the same conversation, reads all of it."""
    kwargs = {
        "model": world.model("anthropic"),
        "max_tokens": 100,
        "cache_control": MARK,
        "system": long_text(),
        "messages": [{"role": "user", "content": "hello"}],
    }
    first = client.messages.create(**kwargs)
    if stream:
        with client.messages.stream(**kwargs) as events:
            second = events.get_final_message()
    else:
        second = client.messages.create(**kwargs)
    assert first.usage.cache_creation_input_tokens == SYSTEM_WORDS + 1
    assert second.usage.cache_read_input_tokens == SYSTEM_WORDS + 1
    assert second.usage.input_tokens == 0


def test_it_takes_a_top_level_cache_control_on_a_gemini_route_whose_caching_is_automatic(
    client, world
):
    answer = client.messages.create(
        model=world.model("gemini"),
        max_tokens=100,
        cache_control=MARK,
        messages=[{"role": "user", "content": "hello"}],
    )
    assert answer.content[0].type == "text"


def test_it_caches_nothing_without_a_mark(client, world):
    kwargs = {
        "model": world.model("anthropic"),
        "max_tokens": 100,
        "system": long_text(),
        "messages": [{"role": "user", "content": "hello"}],
    }
    client.messages.create(**kwargs)
    second = client.messages.create(**kwargs)
    assert second.usage.cache_read_input_tokens == 0
    assert second.usage.cache_creation_input_tokens == 0


def test_it_takes_the_mark_on_an_openai_route_whose_caching_is_automatic(client, world):
    """OpenAI caches prompt prefixes by itself: the breakpoint has no wire counterpart,
    and the read shows up all the same (SUPPORT_MATRIX.md, cache_control)."""
    kwargs = {
        "model": world.model("openai"),
        "max_tokens": 100,
        "system": [{"type": "text", "text": long_text(), "cache_control": MARK}],
        "messages": [{"role": "user", "content": "hello"}],
    }
    client.messages.create(**kwargs)
    second = client.messages.create(**kwargs)
    assert second.usage.cache_read_input_tokens > 0


def test_it_refuses_a_cache_control_anthropic_would_reject(client, world):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=world.model("anthropic"),
            max_tokens=100,
            system=[{"type": "text", "text": "x", "cache_control": {"type": "forever"}}],
            messages=[{"role": "user", "content": "hello"}],
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "system[0].cache_control" in caught.value.body["error"]["message"]


def test_it_prices_the_cache_write_and_the_cache_read_at_their_rates(world, client):
    from aipk_site.gateway.usage import usage_flush
    from tenants_app.models import Pricing, UsageRecord
    from tenants_app.services.pricing import pricing_cache_clear

    Pricing.objects.create(
        provider=world.providers["anthropic"],
        provider_type="anthropic",
        model="claude-3-5-haiku-20241022",
        input_per_million=Decimal("3"),
        output_per_million=Decimal("15"),
        cached_input_per_million=Decimal("0.3"),
        cache_write_per_million=Decimal("3.75"),
    )
    pricing_cache_clear()
    kwargs = {
        "model": world.model("anthropic"),
        "max_tokens": 100,
        "system": [{"type": "text", "text": long_text(), "cache_control": MARK}],
        "messages": [{"role": "user", "content": "hello"}],
    }
    first = client.messages.create(**kwargs)
    second = client.messages.create(**kwargs)
    usage_flush()
    cold = UsageRecord.objects.get(request_id=first.id)
    warm = UsageRecord.objects.get(request_id=second.id)
    assert (cold.cache_write_tokens, cold.cached_tokens) == (SYSTEM_WORDS, 0)
    assert (warm.cache_write_tokens, warm.cached_tokens) == (0, SYSTEM_WORDS)
    output = Decimal(first.usage.output_tokens) * 15
    # "hello" is the one uncached input token
    assert cold.cost_usd == (SYSTEM_WORDS * Decimal("3.75") + 1 * 3 + output) / 1_000_000
    assert warm.cost_usd == (SYSTEM_WORDS * Decimal("0.3") + 1 * 3 + output) / 1_000_000
