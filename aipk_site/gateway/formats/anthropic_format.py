"""Anthropic ``POST /v1/messages``: request parsing, response and stream rendering.

One concept, kept whole: one wire format, whose parser, renderer and stream
encoder must change together when Anthropic's shapes do.

The shapes follow what api.anthropic.com sends (see the SDK fixtures in
tests/fixtures/wire), because the official ``anthropic`` SDK and tools built
on it must work against the gateway unchanged.

Accepted request fields: ``model``, ``max_tokens`` (required), ``system``
(string or text blocks), ``messages`` (user and assistant turns; text,
tool_use and tool_result blocks), ``tools`` (custom tools), ``tool_choice``
(including ``disable_parallel_tool_use``), ``stop_sequences``,
``temperature`` (0..1), ``top_p``, ``metadata.user_id``, ``stream`` and the
gateway's own ``aipk: {"cache": bool}``.

Ruled per provider by the kit's field table (providers_app/kit/fields.py,
docs/SUPPORT_MATRIX.md): translated or passed where the provider can, a 400
``unsupported_parameter`` naming the field and the provider where it cannot:
``thinking`` (enabled with ``budget_tokens`` >= 1024 and below
``max_tokens``, or disabled), structured outputs (``output_config.format``
or the beta ``output_format``, json_schema: the kit's ``response_format``),
``top_k``, ``service_tier`` (auto,
standard_only), and, passed verbatim to Anthropic only, ``container``,
``mcp_servers``, ``context_management``, ``inference_geo``, ``speed``,
``diagnostics``, ``workspace_id`` and ``user_profile_id``. Any other top-level field
is a 400 ``unknown_parameter`` naming it (dropped and named in
``x-aipk-dropped-params`` under the key's drop option).

Thinking: replies carry the provider's reasoning as ``thinking`` blocks (with
their ``signature``) and ``redacted_thinking`` blocks (``data``), first in the
content and streamed as Anthropic does (content_block_start, thinking_delta...,
signature_delta). Sent back in an assistant turn they are kept in order and
forwarded unchanged to Anthropic, whose tool round trips with thinking on
require them; other providers cannot use them (the signatures are Anthropic's)
and they are left out there, the one drop by design (docs/SUPPORT_MATRIX.md).

``cache_control`` ({"type": "ephemeral", "ttl"?: "5m" | "1h"}; anything else
is a 400) is kept on system text blocks, user text, image and document blocks,
tool_result and tool_use blocks, the last text of an assistant turn, and tools,
and reaches Anthropic on the same block (OpenRouter on the content part); the
providers with automatic prefix caching need no mark.

User turns may carry ``image`` blocks (``source``: ``base64`` with
``media_type`` image/jpeg, png, gif or webp, or ``url``) and ``document``
blocks (``source``: ``base64`` PDF, ``text`` plain text, or ``url``; optional
``title`` used as the filename), validated by ``formats/media.py``
(docs/GATEWAY.md "Images, files and audio"); so may a ``tool_result``'s
content, forwarded to Anthropic and refused with a 400 by providers whose tool
results carry text only (OpenAI-wire, Gemini). Anywhere else (system,
assistant turns) they are refused with a 400 rather than silently dropped,
because the answer would be about a picture the model never saw.

A ``tool_result`` with ``is_error: true`` reaches the kit as a tool message
whose content starts with ``"Error: "``: kit messages have no error flag, and
the other providers only see the text anyway.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aipk_site.infra.errors import AipkError
from providers_app.kit.fields import ANTHROPIC_KNOWN
from providers_app.kit.tools import (
    ToolValidationError,
    tool_choice_from_anthropic,
    tools_from_anthropic,
    validate_tool_choice,
)
from providers_app.kit.types import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_TOOL_CALLS,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    cache_control_problem,
)

from .common import (
    MAX_OUTPUT_TOKENS,
    InputLimits,
    ParsedRequest,
    bounded_int,
    check_message_size,
    dumps,
    effective_finish,
    from_tool_error,
    invalid,
    json_type,
    not_one_of,
    optional_number,
    parse_aipk_cache,
    parse_model,
    public_tool_call_id,
    split_tool_call_id,
)
from .media import IMAGE_TYPES, MediaTally, check_base64, check_media_type, check_url
from .request_fields import anthropic_fields, unknown_top_level

__all__ = [
    "parse_messages",
    "render_message",
    "AnthropicStreamEncoder",
    "anthropic_error_body",
    "anthropic_stop_reason",
]

_UNSUPPORTED_BLOCKS = {
    "image": "image blocks are allowed directly in user messages only",
    "document": "document blocks are allowed directly in user messages only",
    "search_result": "search_result blocks are not supported",
}
MAX_TOP_K = 2**31 - 1


# -- request -------------------------------------------------------------------------------


def parse_messages(body: Any, limits: InputLimits, *, drop_unknown: bool = False) -> ParsedRequest:
    """Validate a Messages API body and turn it into a kit ``ChatRequest``.

    Raises ``InvalidRequest`` with ``param`` set to the offending field path; an unknown
    top-level field as ``parse_chat_completion`` does.
    """
    if not isinstance(body, dict):
        raise invalid(f"must be a JSON object, got {json_type(body)}", "body")
    dropped = unknown_top_level(body, ANTHROPIC_KNOWN, drop=drop_unknown)

    model = parse_model(body)

    max_tokens = bounded_int(body, "max_tokens", 1, MAX_OUTPUT_TOKENS)
    if max_tokens is None:
        raise invalid("is required", "max_tokens")

    messages = _parse_system(body.get("system"), limits)
    messages.extend(_parse_messages(body.get("messages"), limits))

    tools_value = body.get("tools")
    if isinstance(tools_value, list) and len(tools_value) > limits.max_tools:
        raise invalid(f"has {len(tools_value)} tools; the limit is {limits.max_tools}", "tools")
    try:
        tools = tools_from_anthropic(tools_value)
        tool_choice, parallel = tool_choice_from_anthropic(body.get("tool_choice"))
        validate_tool_choice(tool_choice, tools)
    except ToolValidationError as exc:
        raise from_tool_error(exc) from None

    # top_k, thinking, service_tier ...: ruled per provider by kit/fields.py
    ruled = anthropic_fields(body, max_tokens)

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid(f"must be a boolean, got {json_type(stream)}", "stream")

    request = ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=max_tokens,
        temperature=optional_number(body, "temperature", 0, 1),
        top_p=optional_number(body, "top_p", 0, 1),
        stop=_parse_stop_sequences(body.get("stop_sequences")),
        user=_parse_metadata_user(body.get("metadata")),
        **ruled,
    )
    return ParsedRequest(
        request=request,
        stream=bool(stream),
        # Anthropic streams always report usage (message_start and message_delta)
        include_usage=True,
        cache=parse_aipk_cache(body.get("aipk")),
        dropped=dropped,
    )


def _cache_control(block: dict[str, Any], where: str) -> dict[str, Any] | None:
    """A block's ``cache_control``, checked (None when absent)."""
    value = block.get("cache_control")
    if value is None:
        return None
    problem = cache_control_problem(value)
    if problem:
        raise invalid(problem, f"{where}.cache_control")
    return dict(value)


