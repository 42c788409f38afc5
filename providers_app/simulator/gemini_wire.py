"""Gemini generateContent wire format, and the Code Assist (CloudCode) wrapping.

Developer API: ``/v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` (data-only events, CRLF line endings, no
``[DONE]``; every chunk a full GenerateContentResponse). Without ``alt=sse``
the stream is a JSON array, as on the real API.

Code Assist (used with Google OAuth + a project id, as gemini-cli does):
``/v1internal:generateContent`` / ``:streamGenerateContent``, request
``{"model", "project", "request": {...}}``, every response or chunk wrapped as
``{"response": {...}, "traceId": "..."}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable

from aiohttp import web

from providers_app.simulator import behaviour, catalog, media, thinking
from providers_app.simulator.behaviour import Conversation, Reply, ToolSpec
from providers_app.simulator.context import INVALID_JSON, default_delay, json_body
from providers_app.simulator.failures import (
    FINISH_MODES,
    STATUS_MODES,
    read_knobs,
    unknown_mode_message,
)
from providers_app.simulator.gemini_errors import MIDSTREAM_ERROR, check_auth, error_response
from providers_app.simulator.ids import new_id
from providers_app.simulator.streaming import (
    Event,
    bytes_response,
    dumps,
    json_response,
    respond_plain,
    respond_stream,
)

FINISH_REASONS = {
    behaviour.STOP: "STOP",
    behaviour.STOP_SEQUENCE: "STOP",  # Gemini does not say which sequence matched
    behaviour.LENGTH: "MAX_TOKENS",
    behaviour.TOOL_CALLS: "STOP",
    behaviour.CONTENT_FILTER: "SAFETY",
    behaviour.MALFORMED_FUNCTION_CALL: "MALFORMED_FUNCTION_CALL",
}
_FINISH_BY_MODE = {
    "content_filter": behaviour.CONTENT_FILTER,
    "malformed_function_call": behaviour.MALFORMED_FUNCTION_CALL,
    "prompt_blocked": behaviour.PROMPT_BLOCKED,
}

_SAFETY_RATINGS_BLOCKED = [
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "HIGH"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"},
]


# ---------------------------------------------------------------- handlers


async def models_handler(request: web.Request) -> web.Response:
    denied = check_auth(request)
    if denied is not None:
        return denied
    return bytes_response(catalog.GEMINI_LIST)


async def model_get_handler(request: web.Request) -> web.Response:
    denied = check_auth(request)
    if denied is not None:
        return denied
    model = request.match_info["model"]
    found = catalog.GEMINI_BY_NAME.get(f"models/{model}")
    if found is None:
        return error_response("not_found", model=model)
    return bytes_response(found)


async def model_action_handler(request: web.Request) -> web.StreamResponse:
    """``models/{model}:{method}`` -- the method rides in the last path segment."""
    denied = check_auth(request)
    if denied is not None:
        return denied
    model, _, method = request.match_info["model_action"].rpartition(":")
    if method == "countTokens":
        body = json_body(request)
        contents = body.get("contents") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(contents, list):
            return error_response("bad_request", message="contents is required")
        conv = conversation(body)
        knobs = read_knobs(request.headers, model, 0.0, [request.query.get("key", "")])
        behaviour.shape(conv, words=None, dense=knobs.dense, overrun=False)
        return json_response({"totalTokens": behaviour.prompt_tokens(conv)})
    if method not in ("generateContent", "streamGenerateContent"):
        return error_response("not_found", model=model, message=f"Method not found: {method}.")
    return await _generate(
        request, model, json_body(request), method == "streamGenerateContent", None
    )


async def code_assist_handler(request: web.Request) -> web.StreamResponse:
    denied = check_auth(request, bearer_only=True)
    if denied is not None:
        return denied
    method = request.match_info["method"]
    if method not in ("generateContent", "streamGenerateContent"):
        return error_response("not_found", message=f"Method not found: {method}.")
    body = json_body(request)
    if body is INVALID_JSON or not isinstance(body, dict):
        return error_response("bad_request", message="Invalid JSON payload received.")
    if not body.get("project"):
        return error_response(
            "bad_request", message="Invalid project: a Code Assist project is required."
        )
    model = str(body.get("model") or "").removeprefix("models/")
    trace_id = new_id("")

    def wrap(response: dict) -> dict:
        return {"response": response, "traceId": trace_id}

    return await _generate(
        request, model, body.get("request"), method == "streamGenerateContent", wrap
    )


async def _generate(
    request: web.Request,
    model: str,
    body: object,
    stream: bool,
    wrap: Callable[[dict], dict] | None,
) -> web.StreamResponse:
    if body is INVALID_JSON or not isinstance(body, dict):
        return error_response("bad_request", message="Invalid JSON payload received.")
    if not model:
        return error_response("bad_request", message="model is required")
    knobs = read_knobs(
        request.headers, model, default_delay(request), [request.query.get("key", "")]
    )
    if knobs.unknown_fail:
        return error_response("bad_request", message=unknown_mode_message(knobs.unknown_fail))
    if knobs.fail in STATUS_MODES or (knobs.fail == "midstream_error" and not stream):
        mode = "overloaded" if knobs.fail == "midstream_error" else knobs.fail
        return error_response(mode, model=model, retry_after=knobs.retry_after)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return error_response(
            "bad_request", message="* GenerateContentRequest.contents: contents is not specified"
        )
    for content in contents:
        role = content.get("role") if isinstance(content, dict) else None
        if role not in (None, "", "user", "model"):
            return error_response("bad_request", message="Please use a valid role: user, model.")
    bad_media = media.gemini_error(contents)
    if bad_media is not None:
        return error_response("bad_request", message=bad_media)
    if _unsigned_call(model, contents):
        return error_response(
            "bad_request",
            message="Function call is missing a thought_signature in functionCall parts. This is "
            "required for tools to work correctly.",
        )
    top = _requested_logprobs(body)
    if isinstance(top, web.Response):
        return top
    count = _candidate_count(body, stream)
    if isinstance(count, web.Response):
        return count
    conv = conversation(body, model)
    behaviour.shape(conv, words=knobs.words, dense=knobs.dense, overrun=knobs.overrun)
    finish = _FINISH_BY_MODE.get(knobs.fail) if knobs.fail in FINISH_MODES else None
    reply = behaviour.filtered(conv, finish) if finish else behaviour.decide(conv)
    response_id = new_id("")
    chunks = _chunks(model, reply, response_id) if stream else [_full(model, reply, response_id)]
    content = (chunks[0].get("candidates") or [{}])[0].get("content")
    if _include_thoughts(body) and content is not None:
        # the thought summary comes first, a part marked thought: true
        content["parts"].insert(0, {"text": thinking.text_for(conv), "thought": True})
    if top >= 0:
        _add_logprobs(chunks, reply, top, stream)
    if count > 1:
        _more_candidates(chunks[0], count, reply)
    if wrap is not None:
        chunks = [wrap(c) for c in chunks]
    if not stream:
        units = max(1, len(reply.chunks)) if not reply.tool_calls else 1
        return await respond_plain(request, knobs, json_response(chunks[0]), units)
    if request.query.get("alt") == "sse":
        events: list[Event] = [(b"data: " + dumps(c).encode() + b"\r\n\r\n", True) for c in chunks]
        malformed = b'data: {"candidates": [{"content": {"parts": [{"text": \r\n\r\n'
        content_type = "text/event-stream"
    else:  # the JSON-array stream of the API without alt=sse
        events = [
            ((b"[" if i == 0 else b",\r\n") + dumps(c).encode(), True) for i, c in enumerate(chunks)
        ]
        events.append((b"]", False))
        malformed = b',\r\n{"candidates": [{"content": '
        content_type = "application/json"
    error_event = (json.dumps(MIDSTREAM_ERROR, indent=2) + "\n").encode()
    return await respond_stream(
        request,
        knobs,
        events,
        headers={},
        malformed_event=malformed,
        error_event=error_event,
        content_type=content_type,
    )


# ---------------------------------------------------------------- candidateCount

MAX_CANDIDATES = 8


def _candidate_count(body: dict, stream: bool) -> int | web.Response:
    config = _get(body, "generationConfig", "generation_config")
    count = _get(config, "candidateCount", "candidate_count") if isinstance(config, dict) else None
    if count is None:
        return 1
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CANDIDATES:
        return error_response(
            "bad_request",
            message=f"candidateCount must be between 1 and {MAX_CANDIDATES}, got {count}.",
        )
    if stream and count > 1:
        # several candidates come from generateContent only (Vertex AI's reference says
        # streamGenerateContent does not take them); refused rather than merged into one
        return error_response(
            "bad_request",
            message="Multiple candidates are not supported with streamGenerateContent; "
            "use generateContent or set candidateCount to 1.",
        )
    return count


def _more_candidates(response: dict, count: int, reply: Reply) -> None:
    """A whole reply with ``count`` candidates (the same simulated answer each, index
    0..count-1); candidatesTokenCount counts them all."""
    candidates = response.get("candidates")
    if not candidates:
        return
    first = candidates[0]
    response["candidates"] = [first] + [{**first, "index": i} for i in range(1, count)]
    usage = response["usageMetadata"]
    extra = reply.completion_tokens * (count - 1)
    usage["candidatesTokenCount"] = usage.get("candidatesTokenCount", 0) + extra
    usage["totalTokenCount"] = usage.get("totalTokenCount", 0) + extra


# ---------------------------------------------------------------- logprobs

MAX_LOGPROBS = 20  # generationConfig.logprobs: "in the range of [0, 20]"


def _requested_logprobs(body: dict) -> int | web.Response:
    """How many top candidates a decoding step the request asks for (-1: no logprobs),
    or the 400 Gemini answers: ``logprobs`` outside [0, 20], or without
    ``responseLogprobs: true``."""
    config = _get(body, "generationConfig", "generation_config")
    if not isinstance(config, dict):
        return -1
    wanted = _get(config, "responseLogprobs", "response_logprobs") is True
    top = _get(config, "logprobs", "logprobs")
    if top is None:
        return 0 if wanted else -1
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_LOGPROBS:
        return error_response(
            "bad_request",
            message=f"logprobs must be an integer in the range of [0, {MAX_LOGPROBS}].",
        )
    if not wanted:
        return error_response(
            "bad_request", message="logprobs is only valid if responseLogprobs is true."
        )
    return top


def _step(token: str, logprob: float) -> dict:
    return {"token": token, "tokenId": len(token), "logProbability": logprob}


def _logprobs_result(words: list[str], top: int) -> dict:
    """One decoding step a word chunk (as the OpenAI wire's logprobs): -0.5 for the chosen
    token, ``top`` candidates a step sorted best first (the chosen one among them)."""
    return {
        "topCandidates": [
            {"candidates": [_step(w, -0.5)] + [_step(f"alt{i}", -2.0 - i) for i in range(top - 1)]}
            if top
            else {"candidates": []}
            for w in words
        ],
        "chosenCandidates": [_step(w, -0.5) for w in words],
        "logProbabilitySum": -0.5 * len(words),
    }


def _add_logprobs(responses: list[dict], reply: Reply, top: int, stream: bool) -> None:
    """A ``logprobsResult`` (and ``avgLogprobs``) on every candidate that carries text:
    a streamed chunk's one word, or a whole reply's words."""
    for response in responses:
        for candidate in response.get("candidates") or ():
            parts = (candidate.get("content") or {}).get("parts") or ()
            texts = [p["text"] for p in parts if "text" in p]
            if not texts:
                continue
            words = texts if stream else list(reply.chunks)
            candidate["logprobsResult"] = _logprobs_result(words, top)
            candidate["avgLogprobs"] = -0.5


# ---------------------------------------------------------------- request -> conversation


def _get(obj: dict, camel: str, snake: str) -> object:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _part_texts(content: object) -> list[str]:
    if isinstance(content, str):
        return [content]
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return []
    texts = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
    # inlineData / fileData parts are shown as markers, so the reply proves they arrived
    return texts + media.gemini_markers(content)


def _function_responses(content: dict) -> list[str]:
    parts = content.get("parts")
    if not isinstance(parts, list):
        return []
    results = []
    for part in parts:
        if isinstance(part, dict):
            fr = _get(part, "functionResponse", "function_response")
            if isinstance(fr, dict):
                results.append(dumps(fr.get("response")))
    return results


def _include_thoughts(body: dict) -> bool:
    config = _get(body, "generationConfig", "generation_config")
    setting = (
        _get(config, "thinkingConfig", "thinking_config") if isinstance(config, dict) else None
    )
    return (
        isinstance(setting, dict) and _get(setting, "includeThoughts", "include_thoughts") is True
    )


def conversation(body: dict, model: str = "") -> Conversation:
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    texts = _part_texts(_get(body, "systemInstruction", "system_instruction"))
    for c in contents:
        texts.extend(_part_texts(c))
        texts.extend(_function_responses(c))
    conv = Conversation(
        prompt_tokens=max(1, behaviour.count_words(*texts)),
        prompt_chars=behaviour.count_chars(*texts),
    )
    last = contents[-1] if contents else {}
    conv.last_is_user = last.get("role", "user") in ("user", "function")
    results = _function_responses(last) if conv.last_is_user else []
    if results:
        conv.tool_results = results
    for c in reversed(contents):
        if c.get("role", "user") == "user":
            conv.last_user_text = " ".join(_part_texts(c))
            break
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        decls = _get(tool, "functionDeclarations", "function_declarations")
        for decl in decls if isinstance(decls, list) else []:
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                schema = _get(decl, "parametersJsonSchema", "parameters_json_schema")
                if schema is None:
                    schema = decl.get("parameters")
                conv.tools.append(
                    ToolSpec(decl["name"], schema if isinstance(schema, dict) else {})
                )
    tool_config = _get(body, "toolConfig", "tool_config")
    if isinstance(tool_config, dict):
        calling = _get(tool_config, "functionCallingConfig", "function_calling_config")
        if isinstance(calling, dict):
            mode = str(calling.get("mode") or "AUTO").upper()
            if mode == "NONE":
                conv.tool_mode = "none"
            elif mode == "ANY":
                conv.tool_mode = "required"
            allowed = _get(calling, "allowedFunctionNames", "allowed_function_names")
            if isinstance(allowed, list) and allowed:
                conv.allowed_tools = frozenset(allowed)
    config = _get(body, "generationConfig", "generation_config")
    if isinstance(config, dict):
        limit = _get(config, "maxOutputTokens", "max_output_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool):
            conv.max_tokens = limit
        stops = _get(config, "stopSequences", "stop_sequences")
        if isinstance(stops, list):
            conv.stop_sequences = [s for s in stops if isinstance(s, str)]
        if _get(config, "responseMimeType", "response_mime_type") == "application/json":
            schema = _get(config, "responseSchema", "response_schema") or _get(
                config, "responseJsonSchema", "response_json_schema"
            )
            conv.json_schema = schema if isinstance(schema, dict) else {}
        thinking = _get(config, "thinkingConfig", "thinking_config")
        if isinstance(thinking, dict):
            budget = _get(thinking, "thinkingBudget", "thinking_budget")
            conv.reasoning = bool(_get(thinking, "includeThoughts", "include_thoughts")) or (
                isinstance(budget, int) and not isinstance(budget, bool) and budget != 0
            )
    # implicit caching: the whole prompt (behaviour's module docstring)
    conv.cache_scope = model
    conv.cache_prefix = texts
    conv.reasoning = conv.reasoning or "thinking" in model
    return conv


# ---------------------------------------------------------------- reply -> wire


def _usage(reply: Reply, final: bool) -> dict:
    # promptTokenCount includes cachedContentTokenCount; thoughtsTokenCount is
    # NOT part of candidatesTokenCount (but is of totalTokenCount)
    prompt = reply.prompt_tokens
    usage: dict = {"promptTokenCount": prompt, "totalTokenCount": prompt}
    if reply.cached_tokens:
        usage["cachedContentTokenCount"] = reply.cached_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if reply.cached_tokens:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.cached_tokens}]
    if final:
        usage["candidatesTokenCount"] = reply.completion_tokens
        usage["totalTokenCount"] = prompt + reply.completion_tokens + reply.reasoning_tokens
        if reply.reasoning_tokens:
            usage["thoughtsTokenCount"] = reply.reasoning_tokens
    return usage


def _candidate(parts: list[dict], finish: str | None) -> dict:
    candidate: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish == "SAFETY":
        candidate["safetyRatings"] = _SAFETY_RATINGS_BLOCKED
    elif finish == "MALFORMED_FUNCTION_CALL":
        candidate = {"index": 0, "finishMessage": "Malformed function call (simulated)."}
    if finish:
        candidate["finishReason"] = finish
    return candidate


def _response(model: str, response_id: str, usage: dict, candidate: dict | None) -> dict:
    response: dict = {}
    if candidate is None:
        response["promptFeedback"] = {
            "blockReason": "SAFETY",
            "safetyRatings": _SAFETY_RATINGS_BLOCKED,
        }
    else:
        response["candidates"] = [candidate]
    response["usageMetadata"] = usage
    response["modelVersion"] = model
    response["responseId"] = response_id
    return response


def _thinks(model: str) -> bool:
    """Gemini 2.5 and later think, and sign the first function call of a turn."""
    return "gemini-2.5" in model or "gemini-3" in model


def _signature(name: str) -> str:
    return base64.b64encode(hashlib.sha256(f"sim-thought:{name}".encode()).digest()).decode()


def _final_parts(reply: Reply, model: str = "") -> list[dict]:
    if reply.tool_calls:
        parts: list[dict] = [
            {"functionCall": {"name": c.name, "args": c.arguments}} for c in reply.tool_calls
        ]
        if _thinks(model):
            parts[0]["thoughtSignature"] = _signature(reply.tool_calls[0].name)
        return parts
    return [{"text": reply.text}] if reply.chunks else []


def _unsigned_call(model: str, contents: list) -> bool:
    """Gemini 3 refuses a history whose model turn has a first function call without its
    thought signature (the real API answers 400 INVALID_ARGUMENT)."""
    if "gemini-3" not in model:
        return False
    for content in contents:
        if not isinstance(content, dict) or content.get("role") != "model":
            continue
        parts = content.get("parts") or ()
        calls = [p for p in parts if isinstance(p, dict) and "functionCall" in p]
        if calls and not calls[0].get("thoughtSignature"):
            return True
    return False


def _full(model: str, reply: Reply, response_id: str) -> dict:
    usage = _usage(reply, True)
    if reply.finish == behaviour.PROMPT_BLOCKED:
        return _response(model, response_id, usage, None)
    candidate = _candidate(_final_parts(reply, model), FINISH_REASONS[reply.finish])
    return _response(model, response_id, usage, candidate)


def _chunks(model: str, reply: Reply, response_id: str) -> list[dict]:
    if reply.finish == behaviour.PROMPT_BLOCKED or reply.tool_calls or len(reply.chunks) <= 1:
        return [_full(model, reply, response_id)]
    partial_usage = _usage(reply, False)
    chunks = [
        _response(model, response_id, partial_usage, _candidate([{"text": word}], None))
        for word in reply.chunks[:-1]
    ]
    last = _candidate([{"text": reply.chunks[-1]}], FINISH_REASONS[reply.finish])
    chunks.append(_response(model, response_id, _usage(reply, True), last))
    return chunks
