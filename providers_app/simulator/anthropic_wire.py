"""Anthropic Messages wire format (``/v1/messages``, ``/v1/models``).

Auth is ``x-api-key`` or ``Authorization: Bearer`` (OAuth); the
``anthropic-version`` header is required as on the real API. Streams follow the
captured SDK fixtures: message_start, content_block_start, ping, deltas,
content_block_stop, message_delta (cumulative output_tokens), message_stop.

With ``thinking`` enabled the reply starts with a ``thinking`` block signed by
an HMAC of its text (``thinking.py``), streamed as thinking_delta then
signature_delta; a request containing Anthropic's redacted-thinking test
string gets a ``redacted_thinking`` block instead. Like the real API, a
thinking block sent back with a wrong signature is a 400, and so is a tool
result continuation whose assistant turn does not start with its thinking.
"""

from __future__ import annotations

from aiohttp import web

from providers_app.simulator import behaviour, catalog, media, ratelimit_headers, thinking
from providers_app.simulator.anthropic_errors import MIDSTREAM_ERROR, check_request, error_response
from providers_app.simulator.behaviour import Conversation, Reply, ToolSpec
from providers_app.simulator.context import INVALID_JSON, default_delay, json_body
from providers_app.simulator.failures import (
    FINISH_MODES,
    STATUS_MODES,
    RequestKnobs,
    read_knobs,
    unknown_mode_message,
)
from providers_app.simulator.ids import new_id
from providers_app.simulator.streaming import (
    Event,
    bytes_response,
    dumps,
    json_response,
    respond_plain,
    respond_stream,
)

STOP_REASONS = {
    behaviour.STOP: "end_turn",
    behaviour.STOP_SEQUENCE: "stop_sequence",
    behaviour.LENGTH: "max_tokens",
    behaviour.TOOL_CALLS: "tool_use",
    behaviour.CONTENT_FILTER: "refusal",
}

_MALFORMED_EVENT = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,\n\n'


# ---------------------------------------------------------------- handlers