def _parse_system(value: Any, limits: InputLimits) -> list[Message]:
    if value is None:
        return []
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        texts = []
        marks = []
        for i, block in enumerate(value):
            texts.append(_text_block(block, f"system[{i}]"))
            marks.append(_cache_control(block, f"system[{i}]"))
        check_message_size(sum(len(t) for t in texts), limits, "system")
        if any(marks):
            # one system message a block, so a cache breakpoint stays on its block
            return [
                Message(role="system", content=t, cache_control=m)
                for t, m in zip(texts, marks, strict=True)
            ]
        text = "\n".join(texts)
    else:
        raise invalid(
            f"must be a string or an array of text blocks, got {json_type(value)}", "system"
        )
    check_message_size(len(text), limits, "system")
    return [Message(role="system", content=text)] if text else []


def _text_block(block: Any, where: str) -> str:
    if not isinstance(block, dict):
        raise invalid(f"must be an object, got {json_type(block)}", where)
    kind = block.get("type")
    if isinstance(kind, str) and kind in _UNSUPPORTED_BLOCKS:
        raise invalid(_UNSUPPORTED_BLOCKS[kind], f"{where}.type")
    if kind != "text":
        raise invalid(
            "is required" if kind is None else f"{kind!r} is not allowed here: only 'text' is",
            f"{where}.type",
        )
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"must be a string, got {json_type(text)}", f"{where}.text")
    return text


