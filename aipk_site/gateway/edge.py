"""The gateway API at /v1/: OpenAI's chat completions, Anthropic's messages and a model list.

Thin transports over the request path (dispatch.py): authenticate the virtual key, parse
the body with the client's wire format, call the gateway, render its reply
in the same format. Errors use each format's own error shape (OpenAI's
``{"error": {type, code, message, param}}``, Anthropic's
``{"type": "error", "error": {...}}``) so the official SDKs raise the
matching exception classes.

It is a NinjaAPI of its own (not a router on the management API) because
its auth, error shapes and docs differ; its OpenAPI schema is at
/v1/openapi.json and its docs at /v1/docs.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from redis.exceptions import RedisError

from aipk_site.gateway.dispatch import StreamReply, gateway_reply, gateway_stream
from aipk_site.gateway.error_mapping import infrastructure_unavailable
from aipk_site.gateway.formats.anthropic_format import (
    AnthropicStreamEncoder,
    anthropic_error_body,
    parse_messages,
    render_message,
)
from aipk_site.gateway.formats.common import (
    InputLimits,
    ParsedRequest,
    StreamEncoder,
    load_json,
)
from aipk_site.gateway.formats.openai_format import (
    OpenAIStreamEncoder,
    openai_error_body,
    parse_chat_completion,
    render_chat_completion,
)
from aipk_site.gateway.key_auth import KeyContext, authenticate_virtual_key
from aipk_site.gateway.ledger import GatewayCall, log_infrastructure_fault
from aipk_site.gateway.routing import models_for
from aipk_site.gateway.usage import usage_record
from aipk_site.infra.errors import (
    AipkError,
    NotFound,
    PayloadTooLarge,
    UpstreamError,
)
from aipk_site.infra.ninja_fallbacks import JSONFallbackAPI
from providers_app.kit.types import ChatResponse
from tenants_app.models import UsageStatus

logger = logging.getLogger(__name__)


class GatewayAPI(JSONFallbackAPI):
    """The gateway's NinjaAPI: unknown paths, wrong methods and unexpected errors are
    JSON in the caller's format, never Django's HTML pages."""

    def fallback_error(
        self, request: HttpRequest, status: int, code: str, message: str
    ) -> HttpResponse:
        error = AipkError(message, code=code)
        error.status = status
        if status == 404:
            error.type = NotFound.type
        return _error_response(error, _error_renderer(request))


def _error_renderer(request: HttpRequest) -> Callable[[AipkError], dict[str, Any]]:
    """Anthropic's error shape for Anthropic clients and paths, OpenAI's otherwise."""
    anthropic = "anthropic-version" in request.headers or request.path_info.startswith(
        "/v1/messages"
    )
    return anthropic_error_body if anthropic else openai_error_body


gateway_api = GatewayAPI(
    title="aipk gateway",
    version="1",
    description="OpenAI- and Anthropic-compatible endpoints. Authenticate with a virtual key: "
    "`Authorization: Bearer aipk-…` or `x-api-key: aipk-…`.",
    urls_namespace="gateway",
)

_JSON = "application/json"


@gateway_api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    """A bug answers with a JSON 500 in the caller's format, logged with its traceback."""
    logger.error("gateway: unexpected %s", type(exc).__name__, exc_info=exc)
    if isinstance(exc, _INFRASTRUCTURE_ERRORS):
        return _error_response(_unavailable(exc), _error_renderer(request))
    error = UpstreamError(
        f"internal error in aipk ({type(exc).__name__})", status=500, code="internal_error"
    )
    return _error_response(error, _error_renderer(request))


# Documentation of the bodies for /v1/docs and schema-driven tests. The views parse
# bodies themselves (formats/), so every error names the field in the client's terms.
_MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array"}, {"type": "null"}]},
        "tool_calls": {"type": "array"},
        "tool_call_id": {"type": "string"},
    },
}
_ANTHROPIC_MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["user", "assistant"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array"}]},
    },
}
_CHAT_BODY = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "description": "an alias or '<provider>/<model id>'",
        },
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE_SCHEMA},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number"},
        "top_p": {"type": "number"},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array"}]},
        "tools": {"type": "array"},
        "tool_choice": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        "aipk": {"type": "object", "properties": {"cache": {"type": "boolean"}}},
    },
}
_MESSAGES_BODY = {
    "type": "object",
    "required": ["model", "messages", "max_tokens"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "system": {"anyOf": [{"type": "string"}, {"type": "array"}]},
        "messages": {"type": "array", "minItems": 1, "items": _ANTHROPIC_MESSAGE_SCHEMA},
        "stream": {"type": "boolean"},
        "tools": {"type": "array"},
        "tool_choice": {"type": "object"},
        "stop_sequences": {"type": "array"},
        "temperature": {"type": "number"},
    },
}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {_JSON: {"schema": schema}}}}


