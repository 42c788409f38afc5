"""OpenAI ``POST /v1/responses`` (the Responses API): request parsing, response and
stream rendering.

One wire format, kept whole like openai_format.py: the parser, the renderer and the
stream encoder change together when OpenAI's shapes do. The shapes follow the
official ``openai`` SDK's types (``openai.types.responses``): ``client.responses.create``,
``client.responses.stream`` and its ``get_final_response()`` must work unchanged.

The request becomes the kit's ``ChatRequest``, so every chat provider can serve it:

- ``input``: a string (one user message) or a list of items: messages (role user,
  assistant, system, developer; content a string or ``input_text`` / ``input_image`` /
  ``input_file`` parts, ``output_text`` / ``refusal`` parts for an assistant),
  ``function_call`` items (an assistant turn calling tools) and
  ``function_call_output`` items (a tool's result);
- ``instructions`` -> a system message first (not carried to a continuation, as OpenAI);
- ``max_output_tokens``, ``temperature``, ``top_p``, ``user``, ``service_tier``,
  ``parallel_tool_calls``; ``tools`` (``type: "function"``, the flat shape),
  ``tool_choice``; ``text.format`` (text, json_object, json_schema) -> ``ResponseFormat``;
  ``reasoning.effort`` -> ``Reasoning``: ruled per provider by the kit's field table
  (providers_app/kit/fields.py, which names them as this format spells them);
- ``metadata``, ``store``, ``previous_response_id``, ``stream``: the gateway's own
  (aipk_site/gateway/responses.py stores and continues conversations);
- ``include``: ``"reasoning.encrypted_content"`` (or nothing); ``truncation``
  ("disabled"), ``background`` (false): accepted only with the value that asks for
  nothing.

The model's visible reasoning (Anthropic thinking, Gemini thought summaries, an
OpenAI-wire provider's ``reasoning_content``) is rendered as one ``reasoning`` output
item before the answer: its ``summary`` holds the thinking text (one ``summary_text``
per block; a redacted block has none) and, when ``include`` asks for
``reasoning.encrypted_content``, ``encrypted_content`` holds the blocks as the provider
must get them back (Anthropic's signatures, redacted data): ``aipk1_`` + base64url of a
small JSON, opaque to the client, carrying nothing the client was not already sent.
A ``reasoning`` input item becomes the kit's ``ThinkingPart``s of the assistant turn
that follows it, so a tool round trip by full input list gives Anthropic its signed
blocks back; without ``encrypted_content`` it carries only its summary text, no
signature, and an Anthropic route leaves it out (a thinking block without its
signature is refused by Anthropic). One that an assistant item does not directly
follow has no turn to belong to and is left out (as OpenAI only keeps reasoning that
precedes an answer).

Every other field, built-in tools (web_search, file_search, computer_use, ...) and
item types the gateway cannot translate (item references, built-in tool calls) are a
400 naming them; nothing is dropped silently.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aipk_site.infra.errors import AipkError, InvalidRequest
from providers_app.kit.fields import REASONING_EFFORTS
from providers_app.kit.tools import (
    ToolValidationError,
    tool_choice_from_openai,
    tools_from_openai,
    validate_tool_choice,
)
from providers_app.kit.types import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    Reasoning,
    ResponseFormat,
    Role,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
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
    from_tool_error,
    invalid,
    json_type,
    not_one_of,
    optional_number,
    parse_model,
    public_tool_call_id,
    split_tool_call_id,
)
from .media import DOCUMENT_TYPES, IMAGE_TYPES, MediaTally, check_url, parse_data_url

__all__ = [
    "ResponsesBody",
    "ResponsesStreamEncoder",
    "decode_thinking",
    "encode_thinking",
    "messages_from_items",
    "parse_responses",
    "public",
    "public_output",
    "render_response",
]

# The fields the gateway translates or honours itself.
_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "reasoning",
        "metadata",
        "user",
        "store",
        "previous_response_id",
        "stream",
        "service_tier",
        "include",
    }
)
# Fields accepted only with the value that asks for nothing (what SDKs and agent
# frameworks send by default); anything else in them is refused by name.
_NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "truncation": lambda v: v is None or v == "disabled",
    "background": lambda v: v is None or v is False,
    "stream_options": lambda v: v is None or v == {},
}
_ROLES = ("user", "assistant", "system", "developer")
# the one ``include`` value the gateway serves: reasoning items' encrypted_content
INCLUDE_ENCRYPTED = "reasoning.encrypted_content"
_SUMMARIES = ("auto", "concise", "detailed")
# encrypted_content as aipk writes it (not OpenAI's: the blocks of another provider)
ENCRYPTED_PREFIX = "aipk1_"
_FORMAT_TYPES = ("text", "json_object", "json_schema")
_DETAILS = ("auto", "low", "high")
MAX_METADATA_KEYS = 16
_BUILT_IN_TOOL = (
    "is a built-in tool of OpenAI's; the gateway serves function tools only (type 'function')"
)


def unsupported(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param, code="unsupported_parameter")


@dataclass
class ResponsesBody:
    """A parsed Responses request: the kit request (whose messages hold the new input
    only, until ``messages_from_items`` adds a stored conversation), the input as items
    to store, and what the response object echoes back."""

    parsed: ParsedRequest
    # this request's input as Responses items (a string input as one user message)
    items: list[dict[str, Any]]
    instructions: str | None
    previous_response_id: str | None
    store: bool
    metadata: dict[str, str]
    echo: dict[str, Any] = field(default_factory=dict)
    # ``include`` asked for reasoning.encrypted_content: reasoning items show it
    include_encrypted: bool = False


def parse_responses(body: Any, limits: InputLimits) -> ResponsesBody:
    """Validate a Responses body; raise ``InvalidRequest`` naming the offending field."""
    if not isinstance(body, dict):
        raise invalid(f"must be a JSON object, got {json_type(body)}", "body")
    for name in body:
        if name in _FIELDS:
            continue
        neutral = _NEUTRAL.get(name)
        if neutral is None:
            raise unsupported(name, "is not supported by aipk's /v1/responses")
        if not neutral(body[name]):
            raise unsupported(name, "is supported only with its default value")
    model = parse_model(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid(f"must be a string, got {json_type(instructions)}", "instructions")
    items = _input_items(body.get("input"))
    messages = messages_from_items(items, limits, instructions=instructions)

    tools, raw_tools = _tools(body.get("tools"), limits)
    try:
        choice = tool_choice_from_openai(_chat_tool_choice(body.get("tool_choice")))
        validate_tool_choice(choice, tools)
    except ToolValidationError as exc:
        raise _flat_tool_error(exc) from None
    parallel = _optional_bool(body, "parallel_tool_calls")
    stream = _optional_bool(body, "stream")
    store = _optional_bool(body, "store")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise invalid(
            f"must be a non-empty string, got {json_type(previous)}", "previous_response_id"
        )
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid(f"must be a string, got {json_type(user)}", "user")
    tier = body.get("service_tier")
    if tier is not None and (not isinstance(tier, str) or not tier):
        raise invalid(f"must be a non-empty string, got {json_type(tier)}", "service_tier")
    include_encrypted = _include(body.get("include"))
    text, response_format = _text(body.get("text"))
    reasoning = _reasoning(body.get("reasoning"))
    max_output_tokens = bounded_int(body, "max_output_tokens", 1, MAX_OUTPUT_TOKENS)
    temperature = optional_number(body, "temperature", 0, 2)
    top_p = optional_number(body, "top_p", 0, 1)

    request = ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        max_tokens=max_output_tokens,
        temperature=temperature,
        top_p=top_p,
        user=user,
        wire_format="responses",
        response_format=response_format,
        reasoning=Reasoning(effort=reasoning["effort"]) if reasoning["effort"] else None,
        service_tier=tier,
    )
    echo = {
        "max_output_tokens": max_output_tokens,
        "parallel_tool_calls": True if parallel is None else parallel,
        "reasoning": reasoning,
        "service_tier": tier,
        "temperature": temperature,
        "text": text,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": raw_tools,
        "top_p": top_p,
        "user": user,
    }
    return ResponsesBody(
        parsed=ParsedRequest(request=request, stream=bool(stream), include_usage=True, cache=False),
        items=items,
        instructions=instructions,
        previous_response_id=previous,
        store=store is not False,
        metadata=_metadata(body.get("metadata")),
        echo=echo,
        include_encrypted=include_encrypted,
    )


def _optional_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"must be a boolean, got {json_type(value)}", key)
    return value


def _input_items(value: Any) -> list[dict[str, Any]]:
    if value is None:
        raise invalid("is required", "input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid(f"must be a string or an array of items, got {json_type(value)}", "input")
    if not value:
        raise invalid("must contain at least one item", "input")
    return value


# -- items -> messages -------------------------------------------------------------------


def messages_from_items(
    items: list[Any],
    limits: InputLimits,
    *,
    instructions: str | None = None,
    base: str = "input",
) -> list[Message]:
    """Responses input items as the kit's messages, in order: consecutive
    ``function_call`` items join the assistant turn before them (one turn that called
    several tools), a ``function_call_output`` becomes a tool message named after its
    call (Gemini needs the name), a ``reasoning`` item's blocks go to the assistant
    turn the next assistant item starts or joins (sent back before its text and tool
    calls, as Anthropic requires)."""
    if len(items) > limits.max_messages:
        raise invalid(f"has {len(items)} items; the limit is {limits.max_messages}", base)
    out: list[Message] = []
    if instructions:
        out.append(Message(role="system", content=instructions))
    names: dict[str, str] = {}
    tally = MediaTally(limits)
    # the reasoning read since the last assistant item, waiting for its turn
    thinking: list[ThinkingPart] = []
    for i, item in enumerate(items):
        where = f"{base}[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"must be an object, got {json_type(item)}", where)
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if kind == "message":
            message = _message(item, where, tally)
            size = len(message.content or "")
            if message.role == "assistant":
                message.thinking = thinking
            # reasoning belongs to the assistant turn right after it, or to none
            thinking = []
            out.append(message)
        elif kind == "function_call":
            call = _function_call(item, where)
            names[call.id] = call.name
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                last.tool_calls.append(call)
                last.thinking.extend(thinking)
            else:
                out.append(
                    Message(role="assistant", content=None, tool_calls=[call], thinking=thinking)
                )
            thinking = []
            size = len(call.arguments) + len(call.name)
        elif kind == "reasoning":
            parts = reasoning_parts(item, where)
            thinking.extend(parts)
            size = sum(len(p.text) + len(p.signature or "") + len(p.data or "") for p in parts)
        elif kind == "function_call_output":
            message = _function_output(item, where, names)
            size = len(message.content or "")
            thinking = []
            out.append(message)
        elif kind is None:
            raise invalid("is required", f"{where}.type")
        else:
            raise unsupported(
                f"{where}.type",
                f"{kind!r} items are not supported: send message, function_call, "
                "function_call_output and reasoning items",
            )
        check_message_size(size, limits, where)
    return out


# -- reasoning items ----------------------------------------------------------------------


def encode_thinking(parts: list[ThinkingPart]) -> str:
    """The blocks as a reasoning item's ``encrypted_content``: what the provider needs
    back (text and signature, or a redacted block's data), nothing else."""
    blocks = [
        {"data": p.data} if p.redacted else {"text": p.text, "signature": p.signature}
        for p in parts
    ]
    raw = json.dumps(blocks, ensure_ascii=False, separators=(",", ":")).encode()
    return ENCRYPTED_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_thinking(value: str, param: str) -> list[ThinkingPart]:
    """``encrypted_content`` back as blocks; a 400 naming ``param`` for anything aipk
    did not write (another service's encrypted reasoning means nothing here)."""
    bad = invalid("is not reasoning content issued by aipk (send it back unchanged)", param)
    if not value.startswith(ENCRYPTED_PREFIX):
        raise bad
    encoded = value[len(ENCRYPTED_PREFIX) :]
    try:
        blocks = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(blocks, list):
        raise bad
    parts = []
    for block in blocks:
        if not isinstance(block, dict):
            raise bad
        data, text, signature = block.get("data"), block.get("text"), block.get("signature")
        if isinstance(data, str) and set(block) == {"data"}:
            parts.append(ThinkingPart(data=data))
        elif (
            isinstance(text, str)
            and (signature is None or isinstance(signature, str))
            and set(block) <= {"text", "signature"}
        ):
            parts.append(ThinkingPart(text=text, signature=signature))
        else:
            raise bad
    return parts


def reasoning_parts(item: dict[str, Any], where: str) -> list[ThinkingPart]:
    """A reasoning item's blocks: from its encrypted_content when it has one (signed,
    as the provider sent them), else its summary text (unsigned)."""
    summary = item.get("summary")
    if summary is None:
        summary = []
    if not isinstance(summary, list):
        raise invalid(f"must be an array, got {json_type(summary)}", f"{where}.summary")
    texts = []
    for k, part in enumerate(summary):
        at = f"{where}.summary[{k}]"
        if not isinstance(part, dict) or part.get("type") != "summary_text":
            raise invalid("must be a summary_text part", at)
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid(f"must be a string, got {json_type(text)}", f"{at}.text")
        texts.append(text)
    encrypted = item.get("encrypted_content")
    if encrypted is not None:
        if not isinstance(encrypted, str):
            raise invalid(
                f"must be a string, got {json_type(encrypted)}", f"{where}.encrypted_content"
            )
        return decode_thinking(encrypted, f"{where}.encrypted_content")
    return [ThinkingPart(text=text) for text in texts]


def _message(item: dict[str, Any], where: str, tally: MediaTally) -> Message:
    role = item.get("role")
    if role not in _ROLES:
        raise invalid(not_one_of(role, _ROLES), f"{where}.role")
    kit_role: Role = "system" if role in ("system", "developer") else role
    content = item.get("content")
    if isinstance(content, str):
        return Message(role=kit_role, content=content)
    if not isinstance(content, list):
        raise invalid(
            "is required"
            if content is None
            else f"must be a string or an array of content parts, got {json_type(content)}",
            f"{where}.content",
        )
    parts: list[ContentPart] = []
    for k, part in enumerate(content):
        at = f"{where}.content[{k}]"
        if not isinstance(part, dict):
            raise invalid(f"must be an object, got {json_type(part)}", at)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "refusal"):
            key = "refusal" if kind == "refusal" else "text"
            text = part.get(key)
            if not isinstance(text, str):
                raise invalid(f"must be a string, got {json_type(text)}", f"{at}.{key}")
            parts.append(TextPart(text))
        elif kind == "input_image" and role == "user":
            parts.append(_image(part, at, tally))
        elif kind == "input_file" and role == "user":
            parts.append(_file(part, at, tally))
        elif kind in ("input_image", "input_file"):
            raise invalid(f"{kind} parts are allowed in user messages only", f"{at}.type")
        else:
            raise invalid(
                "is required" if kind is None else f"{kind!r} is not a supported content part type",
                f"{at}.type",
            )
    text = "\n".join(p.text for p in parts if isinstance(p, TextPart))
    if all(isinstance(p, TextPart) for p in parts):
        return Message(role=kit_role, content=text)
    return Message(role=kit_role, content=text, parts=parts)