def _parse_messages(value: Any, limits: InputLimits) -> list[Message]:
    if value is None:
        raise invalid("is required", "messages")
    if not isinstance(value, list):
        raise invalid(f"must be an array, got {json_type(value)}", "messages")
    if not value:
        raise invalid("must contain at least one message", "messages")
    if len(value) > limits.max_messages:
        raise invalid(f"has {len(value)} messages; the limit is {limits.max_messages}", "messages")
    out: list[Message] = []
    names_by_call_id: dict[str, str] = {}
    tally = MediaTally(limits)
    last = len(value) - 1
    for i, item in enumerate(value):
        base = f"messages[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"must be an object, got {json_type(item)}", base)
        role = item.get("role")
        if role not in ("user", "assistant"):
            raise invalid(not_one_of(role, ("user", "assistant")), f"{base}.role")
        content = item.get("content")
        if content is None:
            raise invalid("is required", f"{base}.content")
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            blocks = content
        else:
            raise invalid(
                f"must be a string or an array of content blocks, got {json_type(content)}",
                f"{base}.content",
            )
        # Anthropic's own rule: only a final assistant turn (a prefill) may be empty
        if not blocks and not (role == "assistant" and i == last):
            raise invalid("must not be empty", f"{base}.content")
        if role == "user":
            produced = _parse_user_blocks(blocks, f"{base}.content", names_by_call_id, tally)
        else:
            produced = _parse_assistant_blocks(blocks, f"{base}.content")
            for call in produced[0].tool_calls if produced else []:
                names_by_call_id[call.id] = call.name
        size = sum(
            len(m.content or "")
            + sum(len(c.arguments) + len(c.name) for c in m.tool_calls)
            # thinking sent back is input too: it may not slip past the size limit
            + sum(len(t.text) + len(t.data or "") for t in m.thinking)
            for m in produced
        )
        check_message_size(size, limits, f"{base}.content")
        out.extend(produced)
    return out


def _parse_user_blocks(
    blocks: list[Any], base: str, names_by_call_id: dict[str, str], tally: MediaTally
) -> list[Message]:
    """Tool results first (one tool message each, in order), then the user's text
    and media (``parts`` only when there is media; see ``Message``).

    Every provider wants a call's result right after the call, so results
    that the client interleaved with text still come before that text.
    """
    results: list[Message] = []
    texts: list[str] = []
    parts: list[ContentPart] = []
    for k, block in enumerate(blocks):
        where = f"{base}[{k}]"
        if not isinstance(block, dict):
            raise invalid(f"must be an object, got {json_type(block)}", where)
        kind = block.get("type")
        if kind == "tool_result":
            results.append(_parse_tool_result(block, where, names_by_call_id, tally))
        elif kind == "tool_use":
            raise invalid("tool_use blocks belong in assistant messages", f"{where}.type")
        elif kind in ("thinking", "redacted_thinking"):
            raise invalid(f"{kind} blocks belong in assistant messages", f"{where}.type")
        elif kind == "image":
            parts.append(_image_block(block, where, tally))
        elif kind == "document":
            parts.append(_document_block(block, where, tally))
        else:
            texts.append(_text_block(block, where))
            parts.append(TextPart(texts[-1], cache_control=_cache_control(block, where)))
    out = results
    # parts only when needed (see Message): media, or a text block with its own breakpoint
    if texts or parts:
        out.append(_user_message(texts, parts))
    return out


