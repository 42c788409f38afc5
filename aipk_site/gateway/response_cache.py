"""Exact-match response cache, per tenant, over Django's cache (Redis in production).

A hit needs the same tenant and every request field that changes the answer;
the key is a SHA-256 of a canonical JSON of those fields, so two tenants never
share an entry and the prompt itself never appears in a cache key. Entries
are JSON text, not pickled objects: a cache shared by several processes (and
versions of aipk) should hold data, not code paths.

Chat replies and embeddings (``POST /v1/embeddings``) share the rules: tenant in
the key and its prefix, the request's answer-changing fields hashed, JSON entries,
the key's TTL capped by RESPONSE_CACHE_MAX_TTL_SECONDS. Their keys differ by an
operation marker, so an embedding never answers a chat request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any, TypeVar

from django.conf import settings

from aipk_site.infra.state import state_store
from providers_app.kit.embeddings import EmbeddingRequest, EmbeddingResponse
from providers_app.kit.fields import FIELDS
from providers_app.kit.types import (
    FINISH_CONTENT_FILTER,
    FINISH_ERROR,
    FINISH_MALFORMED_TOOL_CALL,
    ChatRequest,
    ChatResponse,
    ThinkingPart,
    ToolCall,
    Usage,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


# Bumped when the key's canonical form or the stored JSON changes shape, so old
# entries are simply never read again.
FORMAT_VERSION = 1

# Replies that must not be served again: a failure, a refusal, a broken tool call.
# A reply without any finish reason was cut short (e.g. the client went away).
UNCACHEABLE_FINISH_REASONS = frozenset(
    {FINISH_ERROR, FINISH_CONTENT_FILTER, FINISH_MALFORMED_TOOL_CALL, None}
)


def _number(value: Any) -> Any:
    # 1 and 1.0 mean the same temperature; JSON would print them differently
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _canonical(tenant_id: int, request: ChatRequest) -> dict[str, Any]:
    """Everything that changes the answer. ``user`` is left out: it labels the
    caller for abuse tracking and does not change what the model says."""
    return {
        "v": FORMAT_VERSION,
        "tenant": tenant_id,
        "model": request.model,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments, "signature": c.signature}
                    for c in m.tool_calls
                ],
                "tool_call_id": m.tool_call_id,
                "name": m.name,
                # only messages with media have parts, so text-only keys are unchanged
                **(
                    {"parts": [asdict(p) | {"kind": type(p).__name__} for p in m.parts]}
                    if m.parts
                    else {}
                ),
                # thinking sent back is part of what the model reads
                **({"thinking": [asdict(p) for p in m.thinking]} if m.thinking else {}),
            }
            for m in request.messages
        ],
        "tools": [
            {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "strict": t.strict,
            }
            for t in request.tools
        ],
        "tool_choice": (
            {"mode": request.tool_choice.mode, "name": request.tool_choice.name}
            if request.tool_choice is not None
            else None
        ),
        "parallel_tool_calls": request.parallel_tool_calls,
        "max_tokens": request.max_tokens,
        "temperature": _number(request.temperature),
        "top_p": _number(request.top_p),
        "stop": list(request.stop) if request.stop is not None else None,
        "extra_body": request.extra_body or {},
        # JSON mode, reasoning, seed ... change the answer: a text answer must never
        # be replayed to a JSON-mode request (kit/fields.py lists them)
        "fields": _ruled_fields(request),
    }


# rows of the field table already in the canonical form above
_CANONICAL_ELSEWHERE = frozenset(
    ("model", "messages", "max_tokens", "temperature", "top_p", "stop", "user", "tools")
    + ("tool_choice", "parallel_tool_calls")
)


def _ruled_fields(request: ChatRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for row in FIELDS:
        value = row.value(request)
        if value is not None and row.kit not in _CANONICAL_ELSEWHERE:
            dataclass_value = is_dataclass(value) and not isinstance(value, type)
            out[row.kit] = asdict(value) if dataclass_value else value
    return out


def _digest(canonical: dict[str, Any]) -> str:
    text = json.dumps(
        canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(*, tenant_id: int, request: ChatRequest) -> str:
    """The cache key for ``request`` as ``tenant_id`` sends it (model as called)."""
    digest = _digest(_canonical(tenant_id, request))
    return f"response-cache:v{FORMAT_VERSION}:{tenant_id}:{digest}"


def embedding_cache_key(*, tenant_id: int, request: EmbeddingRequest) -> str:
    """The cache key for an embeddings request as ``tenant_id`` sends it: the model as
    called, the inputs (after PII masking, as sent upstream) and ``dimensions``.
    ``encoding_format`` is left out (the vectors are the same; the reply is rendered
    per request) and so is ``user``, as for chat."""
    canonical = {
        "v": FORMAT_VERSION,
        "op": "embeddings",
        "tenant": tenant_id,
        "model": request.model,
        "inputs": request.inputs,
        "dimensions": request.dimensions,
    }
    return f"response-cache:v{FORMAT_VERSION}:{tenant_id}:embeddings:{_digest(canonical)}"


def _encode(response: ChatResponse) -> str:
    return json.dumps(
        {
            "v": FORMAT_VERSION,
            "id": response.id,
            "model": response.model,
            "text": response.text,
            "tool_calls": [asdict(call) for call in response.tool_calls],
            "finish_reason": response.finish_reason,
            "raw_finish_reason": response.raw_finish_reason,
            "thinking": [asdict(part) for part in response.thinking],
            "stop_sequence": response.stop_sequence,
            # n > 1: the further choices, without usage (the first counts them all)
            "extra_choices": [
                {
                    "text": extra.text,
                    "tool_calls": [asdict(call) for call in extra.tool_calls],
                    "finish_reason": extra.finish_reason,
                    "raw_finish_reason": extra.raw_finish_reason,
                    "stop_sequence": extra.stop_sequence,
                }
                for extra in response.extra_choices
            ],
            "usage": {
                "prompt_tokens": response.usage.prompt_tokens,
                "completion_tokens": response.usage.completion_tokens,
                "cached_tokens": response.usage.cached_tokens,
                "cache_write_tokens": response.usage.cache_write_tokens,
                "reasoning_tokens": response.usage.reasoning_tokens,
                "estimated": response.usage.estimated,
            },
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _decode(raw: str) -> ChatResponse:
    data = json.loads(raw)
    if data.get("v") != FORMAT_VERSION:
        raise ValueError("unknown format version")
    usage = data.get("usage") or {}
    return ChatResponse(
        id=data["id"],
        model=data["model"],
        text=data.get("text", ""),
        tool_calls=[ToolCall(**call) for call in data.get("tool_calls", [])],
        finish_reason=data.get("finish_reason"),
        raw_finish_reason=data.get("raw_finish_reason"),
        thinking=[ThinkingPart(**part) for part in data.get("thinking", [])],
        # entries stored before it was kept read as unknown
        stop_sequence=data.get("stop_sequence"),
        extra_choices=[
            ChatResponse(
                id=data["id"],
                model=data["model"],
                text=extra.get("text", ""),
                tool_calls=[ToolCall(**call) for call in extra.get("tool_calls", [])],
                finish_reason=extra.get("finish_reason"),
                raw_finish_reason=extra.get("raw_finish_reason"),
                stop_sequence=extra.get("stop_sequence"),
            )
            for extra in data.get("extra_choices", [])
        ],
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            # entries stored before these parts were kept read as 0
            cached_tokens=int(usage.get("cached_tokens", 0)),
            cache_write_tokens=int(usage.get("cache_write_tokens", 0)),
            reasoning_tokens=int(usage.get("reasoning_tokens", 0)),
            estimated=bool(usage.get("estimated", False)),
        ),
    )


def _encode_embedding(response: EmbeddingResponse) -> str:
    return json.dumps(
        {
            "v": FORMAT_VERSION,
            "model": response.model,
            "vectors": response.vectors,
            "prompt_tokens": response.prompt_tokens,
            "estimated": response.estimated,
        },
        separators=(",", ":"),
        allow_nan=False,
    )


def _decode_embedding(raw: str) -> EmbeddingResponse:
    data = json.loads(raw)
    if data.get("v") != FORMAT_VERSION:
        raise ValueError("unknown format version")
    vectors = data["vectors"]
    if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
        raise TypeError("vectors must be a list of lists")
    return EmbeddingResponse(
        model=data["model"],
        vectors=vectors,
        prompt_tokens=int(data["prompt_tokens"]),
        estimated=bool(data.get("estimated", False)),
    )


async def _read(key: str, decode: Callable[[str], T]) -> T | None:
    # The process-wide shared store, not ``django.core.cache.cache``: Django gives each
    # async context its own cache object (on Redis, its own connection pool). On Redis
    # the calls run on the event loop (redis.asyncio); local memory runs inline.
    store = state_store()
    raw = await store.cache_get(key)
    if raw is None:
        return None
    try:
        return decode(raw)
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        logger.warning("response cache: dropping unreadable entry (%s)", type(exc).__name__)
        await store.cache_delete(key)
        return None


async def _write(key: str, text: str, ttl: int) -> None:
    timeout = min(int(ttl), int(settings.RESPONSE_CACHE_MAX_TTL_SECONDS))
    if timeout <= 0:
        return
    await state_store().cache_set(key, text, timeout)


async def cache_get(key: str) -> ChatResponse | None:
    """The cached reply, or None (also for an entry that cannot be read back)."""
    return await _read(key, _decode)


async def cache_put(key: str, response: ChatResponse, ttl: int) -> None:
    """Keep ``response`` for ``ttl`` seconds (at most RESPONSE_CACHE_MAX_TTL_SECONDS).

    Failed, filtered or cut-short replies are not kept, and neither is the
    rate-limit state read from the provider's headers: it was true only then."""
    if response.finish_reason in UNCACHEABLE_FINISH_REASONS:
        return
    await _write(key, _encode(response), ttl)


async def embedding_cache_get(key: str) -> EmbeddingResponse | None:
    """The cached embeddings, or None (also for an entry that cannot be read back)."""
    return await _read(key, _decode_embedding)


async def embedding_cache_put(key: str, response: EmbeddingResponse, ttl: int) -> None:
    """Keep the vectors and their token count for ``ttl`` seconds (capped as for chat);
    not the rate-limit state, which was true only then."""
    if not response.vectors:
        return
    await _write(key, _encode_embedding(response), ttl)