def _image(part: dict[str, Any], at: str, tally: MediaTally) -> ImagePart:
    detail = part.get("detail")
    if detail is not None and detail not in _DETAILS:
        raise invalid(not_one_of(detail, _DETAILS), f"{at}.detail")
    if part.get("file_id") is not None:
        raise unsupported(f"{at}.file_id", "uploaded files are not supported; send image_url")
    url = part.get("image_url")
    if isinstance(url, str) and url.startswith("data:"):
        media_type, data, size = parse_data_url(url, IMAGE_TYPES, f"{at}.image_url")
        tally.add(size, f"{at}.image_url")
        return ImagePart(data=data, media_type=media_type, detail=detail)
    return ImagePart(url=check_url(url, f"{at}.image_url"), detail=detail)


def _file(part: dict[str, Any], at: str, tally: MediaTally) -> FilePart:
    filename = part.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise invalid(f"must be a string, got {json_type(filename)}", f"{at}.filename")
    given = [k for k in ("file_data", "file_id", "file_url") if part.get(k) is not None]
    if len(given) != 1:
        raise invalid("needs exactly one of file_data, file_id and file_url", at)
    if given[0] == "file_id":
        file_id = part["file_id"]
        if not isinstance(file_id, str) or not file_id:
            raise invalid("must be a non-empty string", f"{at}.file_id")
        return FilePart(file_id=file_id, filename=filename)
    if given[0] == "file_url":
        return FilePart(url=check_url(part["file_url"], f"{at}.file_url"), filename=filename)
    file_data = part["file_data"]
    if not isinstance(file_data, str):
        raise invalid(f"must be a string, got {json_type(file_data)}", f"{at}.file_data")
    media_type, data, size = parse_data_url(file_data, DOCUMENT_TYPES, f"{at}.file_data")
    tally.add(size, f"{at}.file_data")
    return FilePart(data=data, media_type=media_type, filename=filename)