def _user_message(texts: list[str], parts: list[ContentPart]) -> Message:
    has_media = any(not isinstance(p, TextPart) for p in parts)
    marked = [i for i, p in enumerate(parts) if p.cache_control]
    if not has_media and marked in ([], [len(parts) - 1]):
        # text only, a breakpoint at most on the last block: the message's own mark
        last = parts[-1].cache_control if parts else None
        return Message(role="user", content="\n".join(texts), cache_control=last)
    return Message(role="user", content="\n".join(texts), parts=parts)


def _source(block: dict[str, Any], where: str, kinds: tuple[str, ...]) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(
            "is required" if source is None else f"must be an object, got {json_type(source)}",
            f"{where}.source",
        )
    if source.get("type") not in kinds:
        raise invalid(not_one_of(source.get("type"), kinds), f"{where}.source.type")
    return source


def _image_block(block: dict[str, Any], where: str, tally: MediaTally) -> ImagePart:
    source = _source(block, where, ("base64", "url"))
    mark = _cache_control(block, where)
    if source["type"] == "url":
        return ImagePart(
            url=check_url(source.get("url"), f"{where}.source.url"), cache_control=mark
        )
    media_type = check_media_type(
        source.get("media_type"), IMAGE_TYPES, f"{where}.source.media_type"
    )
    data = source.get("data")
    tally.add(check_base64(data, f"{where}.source.data"), f"{where}.source.data")
    return ImagePart(data=str(data), media_type=media_type, cache_control=mark)


def _document_block(block: dict[str, Any], where: str, tally: MediaTally) -> FilePart:
    source = _source(block, where, ("base64", "text", "url"))
    title = block.get("title")
    if title is not None and not isinstance(title, str):
        raise invalid(f"must be a string, got {json_type(title)}", f"{where}.title")
    mark = _cache_control(block, where)
    if source["type"] == "url":
        url = check_url(source.get("url"), f"{where}.source.url")
        return FilePart(url=url, filename=title, cache_control=mark)
    if source["type"] == "text":
        text = source.get("data")
        if not isinstance(text, str) or not text:
            raise invalid("must be a non-empty string", f"{where}.source.data")
        raw = text.encode("utf-8")
        tally.add(len(raw), f"{where}.source.data")
        # one representation for every document: base64 bytes plus a media type
        data = base64.b64encode(raw).decode("ascii")
        return FilePart(data=data, media_type="text/plain", filename=title, cache_control=mark)
    check_media_type(source.get("media_type"), ("application/pdf",), f"{where}.source.media_type")
    pdf = source.get("data")
    tally.add(check_base64(pdf, f"{where}.source.data"), f"{where}.source.data")
    return FilePart(data=str(pdf), media_type="application/pdf", filename=title, cache_control=mark)


def _parse_tool_result(
    block: dict[str, Any], where: str, names_by_call_id: dict[str, str], tally: MediaTally
) -> Message:
    """A tool message; its content may hold text, image and document blocks (a
    screenshot tool's answer): ``parts`` then, as for a user turn with media. Only
    providers whose tool results take media get them; others refuse with a 400."""
    public_id = block.get("tool_use_id")
    if not isinstance(public_id, str) or not public_id:
        raise invalid(
            "is required" if public_id is None else "must be a non-empty string",
            f"{where}.tool_use_id",
        )
    content = block.get("content")
    parts: list[ContentPart] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image":
                parts.append(_image_block(part, at, tally))
            elif kind == "document":
                parts.append(_document_block(part, at, tally))
            else:
                texts.append(_text_block(part, at))
                parts.append(TextPart(texts[-1], cache_control=_cache_control(part, at)))
        text = "\n".join(texts)
    else:
        raise invalid(
            f"must be a string or an array of content blocks, got {json_type(content)}",
            f"{where}.content",
        )
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise invalid(f"must be a boolean, got {json_type(is_error)}", f"{where}.is_error")
    if is_error:
        text = f"Error: {text}"
    call_id, _signature = split_tool_call_id(public_id)
    has_media = any(not isinstance(p, TextPart) for p in parts)
    if is_error and has_media:
        parts.insert(0, TextPart("Error: "))
    return Message(
        role="tool",
        content=text,
        tool_call_id=call_id,
        name=names_by_call_id.get(call_id),
        parts=parts if has_media else None,
        cache_control=_cache_control(block, where),
    )


