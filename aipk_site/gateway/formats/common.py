"""What the OpenAI and Anthropic client formats share.

The parsed-request container, the input limits the parsers enforce, the
interface of a stream encoder, the public tool-call id scheme that carries
Gemini's thought signatures through clients, and the replay of a stored
response as a stream.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from aipk_site.infra.errors import AipkError, InvalidRequest
from providers_app.kit.types import (
    FINISH_TOOL_CALLS,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ThinkingDelta,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_OUTPUT_TOKENS",
    "ParsedRequest",
    "InputLimits",
    "StreamEncoder",
    "load_json",
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
    # top-level fields unknown to the format, dropped under the key's drop option
    # (reported in the x-aipk-dropped-params header)
    dropped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InputLimits:
    """Per-request size limits; exceeding one is a 400 naming the field, never a 500."""

    max_messages: int
    max_message_chars: int
    max_tools: int
    # decoded bytes of one image / document / audio part, and of all of a request's
    max_media_part_bytes: int = 10 * 1024 * 1024
    max_media_request_bytes: int = 20 * 1024 * 1024


class StreamEncoder(Protocol):
    """A stream in one client format: bytes per chunk, then a finish or an error event."""

    def chunk(self, c: ChatChunk) -> bytes: ...

    def finish(self, usage: Usage | None = None) -> bytes: ...

    def error(self, err: AipkError) -> bytes: ...


# -- reading a JSON body -----------------------------------------------------------------

# Deeper than any real request: a message part is 4 levels down, and a tool schema of
# 25 nested objects about 55. The limit is what keeps recursive code further on (the
# kit's schema translation, json.dumps, redaction) clear of Python's recursion limit.
MAX_JSON_DEPTH = 64

# The largest output any current model offers is in the low hundreds of thousands of
# tokens; the bound keeps the reservation arithmetic (and Redis' 64-bit counters) sane.
MAX_OUTPUT_TOKENS = 1_000_000

_SURROGATE = re.compile("[\ud800-\udfff]")
# The only way a lone surrogate gets into text decoded as strict UTF-8: a JSON escape.
# Without one in the body (nearly always), no string needs checking.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_CONTAINERS = frozenset({dict, list})


def load_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A request body (or websocket frame) as JSON values that are safe to pass on.

    Raises ``InvalidRequest`` (param ``body`` unless a field can be named) when the
    bytes are not UTF-8, the text is not JSON, the values nest deeper than
    ``max_depth`` (Python's decoder would otherwise raise RecursionError on deep
    input, and recursive code after it on less deep input), or a string holds a lone
    UTF-16 surrogate such as ``"\\ud800"``: JSON's escapes allow one, Unicode
    does not, and the first UTF-8 encoder it meets (the upstream call, the database)
    would fail with a 500.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            # strict UTF-8: json.loads(bytes) would let encoded surrogates through
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequest(
                f"the body is not valid UTF-8: byte {error.start} ({error.reason})",
                param="body",
                code="invalid_json",
            ) from None
    surrogate_escape = _SURROGATE_ESCAPE.search(raw) is not None
    if not surrogate_escape:
        # orjson first (several times faster); anything it refuses -- invalid JSON, NaN,
        # integers past 64 bits, nesting past its limit -- is read again by json below,
        # so what is accepted and every error message stay exactly json's
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            _check_values(value, max_depth, _has_surrogate(raw))
            return value
    try:
        value = json.loads(raw)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except ValueError as error:
        raise InvalidRequest(
            f"the body is not valid JSON: {error}", param="body", code="invalid_json"
        ) from None
    _check_values(value, max_depth, surrogate_escape or _has_surrogate(raw))
    return value


def _too_deep(max_depth: int) -> InvalidRequest:
    return InvalidRequest(
        f"the body is JSON nested deeper than {max_depth} levels, the limit",
        param="body",
        code="json_too_deep",
    )


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _check_values(value: Any, max_depth: int, surrogates: bool) -> None:
    """One pass over the parsed tree without recursion: depth, and (when the body had a
    surrogate escape) lone surrogates.

    Each stack entry keeps its parent entry and its key, so the path of a bad string
    is only put together when there is one. A container whose items hold nothing to
    look at (a long array of numbers) is skipped after one C-speed pass over their
    types.
    """
    if type(value) is str:
        if surrogates and _has_surrogate(value):
            raise _surrogate_at(None)
        return
    if type(value) not in _CONTAINERS:
        return
    stack: list[tuple[Any, int, Any]] = [(value, 1, None)]
    while stack:
        entry = stack.pop()
        node, depth, _where = entry
        if depth > max_depth:
            raise _too_deep(max_depth)
        if type(node) is dict:
            if surrogates and any(_has_surrogate(key) for key in node):
                raise _surrogate_at(entry)
            kinds = set(map(type, node.values()))
            items: Any = node.items()
        else:
            kinds = set(map(type, node))
            items = enumerate(node)
        if kinds.isdisjoint(_CONTAINERS) and not (surrogates and str in kinds):
            continue
        for key, item in items:
            kind = type(item)
            if kind is str:
                if surrogates and _has_surrogate(item):
                    raise _surrogate_at((item, depth + 1, (entry, key)))
            elif kind in _CONTAINERS:
                stack.append((item, depth + 1, (entry, key)))


def _surrogate_at(entry: Any) -> InvalidRequest:
    parts: list[Any] = []
    while entry is not None and entry[2] is not None:
        entry, key = entry[2]
        parts.append(key)
    path = ""
    for key in reversed(parts):
        path += f"[{key}]" if isinstance(key, int) else (f".{key}" if path else str(key))
    param = path or "body"
    return InvalidRequest(
        f"{param}: contains a lone UTF-16 surrogate (such as \\ud800), which is not valid "
        "Unicode text",
        param=param,
        code="invalid_unicode",
    )


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

    Thinking blocks, text in a few pieces, then one delta per tool call, then the finish
    reason, then usage: the order the kit's adapters emit them in. Further choices
    (``n`` > 1, ``extra_choices``) follow the first, each under its own ``choice``, before
    the one usage chunk that counts them all.
    """
    chunks = _choice_chunks(response, 0)
    for index, extra in enumerate(response.extra_choices, start=1):
        chunks.extend(_choice_chunks(extra, index))
    chunks.append(ChatChunk(usage=replace(response.usage or Usage())))
    return chunks


