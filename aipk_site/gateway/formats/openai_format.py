"""OpenAI ``POST /v1/chat/completions``: request parsing, response and stream rendering.

One concept, kept whole: one wire format, whose parser, renderer and stream
encoder must change together when OpenAI's shapes do.

The shapes follow what api.openai.com sends (see the captured transcripts in
tests/fixtures/wire), because the official ``openai`` SDK and everything
built on it must work against the gateway unchanged.

Accepted request fields: ``model``, ``messages`` (roles system, developer →
system, user, assistant, tool), ``tools`` (function tools), ``tool_choice``,
``parallel_tool_calls``, ``max_tokens`` / ``max_completion_tokens`` (the
latter wins when both are given), ``temperature``, ``top_p``, ``stop``,
``user``, ``n`` (1..128; above 1, where the provider can -- kit/fields.py -- and
without streaming: every choice is rendered, usage counts them all), ``stream``,
``stream_options.include_usage``, and the gateway's own ``aipk: {"cache": bool}``.

User messages may carry media parts (docs/GATEWAY.md "Images, files and
audio"): ``image_url`` {``url``: http(s) or ``data:image/...;base64,``,
``detail``}, ``file`` {``file_data``: ``data:application/pdf;base64,`` (or
text/plain) | ``file_id``, ``filename``} and ``input_audio`` {``data``,
``format``: wav | mp3}; they are validated by ``formats/media.py``.

Ruled per provider by the kit's field table (providers_app/kit/fields.py,
docs/SUPPORT_MATRIX.md): translated or passed where the provider can, a 400
``unsupported_parameter`` naming the field and the provider where it cannot
(request_fields.py parses them): ``response_format`` (text, json_object,
json_schema), ``reasoning_effort``, ``seed``, ``logprobs``, ``top_logprobs``,
``frequency_penalty``, ``presence_penalty``, ``service_tier``, ``metadata``,
and, passed verbatim to the OpenAI-wire providers that have them,
``logit_bias``, ``store``, ``prompt_cache_key``, ``safety_identifier``,
``verbosity``, ``modalities``, ``audio``, ``prediction``,
``web_search_options``, ``prompt_cache_retention``, ``prompt_cache_options``,
``moderation``, the legacy ``functions`` / ``function_call`` (refused everywhere: send
tools), and OpenRouter's ``models``, ``provider``, ``transforms``, ``route``,
``plugins``. Returned logprobs are rendered in ``choices[].logprobs``.

The model's visible reasoning (Anthropic thinking, Gemini thought summaries, an
OpenAI-wire provider's own ``reasoning_content``) is rendered as
``message.reasoning_content`` / ``delta.reasoning_content``, the field DeepSeek,
OpenRouter and vLLM clients read. It is text only: Anthropic's signatures and
redacted blocks cannot travel in this format, so a tool round trip with thinking
on needs /v1/messages. An assistant message's ``reasoning_content`` sent back is
not read (it has no meaning to a provider).

Any other top-level field is a 400 ``unknown_parameter`` naming it (or, under the key's
drop option, left out and named in ``x-aipk-dropped-params``). Still ignored: message
``name`` fields.

Finish reasons: the kit's ``malformed_tool_call`` and ``error`` have no OpenAI
counterpart and are reported as ``"stop"``; OpenAI's own vocabulary has only
stop, length, tool_calls, content_filter (and the legacy function_call).
"""

from __future__ import annotations

import json
from typing import Any

from aipk_site.infra.errors import AipkError
from providers_app.kit.fields import OPENAI_KNOWN
from providers_app.kit.tools import (
    ToolValidationError,
    tool_choice_from_openai,
    tools_from_openai,
    validate_tool_choice,
)
from providers_app.kit.types import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_TOOL_CALLS,
    AudioPart,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
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
from .media import (
    AUDIO_FORMATS,
    DOCUMENT_TYPES,
    IMAGE_TYPES,
    MediaTally,
    check_base64,
    check_url,
    parse_data_url,
)
from .request_fields import openai_fields, unknown_top_level

__all__ = [
    "parse_chat_completion",
    "render_chat_completion",
    "OpenAIStreamEncoder",
    "openai_error_body",
    "openai_finish_reason",
]

