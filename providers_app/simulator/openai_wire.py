"""OpenAI chat completions wire format, and its compatible dialects.

Cerebras, Qwen and OpenRouter speak the same protocol; what differs is their
:class:`~providers_app.simulator.openai_flavours.Flavour`. Here: the handlers,
the request read into a ``Conversation``, and the reply written back.
"""

from __future__ import annotations

import re

from aiohttp import web

from providers_app.simulator import behaviour, media
from providers_app.simulator.behaviour import Conversation, Reply, ToolSpec
from providers_app.simulator.context import default_delay
from providers_app.simulator.credentials import bearer_token, mask
from providers_app.simulator.failures import (
    FINISH_MODES,
    STATUS_MODES,
    RequestKnobs,
    read_knobs,
    unknown_mode_message,
)
from providers_app.simulator.ids import new_id, now
from providers_app.simulator.openai_flavours import (
    Flavour,
    authorised_body,
    check_auth,
    error_response,
)
from providers_app.simulator.streaming import (
    Event,
    bytes_response,
    dumps,
    json_response,
    respond_plain,
    respond_stream,
)

FINISH_REASONS = {
    behaviour.STOP: "stop",
    behaviour.STOP_SEQUENCE: "stop",  # OpenAI does not say which sequence matched
    behaviour.LENGTH: "length",
    behaviour.TOOL_CALLS: "tool_calls",
    behaviour.CONTENT_FILTER: "content_filter",
}


# ---------------------------------------------------------------- handlers


# The request arguments api.openai.com's chat completions take (openai-python's
# completion_create_params). Anything else is a 400 "Unrecognized request argument
# supplied", as OpenAI answers it: a gateway must not leak another provider's fields
# (OpenRouter's ``models`` or ``provider``) to OpenAI.
OPENAI_CHAT_ARGUMENTS = frozenset(
    {
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "messages", "metadata", "modalities", "model",
        "moderation", "n", "parallel_tool_calls", "prediction", "presence_penalty",
        "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
        "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier",
        "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
        "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
    }
)  # fmt: skip


def _unrecognised(flavour: Flavour, body: dict) -> web.Response | None:
    if flavour.name != "openai" or OPENAI_CHAT_ARGUMENTS.issuperset(body):
        return None
    name = sorted(k for k in body if k not in OPENAI_CHAT_ARGUMENTS)[0]
    return error_response(
        flavour, "bad_request", message=f"Unrecognized request argument supplied: {name}"
    )


def chat_handler(flavour: Flavour):
    async def handle(request: web.Request) -> web.StreamResponse:
        body = authorised_body(request, flavour)
        if isinstance(body, web.Response):
            return body
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return error_response(
                flavour, "bad_request", message="you must provide a model parameter", param="model"
            )
        unrecognised = _unrecognised(flavour, body)
        if unrecognised is not None:
            return unrecognised
        knobs = read_knobs(request.headers, model, default_delay(request))
        if knobs.unknown_fail:
            return error_response(
                flavour, "bad_request", message=unknown_mode_message(knobs.unknown_fail)
            )
        stream = body.get("stream") is True
        if knobs.fail in STATUS_MODES or (knobs.fail == "midstream_error" and not stream):
            mode = "server" if knobs.fail == "midstream_error" else knobs.fail
            key = mask(bearer_token(request.headers) or "")
            return error_response(
                flavour, mode, model=model, key=key, retry_after=knobs.retry_after
            )  # retry_after None -> the mode's own default
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return error_response(
                flavour,
                "bad_request",
                message="'messages' must be a non-empty array of message objects.",
                param="messages",
            )
        refused = _check_roles(flavour, messages)
        if refused is not None:
            return refused
        bad_media = media.openai_error(messages)
        if bad_media is not None:
            return error_response(flavour, "bad_request", message=bad_media[0], param=bad_media[1])
        conv = conversation(body)
        behaviour.shape(conv, words=knobs.words, dense=knobs.dense, overrun=knobs.overrun)
        if knobs.fail in FINISH_MODES:  # every safety-ish finish is content_filter here
            reply = behaviour.filtered(conv, behaviour.CONTENT_FILTER)
        else:
            reply = behaviour.decide(conv)
        headers = {"x-request-id": new_id("req_"), **flavour.success_headers}
        n = body.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128):
            return error_response(
                flavour,
                "bad_request",
                message=f"Invalid 'n': integer below minimum value or above maximum value. "
                f"Expected a value between 1 and 128, but got {n} instead.",
                param="n",
                code="integer_out_of_range" if isinstance(n, int) else "invalid_type",
            )
        n = n or 1
        top = body.get("top_logprobs")
        # logprobs: true -> one entry a word chunk (see _logprobs)
        logprobs = -1 if body.get("logprobs") is not True else top if isinstance(top, int) else 0
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await _stream(
                request, flavour, knobs, model, reply, include_usage, headers, logprobs, n
            )
        return await respond_plain(
            request,
            knobs,
            json_response(completion(flavour, model, reply, logprobs, n), headers=headers),
            _content_units(reply),
        )

    return handle


