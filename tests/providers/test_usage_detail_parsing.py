"""Cached, cache-write and reasoning tokens, parsed from each provider's usage fields
into the kit's ONE normalisation (``Usage``): prompt_tokens counts every input token
including cached and cache-write ones, completion_tokens every output token including
reasoning.

The replies are the captured transcripts in tests/fixtures/wire/ with their (zero)
cache/reasoning counts set to nonzero values in the providers' own field names, so
the shapes are the real ones and only the numbers differ.
"""

from __future__ import annotations

import json
import uuid

import pytest
from google.genai import types as genai_types

from providers_app.kit.adapters import (
    AnthropicAdapter,
    CerebrasAdapter,
    GeminiAdapter,
    OpenAIAdapter,
    OpenRouterAdapter,
    QwenAdapter,
)
from providers_app.kit.types import Usage
from providers_app.simulator.behaviour import REASONING_TOKENS
from tests.providers.kit.wire_helpers import REQUEST, decode, fold, wire_bytes, wire_json
from tests.simulator.sim_helpers import anthropic_client, gemini_client, openai_client


def usage_tuple(usage: Usage) -> tuple[int, int, int, int, int]:
    return (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )


# -- OpenAI and the providers that speak its format -----------------------------


def openai_reply_with_details() -> dict:
    body = wire_json("openai_chat_completion_tool_calls.json")
    body["usage"]["prompt_tokens"] = 2082
    body["usage"]["total_tokens"] = 2082 + 17
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": 1920, "audio_tokens": 0}
    body["usage"]["completion_tokens_details"]["reasoning_tokens"] = 12
    return body


@pytest.mark.parametrize(
    "adapter_class", [OpenAIAdapter, CerebrasAdapter, QwenAdapter, OpenRouterAdapter]
)
def test_it_reads_openai_cached_and_reasoning_tokens_as_parts_of_the_totals(adapter_class):
    reply = adapter_class().parse_chat(openai_reply_with_details(), REQUEST)
    assert usage_tuple(reply.usage) == (2082, 17, 1920, 0, 12)
    assert reply.usage.uncached_prompt_tokens == 2082 - 1920
    assert reply.usage.total_tokens == 2099


def test_it_reads_the_details_from_an_openai_stream_usage_chunk():
    lines = wire_bytes("openai_chat_stream_text_usage.sse").decode().split("\n")
    for i, line in enumerate(lines):
        if line.startswith("data: {") and '"usage":{' in line:
            chunk = json.loads(line[len("data: ") :])
            chunk["usage"]["prompt_tokens_details"] = {"cached_tokens": 8}
            chunk["usage"]["completion_tokens_details"]["reasoning_tokens"] = 20
            lines[i] = "data: " + json.dumps(chunk)
    reply = fold(decode(OpenAIAdapter(), ["\n".join(lines).encode()]))
    assert usage_tuple(reply.usage) == (14, 30, 8, 0, 20)


def test_it_counts_null_or_missing_openai_details_as_zero():
    body = wire_json("openai_chat_completion_tool_calls.json")
    body["usage"]["prompt_tokens_details"] = None
    body["usage"]["completion_tokens_details"] = {"reasoning_tokens": None}
    reply = OpenAIAdapter().parse_chat(body, REQUEST)
    assert usage_tuple(reply.usage) == (82, 17, 0, 0, 0)


# -- Anthropic ------------------------------------------------------------------


def test_it_adds_anthropic_cache_reads_and_writes_to_its_uncached_input_tokens():
    body = wire_json("anthropic_messages_tool_use.json")
    body["usage"].update(cache_read_input_tokens=3000, cache_creation_input_tokens=500)
    reply = AnthropicAdapter().parse_chat(body, REQUEST)
    assert usage_tuple(reply.usage) == (656 + 3000 + 500, 74, 3000, 500, 0)
    assert reply.usage.uncached_prompt_tokens == 656


def test_it_reads_anthropic_cache_counts_from_message_start_and_output_from_message_delta():
    events = wire_bytes("anthropic_messages_stream_tool_use.sse").decode()
    events = events.replace(
        '"cache_creation_input_tokens":0,"cache_read_input_tokens":0',
        '"cache_creation_input_tokens":40,"cache_read_input_tokens":2000',
    )
    reply = fold(decode(AnthropicAdapter(), [events.encode()]))
    assert usage_tuple(reply.usage) == (377 + 40 + 2000, 65, 2000, 40, 0)