_ROLES = ("system", "developer", "user", "assistant", "tool")
# media parts are accepted in user messages only (as OpenAI does)
_UNSUPPORTED_PARTS = {
    "image_url": "image parts are allowed in user messages only",
    "input_audio": "audio parts are allowed in user messages only",
    "file": "file parts are allowed in user messages only",
}
_DETAILS = ("auto", "low", "high")
MAX_CHOICES = 128  # OpenAI's own bound on n


# -- request -------------------------------------------------------------------------------


def parse_chat_completion(
    body: Any, limits: InputLimits, *, drop_unknown: bool = False
) -> ParsedRequest:
    """Validate a chat-completions body and turn it into a kit ``ChatRequest``.

    Raises ``InvalidRequest`` with ``param`` set to the offending field path. A top-level
    field the format does not know is refused, or with ``drop_unknown`` (the key's drop
    option) left out and listed in ``ParsedRequest.dropped``.
    """
    if not isinstance(body, dict):
        raise invalid(f"must be a JSON object, got {json_type(body)}", "body")
    dropped = unknown_top_level(body, OPENAI_KNOWN, drop=drop_unknown)

    model = parse_model(body)

    messages = _parse_messages(body.get("messages"), limits)

    bounded_int(body, "n", 1, MAX_CHOICES)  # its range; the value is one of the ruled fields
    # seed, logprobs, response_format ...: ruled per provider by kit/fields.py
    ruled = openai_fields(body)

    tools_value = body.get("tools")
    if isinstance(tools_value, list) and len(tools_value) > limits.max_tools:
        raise invalid(f"has {len(tools_value)} tools; the limit is {limits.max_tools}", "tools")
    try:
        tools = tools_from_openai(tools_value)
        tool_choice = tool_choice_from_openai(body.get("tool_choice"))
        validate_tool_choice(tool_choice, tools)
    except ToolValidationError as exc:
        raise from_tool_error(exc) from None

    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid(f"must be a boolean, got {json_type(parallel)}", "parallel_tool_calls")

    max_tokens = bounded_int(body, "max_tokens", 1, MAX_OUTPUT_TOKENS)
    max_completion_tokens = bounded_int(body, "max_completion_tokens", 1, MAX_OUTPUT_TOKENS)

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid(f"must be a boolean, got {json_type(stream)}", "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid(f"must be an object, got {json_type(options)}", "stream_options")
        flag = options.get("include_usage")
        if flag is not None and not isinstance(flag, bool):
            raise invalid(
                f"must be a boolean, got {json_type(flag)}", "stream_options.include_usage"
            )
        include_usage = bool(flag)

    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid(f"must be a string, got {json_type(user)}", "user")

    request = ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=max_completion_tokens if max_completion_tokens is not None else max_tokens,
        temperature=optional_number(body, "temperature", 0, 2),
        top_p=optional_number(body, "top_p", 0, 1),
        stop=_parse_stop(body.get("stop")),
        user=user,
        **ruled,
    )
    return ParsedRequest(
        request=request,
        stream=bool(stream),
        include_usage=include_usage,
        cache=parse_aipk_cache(body.get("aipk")),
        dropped=dropped,
    )


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
    # tool messages carry only the call id; Gemini also wants the function's name
    names_by_call_id: dict[str, str] = {}
    tally = MediaTally(limits)
    for i, item in enumerate(value):
        base = f"messages[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"must be an object, got {json_type(item)}", base)
        role = item.get("role")
        if role not in _ROLES:
            raise invalid(not_one_of(role, _ROLES), f"{base}.role")
        if role == "assistant":
            message = _parse_assistant(item, base)
            for call in message.tool_calls:
                names_by_call_id[call.id] = call.name
        elif role == "tool":
            message = _parse_tool_result(item, base, names_by_call_id)
        elif role == "user" and isinstance(item.get("content"), list):
            message = _parse_user_parts(item["content"], f"{base}.content", tally)
        else:
            content = _text_content(item.get("content"), f"{base}.content", required=True)
            message = Message(role="system" if role == "developer" else role, content=content)
        size = len(message.content or "") + sum(
            len(call.arguments) + len(call.name) for call in message.tool_calls
        )
        check_message_size(size, limits, f"{base}.content")
        out.append(message)
    return out