def _required_string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise invalid(
            "is required" if value is None else "must be a non-empty string", f"{where}.{key}"
        )
    return value


def _function_call(item: dict[str, Any], where: str) -> ToolCall:
    call_id, signature = split_tool_call_id(_required_string(item, "call_id", where))
    name = _required_string(item, "name", where)
    arguments = item.get("arguments")
    if arguments is None:
        arguments = "{}"
    elif isinstance(arguments, dict):
        arguments = json.dumps(arguments, ensure_ascii=False)
    elif not isinstance(arguments, str):
        raise invalid(f"must be a JSON string, got {json_type(arguments)}", f"{where}.arguments")
    return ToolCall(id=call_id, name=name, arguments=arguments, signature=signature)


def _function_output(item: dict[str, Any], where: str, names: dict[str, str]) -> Message:
    call_id, _ = split_tool_call_id(_required_string(item, "call_id", where))
    output = item.get("output")
    if isinstance(output, list):
        texts = []
        for k, part in enumerate(output):
            at = f"{where}.output[{k}]"
            if not isinstance(part, dict) or part.get("type") != "input_text":
                raise unsupported(at, "only input_text parts are supported in a tool's output")
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"must be a string, got {json_type(text)}", f"{at}.text")
            texts.append(text)
        output = "\n".join(texts)
    if not isinstance(output, str):
        raise invalid(
            "is required" if output is None else f"must be a string, got {json_type(output)}",
            f"{where}.output",
        )
    return Message(role="tool", content=output, tool_call_id=call_id, name=names.get(call_id))