def _limits() -> InputLimits:
    return InputLimits(
        max_messages=settings.GATEWAY_MAX_MESSAGES,
        max_message_chars=settings.GATEWAY_MAX_MESSAGE_CHARS,
        max_tools=settings.GATEWAY_MAX_TOOLS,
    )


def _json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, Any] | None = None
) -> HttpResponse:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return HttpResponse(data, status=status, content_type=_JSON, headers=headers)


def _error_response(
    error: AipkError, render: Callable[[AipkError], dict[str, Any]]
) -> HttpResponse:
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers.setdefault("retry-after", str(max(1, round(error.retry_after))))
    return _json_response(render(error), error.status, headers)


# The gateway cannot check limits or budgets without its cache and database; when one is
# down, callers get a 503 they can retry rather than an HTML 500.
_INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, RedisError, OSError)


def _unavailable(error: BaseException) -> AipkError:
    logger.error("gateway: %s while serving a request", type(error).__name__, exc_info=error)
    return infrastructure_unavailable()


def _secret_from(request: HttpRequest) -> str | None:
    auth: str = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key: str | None = request.headers.get("x-api-key")
    return key


def _read_json(request: HttpRequest) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.GATEWAY_MAX_BODY_BYTES:
        raise _too_large()
    try:
        raw = request.body
    except RequestDataTooBig:
        raise _too_large() from None
    if len(raw) > settings.GATEWAY_MAX_BODY_BYTES:
        raise _too_large()
    # strict UTF-8, bounded nesting, no lone surrogates: InvalidRequest otherwise
    return load_json(raw)


def _too_large() -> PayloadTooLarge:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    return PayloadTooLarge(f"the request body is larger than {limit} bytes", param="body")


async def _prepare(
    request: HttpRequest, parse: Callable[..., ParsedRequest], endpoint: str, id_prefix: str
) -> tuple[KeyContext, GatewayCall]:
    ctx = await authenticate_virtual_key(_secret_from(request))
    request_id = f"{id_prefix}{uuid.uuid4().hex}"
    body: Any = None
    try:
        body = _read_json(request)
        parsed = parse(body, _limits())
    except AipkError as error:
        # A key's refused requests are its usage too (docs/GATEWAY.md, "Usage records").
        _record_refused_body(ctx, endpoint, request_id, body, error)
        raise
    return ctx, GatewayCall(ctx, parsed, endpoint, request_id)


def _stored_text(value: Any, limit: int) -> str:
    """Client text as a usage record may hold it: NUL escaped (PostgreSQL refuses NUL in
    text, and the whole row would be lost), cut to the column's length."""
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", "\\u0000")[:limit]


def _record_refused_body(
    ctx: KeyContext, endpoint: str, request_id: str, body: Any, error: AipkError
) -> None:
    fields = body if isinstance(body, dict) else {}
    usage_record(
        request_id=request_id,
        tenant_id=ctx.tenant_id,
        virtual_key_id=ctx.key_id,
        model=_stored_text(fields.get("model"), 200),
        endpoint=endpoint,
        status=UsageStatus.REFUSED,
        error_type=error.code[:64],
        streamed=fields.get("stream") is True,
    )


async def _stream_events(
    call: GatewayCall,
    streamed: StreamReply,
    encoder: StreamEncoder,
) -> AsyncIterator[bytes]:
    """The stream in the client's format. Whatever fails once the response has started
    ends it with an error event in that format, never a stream left open: the gateway
    turns provider and infrastructure faults into GatewayErrors, and anything else that
    still escapes is logged and reported the same way."""
    try:
        async for chunk in streamed.chunks:
            data = encoder.chunk(chunk)
            if data:
                yield data
    except AipkError as error:
        yield encoder.error(error)
        return
    except Exception as error:  # noqa: BLE001 -- the client must hear the stream end
        log_infrastructure_fault(call, "rendering", error)
        yield encoder.error(infrastructure_unavailable())
        return
    yield encoder.finish(streamed.usage())