# Roles each dialect accepts (Qwen's DashScope has no "developer").
_OPENAI_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_QWEN_ROLES = ("system", "assistant", "user", "tool", "function")


def _check_roles(flavour: Flavour, messages: list) -> web.Response | None:
    """A 400 for a message with a missing or unknown role, as each real API answers it.

    Always on: a gateway must translate roles, never pass an unknown one on
    hoping the provider copes.
    """
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        param = f"messages[{index}].role"
        if role is None:
            return error_response(
                flavour,
                "bad_request",
                message=f"Missing required parameter: '{param}'.",
                param=param,
                code="missing_required_parameter",
            )
        if flavour.name == "qwen":
            if role not in _QWEN_ROLES:
                listed = ", ".join(f"'{r}'" for r in _QWEN_ROLES)
                return error_response(
                    flavour,
                    "bad_request",
                    message=f"{role} is not one of [{listed}] - 'messages.['{index}].role'",
                    param=None,
                    code="invalid_parameter_error",
                )
        elif role not in _OPENAI_ROLES:
            shown = f"'{role}'" if isinstance(role, str) else dumps(role)
            listed = ", ".join(f"'{r}'" for r in _OPENAI_ROLES[:-1])
            return error_response(
                flavour,
                "bad_request",
                message=f"Invalid value: {shown}. Supported values are: {listed}, and "
                f"'{_OPENAI_ROLES[-1]}'.",
                param=param,
                code="invalid_value",
            )
    return None


def _content_units(reply: Reply) -> int:
    """How many paced chunks the reply streams (words, or tool-call pieces)."""
    return len(reply.chunks) + sum(1 + len(call.fragments()) for call in reply.tool_calls)


def models_handler(flavour: Flavour):
    async def handle(request: web.Request) -> web.Response:
        denied = check_auth(request, flavour)
        if denied is not None:
            return denied
        return bytes_response(flavour.models_list)

    return handle


def model_handler(flavour: Flavour):
    async def handle(request: web.Request) -> web.Response:
        denied = check_auth(request, flavour)
        if denied is not None:
            return denied
        model = request.match_info["model"]
        found = flavour.models_by_id.get(model)
        if found is None:
            return error_response(flavour, "not_found", model=model)
        return bytes_response(found)

    return handle


# ---------------------------------------------------------------- request -> conversation


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # media parts are shown as markers, so the reply proves they arrived
        return " ".join(
            [
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and isinstance(p.get("text"), str)
            ]
            + media.openai_markers(content)
        )
    return ""


def conversation(body: dict) -> Conversation:
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    texts = [_text(m.get("content")) for m in messages]
    conv = Conversation(
        prompt_tokens=max(1, behaviour.count_words(*texts)),
        prompt_chars=behaviour.count_chars(*texts),
    )
    last = messages[-1] if messages else {}
    conv.last_is_user = last.get("role") == "user"
    for message, text in zip(reversed(messages), reversed(texts), strict=True):
        if message.get("role") == "user":
            conv.last_user_text = text
            break
    if last.get("role") in ("tool", "function"):
        results = []
        for message, text in zip(reversed(messages), reversed(texts), strict=True):
            if message.get("role") not in ("tool", "function"):
                break
            results.append(text)
        conv.tool_results = results[::-1]
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            fn = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                conv.tools.append(ToolSpec(fn["name"], fn.get("parameters") or {}))
    choice = body.get("tool_choice")
    if choice in ("none", "auto", "required"):
        conv.tool_mode = choice
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        conv.tool_mode = "forced"
        conv.forced_tool = choice["function"].get("name")
    if body.get("parallel_tool_calls") is False:
        conv.parallel_tool_calls = False
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    conv.stop_sequences = [s for s in stops if isinstance(s, str)]
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool):
        conv.max_tokens = limit
    model = str(body.get("model") or "")
    effort = body.get("reasoning_effort")
    conv.reasoning = bool(_REASONING_MODEL_RE.search(model)) or (
        effort is not None and effort != "none"
    )
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        spec = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        conv.json_schema = schema if isinstance(schema, dict) else {}
    # automatic prefix caching: the whole prompt (behaviour's module docstring)
    conv.cache_scope = model
    conv.cache_prefix = texts
    return conv