def _choice_chunks(response: ChatResponse, choice: int) -> list[ChatChunk]:
    chunks: list[ChatChunk] = [
        # the reasoning first, each block whole (text, signature or redacted data)
        ChatChunk(
            thinking=ThinkingDelta(index, part.text, part.signature, part.data), choice=choice
        )
        for index, part in enumerate(response.thinking)
    ]
    text = response.text or ""
    if text:
        size = max(_REPLAY_MIN_PIECE, math.ceil(len(text) / _REPLAY_PIECES))
        chunks.extend(
            ChatChunk(text=text[i : i + size], choice=choice) for i in range(0, len(text), size)
        )
    for index, call in enumerate(response.tool_calls):
        delta = ToolCallDelta(
            index=index,
            id=call.id,
            name=call.name,
            arguments=call.arguments or "",
            signature=call.signature,
        )
        chunks.append(ChatChunk(tool_calls=[delta], choice=choice))
    finish = response.finish_reason or (FINISH_TOOL_CALLS if response.tool_calls else "stop")
    chunks.append(
        ChatChunk(
            finish_reason=finish,
            raw_finish_reason=response.raw_finish_reason,
            stop_sequence=response.stop_sequence,
            choice=choice,
        )
    )
    return chunks


# -- helpers for the two formats ---------------------------------------------------------


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, non-ASCII kept as is (SSE splits lines on CR/LF bytes
    only). orjson on the hot path; json for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


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


def parse_model(body: dict[str, Any]) -> str:
    """The ``model`` field: a non-empty string without NUL.

    NUL is refused because the model id is stored with the request's usage record
    and PostgreSQL cannot store NUL in text: the record would be lost.
    """
    model = body.get("model")
    if model is None:
        raise invalid("is required", "model")
    if not isinstance(model, str) or not model.strip():
        raise invalid(f"must be a non-empty string, got {json_type(model)}", "model")
    if "\x00" in model:
        raise invalid("must not contain NUL (\\u0000) characters", "model")
    return model


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


# OpenAI documents ``seed`` as a 64-bit signed integer
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def bounded_int(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    """An optional integer field within [low, high]; the 400 names the field and the range.

    An integral float (``16.0``) is accepted as the integer, as the providers do.
    """
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"must be an integer, got {json_type(value)}", key)
    if not low <= value <= high:
        raise invalid(f"must be between {low} and {high}, got {value}", key)
    return value


def optional_number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
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