# -- tools, text, reasoning, metadata ------------------------------------------------------


def _tools(value: Any, limits: InputLimits) -> tuple[list[Any], list[dict[str, Any]]]:
    """The flat Responses function tools, read by the kit's OpenAI tool reader (in its
    nested chat shape), errors named as the caller spelt them."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise invalid(f"must be an array, got {json_type(value)}", "tools")
    if len(value) > limits.max_tools:
        raise invalid(f"has {len(value)} tools; the limit is {limits.max_tools}", "tools")
    nested = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise invalid(f"must be an object, got {json_type(tool)}", f"tools[{i}]")
        kind = tool.get("type")
        if kind != "function":
            if kind is None:
                raise invalid("is required", f"tools[{i}].type")
            raise unsupported(f"tools[{i}].type", f"{kind!r} {_BUILT_IN_TOOL}")
        function = {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool
        }
        nested.append({"type": "function", "function": function})
    try:
        return tools_from_openai(nested), value
    except ToolValidationError as exc:
        raise _flat_tool_error(exc) from None


def _chat_tool_choice(value: Any) -> Any:
    """Responses' ``{"type": "function", "name": ...}`` in chat's nested shape; the
    strings are the same. Built-in tool choices are refused by name."""
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": value.get("name")}}
    if kind is None:
        raise invalid("is required", "tool_choice.type")
    raise unsupported("tool_choice.type", f"{kind!r} is not supported: 'function' only")


def _flat_tool_error(exc: ToolValidationError) -> InvalidRequest:
    error = from_tool_error(exc)
    # the kit reads chat's nested shape; the caller sent the flat one
    error.param = (error.param or "tools").replace(".function.", ".").replace(".function", "")
    error.message = error.message.replace(".function.", ".")
    return error


def _text(value: Any) -> tuple[dict[str, Any], ResponseFormat | None]:
    """``text.format`` as the kit's ResponseFormat; the object echoed back."""
    if value is None:
        return {"format": {"type": "text"}}, None
    if not isinstance(value, dict):
        raise invalid(f"must be an object, got {json_type(value)}", "text")
    for key in value:
        if key == "verbosity" and value[key] in (None, "medium"):
            continue  # the default: asks for nothing
        if key != "format":
            raise unsupported(f"text.{key}", "is not supported by aipk's /v1/responses")
    spec = value.get("format")
    if spec is None:
        return {"format": {"type": "text"}}, None
    if not isinstance(spec, dict):
        raise invalid(f"must be an object, got {json_type(spec)}", "text.format")
    kind = spec.get("type")
    if kind not in _FORMAT_TYPES:
        raise invalid(not_one_of(kind, _FORMAT_TYPES), "text.format.type")
    if kind != "json_schema":
        return {"format": {"type": kind}}, ResponseFormat(type=kind)
    name = spec.get("name")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise invalid(
            "is required" if name is None else "must be a string of 1-64 characters",
            "text.format.name",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise invalid(
            "is required" if schema is None else f"must be an object, got {json_type(schema)}",
            "text.format.schema",
        )
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise invalid(f"must be a boolean, got {json_type(strict)}", "text.format.strict")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid(f"must be a string, got {json_type(description)}", "text.format.description")
    rf = ResponseFormat(
        type="json_schema", name=name, schema=schema, strict=strict, description=description
    )
    echo = {"type": "json_schema", "name": name, "schema": schema, "strict": strict}
    if description is not None:
        echo["description"] = description
    return {"format": echo}, rf


def _include(value: Any) -> bool:
    """Whether ``include`` asks for reasoning.encrypted_content (the one value served)."""
    if value is None:
        return False
    if not isinstance(value, list):
        raise invalid(f"must be an array, got {json_type(value)}", "include")
    for entry in value:
        if entry != INCLUDE_ENCRYPTED:
            raise unsupported(
                "include", f"{entry!r} is not supported: only {INCLUDE_ENCRYPTED!r} is"
            )
    return bool(value)


def _reasoning(value: Any) -> dict[str, Any]:
    if value is None:
        return {"effort": None, "summary": None}
    if not isinstance(value, dict):
        raise invalid(f"must be an object, got {json_type(value)}", "reasoning")
    for key in value:
        if key not in ("effort", "summary", "generate_summary"):
            raise unsupported(f"reasoning.{key}", "is not supported by aipk's /v1/responses")
    effort = value.get("effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise invalid(not_one_of(effort, REASONING_EFFORTS), "reasoning.effort")
    # the reasoning item's summary is the provider's own thinking text whatever is
    # asked (Anthropic and Gemini decide its detail); the ask is checked and echoed
    for key in ("summary", "generate_summary"):  # generate_summary: the older name
        asked = value.get(key)
        if asked is not None and asked not in _SUMMARIES:
            raise invalid(not_one_of(asked, _SUMMARIES), f"reasoning.{key}")
    return {"effort": effort, "summary": value.get("summary") or value.get("generate_summary")}


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"must be an object, got {json_type(value)}", "metadata")
    if len(value) > MAX_METADATA_KEYS:
        raise invalid(f"has {len(value)} keys; the limit is {MAX_METADATA_KEYS}", "metadata")
    for key, item in value.items():
        if len(key) > 64:
            raise invalid("keys may be at most 64 characters", "metadata")
        if not isinstance(item, str) or len(item) > 512:
            raise invalid("must be a string of at most 512 characters", f"metadata.{key}")
    return dict(value)


# -- response -------------------------------------------------------------------------------


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def _usage(usage: Usage) -> dict[str, Any]:
    # the kit's Usage has OpenAI's meaning: the details are parts of the totals
    return {
        "input_tokens": usage.prompt_tokens,
        # both parts of input_tokens (the SDK's ResponseUsage requires cache_write_tokens)
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _status(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    if finish_reason == FINISH_LENGTH:
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == FINISH_CONTENT_FILTER:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [_text_part(text)],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _summary_part(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def _reasoning_item(
    item_id: str, parts: list[ThinkingPart], status: str = "completed"
) -> dict[str, Any]:
    """The reasoning item as aipk keeps it: always with its encrypted_content (a stored
    conversation must send the signed blocks back); ``public_output`` shows that only
    to a request whose ``include`` asked for it."""
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [_summary_part(p.text) for p in parts if p.text],
        "encrypted_content": encode_thinking(parts),
        "status": status,
    }


def _public_item(item: dict[str, Any], include_encrypted: bool) -> dict[str, Any]:
    if include_encrypted or item.get("type") != "reasoning":
        return item
    return {**item, "encrypted_content": None}


def public_output(output: list[dict[str, Any]], include_encrypted: bool) -> list[dict[str, Any]]:
    """The output items as the client sees them (``include`` decides encrypted_content)."""
    return [_public_item(item, include_encrypted) for item in output]


def _call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


@dataclass(frozen=True, slots=True)
class ResponseFrame:
    """What a response object says besides its output: fixed when the request starts."""

    response_id: str
    model: str
    created_at: int
    body: ResponsesBody

    def render(
        self,
        output: list[dict[str, Any]],
        *,
        status: str,
        usage: Usage | None,
        incomplete: dict[str, str] | None = None,
        error: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The response object with ``output`` as given (the kept form: the caller
        applies ``public_output`` for what the client sees)."""
        body = self.body
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": body.instructions,
            "metadata": body.metadata,
            "model": self.model,
            "output": output,
            "previous_response_id": body.previous_response_id,
            "store": body.store,
            "truncation": "disabled",
            "usage": _usage(usage) if usage is not None else None,
            **body.echo,
        }


def render_response(frame: ResponseFrame, response: ChatResponse) -> dict[str, Any]:
    """The ``response`` object of a finished reply, in its kept form (``public``
    gives the client's): a reasoning item when the reply has thinking, a message
    item with the text (when there is any), then one function_call item per tool
    call."""
    output: list[dict[str, Any]] = []
    if response.thinking:
        output.append(_reasoning_item(new_item_id("rs"), response.thinking))
    if response.text or not response.tool_calls:
        output.append(_message_item(new_item_id("msg"), response.text))
    for call in response.tool_calls:
        output.append(
            _call_item(
                new_item_id("fc"),
                public_tool_call_id(call.id, call.signature),
                call.name,
                call.arguments or "{}",
                "completed",
            )
        )
    status, incomplete = _status(response.finish_reason)
    return frame.render(output, status=status, usage=response.usage, incomplete=incomplete)


def public(frame: ResponseFrame, response: dict[str, Any]) -> dict[str, Any]:
    """A kept response object as the client sees it."""
    return {**response, "output": public_output(response["output"], frame.body.include_encrypted)}


# -- streaming -----------------------------------------------------------------------------


@dataclass(slots=True)
class _OpenCall:
    output_index: int
    item: dict[str, Any]
    arguments: list[str]


@dataclass(slots=True)
class _OpenReasoning:
    output_index: int
    item: dict[str, Any]
    # per thinking block (ThinkingDelta.index): [text pieces, signature, data]
    blocks: dict[int, list[Any]] = field(default_factory=dict)
    # the block whose summary part is open, and that part's summary_index
    open_block: int | None = None
    summary_index: int = -1

    def parts(self) -> list[ThinkingPart]:
        return [
            ThinkingPart(text="".join(b[0]), signature=b[1], data=b[2])
            for _, b in sorted(self.blocks.items())
        ]


class ResponsesStreamEncoder:
    """Renders kit chunks as the Responses API's typed server-sent events.

    The grammar of api.openai.com, which the SDK's ``ResponseStreamState`` checks:
    ``response.created`` and ``response.in_progress`` (the response so far, no
    output), then per output item ``response.output_item.added``; for reasoning
    ``response.reasoning_summary_part.added`` and
    ``response.reasoning_summary_text.delta`` per thinking block with text, each
    part closed (``response.reasoning_summary_text.done``,
    ``response.reasoning_summary_part.done``) when the next begins, and the item
    closed (``response.output_item.done``, now with its encrypted_content) as soon as
    the answer begins, as OpenAI streams it; for the message
    ``response.content_part.added`` and ``response.output_text.delta`` per text chunk;
    for a function call ``response.function_call_arguments.delta`` per fragment; at
    the end every open item is closed (``response.output_text.done``,
    ``response.content_part.done``, ``response.function_call_arguments.done``,
    ``response.output_item.done``) in output order, then ``response.completed`` (or
    ``response.incomplete``) with the whole response and its usage. An error ends the
    stream with ``response.failed`` and nothing after it. Every event carries its
    ``sequence_number``.

    ``on_complete`` gets the final response object in its kept form (the gateway
    stores it; reasoning items keep their encrypted_content whatever ``include``
    said); it is not called for a failed stream.
    """

    def __init__(
        self,
        frame: ResponseFrame,
        on_complete: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.frame = frame
        self.on_complete = on_complete
        self._sequence = 0
        self._started = False
        self._closed = False
        self._outputs: list[dict[str, Any]] = []
        self._message: dict[str, Any] | None = None
        self._message_index = -1
        self._text: list[str] = []
        self._calls: dict[int, _OpenCall] = {}
        self._reasoning: _OpenReasoning | None = None
        self._include = frame.body.include_encrypted
        self._finish: str | None = None
        self._usage: Usage | None = None

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **payload}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        snapshot = self.frame.render([], status="in_progress", usage=None)
        return self._event("response.created", {"response": snapshot}) + self._event(
            "response.in_progress", {"response": snapshot}
        )

    def _open_message(self) -> bytes:
        self._message = _message_item(new_item_id("msg"), "", status="in_progress")
        self._message["content"] = []
        self._message_index = len(self._outputs)
        self._outputs.append(self._message)
        item_id = self._message["id"]
        return self._event(
            "response.output_item.added",
            {"output_index": self._message_index, "item": self._message},
        ) + self._event(
            "response.content_part.added",
            {
                "item_id": item_id,
                "output_index": self._message_index,
                "content_index": 0,
                "part": _text_part(""),
            },
        )

    def chunk(self, c: ChatChunk) -> bytes:
        if self._closed:
            return b""
        out = [self._start()]
        if c.thinking is not None:
            out.append(self._thinking(c.thinking))
        if (c.text or c.tool_calls) and self._reasoning is not None:
            out.append(self._close_reasoning())
        if c.text:
            if self._message is None:
                out.append(self._open_message())
            assert self._message is not None
            self._text.append(c.text)
            out.append(
                self._event(
                    "response.output_text.delta",
                    {
                        "item_id": self._message["id"],
                        "output_index": self._message_index,
                        "content_index": 0,
                        "delta": c.text,
                        "logprobs": [],
                    },
                )
            )
        for delta in c.tool_calls:
            out.append(self._call_delta(delta))
        if c.finish_reason and self._finish is None:
            self._finish = c.finish_reason
        if c.usage is not None:
            self._usage = c.usage
        return b"".join(out)

    def _thinking(self, d: ThinkingDelta) -> bytes:
        out = []
        open_ = self._reasoning
        if open_ is None:
            item = _reasoning_item(new_item_id("rs"), [], status="in_progress")
            item["encrypted_content"] = None  # known once the blocks are whole
            open_ = self._reasoning = _OpenReasoning(len(self._outputs), item)
            self._outputs.append(item)
            out.append(
                self._event(
                    "response.output_item.added",
                    {"output_index": open_.output_index, "item": dict(item)},
                )
            )
        block = open_.blocks.setdefault(d.index, [[], None, None])
        if d.signature:
            block[1] = d.signature
        if d.data is not None:
            block[2] = d.data
        if not d.text:
            return b"".join(out)
        where = {"item_id": open_.item["id"], "output_index": open_.output_index}
        if open_.open_block != d.index:
            out.append(self._close_summary_part(open_))
            open_.open_block = d.index
            open_.summary_index += 1
            out.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    {**where, "summary_index": open_.summary_index, "part": _summary_part("")},
                )
            )
        block[0].append(d.text)
        out.append(
            self._event(
                "response.reasoning_summary_text.delta",
                {**where, "summary_index": open_.summary_index, "delta": d.text},
            )
        )
        return b"".join(out)

    def _close_summary_part(self, open_: _OpenReasoning) -> bytes:
        if open_.open_block is None:
            return b""
        text = "".join(open_.blocks[open_.open_block][0])
        where = {
            "item_id": open_.item["id"],
            "output_index": open_.output_index,
            "summary_index": open_.summary_index,
        }
        open_.open_block = None
        return self._event(
            "response.reasoning_summary_text.done", {**where, "text": text}
        ) + self._event(
            "response.reasoning_summary_part.done", {**where, "part": _summary_part(text)}
        )

    def _close_reasoning(self) -> bytes:
        open_ = self._reasoning
        if open_ is None:
            return b""
        self._reasoning = None
        out = self._close_summary_part(open_)
        # the kept item, filled in place (self._outputs holds it)
        open_.item.update(_reasoning_item(open_.item["id"], open_.parts()))
        return out + self._event(
            "response.output_item.done",
            {
                "output_index": open_.output_index,
                "item": _public_item(open_.item, self._include),
            },
        )

    def _call_delta(self, d: ToolCallDelta) -> bytes:
        out = []
        call = self._calls.get(d.index)
        if call is None:
            item = _call_item(
                new_item_id("fc"),
                public_tool_call_id(d.id or f"call_{d.index}", d.signature),
                d.name or "",
                "",
                "in_progress",
            )
            call = self._calls[d.index] = _OpenCall(len(self._outputs), item, [])
            self._outputs.append(item)
            out.append(
                self._event(
                    "response.output_item.added",
                    {"output_index": call.output_index, "item": dict(item)},
                )
            )
        elif d.name and not call.item["name"]:
            call.item["name"] = d.name
        if d.arguments:
            call.arguments.append(d.arguments)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    {
                        "item_id": call.item["id"],
                        "output_index": call.output_index,
                        "delta": d.arguments,
                    },
                )
            )
        return b"".join(out)

    def _close_items(self) -> list[bytes]:
        out = []
        calls = {call.output_index: call for call in self._calls.values()}
        for index, item in enumerate(self._outputs):
            if item["type"] == "reasoning":
                continue  # closed when the answer began (_close_reasoning)
            if item is self._message:
                text = "".join(self._text)
                item_id = item["id"]
                where = {"item_id": item_id, "output_index": index, "content_index": 0}
                out.append(
                    self._event(
                        "response.output_text.done", {**where, "text": text, "logprobs": []}
                    )
                )
                out.append(
                    self._event("response.content_part.done", {**where, "part": _text_part(text)})
                )
                item["content"] = [_text_part(text)]
            else:
                call = calls[index]
                arguments = "".join(call.arguments) or "{}"
                item["arguments"] = arguments
                out.append(
                    self._event(
                        "response.function_call_arguments.done",
                        {
                            "item_id": item["id"],
                            "output_index": index,
                            "name": item["name"],
                            "arguments": arguments,
                        },
                    )
                )
            item["status"] = "completed"
            out.append(
                self._event("response.output_item.done", {"output_index": index, "item": item})
            )
        return out

    def finish(self, usage: Usage | None = None) -> bytes:
        if self._closed:
            return b""
        out = [self._start(), self._close_reasoning()]
        if self._message is None and not self._calls:
            out.append(self._open_message())  # an empty reply is an empty message
        out.extend(self._close_items())
        status, incomplete = _status(self._finish)
        final = self.frame.render(
            self._outputs,
            status=status,
            usage=usage or self._usage or Usage(),
            incomplete=incomplete,
        )
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": public(self.frame, final)}))
        self._closed = True
        if self.on_complete is not None:
            self.on_complete(final)
        return b"".join(out)

    def error(self, err: AipkError) -> bytes:
        """``response.failed`` with the error; nothing follows it."""
        if self._closed:
            return b""
        out = [self._start()]
        self._closed = True
        error = {"code": err.code, "message": err.message}
        failed = self.frame.render(
            public_output(self._outputs, self._include),
            status="failed",
            usage=self._usage,
            error=error,
        )
        out.append(self._event("response.failed", {"response": failed}))
        return b"".join(out)