def _parse_assistant_blocks(blocks: list[Any], base: str) -> list[Message]:
    """Thinking blocks are kept (in order) to go back to the provider that signed them;
    text blocks are joined into one text, so a breakpoint can only sit on the last."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[ThinkingPart] = []
    mark: dict[str, Any] | None = None
    for k, block in enumerate(blocks):
        where = f"{base}[{k}]"
        if not isinstance(block, dict):
            raise invalid(f"must be an object, got {json_type(block)}", where)
        kind = block.get("type")
        if kind in ("thinking", "redacted_thinking"):
            thinking.append(_parse_thinking(block, where))
        elif kind == "tool_use":
            calls.append(_parse_tool_use(block, where))
        elif kind == "tool_result":
            raise invalid("tool_result blocks belong in user messages", f"{where}.type")
        else:
            texts.append(_text_block(block, where))
            mark = _cache_control(block, where) or mark
    if not texts and not calls:
        # an empty prefill, or a turn that only held thinking
        return [Message(role="assistant", content="", thinking=thinking)]
    # no separator: clients split one answer into several text blocks (around citations)
    content = "".join(texts) if texts else None
    return [
        Message(
            role="assistant",
            content=content,
            tool_calls=calls,
            thinking=thinking,
            cache_control=mark if not calls else None,
        )
    ]


def _parse_thinking(block: dict[str, Any], where: str) -> ThinkingPart:
    """Checked only for shape: the signature is the provider's to verify."""
    if block["type"] == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str):
            raise invalid(f"must be a string, got {json_type(data)}", f"{where}.data")
        return ThinkingPart(data=data)
    for key in ("thinking", "signature"):
        if not isinstance(block.get(key), str):
            raise invalid(f"must be a string, got {json_type(block.get(key))}", f"{where}.{key}")
    return ThinkingPart(text=block["thinking"], signature=block["signature"])


def _parse_tool_use(block: dict[str, Any], where: str) -> ToolCall:
    public_id = block.get("id")
    if not isinstance(public_id, str) or not public_id:
        raise invalid(
            "is required" if public_id is None else "must be a non-empty string", f"{where}.id"
        )
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(
            "is required" if name is None else "must be a non-empty string", f"{where}.name"
        )
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise invalid(f"must be an object, got {json_type(arguments)}", f"{where}.input")
    call_id, signature = split_tool_call_id(public_id)
    return ToolCall(
        id=call_id,
        name=name,
        arguments=json.dumps(arguments, ensure_ascii=False),
        signature=signature,
        cache_control=_cache_control(block, where),
    )


def _parse_stop_sequences(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid(f"must be an array of strings, got {json_type(value)}", "stop_sequences")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"must be a string, got {json_type(item)}", f"stop_sequences[{i}]")
        if not item:
            raise invalid("must not be empty", f"stop_sequences[{i}]")
    return list(value) or None


def _parse_metadata_user(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"must be an object, got {json_type(value)}", "metadata")
    user = value.get("user_id")
    if user is not None and not isinstance(user, str):
        raise invalid(f"must be a string, got {json_type(user)}", "metadata.user_id")
    return user


# -- response ------------------------------------------------------------------------------


