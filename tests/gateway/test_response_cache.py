"""The exact-match response cache over the real cache (local memory, or Redis with REDIS_URL)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets

import pytest

from aipk_site.gateway.response_cache import (
    cache_get,
    cache_key,
    cache_put,
    embedding_cache_get,
    embedding_cache_key,
    embedding_cache_put,
)
from aipk_site.infra.state import state_store
from providers_app.kit.embeddings import EmbeddingRequest, EmbeddingResponse
from providers_app.kit.types import (
    ChatRequest,
    ChatResponse,
    Message,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)


def request(**changes) -> ChatRequest:
    # a unique prompt per test: entries outlive a test run on Redis
    base = ChatRequest(
        model="smart",
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content=f"What is the weather? {secrets.token_hex(6)}"),
            Message(
                role="assistant",
                tool_calls=[ToolCall(id="call_1", name="weather", arguments='{"city":"Oslo"}')],
            ),
            Message(role="tool", content='{"temp": 3}', tool_call_id="call_1", name="weather"),
        ],
        tools=[Tool(name="weather", description="Weather by city")],
        tool_choice=ToolChoice(mode="auto"),
        max_tokens=100,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        extra_body={"provider": {"order": ["a", "b"]}},
    )
    return dataclasses.replace(base, **changes)


def response(**changes) -> ChatResponse:
    base = ChatResponse(
        id="chatcmpl-1",
        model="gpt-4o",
        text="Cold: 3°C.",
        tool_calls=[ToolCall(id="call_2", name="advise", arguments='{"coat":true}', signature="s")],
        finish_reason="stop",
        raw_finish_reason="stop",
        usage=Usage(prompt_tokens=42, completion_tokens=7),
        rate_limit={"remaining_requests": 99},
    )
    return dataclasses.replace(base, **changes)


async def test_it_misses_then_hits_with_the_same_response():
    req = request()
    key = cache_key(tenant_id=1, request=req)
    assert await cache_get(key) is None

    await cache_put(key, response(), ttl=60)
    hit = await cache_get(cache_key(tenant_id=1, request=req))
    # everything but the provider's rate-limit state, which was true only then
    assert hit == response(rate_limit=None)


async def test_it_replays_the_cached_reasoning_and_cache_token_counts():
    req = request()
    key = cache_key(tenant_id=1, request=req)
    usage = Usage(
        prompt_tokens=2000, completion_tokens=300, cached_tokens=1536, reasoning_tokens=200
    )
    await cache_put(key, response(usage=usage), ttl=60)
    hit = await cache_get(key)
    assert hit is not None and hit.usage == usage


async def test_it_never_shares_entries_between_tenants():
    req = request()
    mine, theirs = cache_key(tenant_id=1, request=req), cache_key(tenant_id=2, request=req)
    assert mine != theirs
    await cache_put(mine, response(), ttl=60)
    assert await cache_get(theirs) is None
    assert await cache_get(mine) is not None


def _change(req: ChatRequest, what: str) -> ChatRequest:
    if what == "message content":
        req.messages[1].content += "?"
    elif what == "message role":
        req.messages[0].role = "user"
    elif what == "tool call arguments":
        req.messages[2].tool_calls[0].arguments = '{"city":"Bergen"}'
    elif what == "tool result id":
        req.messages[3].tool_call_id = "call_9"
    elif what == "tool schema":
        req.tools[0].parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    elif what == "another message":
        req.messages.append(Message(role="user", content="and tomorrow?"))
    else:
        field, value = {
            "model": ("model", "openai/gpt-4o"),
            "tools": ("tools", []),
            "tool_choice": ("tool_choice", ToolChoice.function("weather")),
            "no tool_choice": ("tool_choice", None),
            "parallel_tool_calls": ("parallel_tool_calls", False),
            "max_tokens": ("max_tokens", 101),
            "temperature": ("temperature", 0.3),
            "top_p": ("top_p", None),
            "stop": ("stop", ["END"]),
            "extra_body": ("extra_body", {"provider": {"order": ["b", "a"]}}),
        }[what]
        setattr(req, field, value)
    return req


@pytest.mark.parametrize(
    "what",
    [
        "model",
        "message content",
        "message role",
        "another message",
        "tool call arguments",
        "tool result id",
        "tools",
        "tool schema",
        "tool_choice",
        "no tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "extra_body",
    ],
)
def test_it_keys_on_everything_that_changes_the_answer(what):
    req = request()
    before = cache_key(tenant_id=1, request=req)
    assert cache_key(tenant_id=1, request=_change(req, what)) != before


def test_it_keys_the_same_request_the_same_way_without_revealing_it():
    req = request(temperature=1)
    key = cache_key(tenant_id=7, request=req)
    # the end user label does not change the answer; 1 and 1.0 are the same temperature
    same = dataclasses.replace(req, user="someone-else", temperature=1.0)
    same.extra_body = {"provider": {"order": ["a", "b"]}}
    assert cache_key(tenant_id=7, request=same) == key
    assert req.messages[1].content not in key and "weather" not in key
    assert len(key) < 128


async def test_it_caps_the_ttl(settings):
    """3600 s asked, 1 s allowed: the entry is there, then gone after the cap."""
    settings.RESPONSE_CACHE_MAX_TTL_SECONDS = 1
    key = cache_key(tenant_id=1, request=request())
    await cache_put(key, response(), ttl=3600)
    assert await cache_get(key) is not None
    await asyncio.sleep(1.5)
    assert await cache_get(key) is None


async def test_it_stores_nothing_for_a_zero_ttl():
    key = cache_key(tenant_id=1, request=request())
    await cache_put(key, response(), ttl=0)
    assert await cache_get(key) is None


@pytest.mark.parametrize("finish", ["error", "content_filter", "malformed_tool_call", None])
async def test_it_does_not_cache_failed_or_unfinished_replies(finish):
    key = cache_key(tenant_id=1, request=request())
    await cache_put(key, response(finish_reason=finish), ttl=60)
    assert await cache_get(key) is None


@pytest.mark.parametrize("finish", ["stop", "length", "tool_calls"])
async def test_it_caches_finished_replies(finish):
    key = cache_key(tenant_id=1, request=request())
    await cache_put(key, response(finish_reason=finish), ttl=60)
    assert (await cache_get(key)).finish_reason == finish


async def test_it_stores_json_text_without_the_rate_limit_state():
    key = cache_key(tenant_id=1, request=request())
    await cache_put(key, response(), ttl=60)
    raw = state_store().cache.get(key)
    assert isinstance(raw, str)
    stored = json.loads(raw)
    assert "rate_limit" not in stored
    assert stored["usage"] == {
        "prompt_tokens": 42,
        "completion_tokens": 7,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "estimated": False,
    }


@pytest.mark.parametrize("garbage", ["not json", '{"v": 999}', '{"v": 1}', "[]"])
async def test_it_treats_an_unreadable_entry_as_a_miss_and_drops_it(garbage):
    key = cache_key(tenant_id=1, request=request())
    state_store().cache.set(key, garbage, timeout=60)
    assert await cache_get(key) is None
    assert state_store().cache.get(key) is None


# -- embeddings ----------------------------------------------------------------------


def embedding_request(**changes) -> EmbeddingRequest:
    base = EmbeddingRequest(model="openai/text-embedding-3-small", inputs=[secrets.token_hex(6)])
    return dataclasses.replace(base, **changes)


async def test_it_keeps_embeddings_per_tenant_and_apart_from_chat():
    req = embedding_request()
    mine = embedding_cache_key(tenant_id=1, request=req)
    theirs = embedding_cache_key(tenant_id=2, request=req)
    assert mine != theirs and mine.startswith("response-cache:v1:1:embeddings:")
    assert req.inputs[0] not in mine
    stored = EmbeddingResponse(model="m", vectors=[[0.25, -1.5e-7]], prompt_tokens=3)
    await embedding_cache_put(mine, stored, ttl=60)
    assert await embedding_cache_get(theirs) is None
    hit = await embedding_cache_get(mine)
    assert hit is not None
    assert (hit.vectors, hit.prompt_tokens, hit.estimated) == ([[0.25, -1.5e-7]], 3, False)
    # a chat read of the same key finds no chat reply in it
    assert await cache_get(mine) is None


@pytest.mark.parametrize(
    "change",
    [{"inputs": ["other"]}, {"model": "openai/text-embedding-3-large"}, {"dimensions": 8}],
)
def test_it_keys_embeddings_on_what_changes_the_vectors(change):
    req = embedding_request()
    assert embedding_cache_key(tenant_id=1, request=req) != embedding_cache_key(
        tenant_id=1, request=dataclasses.replace(req, **change)
    )


@pytest.mark.parametrize("change", [{"encoding_format": "base64"}, {"user": "u-1"}])
def test_it_keys_embeddings_alike_whatever_the_encoding_or_user(change):
    req = embedding_request()
    assert embedding_cache_key(tenant_id=1, request=req) == embedding_cache_key(
        tenant_id=1, request=dataclasses.replace(req, **change)
    )