def _parse_assistant(item: dict[str, Any], base: str) -> Message:
    if item.get("function_call") is not None:
        raise invalid("is not supported: send tool_calls instead", f"{base}.function_call")
    content = _text_content(item.get("content"), f"{base}.content", required=False)
    raw_calls = item.get("tool_calls")
    calls: list[ToolCall] = []
    if raw_calls is not None:
        if not isinstance(raw_calls, list):
            raise invalid(f"must be an array, got {json_type(raw_calls)}", f"{base}.tool_calls")
        for j, raw in enumerate(raw_calls):
            calls.append(_parse_tool_call(raw, f"{base}.tool_calls[{j}]"))
    if content is None and not calls:
        raise invalid("is required unless tool_calls is given", f"{base}.content")
    return Message(role="assistant", content=content, tool_calls=calls)


def _parse_tool_call(raw: Any, base: str) -> ToolCall:
    if not isinstance(raw, dict):
        raise invalid(f"must be an object, got {json_type(raw)}", base)
    kind = raw.get("type", "function")
    if kind != "function":
        raise invalid(f"{kind!r} is not supported: only 'function' tool calls are", f"{base}.type")
    public_id = raw.get("id")
    if not isinstance(public_id, str) or not public_id:
        raise invalid(
            "is required" if public_id is None else "must be a non-empty string", f"{base}.id"
        )
    function = raw.get("function")
    if not isinstance(function, dict):
        raise invalid(f"must be an object, got {json_type(function)}", f"{base}.function")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(
            "is required" if name is None else "must be a non-empty string",
            f"{base}.function.name",
        )
    arguments = function.get("arguments")
    if arguments is None:
        arguments = "{}"
    elif isinstance(arguments, dict):
        # OpenAI wants a JSON string, but some clients echo back the parsed object
        arguments = json.dumps(arguments, ensure_ascii=False)
    elif not isinstance(arguments, str):
        raise invalid(
            f"must be a JSON string, got {json_type(arguments)}", f"{base}.function.arguments"
        )
    call_id, signature = split_tool_call_id(public_id)
    return ToolCall(id=call_id, name=name, arguments=arguments, signature=signature)


def _parse_tool_result(
    item: dict[str, Any], base: str, names_by_call_id: dict[str, str]
) -> Message:
    public_id = item.get("tool_call_id")
    if not isinstance(public_id, str) or not public_id:
        raise invalid(
            "is required" if public_id is None else "must be a non-empty string",
            f"{base}.tool_call_id",
        )
    call_id, _signature = split_tool_call_id(public_id)
    content = _text_content(item.get("content"), f"{base}.content", required=True)
    return Message(
        role="tool", content=content, tool_call_id=call_id, name=names_by_call_id.get(call_id)
    )


def _text_content(value: Any, param: str, *, required: bool) -> str | None:
    """A string, or an array of text parts joined with newlines (they are separate blocks)."""
    if value is None:
        if required:
            raise invalid("is required", param)
        return None
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid(
            f"must be a string or an array of content parts, got {json_type(value)}", param
        )
    texts: list[str] = []
    for k, part in enumerate(value):
        where = f"{param}[{k}]"
        if not isinstance(part, dict):
            raise invalid(f"must be an object, got {json_type(part)}", where)
        kind = part.get("type")
        if isinstance(kind, str) and kind in _UNSUPPORTED_PARTS:
            raise invalid(_UNSUPPORTED_PARTS[kind], f"{where}.type")
        # an assistant's refusal part is text the model said
        field = {"text": "text", "refusal": "refusal"}.get(kind) if isinstance(kind, str) else None
        if field is None:
            raise invalid(
                "is required" if kind is None else f"{kind!r} is not a supported content part type",
                f"{where}.type",
            )
        text = part.get(field)
        if not isinstance(text, str):
            raise invalid(f"must be a string, got {json_type(text)}", f"{where}.{field}")
        texts.append(text)
    return "\n".join(texts)