def anthropic_stop_reason(
    finish_reason: str | None,
    raw_finish_reason: str | None = None,
    has_tool_calls: bool = False,
    stop_sequence: str | None = None,
) -> str:
    """The kit's finish reason in Anthropic's vocabulary.

    "stop_sequence" only when the upstream said so (an Anthropic upstream
    keeps it in ``raw_finish_reason``) or named the sequence that matched; the
    kit's ``malformed_tool_call`` and ``error`` have no Anthropic counterpart and
    read as ``end_turn``.
    """
    reason = effective_finish(finish_reason, has_tool_calls)
    if reason == FINISH_LENGTH:
        return "max_tokens"
    if reason == FINISH_TOOL_CALLS:
        return "tool_use"
    if reason == FINISH_CONTENT_FILTER:
        return "refusal"
    if raw_finish_reason == "stop_sequence" or stop_sequence is not None:
        return "stop_sequence"
    return "end_turn"


def _input_object(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the object ``tool_use.input`` must be; ``{}`` if unusable."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def render_message(response: ChatResponse, *, model: str, request_id: str) -> dict[str, Any]:
    """Anthropic's ``message`` object for a finished reply.

    ``stop_sequence`` is the sequence that matched where the provider says which
    (Anthropic, vLLM-style OpenAI-wire servers); null where it does not (OpenAI,
    Gemini), even when a stop sequence ended the reply.
    """
    content: list[dict[str, Any]] = [_thinking_block(part) for part in response.thinking]
    if response.text or not response.tool_calls:
        content.append({"type": "text", "text": response.text or ""})
    for call in response.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": public_tool_call_id(call.id, call.signature),
                "name": call.name,
                "input": _input_object(call.arguments),
            }
        )
    usage = response.usage or Usage()
    return {
        "id": request_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": anthropic_stop_reason(
            response.finish_reason,
            response.raw_finish_reason,
            bool(response.tool_calls),
            response.stop_sequence,
        ),
        "stop_sequence": response.stop_sequence,
        "usage": anthropic_usage(usage),
    }


def _thinking_block(part: ThinkingPart) -> dict[str, Any]:
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.data}
    # the SDK's ThinkingBlock requires a signature string; a provider without one gives ""
    return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}