def test_it_reads_anthropic_thinking_tokens_as_reasoning_inside_output_tokens():
    body = wire_json("anthropic_messages_tool_use.json")
    body["usage"]["output_tokens_details"] = {"thinking_tokens": 50}
    reply = AnthropicAdapter().parse_chat(body, REQUEST)
    assert usage_tuple(reply.usage) == (656, 74, 0, 0, 50)


def test_it_lets_a_message_delta_that_repeats_the_input_counts_replace_them():
    events = wire_bytes("anthropic_messages_stream_tool_use.sse").decode()
    events = events.replace(
        '"usage":{"output_tokens":65}',
        '"usage":{"input_tokens":377,"cache_creation_input_tokens":0,'
        '"cache_read_input_tokens":1000,"output_tokens":65}',
    )
    reply = fold(decode(AnthropicAdapter(), [events.encode()]))
    assert usage_tuple(reply.usage) == (1377, 65, 1000, 0, 0)


# -- Gemini ---------------------------------------------------------------------


def test_it_reports_gemini_thoughts_as_reasoning_inside_the_completion_total():
    reply = GeminiAdapter().parse_chat(wire_json("gemini_generate_function_call.json"), REQUEST)
    # thoughtsTokenCount (501) is not part of candidatesTokenCount (8) on the wire
    assert usage_tuple(reply.usage) == (38, 8 + 501, 0, 0, 501)


def test_it_reads_gemini_cached_content_tokens_as_part_of_the_prompt():
    body = wire_json("gemini_generate_function_call.json")
    body["usageMetadata"].update(promptTokenCount=4038, cachedContentTokenCount=4000)
    reply = GeminiAdapter().parse_chat(body, REQUEST)
    assert usage_tuple(reply.usage) == (4038, 509, 4000, 0, 501)


def test_it_reads_gemini_usage_details_from_the_last_stream_chunk():
    events = wire_bytes("gemini_stream_text.sse").decode()
    last = events.rindex('"candidatesTokenCount": 10')
    events = (
        events[:last] + '"cachedContentTokenCount": 4, "thoughtsTokenCount": 33, ' + events[last:]
    )
    reply = fold(decode(GeminiAdapter(), [events.encode()]))
    assert usage_tuple(reply.usage) == (7, 10 + 33, 4, 0, 33)


# -- the simulator's wires, read by the official SDKs ---------------------------
# (rules in providers_app/simulator/behaviour.py's docstring: a prompt of at least
# CACHE_MIN_TOKENS seen before is a cache read; reasoning requests spend
# REASONING_TOKENS hidden output tokens)


def long_prompt(tag: str) -> str:
    """A prompt of 1300 words, unique to the test, so no other test warmed its cache."""
    return f"{tag} {uuid.uuid4().hex} " + "context " * 1298


async def test_it_reports_openai_cached_tokens_for_a_long_prompt_sent_twice(simulator):
    client = openai_client(simulator.base_url("openai"))
    messages = [{"role": "user", "content": long_prompt("openai")}]
    first = await client.chat.completions.create(model="gpt-4o", messages=messages)
    second = await client.chat.completions.create(model="gpt-4o", messages=messages)
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == 1300
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    # whole 128-token blocks, as OpenAI reports them
    assert second.usage.prompt_tokens_details.cached_tokens == 1280
    assert second.usage.completion_tokens_details.reasoning_tokens == 0


async def test_it_reports_openai_reasoning_tokens_inside_completion_tokens(simulator):
    client = openai_client(simulator.base_url("openai"))
    messages = [{"role": "user", "content": "think hard"}]
    plain = await client.chat.completions.create(model="gpt-4o", messages=messages)
    reasoned = await client.chat.completions.create(model="o3-mini", messages=messages)
    effort = await client.chat.completions.create(
        model="gpt-4o", messages=messages, reasoning_effort="low"
    )
    for reply in (reasoned, effort):
        details = reply.usage.completion_tokens_details
        assert details.reasoning_tokens == REASONING_TOKENS
        assert reply.usage.completion_tokens == plain.usage.completion_tokens + REASONING_TOKENS
        assert reply.choices[0].message.content == plain.choices[0].message.content