async def messages_handler(request: web.Request) -> web.StreamResponse:
    denied = check_request(request)
    if denied is not None:
        return denied
    body = json_body(request)
    if body is INVALID_JSON or not isinstance(body, dict):
        return error_response(
            "bad_request", message="There was an error parsing the body of your request."
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error_response("bad_request", message="model: Field required")
    knobs = read_knobs(request.headers, model, default_delay(request))
    if knobs.unknown_fail:
        return error_response("bad_request", message=unknown_mode_message(knobs.unknown_fail))
    stream = body.get("stream") is True
    if knobs.fail in STATUS_MODES or (knobs.fail == "midstream_error" and not stream):
        mode = "overloaded" if knobs.fail == "midstream_error" else knobs.fail
        return error_response(mode, model=model, retry_after=knobs.retry_after)
    invalid = _validate(body) or _check_thinking(body)
    if invalid:
        return error_response("bad_request", message=invalid)
    conv = conversation(body)
    behaviour.shape(conv, words=knobs.words, dense=knobs.dense, overrun=knobs.overrun)
    if knobs.fail in FINISH_MODES:
        reply = behaviour.filtered(conv, behaviour.CONTENT_FILTER)
    else:
        reply = behaviour.decide(conv)
    block = _thinking_block(body, conv) if knobs.fail not in FINISH_MODES else None
    headers = {"request-id": new_id("req_011C"), **ratelimit_headers.anthropic()}
    if stream:
        return await _stream(request, knobs, model, reply, headers, block)
    units = len(reply.chunks) + sum(2 + len(call.fragments()) for call in reply.tool_calls)
    return await respond_plain(
        request, knobs, json_response(message(model, reply, block), headers=headers), units
    )


def _thinking_enabled(body: dict) -> bool:
    setting = body.get("thinking")
    return isinstance(setting, dict) and setting.get("type") == "enabled"


def _thinking_block(body: dict, conv: Conversation) -> dict | None:
    """The block the reply starts with when thinking is on, signed."""
    if not _thinking_enabled(body):
        return None
    text = thinking.text_for(conv)
    if thinking.REDACTED_TRIGGER in dumps(body.get("messages")):
        return {"type": "redacted_thinking", "data": thinking.redacted_data(text)}
    return {"type": "thinking", "thinking": text, "signature": thinking.sign(text)}


_THINKING_FIRST = (
    "messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
    "`{found}`. When `thinking` is enabled, a final `assistant` message must start with a "
    "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We "
    "recommend you include thinking blocks from previous turns. To avoid this requirement, "
    "disable `thinking`. Please consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)


def _check_thinking(body: dict) -> str | None:
    """The real API's two rules about thinking sent back: every block unchanged
    (its signature verifies), and with thinking on, a tool result continuation's
    assistant turn starts with one."""
    messages = body["messages"]
    for i, item in enumerate(messages):
        content = item.get("content") if item.get("role") == "assistant" else None
        for j, block in enumerate(content if isinstance(content, list) else []):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "thinking" and not thinking.verify(
                str(block.get("thinking")), block.get("signature")
            ):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
            if kind == "redacted_thinking" and not thinking.verify_redacted(block.get("data")):
                return f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
    if (
        not _thinking_enabled(body)
        or len(messages) < 2
        or not _tool_results(messages[-1].get("content"))
    ):
        return None
    index = len(messages) - 2
    content = messages[index].get("content")
    first = content[0] if isinstance(content, list) and content else {"type": "text"}
    found = first.get("type") if isinstance(first, dict) else "text"
    if found in ("thinking", "redacted_thinking"):
        return None
    return _THINKING_FIRST.format(index=index, found=found)


async def count_tokens_handler(request: web.Request) -> web.Response:
    denied = check_request(request)
    if denied is not None:
        return denied
    body = json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return error_response("bad_request", message="messages: Field required")
    conv = conversation(body)
    # ``dense`` models count tokens the same way here as in the replies' usage.
    knobs = read_knobs(request.headers, str(body.get("model") or ""), 0.0)
    behaviour.shape(conv, words=None, dense=knobs.dense, overrun=False)
    return json_response({"input_tokens": behaviour.prompt_tokens(conv)})


async def models_handler(request: web.Request) -> web.Response:
    denied = check_request(request)
    if denied is not None:
        return denied
    return bytes_response(catalog.ANTHROPIC_LIST)


async def model_handler(request: web.Request) -> web.Response:
    denied = check_request(request)
    if denied is not None:
        return denied
    model = request.match_info["model"]
    found = catalog.ANTHROPIC_BY_ID.get(model)
    if found is None:
        return error_response("not_found", model=model)
    return bytes_response(found)


# The Messages API's request fields (anthropic-sdk-python message_create_params, beta
# ones included). Anything else -- OpenAI's ``n`` or ``seed`` passed on by a careless
# gateway -- is refused as the API refuses it: "<field>: Extra inputs are not permitted".
MESSAGES_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
        "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
        "container", "mcp_servers", "context_management", "output_config", "output_format",
        "inference_geo", "speed", "diagnostics", "workspace_id", "user_profile_id",
        "cache_control",
    }
)  # fmt: skip