def anthropic_usage(usage: Usage) -> dict[str, Any]:
    """The kit's usage in Anthropic's meaning: ``input_tokens`` EXCLUDES the cache
    reads and writes, which have fields of their own; thinking is inside
    ``output_tokens`` and broken out in ``output_tokens_details``."""
    out: dict[str, Any] = {
        "input_tokens": usage.uncached_prompt_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_body(err: AipkError) -> dict[str, Any]:
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}`` envelope.

    The type comes from the status, which is what the anthropic SDK maps to
    its exception classes; the gateway's own ``code`` rides along so
    callers can still tell a key limit from a budget limit.
    """
    status = int(getattr(err, "status", 500) or 500)
    kind = _ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": err.message, "code": err.code},
    }


# -- streaming -----------------------------------------------------------------------------


class AnthropicStreamEncoder:
    """Renders kit chunks as Anthropic Messages server-sent events.

    The grammar of the recorded streams: ``message_start``; per content
    block ``content_block_start`` / ``content_block_delta``... /
    ``content_block_stop``, blocks numbered from 0 in order, a new block
    whenever the reply moves from text to a tool call or from one call to
    the next; then ``message_delta`` with the stop reason and usage, and
    ``message_stop``.

    Blocks never reopen. Kit adapters send each call's fragments together,
    so that holds; a fragment for an already closed call (an upstream that
    interleaves parallel calls) is still sent under its block's index, which
    the SDK's accumulator handles, rather than lost.
    """

    def __init__(self, model: str, request_id: str, prompt_tokens_estimate: int) -> None:
        self.model = model
        self.request_id = request_id
        self.prompt_tokens_estimate = prompt_tokens_estimate
        self._started = False
        self._closed = False
        self._next_index = 0
        # ("text", None), ("thinking", kit thinking index) or ("tool", kit call index)
        # for the open block, with its index
        self._open: tuple[str, int | None] | None = None
        self._open_index = -1
        self._tool_blocks: dict[int, int] = {}
        self._finish: str | None = None
        self._raw_finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None

    @staticmethod
    def _event(kind: str, payload: dict[str, Any]) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + dumps(payload) + b"\n\n"

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": self.request_id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    # an estimate: the real counts (cache ones too) follow in message_delta
                    "usage": {
                        "input_tokens": self.prompt_tokens_estimate,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                    },
                },
            },
        )

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return self._event(
            "content_block_stop", {"type": "content_block_stop", "index": self._open_index}
        )

    def _open_block(self, kind: tuple[str, int | None], block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._open = kind
        self._open_index = self._next_index
        self._next_index += 1
        return out + self._event(
            "content_block_start",
            {"type": "content_block_start", "index": self._open_index, "content_block": block},
        )

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return self._event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def chunk(self, c: ChatChunk) -> bytes:
        if self._closed:
            return b""
        out = [self._start()]
        if c.thinking is not None:
            out.append(self._thinking_fragment(c.thinking))
        if c.text:
            if self._open != ("text", None):
                out.append(self._open_block(("text", None), {"type": "text", "text": ""}))
            out.append(self._delta(self._open_index, {"type": "text_delta", "text": c.text}))
        for d in c.tool_calls:
            out.append(self._tool_fragment(d))
        if c.finish_reason:
            self._finish = c.finish_reason
            self._raw_finish = c.raw_finish_reason
            self._stop_sequence = c.stop_sequence
        if c.usage is not None:
            self._usage = c.usage
        return b"".join(out)

    def _thinking_fragment(self, d: ThinkingDelta) -> bytes:
        """content_block_start{thinking} + thinking_delta... + signature_delta, as Anthropic
        streams it; a redacted block is whole in its content_block_start."""
        out = b""
        if self._open != ("thinking", d.index):
            if d.data is not None:
                block: dict[str, Any] = {"type": "redacted_thinking", "data": d.data}
            else:
                block = {"type": "thinking", "thinking": "", "signature": ""}
            out = self._open_block(("thinking", d.index), block)
        if d.text:
            out += self._delta(self._open_index, {"type": "thinking_delta", "thinking": d.text})
        if d.signature:
            out += self._delta(
                self._open_index, {"type": "signature_delta", "signature": d.signature}
            )
        return out

    def _tool_fragment(self, d: ToolCallDelta) -> bytes:
        out = b""
        index = self._tool_blocks.get(d.index)
        if index is None:
            out = self._open_block(
                ("tool", d.index),
                {
                    "type": "tool_use",
                    # the block must name its id up front; a provider that sent none gets one
                    "id": public_tool_call_id(d.id or f"call_{d.index}", d.signature),
                    "name": d.name or "",
                    "input": {},
                },
            )
            index = self._tool_blocks[d.index] = self._open_index
        if d.arguments:
            out += self._delta(index, {"type": "input_json_delta", "partial_json": d.arguments})
        return out

    def finish(self, usage: Usage | None = None) -> bytes:
        """Close the open block; then ``message_delta`` (stop reason, usage), ``message_stop``."""
        if self._closed:
            return b""
        self._closed = True
        final = usage or self._usage
        # cumulative, as the live API sends it: the SDK replaces the estimate with it
        delta_usage = anthropic_usage(final) if final is not None else {"output_tokens": 0}
        stop_reason = anthropic_stop_reason(
            self._finish, self._raw_finish, bool(self._tool_blocks), self._stop_sequence
        )
        return b"".join(
            [
                self._start(),
                self._close_block(),
                self._event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {
                            "stop_reason": stop_reason,
                            "stop_sequence": self._stop_sequence,
                        },
                        "usage": delta_usage,
                    },
                ),
                self._event("message_stop", {"type": "message_stop"}),
            ]
        )

    def ping(self) -> bytes:
        """Anthropic's own keep-alive event (the SDK skips it), after ``message_start``."""
        if self._closed:
            return b""
        return self._start() + self._event("ping", {"type": "ping"})

    def error(self, err: AipkError) -> bytes:
        """A mid-stream ``error`` event; the anthropic SDK raises on reading it. Nothing follows."""
        if self._closed:
            return b""
        self._closed = True
        return self._event("error", anthropic_error_body(err))
