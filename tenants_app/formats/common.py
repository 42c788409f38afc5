"""What the OpenAI and Anthropic client formats share.

The parsed-request container, the input limits the parsers enforce, the
public tool-call id scheme that carries Gemini's thought signatures through
clients, and the replay of a stored response as a stream.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from providers_app.kit.types import (
    FINISH_TOOL_CALLS,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ToolCallDelta,
    Usage,
)
from tenants_app.services.errors import InvalidRequest

__all__ = [
    "ParsedRequest",
    "InputLimits",
    "public_tool_call_id",
    "split_tool_call_id",
    "response_as_chunks",
]


@dataclass
class ParsedRequest:
    """A client's request in the kit's terms, plus how the client wants the answer."""

    request: ChatRequest
    stream: bool
    # OpenAI sends usage in streams only when asked (stream_options.include_usage)
    include_usage: bool
    # the aipk extension field: None = the route's default
    cache: bool | None


@dataclass(frozen=True)
class InputLimits:
    """Per-request size limits; exceeding one is a 400 naming the field, never a 500."""

    max_messages: int
    max_message_chars: int
    max_tools: int


# -- tool-call ids ---------------------------------------------------------------------

# Clients keep only the tool-call id between turns, but Gemini refuses a later
# turn whose function call lost its thoughtSignature. So the signature rides
# inside the id we show clients. Everything we add uses [A-Za-z0-9_-] only,
# because Anthropic validates tool_use ids against ^[a-zA-Z0-9_-]+$.
_SIG_MARKER = "__sig_"


def public_tool_call_id(call_id: str, signature: str | None) -> str:
    """The id shown to clients: ``call_id``, or ``<call_id>__sig_<base64url(signature)>``."""
    if not signature:
        return call_id
    encoded = base64.urlsafe_b64encode(signature.encode("utf-8")).rstrip(b"=").decode("ascii")
    return f"{call_id}{_SIG_MARKER}{encoded}"


def split_tool_call_id(public_id: str) -> tuple[str, str | None]:
    """Undo ``public_tool_call_id``: ``(call_id, signature or None)``.

    The last marker is the one we added (a provider's own id may contain the
    marker text; a base64 run essentially never does). A suffix that is not
    canonical base64url of UTF-8 text means the id was never ours to split,
    so it is returned unchanged rather than mangled.
    """
    head, marker, encoded = public_id.rpartition(_SIG_MARKER)
    if not marker or not head or not encoded:
        return public_id, None
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
        signature = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return public_id, None
    if public_tool_call_id(head, signature) != public_id:
        return public_id, None
    return head, signature


# -- replay -----------------------------------------------------------------------------

# A cached answer is replayed in a few pieces so clients exercise their stream
# handling as they would live, without paying for one event per token.
_REPLAY_PIECES = 4
_REPLAY_MIN_PIECE = 16


def response_as_chunks(response: ChatResponse) -> list[ChatChunk]:
    """A stored ``ChatResponse`` as the chunk sequence a live stream would have produced.

    Text in a few pieces, then one delta per tool call, then the finish
    reason, then usage: the order the kit's adapters emit them in.
    """
    chunks: list[ChatChunk] = []
    text = response.text or ""
    if text:
        size = max(_REPLAY_MIN_PIECE, math.ceil(len(text) / _REPLAY_PIECES))
        chunks.extend(ChatChunk(text=text[i : i + size]) for i in range(0, len(text), size))
    for index, call in enumerate(response.tool_calls):
        delta = ToolCallDelta(
            index=index,
            id=call.id,
            name=call.name,
            arguments=call.arguments or "",
            signature=call.signature,
        )
        chunks.append(ChatChunk(tool_calls=[delta]))
    finish = response.finish_reason or (FINISH_TOOL_CALLS if response.tool_calls else "stop")
    chunks.append(ChatChunk(finish_reason=finish, raw_finish_reason=response.raw_finish_reason))
    usage = response.usage or Usage()
    chunks.append(
        ChatChunk(
            usage=Usage(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                estimated=usage.estimated,
            )
        )
    )
    return chunks


# -- helpers for the two formats ---------------------------------------------------------


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is (SSE splits lines on CR/LF bytes only)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_type(value: Any) -> str:
    """A value's JSON type name, for error messages clients can act on."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def effective_finish(finish_reason: str | None, has_tool_calls: bool) -> str | None:
    """The kit finish reason, with "stop" read as "tool_calls" when the reply called tools.

    Some providers (Gemini) end a reply that calls tools with a plain STOP;
    agent loops in clients decide whether to run tools from the finish
    reason, so a reply with calls must say so.
    """
    if has_tool_calls and finish_reason in (None, "stop"):
        return FINISH_TOOL_CALLS
    return finish_reason


def invalid(message: str, param: str) -> InvalidRequest:
    """A 400 whose message starts with the field, as the kit's tool errors do."""
    return InvalidRequest(f"{param}: {message}", param=param)


def from_tool_error(exc: Exception) -> InvalidRequest:
    """The kit's ToolValidationError as the gateway's 400, keeping its field path and code."""
    return InvalidRequest(
        str(getattr(exc, "message", exc)),
        param=getattr(exc, "param", None) or "tools",
        code=getattr(exc, "code", None) or "invalid_tool",
    )


def check_message_size(chars: int, limits: InputLimits, param: str) -> None:
    if chars > limits.max_message_chars:
        raise invalid(f"is {chars} characters long; the limit is {limits.max_message_chars}", param)


def parse_aipk_cache(value: Any) -> bool | None:
    """The gateway's ``aipk.cache`` extension field; None leaves the route's default."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"must be an object, got {json_type(value)}", "aipk")
    cache = value.get("cache")
    if cache is not None and not isinstance(cache, bool):
        raise invalid(f"must be a boolean, got {json_type(cache)}", "aipk.cache")
    return cache


def optional_number(body: dict, key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    # bool is an int to Python, never a temperature to a client
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"must be a number, got {json_type(value)}", key)
    if not low <= value <= high:
        raise invalid(f"must be between {low} and {high}, got {value}", key)
    return value


def not_one_of(value: Any, allowed: tuple[str, ...]) -> str:
    """Why ``value`` is not an acceptable choice among ``allowed``."""
    if value is None:
        return "is required"
    if not isinstance(value, str):
        return f"must be a string, got {json_type(value)}"
    return f"{value!r} is not one of " + ", ".join(repr(a) for a in allowed)