def _validate(body: dict) -> str | None:
    if not MESSAGES_FIELDS.issuperset(body):
        extra = sorted(k for k in body if k not in MESSAGES_FIELDS)[0]
        return f"{extra}: Extra inputs are not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for index, item in enumerate(messages):
        role = item.get("role") if isinstance(item, dict) else None
        if role == "system":  # the API's own words for the commonest mistake
            return (
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
    bad_media = media.anthropic_error(messages)
    if bad_media is not None:
        return bad_media
    limit = body.get("max_tokens")
    if limit is None:
        return "max_tokens: Field required"
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return "max_tokens: Input should be a valid integer greater than or equal to 1"
    return None


# ---------------------------------------------------------------- request -> conversation


def _block_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # image and document blocks are shown as markers, so the reply proves they arrived
        return " ".join(
            [
                b["text"]
                for b in content
                if isinstance(b, dict)
                and b.get("type") == "text"
                and isinstance(b.get("text"), str)
            ]
            + media.anthropic_markers(content)
        )
    return ""


def _tool_results(content: object) -> list[str]:
    if not isinstance(content, list):
        return []
    return [
        _block_text(b.get("content"))
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]


def conversation(body: dict) -> Conversation:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts = [_block_text(body.get("system"))]
    for m in messages:
        texts.append(_block_text(m.get("content")))
        texts.extend(_tool_results(m.get("content")))
    conv = Conversation(
        prompt_tokens=max(1, behaviour.count_words(*texts)),
        prompt_chars=behaviour.count_chars(*texts),
    )
    last = messages[-1] if messages else {}
    conv.last_is_user = last.get("role") == "user"
    results = _tool_results(last.get("content")) if conv.last_is_user else []
    if results:
        conv.tool_results = results
    for m in reversed(messages):
        if m.get("role") == "user":
            conv.last_user_text = _block_text(m.get("content"))
            break
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if (
                isinstance(tool, dict)
                and isinstance(tool.get("name"), str)
                and "input_schema" in tool
            ):
                conv.tools.append(ToolSpec(tool["name"], tool.get("input_schema") or {}))
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("none", "auto"):
            conv.tool_mode = kind
        elif kind == "any":
            conv.tool_mode = "required"
        elif kind == "tool":
            conv.tool_mode = "forced"
            conv.forced_tool = choice.get("name")
        if choice.get("disable_parallel_tool_use") is True:
            conv.parallel_tool_calls = False
    conv.max_tokens = body.get("max_tokens")
    stops = body.get("stop_sequences")
    conv.stop_sequences = (
        [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []
    )
    model = str(body.get("model") or "")
    thinking = body.get("thinking")
    conv.reasoning = "thinking" in model or (
        isinstance(thinking, dict) and thinking.get("type") == "enabled"
    )
    output = body.get("output_config") or {}
    fmt = (output.get("format") if isinstance(output, dict) else None) or body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        conv.json_schema = schema if isinstance(schema, dict) else {}
    prefix = _cached_prefix(body)
    if prefix is not None:
        conv.cache_scope = model
        conv.cache_prefix = prefix
        conv.cache_whole_blocks = False
        conv.cache_writes_billed = True
    return conv


def _cached_prefix(body: dict) -> list[str] | None:
    """The prompt's texts up to the last block marked ``cache_control``, in the
    order Anthropic caches them (tools, system, messages), or all of them under a
    top-level ``cache_control`` (automatic caching); None without a mark."""
    texts: list[str] = []
    prefix: list[str] | None = None
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict) and tool.get("cache_control"):
            prefix = list(texts)
    system = body.get("system")
    blocks: list = list(system) if isinstance(system, list) else []  # a copy: extended below
    if isinstance(system, str):
        texts.append(system)
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content})
        elif isinstance(content, list):
            blocks.extend(content)
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts.append(_block_text(block.get("content")))
        if block.get("cache_control"):
            prefix = list(texts)
    if body.get("cache_control"):
        # automatic caching: one breakpoint on the last cacheable block, i.e. all of it
        prefix = list(texts)
    return prefix


# ---------------------------------------------------------------- reply -> wire


def _usage(reply: Reply, output_tokens: int, final: bool = True) -> dict:
    # input_tokens EXCLUDES the cache counts; thinking is inside output_tokens,
    # broken out in output_tokens_details once it is known (not in message_start)
    usage: dict = {
        "input_tokens": reply.prompt_tokens - reply.cached_tokens - reply.cache_write_tokens,
        "cache_creation_input_tokens": reply.cache_write_tokens,
        "cache_read_input_tokens": reply.cached_tokens,
        "output_tokens": output_tokens,
    }
    if final and reply.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": reply.reasoning_tokens}
    return usage