# o1, o3-mini, o4-mini, ...: OpenAI's reasoning models; or any id naming thinking
_REASONING_MODEL_RE = re.compile(r"^(?:[\w.-]+/)?o\d|thinking|reasoning")


# ---------------------------------------------------------------- reply -> wire


def _usage(reply: Reply, n: int = 1) -> dict:
    # cached tokens are part of prompt_tokens, reasoning part of completion_tokens;
    # with n choices the completion counts every choice
    completion = (reply.completion_tokens + reply.reasoning_tokens) * n
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens * n,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _logprobs(words: list[str], top: int) -> dict | None:
    """OpenAI's logprobs object for ``words`` (one token a word chunk), or None when
    not asked for (``top`` < 0): a fixed -0.5 for the chosen token, ``top`` alternatives."""
    if top < 0:
        return None
    entries = []
    for word in words:
        alternatives = [{"token": word, "logprob": -0.5, "bytes": list(word.encode())}]
        alternatives += [
            {"token": f"alt{i}", "logprob": -2.0 - i, "bytes": list(f"alt{i}".encode())}
            for i in range(max(0, top - 1))
        ]
        entries.append({**alternatives[0], "top_logprobs": alternatives[:top]})
    return {"content": entries, "refusal": None}


def completion(flavour: Flavour, model: str, reply: Reply, logprobs: int = -1, n: int = 1) -> dict:
    """A whole reply; ``n`` choices (the same simulated answer each), usage counting all."""
    message: dict = {
        "role": "assistant",
        "content": reply.text if not reply.tool_calls else None,
        "refusal": None,
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": new_id("call_"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in reply.tool_calls
        ]
    result = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        **flavour.chunk_extra,
        "choices": [
            {
                "index": index,
                "message": message,
                "logprobs": _logprobs(reply.chunks, logprobs),
                "finish_reason": FINISH_REASONS[reply.finish],
            }
            for index in range(n)
        ],
        "usage": _usage(reply, n),
    }
    if flavour.system_fingerprint:
        result["system_fingerprint"] = flavour.system_fingerprint
    return result


async def _stream(
    request: web.Request,
    flavour: Flavour,
    knobs: RequestKnobs,
    model: str,
    reply: Reply,
    include_usage: bool,
    headers: dict[str, str],
    logprobs: int = -1,
    n: int = 1,
) -> web.StreamResponse:
    """The reply as chat.completion.chunk events; with ``n`` > 1 each choice streams under
    its own index, interleaved as OpenAI sends them (a chunk each in turn), every choice
    ending with its own finish chunk, then one usage chunk counting them all."""
    base = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": now(),
        "model": model,
    }
    base.update(flavour.chunk_extra)
    if flavour.system_fingerprint:
        base["system_fingerprint"] = flavour.system_fingerprint

    def choice_events(index: int) -> list[Event]:
        def chunk(delta: dict, finish: str | None = None, lp: dict | None = None) -> bytes:
            choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
            return b"data: " + dumps({**base, "choices": [choice]}).encode() + b"\n\n"

        events: list[Event] = []
        if reply.tool_calls:
            events.append((chunk({"role": "assistant", "content": None}), False))
            for call_index, call in enumerate(reply.tool_calls):
                first = {
                    "index": call_index,
                    "id": new_id("call_"),
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
                events.append((chunk({"tool_calls": [first]}), True))
                for fragment in call.fragments():
                    part = {"index": call_index, "function": {"arguments": fragment}}
                    events.append((chunk({"tool_calls": [part]}), True))
        else:
            events.append((chunk({"role": "assistant", "content": "", "refusal": None}), False))
            for word in reply.chunks:
                events.append((chunk({"content": word}, lp=_logprobs([word], logprobs)), True))
        events.append((chunk({}, FINISH_REASONS[reply.finish]), False))
        return events

    events: list[Event] = []
    if flavour.sse_preamble:
        events.append((flavour.sse_preamble, False))
    if n == 1:
        events.extend(choice_events(0))
    else:
        per_choice = [choice_events(index) for index in range(n)]
        for step in range(max(len(c) for c in per_choice)):
            events.extend(c[step] for c in per_choice if step < len(c))
    if include_usage:
        usage_chunk = {**base, "choices": [], "usage": _usage(reply, n)}
        events.append((b"data: " + dumps(usage_chunk).encode() + b"\n\n", False))
    events.append((b"data: [DONE]\n\n", False))

    error_chunk = {
        **base,
        "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    return await respond_stream(
        request,
        knobs,
        events,
        headers=headers,
        malformed_event=b'data: {"id":"'
        + str(base["id"]).encode()
        + b'","choices":[{"delta":{"content":\n\n',
        error_event=b"data: " + dumps(error_chunk).encode() + b"\n\n",
    )