async def test_it_never_reasons_past_max_tokens(simulator):
    client = openai_client(simulator.base_url("openai"))
    reply = await client.chat.completions.create(
        model="o3-mini",
        messages=[{"role": "user", "content": "one two"}],
        max_completion_tokens=7,
    )
    # "Simulated reply to: one two" is 5 words; 2 tokens left for reasoning
    assert reply.usage.completion_tokens == 7
    assert reply.usage.completion_tokens_details.reasoning_tokens == 2


async def test_it_writes_then_reads_the_anthropic_cache_up_to_the_cache_control_block(simulator):
    client = anthropic_client(simulator)
    system = [
        {"type": "text", "text": long_prompt("anthropic"), "cache_control": {"type": "ephemeral"}}
    ]
    messages = [{"role": "user", "content": "three more words"}]
    first = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, system=system, messages=messages
    )
    second = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, system=system, messages=messages
    )
    assert (
        first.usage.input_tokens,
        first.usage.cache_creation_input_tokens,
        first.usage.cache_read_input_tokens,
    ) == (3, 1300, 0)
    assert (
        second.usage.input_tokens,
        second.usage.cache_creation_input_tokens,
        second.usage.cache_read_input_tokens,
    ) == (3, 0, 1300)


async def test_it_caches_nothing_on_anthropic_without_cache_control(simulator):
    client = anthropic_client(simulator)
    messages = [{"role": "user", "content": long_prompt("anthropic-plain")}]
    for _ in range(2):
        reply = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=100, messages=messages
        )
        assert reply.usage.input_tokens == 1300
        assert not reply.usage.cache_read_input_tokens
        assert not reply.usage.cache_creation_input_tokens


async def test_it_streams_anthropic_cache_and_thinking_counts(simulator):
    client = anthropic_client(simulator)
    system = [
        {
            "type": "text",
            "text": long_prompt("anthropic-stream"),
            "cache_control": {"type": "ephemeral"},
        }
    ]
    kwargs = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "system": system,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    await client.messages.create(**kwargs)
    async with client.messages.stream(**kwargs) as stream:
        final = await stream.get_final_message()
    assert final.usage.cache_read_input_tokens == 1300
    assert final.usage.input_tokens == 1
    # thinking is inside output_tokens, and broken out in output_tokens_details
    assert final.usage.output_tokens == 4 + REASONING_TOKENS
    assert final.usage.output_tokens_details.thinking_tokens == REASONING_TOKENS


async def test_it_reports_gemini_thoughts_apart_from_candidates_and_cached_content(simulator):
    client = gemini_client(simulator)
    prompt = long_prompt("gemini")
    config = genai_types.GenerateContentConfig(
        thinking_config=genai_types.ThinkingConfig(thinking_budget=512)
    )
    await client.aio.models.generate_content(model="gemini-2.5-flash", contents=prompt)
    reply = await client.aio.models.generate_content(
        model="gemini-2.5-flash", contents=prompt, config=config
    )
    usage = reply.usage_metadata
    assert usage.prompt_token_count == 1300
    assert usage.cached_content_token_count == 1280
    assert usage.thoughts_token_count == REASONING_TOKENS
    assert usage.total_token_count == 1300 + usage.candidates_token_count + REASONING_TOKENS


async def test_it_caches_only_up_to_the_marked_message_block_on_anthropic(simulator):
    client = anthropic_client(simulator)
    marked = {
        "type": "text",
        "text": long_prompt("anthropic-block"),
        "cache_control": {"type": "ephemeral"},
    }
    messages = [
        {"role": "user", "content": [marked]},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": [{"type": "text", "text": "and two"}]},
    ]
    first = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=messages
    )
    # the marked block is 1300 words; the 3 words after it are plain input
    assert (first.usage.cache_creation_input_tokens, first.usage.input_tokens) == (1300, 3)
    messages[2]["content"][0]["text"] = "a different question"
    second = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=messages
    )
    assert (second.usage.cache_read_input_tokens, second.usage.input_tokens) == (1300, 4)