def _stream_response(body: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
    response["cache-control"] = "no-cache"
    response["x-accel-buffering"] = "no"  # tell proxies not to hold the stream back
    for name, value in headers.items():
        response[name] = value
    return response


@dataclass(frozen=True, slots=True)
class _Wire:
    """One client wire format as the edge serves it: the two operations differ only in
    these, so the reply-or-stream branch is written once (``_serve``)."""

    endpoint: str
    id_prefix: str
    parse: Callable[[Any, InputLimits], ParsedRequest]
    error_body: Callable[[AipkError], dict[str, Any]]
    # (response, model, request id, created) -> the reply body
    render: Callable[[ChatResponse, str, str, int], dict[str, Any]]
    # (call, model, created, the opened stream) -> the stream's encoder
    encoder: Callable[[GatewayCall, str, int, StreamReply], StreamEncoder]


_OPENAI = _Wire(
    endpoint="chat.completions",
    id_prefix="chatcmpl-",
    parse=parse_chat_completion,
    error_body=openai_error_body,
    render=lambda response, model, request_id, created: render_chat_completion(
        response, model=model, request_id=request_id, created=created
    ),
    encoder=lambda call, model, created, _: OpenAIStreamEncoder(
        model, call.request_id, created, call.parsed.include_usage
    ),
)

_ANTHROPIC = _Wire(
    endpoint="messages",
    id_prefix="msg_",
    parse=parse_messages,
    error_body=anthropic_error_body,
    render=lambda response, model, request_id, _: render_message(
        response, model=model, request_id=request_id
    ),
    encoder=lambda call, model, _, streamed: AnthropicStreamEncoder(
        model, call.request_id, streamed.prompt_tokens_estimate
    ),
)


async def _serve(request: HttpRequest, wire: _Wire) -> HttpResponseBase:
    try:
        _, call = await _prepare(request, wire.parse, wire.endpoint, wire.id_prefix)
        model, created = call.parsed.request.model, int(time.time())
        if not call.parsed.stream:
            reply = await gateway_reply(call)
            body = wire.render(reply.response, model, call.request_id, created)
            return _json_response(body, headers=reply.headers)
        streamed = await gateway_stream(call)
    except AipkError as error:
        return _error_response(error, wire.error_body)
    except _INFRASTRUCTURE_ERRORS as error:
        return _error_response(_unavailable(error), wire.error_body)
    encoder = wire.encoder(call, model, created, streamed)
    return _stream_response(_stream_events(call, streamed, encoder), streamed.headers)


@gateway_api.post(
    "/chat/completions",
    summary="Create a chat completion (OpenAI format)",
    openapi_extra=_body_doc(_CHAT_BODY),
)
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await _serve(request, _OPENAI)


@gateway_api.post(
    "/messages",
    summary="Create a message (Anthropic format)",
    openapi_extra=_body_doc(_MESSAGES_BODY),
)
async def messages(request: HttpRequest) -> HttpResponseBase:
    return await _serve(request, _ANTHROPIC)


@gateway_api.get("/models", summary="Models this key may call (OpenAI or Anthropic list format)")
async def models(request: HttpRequest) -> HttpResponse:
    anthropic = "anthropic-version" in request.headers
    render_error = anthropic_error_body if anthropic else openai_error_body
    try:
        ctx = await authenticate_virtual_key(_secret_from(request))
        entries = await models_for(
            tenant_id=ctx.tenant_id,
            allowed_models=ctx.allowed_models,
            allowed_provider_ids=ctx.allowed_provider_ids,
        )
    except AipkError as error:
        return _error_response(error, render_error)
    except _INFRASTRUCTURE_ERRORS as error:
        return _error_response(_unavailable(error), render_error)
    if anthropic:
        data = [
            {
                "type": "model",
                "id": e["id"],
                "display_name": e["id"],
                "created_at": "1970-01-01T00:00:00Z",
            }
            for e in entries
        ]
        return _json_response(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    data = [
        {"id": e["id"], "object": "model", "created": 0, "owned_by": e["owned_by"]} for e in entries
    ]
    return _json_response({"object": "list", "data": data})