def _parse_user_parts(value: list[Any], param: str, tally: MediaTally) -> Message:
    """A user message's parts: text, image_url, file, input_audio (OpenAI's shapes).

    Text-only arrays stay a plain text message (``parts`` None); see ``Message``.
    """
    parts: list[ContentPart] = []
    for k, part in enumerate(value):
        where = f"{param}[{k}]"
        if not isinstance(part, dict):
            raise invalid(f"must be an object, got {json_type(part)}", where)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"must be a string, got {json_type(text)}", f"{where}.text")
            parts.append(TextPart(text))
        elif kind == "image_url":
            parts.append(_image_part(part.get("image_url"), f"{where}.image_url", tally))
        elif kind == "file":
            parts.append(_file_part(part.get("file"), f"{where}.file", tally))
        elif kind == "input_audio":
            parts.append(_audio_part(part.get("input_audio"), f"{where}.input_audio", tally))
        else:
            raise invalid(
                "is required" if kind is None else f"{kind!r} is not a supported content part type",
                f"{where}.type",
            )
    text = "\n".join(p.text for p in parts if isinstance(p, TextPart))
    if all(isinstance(p, TextPart) for p in parts):
        return Message(role="user", content=text)
    return Message(role="user", content=text, parts=parts)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(
            "is required" if value is None else f"must be an object, got {json_type(value)}", where
        )
    return value


def _image_part(value: Any, where: str, tally: MediaTally) -> ImagePart:
    spec = _object(value, where)
    url = spec.get("url")
    detail = spec.get("detail")
    if detail is not None and detail not in _DETAILS:
        raise invalid(not_one_of(detail, _DETAILS), f"{where}.detail")
    if isinstance(url, str) and url.startswith("data:"):
        media_type, data, size = parse_data_url(url, IMAGE_TYPES, f"{where}.url")
        tally.add(size, f"{where}.url")
        return ImagePart(data=data, media_type=media_type, detail=detail)
    return ImagePart(url=check_url(url, f"{where}.url"), detail=detail)


def _file_part(value: Any, where: str, tally: MediaTally) -> FilePart:
    spec = _object(value, where)
    filename = spec.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise invalid(f"must be a string, got {json_type(filename)}", f"{where}.filename")
    file_data, file_id = spec.get("file_data"), spec.get("file_id")
    if (file_data is None) == (file_id is None):
        raise invalid("needs exactly one of file_data and file_id", where)
    if file_id is not None:
        if not isinstance(file_id, str) or not file_id:
            raise invalid("must be a non-empty string", f"{where}.file_id")
        return FilePart(file_id=file_id, filename=filename)
    if not isinstance(file_data, str):
        raise invalid(f"must be a string, got {json_type(file_data)}", f"{where}.file_data")
    media_type, data, size = parse_data_url(file_data, DOCUMENT_TYPES, f"{where}.file_data")
    tally.add(size, f"{where}.file_data")
    return FilePart(data=data, media_type=media_type, filename=filename)


def _audio_part(value: Any, where: str, tally: MediaTally) -> AudioPart:
    spec = _object(value, where)
    audio_format = spec.get("format")
    if audio_format not in AUDIO_FORMATS:
        raise invalid(not_one_of(audio_format, AUDIO_FORMATS), f"{where}.format")
    data = spec.get("data")
    tally.add(check_base64(data, f"{where}.data"), f"{where}.data")
    assert isinstance(data, str)  # check_base64 refused anything else
    return AudioPart(data=data, format=audio_format)


def _parse_stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            raise invalid("must not be empty", "stop")
        return [value]
    if not isinstance(value, list):
        raise invalid(f"must be a string or an array of strings, got {json_type(value)}", "stop")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise invalid(
                f"must be a non-empty string, got {json_type(item)}"
                if not isinstance(item, str)
                else "must not be empty",
                f"stop[{i}]",
            )
    return list(value) or None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- response ------------------------------------------------------------------------------

_FINISH = {
    "stop": "stop",
    FINISH_LENGTH: "length",
    FINISH_TOOL_CALLS: "tool_calls",
    FINISH_CONTENT_FILTER: "content_filter",
}


def openai_finish_reason(finish_reason: str | None, has_tool_calls: bool = False) -> str:
    """The kit's finish reason in OpenAI's vocabulary; anything without a match is "stop"."""
    return _FINISH.get(effective_finish(finish_reason, has_tool_calls) or "stop", "stop")