def message(model: str, reply: Reply, thinking_block: dict | None = None) -> dict:
    content: list[dict] = [thinking_block] if thinking_block else []
    if reply.chunks:
        content.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": new_id("toolu_01"),
                "name": call.name,
                "input": call.arguments,
            }
        )
    return {
        "id": new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS[reply.finish],
        "stop_sequence": reply.stop_sequence,
        "usage": {
            **_usage(reply, reply.completion_tokens + reply.reasoning_tokens),
            "service_tier": "standard",
        },
    }


def _event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {dumps(data)}\n\n".encode()


def _thinking_events(block: dict) -> list[Event]:
    """Block 0: a redacted block whole in its start; a thinking block empty at the
    start, its text in thinking_delta pieces, then one signature_delta."""
    events: list[Event] = []
    if block["type"] == "redacted_thinking":
        start = {"type": "content_block_start", "index": 0, "content_block": block}
        events.append((_event("content_block_start", start), False))
    else:
        empty = {"type": "thinking", "thinking": "", "signature": ""}
        start = {"type": "content_block_start", "index": 0, "content_block": empty}
        events.append((_event("content_block_start", start), False))
        for piece in behaviour.words(block["thinking"]):
            delta = {"type": "thinking_delta", "thinking": piece}
            events.append(
                (
                    _event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": 0, "delta": delta},
                    ),
                    True,
                )
            )
        delta = {"type": "signature_delta", "signature": block["signature"]}
        events.append(
            (
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                ),
                False,
            )
        )
    events.append((_event("content_block_stop", {"type": "content_block_stop", "index": 0}), False))
    return events


async def _stream(
    request: web.Request,
    knobs: RequestKnobs,
    model: str,
    reply: Reply,
    headers: dict[str, str],
    thinking_block: dict | None = None,
) -> web.StreamResponse:
    start: dict = {
        "id": new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**_usage(reply, 1, final=False), "service_tier": "standard"},
    }
    events: list[Event] = [
        (_event("message_start", {"type": "message_start", "message": start}), False)
    ]
    index = 0
    if thinking_block is not None:
        events.extend(_thinking_events(thinking_block))
        index = 1
    if reply.chunks or not reply.tool_calls:
        block = {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        }
        events.append((_event("content_block_start", block), False))
        events.append((b'event: ping\ndata: {"type": "ping"}\n\n', False))
        for word in reply.chunks:
            delta = {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": word},
            }
            events.append((_event("content_block_delta", delta), True))
        events.append(
            (_event("content_block_stop", {"type": "content_block_stop", "index": index}), False)
        )
        index += 1
    else:
        events.append((b'event: ping\ndata: {"type": "ping"}\n\n', False))
    for call in reply.tool_calls:
        block = {
            "type": "content_block_start",
            "index": index,
            "content_block": {
                "type": "tool_use",
                "id": new_id("toolu_01"),
                "name": call.name,
                "input": {},
            },
        }
        events.append((_event("content_block_start", block), True))
        for fragment in ["", *call.fragments()]:
            delta = {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": fragment},
            }
            events.append((_event("content_block_delta", delta), True))
        events.append(
            (_event("content_block_stop", {"type": "content_block_stop", "index": index}), False)
        )
        index += 1
    final_usage = _usage(reply, reply.completion_tokens + reply.reasoning_tokens)
    events.append(
        (
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": STOP_REASONS[reply.finish],
                        "stop_sequence": reply.stop_sequence,
                    },
                    "usage": final_usage,
                },
            ),
            False,
        )
    )
    events.append((_event("message_stop", {"type": "message_stop"}), False))
    return await respond_stream(
        request,
        knobs,
        events,
        headers=headers,
        malformed_event=_MALFORMED_EVENT,
        error_event=_event("error", MIDSTREAM_ERROR),
    )