def _usage_dict(usage: Usage) -> dict[str, Any]:
    # the kit's Usage has OpenAI's meaning: the details are parts of the totals
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _tool_call_dict(call: ToolCall) -> dict[str, Any]:
    return {
        "id": public_tool_call_id(call.id, call.signature),
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments or "{}"},
    }


def render_chat_completion(
    response: ChatResponse, *, model: str, request_id: str, created: int
) -> dict[str, Any]:
    """OpenAI's ``chat.completion`` object for a finished reply: one choice, or ``n``
    (``response.extra_choices`` after the first)."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            _choice_dict(index, choice)
            for index, choice in enumerate((response, *response.extra_choices))
        ],
        "usage": _usage_dict(response.usage or Usage()),
    }


def _choice_dict(index: int, response: ChatResponse) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        # OpenAI sends null, not "", when the reply is only tool calls
        "content": response.text if response.text or not response.tool_calls else None,
        "refusal": None,
    }
    if response.tool_calls:
        message["tool_calls"] = [_tool_call_dict(call) for call in response.tool_calls]
    if response.thinking_text:
        # the de-facto field (DeepSeek, OpenRouter, vLLM); signatures have no place here
        message["reasoning_content"] = response.thinking_text
    return {
        "index": index,
        "message": message,
        # the provider's own logprobs, when it sent any (logprobs: true)
        "logprobs": response.logprobs,
        "finish_reason": openai_finish_reason(response.finish_reason, bool(response.tool_calls)),
    }


def openai_error_body(err: AipkError) -> dict[str, Any]:
    """``{"error": {"type", "code", "message", "param"}}``, the envelope the openai SDK reads."""
    return err.body()


# -- streaming -----------------------------------------------------------------------------


class _ChoiceState:
    """What the encoder has sent of one choice: its role, its calls' ids and names, and
    the finish reason it holds back until the end."""

    __slots__ = ("index", "started", "finish_reason", "id_sent", "name_sent", "saw_tool_calls")

    def __init__(self, index: int) -> None:
        self.index = index
        self.started = False
        # the upstream's first finish reason for this choice, sent by ``finish``
        self.finish_reason: str | None = None
        # per tool-call index: whether its id / name went out already
        self.id_sent: set[int] = set()
        self.name_sent: set[int] = set()
        self.saw_tool_calls = False


class OpenAIStreamEncoder:
    """Renders kit chunks as OpenAI ``chat.completion.chunk`` server-sent events.

    The grammar follows the recorded streams: a first chunk carrying only the
    role, content chunks, tool-call fragments whose id, type and name appear
    once per call (the SDK concatenates every string it receives for a call,
    so repeating them would corrupt the id), one chunk with an empty delta and
    the finish reason, an optional ``choices: []`` usage chunk, then
    ``data: [DONE]``.

    With ``n`` > 1 each choice follows that grammar under its own ``index``
    (``ChatChunk.choice``), interleaved as the upstream sent them: a role chunk
    when a choice first appears, a finish chunk for each choice at the end, one
    usage chunk counting them all.

    A call's id goes out with its first fragment: an id or signature that
    arrives later cannot be added any more (the kit's adapters send both in
    the first fragment; a call without one is named ``call_<index>``).

    The finish chunk is held back until ``finish``: text or tool-call
    fragments an upstream sends after its finish reason would otherwise be
    lost, or land after the chunk clients take for the end of the choice.
    """

    def __init__(self, model: str, request_id: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.request_id = request_id
        self.created = created
        self.include_usage = include_usage
        self._first = _ChoiceState(0)
        # choices after the first (n > 1), by index, made when their first chunk arrives
        self._others: dict[int, _ChoiceState] | None = None
        self._closed = False
        self._usage: Usage | None = None
        # (before, after) the text of a content-only event, for ``chunk``'s fast path;
        # worked out on the first such chunk
        self._text_event: tuple[bytes, bytes] | None = None
        self._text_event_known = False

    def _text_event_parts(self) -> tuple[bytes, bytes] | None:
        """A content-only event split around its text: the bytes ``_delta`` renders
        for ``{"content": text}`` are these two around the text's own JSON."""
        marker = "\ue000"  # a private-use character, not in an id or a model name
        event, quoted = self._delta(0, {"content": marker}), dumps(marker)
        if event.count(quoted) != 1:
            return None
        before, after = event.split(quoted)
        return before, after

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + dumps(payload) + b"\n\n"

    def _delta(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: Any = None,
    ) -> bytes:
        return self._event(
            [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]
        )

    def _start(self, state: _ChoiceState) -> bytes:
        if state.started:
            return b""
        state.started = True
        return self._delta(state.index, {"role": "assistant", "content": ""})

    def _state(self, index: int) -> _ChoiceState:
        if self._others is None:
            self._others = {}
        state = self._others.get(index)
        if state is None:
            state = self._others[index] = _ChoiceState(index)
        return state

    def chunk(self, c: ChatChunk) -> bytes:
        if self._closed:
            return b""
        if (
            c.text
            and not c.choice
            and self._first.started
            and not c.tool_calls
            and not c.finish_reason
            and c.usage is None
            and c.logprobs is None
            and c.thinking is None
        ):
            # Most chunks of a reply are text alone: the same bytes as below, without
            # building and serialising the whole event each time.
            if not self._text_event_known:
                self._text_event, self._text_event_known = self._text_event_parts(), True
            if self._text_event is not None:
                before, after = self._text_event
                return before + dumps(c.text) + after
        state = self._state(c.choice) if c.choice else self._first
        index = state.index
        out = [self._start(state)]
        if c.thinking is not None and c.thinking.text:
            out.append(self._delta(index, {"reasoning_content": c.thinking.text}))
        if c.text or c.logprobs is not None:
            out.append(self._delta(index, {"content": c.text}, logprobs=c.logprobs))
        fragments = [self._fragment(state, d) for d in c.tool_calls]
        fragments = [f for f in fragments if f is not None]
        if fragments:
            state.saw_tool_calls = True
            out.append(self._delta(index, {"tool_calls": fragments}))
        if c.finish_reason and state.finish_reason is None:
            state.finish_reason = c.finish_reason
        if c.usage is not None:
            self._usage = c.usage
        return b"".join(out)

    def _fragment(self, state: _ChoiceState, d: ToolCallDelta) -> dict[str, Any] | None:
        fragment: dict[str, Any] = {"index": d.index}
        function: dict[str, Any] = {}
        if d.index not in state.id_sent:
            state.id_sent.add(d.index)
            # a call's first fragment names it; a provider that sent no id gets one
            fragment["id"] = public_tool_call_id(d.id or f"call_{d.index}", d.signature)
            fragment["type"] = "function"
        if d.name and d.index not in state.name_sent:
            state.name_sent.add(d.index)
            function["name"] = d.name
        if "name" in function or d.arguments:
            function["arguments"] = d.arguments
        if function:
            fragment["function"] = function
        return fragment if len(fragment) > 1 else None

    def _finish_event(self, state: _ChoiceState) -> bytes:
        reason = openai_finish_reason(state.finish_reason, state.saw_tool_calls)
        return self._start(state) + self._delta(state.index, {}, reason)

    def finish(self, usage: Usage | None = None) -> bytes:
        """End the stream: each choice's finish chunk, usage if asked for, ``[DONE]``."""
        if self._closed:
            return b""
        out = [self._finish_event(self._first)]
        if self._others:
            out.extend(self._finish_event(s) for _, s in sorted(self._others.items()))
        if self.include_usage:
            final = usage or self._usage or Usage()
            out.append(self._event([], usage=_usage_dict(final)))
        out.append(b"data: [DONE]\n\n")
        self._closed = True
        return b"".join(out)

    def ping(self) -> bytes:
        """An SSE comment, to keep idle proxies from cutting a slow stream; clients skip it."""
        return b"" if self._closed else b": ping\n\n"

    def error(self, err: AipkError) -> bytes:
        """A mid-stream error event; the openai SDK raises ``APIError`` on reading it.

        Nothing follows it, not even ``[DONE]``: the stream ends there.
        """
        if self._closed:
            return b""
        self._closed = True
        return b"data: " + dumps(openai_error_body(err)) + b"\n\n"
