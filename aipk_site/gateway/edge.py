"""The gateway's HTTP edge at /v1/: a lean ASGI application, not Django's request handler.

Django's per-request handler (request object, URL resolver, middleware chain, signals,
response object) costs about a millisecond of CPU and caps a process near 930 requests
a second on the machines we measure on (docs/BENCHMARKS.md "Data plane"); a raw ASGI
proxy reaches several thousand. So the operations apps call -- ``POST
/v1/chat/completions``, ``POST /v1/messages``, ``GET /v1/models``, ``GET
/v1/models/{id}``, ``POST /v1/messages/count_tokens``, ``POST /v1/embeddings`` and
``POST /v1/responses`` (with ``GET`` / ``DELETE /v1/responses/{id}``) -- are served
here straight from the ASGI scope: a dict lookup finds the operation
(``operation_for``), the body is read with its size limit, the request path
(dispatch.py) runs, and the answer is written as ASGI messages. Everything else under
/v1/ (the OpenAPI description, the docs page, unknown paths, wrong methods) is passed
to Django (``fallback``, aipk_site/gateway/handler.py), where rarely-hit pages belong:
its NinjaAPI (openapi.py) answers an unknown path with a JSON 404 and a wrong method with a JSON
405 and an ``Allow`` header, in the caller's format.

What Django's middleware gave a /v1/ answer is done here, cheaply and on purpose:
the Host header is checked against ALLOWED_HOSTS, plain http is redirected when
SECURE_SSL_REDIRECT says so, the security headers (nosniff, Referrer-Policy,
Cross-Origin-Opener-Policy, X-Frame-Options, HSTS over https) are added, and every
answer carries an ``x-request-id`` (the caller's when sane, as RequestIdMiddleware
does). A client that goes away cancels its request as Django's handler does: the
upstream call is cancelled and the usage so far is still recorded.

Errors use each format's own error shape (OpenAI's ``{"error": {type, code, message,
param}}``, Anthropic's ``{"type": "error", "error": {...}}``) so the official SDKs raise
the matching exception classes. The operations are also published as a NinjaAPI
(aipk_site/gateway/openapi.py) for /v1/openapi.json and /v1/docs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.http.request import split_domain_port, validate_host
from redis.exceptions import RedisError

from aipk_site.gateway import embeddings as embeddings_op
from aipk_site.gateway import overload
from aipk_site.gateway import responses as responses_op
from aipk_site.gateway.count_tokens import count_message_tokens
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
from aipk_site.gateway.key_auth import KeyContext, authenticate_virtual_key, cached_key_context
from aipk_site.gateway.ledger import GatewayCall, log_infrastructure_fault
from aipk_site.gateway.routing import MAX_MODEL_NAME_CHARS, models_for
from aipk_site.gateway.usage import usage_record
from aipk_site.infra import tracing
from aipk_site.infra.errors import (
    AipkError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    UpstreamError,
)
from aipk_site.infra.log_context import bind_request_id
from aipk_site.middleware import random_hex, request_id_from
from providers_app.kit.providers import ADAPTERS
from providers_app.kit.types import ChatResponse
from providers_app.models import DiscoveredModel, Provider
from tenants_app.models import UsageStatus

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"


@dataclass(slots=True)
class EdgeRequest:
    """What an operation needs of an HTTP request, whichever server or handler carried it."""

    path: str
    # lower-case names; a repeated header's values joined with ", "
    headers: dict[str, str]
    # the body, at most ``limit`` bytes (PayloadTooLarge past it); read only when needed,
    # so a request refused before (no key) never waits for its body
    read_body: Callable[[int], Awaitable[bytes]]


@dataclass(slots=True)
class EdgeResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    # a Server-Sent Events body instead of ``body``
    stream: AsyncGenerator[bytes, None] | None = None
    # the same stream, which the ASGI edge writes without ``stream``'s generator (_Events)
    events: _Events | None = None


# -- errors ---------------------------------------------------------------------------------

ErrorRenderer = Callable[[AipkError], dict[str, Any]]

# The gateway cannot check limits or budgets without its cache and database; when one is
# down, callers get a 503 they can retry rather than a 500.
_INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, RedisError, OSError)


def error_renderer(request: EdgeRequest) -> ErrorRenderer:
    """Anthropic's error shape for Anthropic clients and paths, OpenAI's otherwise."""
    anthropic = "anthropic-version" in request.headers or request.path.startswith("/v1/messages")
    return anthropic_error_body if anthropic else openai_error_body


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> EdgeResponse:
    return EdgeResponse(status, headers or {}, orjson.dumps(body))


def error_response(error: AipkError, render: ErrorRenderer) -> EdgeResponse:
    if tracing.enabled:
        tracing.request_error(error.code)
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers.setdefault("retry-after", str(max(1, round(error.retry_after))))
    return json_response(render(error), error.status, headers)


def _unavailable(error: BaseException) -> AipkError:
    logger.error("gateway: %s while serving a request", type(error).__name__, exc_info=error)
    return infrastructure_unavailable()


def unexpected_response(request: EdgeRequest, exc: Exception) -> EdgeResponse:
    """A bug answers with a JSON 500 in the caller's format, logged with its traceback."""
    if isinstance(exc, _INFRASTRUCTURE_ERRORS):
        return error_response(_unavailable(exc), error_renderer(request))
    logger.error("gateway: unexpected %s", type(exc).__name__, exc_info=exc)
    error = UpstreamError(
        f"internal error in aipk ({type(exc).__name__})", status=500, code="internal_error"
    )
    return error_response(error, error_renderer(request))


# -- the operations -------------------------------------------------------------------------


def _limits() -> InputLimits:
    return InputLimits(
        max_messages=settings.GATEWAY_MAX_MESSAGES,
        max_message_chars=settings.GATEWAY_MAX_MESSAGE_CHARS,
        max_tools=settings.GATEWAY_MAX_TOOLS,
        max_media_part_bytes=settings.GATEWAY_MAX_MEDIA_PART_BYTES,
        max_media_request_bytes=settings.GATEWAY_MAX_MEDIA_REQUEST_BYTES,
    )


def _secret_from(request: EdgeRequest) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def too_large() -> PayloadTooLarge:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    return PayloadTooLarge(f"the request body is larger than {limit} bytes", param="body")


async def _read_json(request: EdgeRequest) -> Any:
    raw = await request.read_body(settings.GATEWAY_MAX_BODY_BYTES)
    # strict UTF-8, bounded nesting, no lone surrogates: InvalidRequest otherwise
    return load_json(raw)


async def _prepare(request: EdgeRequest, wire: _Wire) -> GatewayCall:
    ctx = await authenticate_virtual_key(_secret_from(request))
    request_id = f"{wire.id_prefix}{random_hex()}"
    body: Any = None
    try:
        body = await _read_json(request)
        parsed = wire.parse(body, _limits(), drop_unknown=ctx.drop_unsupported)
    except AipkError as error:
        # A key's refused requests are its usage too (docs/GATEWAY.md, "Usage records").
        # The answer names the row (the request log's id) unless the caller sent an id of
        # its own to trace the request by: that one still follows it.
        _record_refused_body(ctx, wire.endpoint, request_id, body, error)
        if "x-request-id" not in request.headers:
            error.headers.setdefault("x-request-id", request_id)
        raise
    headers = request.headers if ctx.capture_bodies else None
    return GatewayCall(ctx, parsed, wire.endpoint, request_id, headers)


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
) -> AsyncGenerator[bytes, None]:
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
        if tracing.enabled:
            tracing.request_error(error.code)
        yield encoder.error(error)
        return
    except Exception as error:  # noqa: BLE001 -- the client must hear the stream end
        log_infrastructure_fault(call, "rendering", error)
        unavailable = infrastructure_unavailable()
        if tracing.enabled:
            tracing.request_error(unavailable.code)
        yield encoder.error(unavailable)
        return
    yield encoder.finish(streamed.usage())


@dataclass(frozen=True, slots=True)
class _Events:
    """A chat stream and its encoder, written to the ASGI connection by ``send_to``: what
    ``_stream_events`` yields, each chunk sent as it is encoded, without a generator
    between the relay and the socket (one fewer frame to resume per chunk). The
    generator stays for callers that need an iterable (the NinjaAPI view)."""

    call: GatewayCall
    streamed: StreamReply
    encoder: StreamEncoder

    async def send_to(self, send: Send) -> None:
        call, streamed, encoder = self.call, self.streamed, self.encoder
        chunks = streamed.chunks
        try:
            while True:
                # Only what the stream and its encoding raise becomes an error event, as
                # in ``_stream_events``; a failed ``send`` (the client went away) is not.
                try:
                    data = encoder.chunk(await chunks.__anext__())
                except StopAsyncIteration:
                    data = encoder.finish(streamed.usage())
                    break
                except AipkError as error:
                    if tracing.enabled:
                        tracing.request_error(error.code)
                    data = encoder.error(error)
                    break
                except Exception as error:  # noqa: BLE001 -- the client must hear the stream end
                    log_infrastructure_fault(call, "rendering", error)
                    unavailable = infrastructure_unavailable()
                    if tracing.enabled:
                        tracing.request_error(unavailable.code)
                    data = encoder.error(unavailable)
                    break
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": data, "more_body": True})
        finally:
            # a stream left early (the client went away) is closed now: the relay's
            # ``finally`` records the usage so far
            try:
                await chunks.aclose()
            except Exception as error:  # noqa: BLE001 -- must not hide why the stream ended
                log_infrastructure_fault(call, "closing the stream of", error)


class _Parse(Protocol):
    def __call__(self, body: Any, limits: InputLimits, *, drop_unknown: bool) -> ParsedRequest: ...


@dataclass(frozen=True, slots=True)
class _Wire:
    """One client wire format as the edge serves it: the two operations differ only in
    these, so the reply-or-stream branch is written once (``_serve``)."""

    endpoint: str
    id_prefix: str
    parse: _Parse
    error_body: ErrorRenderer
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


async def _serve(request: EdgeRequest, wire: _Wire) -> EdgeResponse:
    try:
        call = await _prepare(request, wire)
        model, created = call.parsed.request.model, int(time.time())
        if not call.parsed.stream:
            reply = await gateway_reply(call)
            body = wire.render(reply.response, model, call.request_id, created)
            return json_response(body, headers=reply.headers)
        streamed = await gateway_stream(call)
    except AipkError as error:
        return error_response(error, wire.error_body)
    except _INFRASTRUCTURE_ERRORS as error:
        return error_response(_unavailable(error), wire.error_body)
    return _stream_response(call, streamed, wire.encoder(call, model, created, streamed))


def _stream_response(
    call: GatewayCall, streamed: StreamReply, encoder: StreamEncoder
) -> EdgeResponse:
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no", **streamed.headers}
    return EdgeResponse(
        200,
        headers,
        stream=_stream_events(call, streamed, encoder),
        events=_Events(call, streamed, encoder),
    )


async def chat_completions(request: EdgeRequest) -> EdgeResponse:
    return await _serve(request, _OPENAI)


async def messages(request: EdgeRequest) -> EdgeResponse:
    return await _serve(request, _ANTHROPIC)


def _wants_anthropic(request: EdgeRequest) -> bool:
    return "anthropic-version" in request.headers


async def _visible_models(ctx: KeyContext) -> list[dict[str, Any]]:
    return await models_for(
        tenant_id=ctx.tenant_id,
        allowed_models=ctx.allowed_models,
        allowed_provider_ids=ctx.allowed_provider_ids,
    )


@dataclass(frozen=True, slots=True)
class _ModelFacts:
    """What the model catalogue knows of a "<provider>/<model>" id (Anthropic's model
    object carries it): discovery's row, else the provider type's static catalogue."""

    display_name: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None


async def _catalogue_facts(model_ids: list[str]) -> dict[str, _ModelFacts]:
    """The facts for ``model_ids`` that are provider ids (aliases have none: each of
    their candidates may differ). Two queries, on the Anthropic-format listings only."""
    wanted = {model_id for model_id in model_ids if "/" in model_id}
    names = {model_id.partition("/")[0] for model_id in wanted}
    if not names:
        return {}
    facts: dict[str, _ModelFacts] = {}
    providers = Provider.objects.filter(name__in=names).values_list("name", "type")
    async for name, provider_type in providers:
        adapter = ADAPTERS.get(provider_type)
        for info in adapter.static_models if adapter is not None else ():
            model_id = f"{name}/{info.id}"
            if model_id in wanted:
                facts[model_id] = _ModelFacts(
                    info.name or None, info.context_window, info.max_output_tokens
                )
    discovered = DiscoveredModel.objects.filter(provider__name__in=names).values_list(
        "provider__name", "model_id", "name", "context_window", "max_output_tokens"
    )
    async for name, model, display_name, context_window, max_output in discovered:
        model_id = f"{name}/{model}"
        if model_id in wanted:
            static = facts.get(model_id, _ModelFacts())
            facts[model_id] = _ModelFacts(
                display_name or static.display_name,
                context_window or static.context_window,
                max_output or static.max_output_tokens,
            )
    return facts


# Anthropic's model objects carry a release date, which aipk does not know; Anthropic's
# own API documents the epoch for "unknown".
_UNKNOWN_RELEASE = "1970-01-01T00:00:00Z"


def _anthropic_model(entry: dict[str, Any], facts: _ModelFacts | None) -> dict[str, Any]:
    """Anthropic's ``ModelInfo``: the anthropic SDK requires ``lifecycle`` since 2.x; a
    model a key can list is one it can call, so "active"."""
    facts = facts or _ModelFacts()
    model: dict[str, Any] = {
        "type": "model",
        "id": entry["id"],
        "display_name": facts.display_name or entry["id"],
        "created_at": _UNKNOWN_RELEASE,
        "lifecycle": "active",
    }
    if facts.context_window:
        model["max_input_tokens"] = facts.context_window
    if facts.max_output_tokens:
        model["max_tokens"] = facts.max_output_tokens
    return model


def _openai_model(entry: dict[str, Any]) -> dict[str, Any]:
    return {"id": entry["id"], "object": "model", "created": 0, "owned_by": entry["owned_by"]}


async def models(request: EdgeRequest) -> EdgeResponse:
    anthropic = _wants_anthropic(request)
    render_error = anthropic_error_body if anthropic else openai_error_body
    try:
        ctx = await authenticate_virtual_key(_secret_from(request))
        entries = await _visible_models(ctx)
        if anthropic:
            facts = await _catalogue_facts([e["id"] for e in entries])
    except AipkError as error:
        return error_response(error, render_error)
    except _INFRASTRUCTURE_ERRORS as error:
        return error_response(_unavailable(error), render_error)
    if anthropic:
        data = [_anthropic_model(e, facts.get(e["id"])) for e in entries]
        return json_response(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    return json_response({"object": "list", "data": [_openai_model(e) for e in entries]})


# GET /v1/models/{id}: ids hold "/" ("openai/gpt-4o-mini"), so the whole rest of the
# path is the id (the SDKs send it percent-encoded; the ASGI path arrives decoded).
MODEL_PATH_PREFIX = "/v1/models/"


def _no_such_model(model_id: str) -> NotFound:
    # the same answer for a model that does not exist and one this key may not see; the
    # id is client input, cut so a huge one does not fill the error
    return NotFound(
        f"The model '{model_id[:MAX_MODEL_NAME_CHARS]}' does not exist or is not "
        "available to this key.",
        code="model_not_found",
        param="model",
    )


async def model_retrieve(request: EdgeRequest) -> EdgeResponse:
    """One of the models ``GET /v1/models`` lists for this key, or 404 for any other."""
    anthropic = _wants_anthropic(request)
    render_error = anthropic_error_body if anthropic else openai_error_body
    model_id = request.path[len(MODEL_PATH_PREFIX) :]
    try:
        ctx = await authenticate_virtual_key(_secret_from(request))
        entry = next((e for e in await _visible_models(ctx) if e["id"] == model_id), None)
        if entry is None:
            raise _no_such_model(model_id)
        if anthropic:
            facts = await _catalogue_facts([model_id])
    except AipkError as error:
        return error_response(error, render_error)
    except _INFRASTRUCTURE_ERRORS as error:
        return error_response(_unavailable(error), render_error)
    if anthropic:
        return json_response(_anthropic_model(entry, facts.get(model_id)))
    return json_response(_openai_model(entry))


async def messages_count_tokens(request: EdgeRequest) -> EdgeResponse:
    """Anthropic's token count (aipk_site/gateway/count_tokens.py holds the rules)."""
    try:
        ctx = await authenticate_virtual_key(_secret_from(request))
        body = await _read_json(request)
        counted = await count_message_tokens(
            ctx, body, _limits(), request_id=f"count_{random_hex()}"
        )
    except AipkError as error:
        return error_response(error, anthropic_error_body)
    except _INFRASTRUCTURE_ERRORS as error:
        return error_response(_unavailable(error), anthropic_error_body)
    return json_response(counted.body(), headers=counted.headers)


async def embeddings(request: EdgeRequest) -> EdgeResponse:
    """OpenAI's embeddings (aipk_site/gateway/embeddings.py holds the logic). A body
    refused before the request path is a key's usage too, as for chat."""
    try:
        ctx = await authenticate_virtual_key(_secret_from(request))
        request_id = f"{embeddings_op.ID_PREFIX}{random_hex()}"
        body: Any = None
        try:
            body = await _read_json(request)
            parsed = embeddings_op.parse_embeddings(body)
        except AipkError as error:
            _record_refused_body(ctx, embeddings_op.ENDPOINT, request_id, body, error)
            error.headers.setdefault("x-request-id", request_id)
            raise
        embedded = await embeddings_op.embed(ctx, parsed, request_id)
    except AipkError as error:
        return error_response(error, openai_error_body)
    except _INFRASTRUCTURE_ERRORS as error:
        return error_response(_unavailable(error), openai_error_body)
    return json_response(embedded.body, headers=embedded.headers)


async def responses_create(request: EdgeRequest) -> EdgeResponse:
    """OpenAI's Responses API (aipk_site/gateway/responses.py holds the logic) on chat's
    request path; a body refused before it is a key's usage too, as for chat."""
    try:
        ctx = await authenticate_virtual_key(_secret_from(request))
        request_id = f"{responses_op.ID_PREFIX}{random_hex()}"
        body: Any = None
        try:
            body = await _read_json(request)
            prepared = await responses_op.prepare(ctx, body, _limits(), request_id)
        except AipkError as error:
            _record_refused_body(ctx, responses_op.ENDPOINT, request_id, body, error)
            error.headers.setdefault("x-request-id", request_id)
            raise
        if ctx.capture_bodies:
            prepared.call.headers = request.headers
        if not prepared.stream:
            answer, headers = await responses_op.reply(prepared)
            return json_response(answer, headers=headers)
        streamed, encoder = await responses_op.open_stream(prepared)
    except AipkError as error:
        return error_response(error, openai_error_body)
    except _INFRASTRUCTURE_ERRORS as error:
        return error_response(_unavailable(error), openai_error_body)
    return _stream_response(prepared.call, streamed, encoder)


async def _stored_response(request: EdgeRequest, method: str) -> EdgeResponse:
    """``GET`` / ``DELETE /v1/responses/{id}``: the key's tenant's stored response."""
    try:
        ctx = await authenticate_virtual_key(_secret_from(request))
        response_id = responses_op.response_id_from(request.path) or ""
        if method == "GET":
            answer = await responses_op.retrieve(ctx, response_id)
        else:
            answer = await responses_op.delete(ctx, response_id)
    except AipkError as error:
        return error_response(error, openai_error_body)
    except _INFRASTRUCTURE_ERRORS as error:
        return error_response(_unavailable(error), openai_error_body)
    return json_response(answer)


async def response_retrieve(request: EdgeRequest) -> EdgeResponse:
    return await _stored_response(request, "GET")


async def response_delete(request: EdgeRequest) -> EdgeResponse:
    return await _stored_response(request, "DELETE")


Operation = Callable[[EdgeRequest], Awaitable[EdgeResponse]]

# (method, path) -> operation: the whole routing table of the hot path.
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/messages"): messages,
    ("GET", "/v1/models"): models,
    ("POST", "/v1/messages/count_tokens"): messages_count_tokens,
    ("POST", "/v1/embeddings"): embeddings,
    ("POST", "/v1/responses"): responses_create,
}
# /v1/responses/{id} by method; deeper paths (input_items, cancel) are not served here
_RESPONSE_BY_ID: dict[str, Operation] = {"GET": response_retrieve, "DELETE": response_delete}


def operation_for(method: str, path: str) -> Operation | None:
    """The edge's operation for a request, or None (Django answers: the docs, a JSON
    404 or 405). ``/v1/models/{id}`` and ``/v1/responses/{id}`` have a variable part."""
    operation = OPERATIONS.get((method, path))
    if operation is None:
        if method == "GET" and path.startswith(MODEL_PATH_PREFIX):
            return model_retrieve
        if path.startswith(responses_op.PATH_PREFIX) and responses_op.response_id_from(path):
            return _RESPONSE_BY_ID.get(method)
    return operation


def route_of(path: str) -> str:
    """The route a served path matched, as traces name it: ids left out (they are client
    input, and one span name per operation keeps the names few)."""
    if path.startswith(MODEL_PATH_PREFIX):
        return MODEL_PATH_PREFIX + "{id}"
    if path.startswith(responses_op.PATH_PREFIX):
        return responses_op.PATH_PREFIX + "{id}"
    return path


# -- the ASGI application -------------------------------------------------------------------


class _ClientGone(Exception):
    """The client disconnected while its body was being read: nobody to answer."""


class _Exchange:
    """One HTTP exchange: reads the body, then watches for the client going away.

    Once the body is read, ``receive`` has nothing more to say but ``http.disconnect``;
    a watcher task waits for it and cancels the request's task, so an abandoned request
    stops calling its provider (the ledger still records its usage so far). The
    watcher ends when the answer is complete.
    """

    __slots__ = ("receive", "task", "watcher", "disconnected", "answered")

    def __init__(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        self.receive = receive
        self.task = task
        self.watcher: asyncio.Task[None] | None = None
        self.disconnected = False
        self.answered = False

    async def read_body(self, limit: int, declared: str | None) -> bytes:
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise _ClientGone
            part: bytes = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise too_large()
            chunks.append(part)
            if not message.get("more_body"):
                break
        self.watcher = asyncio.get_running_loop().create_task(self._watch())
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                if not self.answered:
                    self.disconnected = True
                    self.task.cancel()
                return

    def close(self) -> None:
        self.answered = True
        if self.watcher is not None:
            self.watcher.cancel()


def _request_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _is_secure(scope: Scope, headers: dict[str, str]) -> bool:
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if proxy_header:
        name, secure_value = proxy_header
        name = name.removeprefix("HTTP_").replace("_", "-").lower()
        value = headers.get(name)
        if value is not None:
            return bool(value.split(",", 1)[0].strip() == secure_value)
    return bool(scope.get("scheme") == "https")


def _host(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("x-forwarded-host") if settings.USE_X_FORWARDED_HOST else None
    host = host or headers.get("host")
    if host:
        return host
    server = scope.get("server") or ("", None)
    return f"{server[0]}:{server[1]}" if server[1] else str(server[0])


# Answers that depend only on settings, kept per process (a dozen settings reads and
# the ALLOWED_HOSTS patterns were ~2 % of a request); dropped when a setting changes.
_site_headers_cache: dict[bool, list[tuple[bytes, bytes]]] = {}
_hosts_cache: dict[str, bool] = {}
# Host headers are client input: a flood of made-up ones must not grow the table forever.
_HOSTS_CACHE_SIZE = 1024


def _forget_settings(**kwargs: Any) -> None:
    _site_headers_cache.clear()
    _hosts_cache.clear()


setting_changed.connect(_forget_settings, dispatch_uid="aipk-gateway-edge-settings")


def _host_allowed(host: str) -> bool:
    allowed = _hosts_cache.get(host)
    if allowed is None:
        if len(_hosts_cache) >= _HOSTS_CACHE_SIZE:
            _hosts_cache.clear()
        allowed = _hosts_cache[host] = _check_host(host)
    return allowed


def _check_host(host: str) -> bool:
    """Django's ALLOWED_HOSTS check (``HttpRequest.get_host``), without a request object."""
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _ = split_domain_port(host)
    return bool(domain) and bool(validate_host(domain, allowed))


def _site_headers(secure: bool) -> list[tuple[bytes, bytes]]:
    """The headers the site's security middleware puts on every answer."""
    headers = _site_headers_cache.get(secure)
    if headers is None:
        headers = _site_headers_cache[secure] = _build_site_headers(secure)
    return headers


def _build_site_headers(secure: bool) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        value = policy if isinstance(policy, str) else ",".join(policy)
        headers.append((b"referrer-policy", value.encode("latin-1")))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        coop = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode("latin-1")
        headers.append((b"cross-origin-opener-policy", coop))
    headers.append((b"x-frame-options", settings.X_FRAME_OPTIONS.encode("latin-1")))
    if secure and settings.SECURE_HSTS_SECONDS:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers.append((b"strict-transport-security", hsts.encode("latin-1")))
    return headers


def _https_redirect(scope: Scope, host: str) -> EdgeResponse:
    location = f"https://{settings.SECURE_SSL_HOST or host}{scope['path']}"
    if scope.get("query_string"):
        location += "?" + scope["query_string"].decode("latin-1")
    return EdgeResponse(301, {"location": location})


class GatewayEdge:
    """The ASGI application for /v1/: the hot operations here, the rest to ``fallback``."""

    def __init__(self, fallback: ASGIApp) -> None:
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        operation = operation_for(scope["method"], path)
        if operation is None:
            await self.fallback(scope, receive, send)
            return
        headers = _request_headers(scope)
        request_id = request_id_from(headers.get("x-request-id"))
        bind_request_id(request_id)
        task = asyncio.current_task()
        assert task is not None
        exchange = _Exchange(receive, task)
        declared = headers.get("content-length")

        async def read_body(limit: int) -> bytes:
            return await exchange.read_body(limit, declared)

        request = EdgeRequest(path, headers, read_body)
        secure = _is_secure(scope, headers)
        span = (
            tracing.request_start(scope["method"], route_of(path), headers, request_id)
            if tracing.enabled
            else None
        )
        try:
            host = _host(scope, headers)
            if not _host_allowed(host):
                response = error_response(_bad_host(host), error_renderer(request))
            elif settings.SECURE_SSL_REDIRECT and not secure:
                response = _https_redirect(scope, host)
            elif not overload.try_enter():
                response = _shed(request)
            else:
                try:
                    response = await operation(request)
                finally:
                    # once, however the operation ended (answer, error, client gone,
                    # cancel); a stream's relay is not counted (overload.py says why)
                    overload.leave()
        except (asyncio.CancelledError, _ClientGone):
            exchange.close()
            if span is not None:
                if not exchange.disconnected:  # cancelled by the server (a shutdown)
                    tracing.request_error("cancelled")
                tracing.request_end(span, status=None, request_id=request_id)
            if exchange.disconnected:
                task.uncancel()  # the client left: there is no one to answer
                return
            raise
        except Exception as error:  # noqa: BLE001 -- a bug still answers in the caller's format
            response = unexpected_response(request, error)
        site_headers = _site_headers(secure)
        if span is not None:
            site_headers = site_headers + tracing.response_headers(span)
        try:
            await _send(send, response, request_id, site_headers, exchange)
        except asyncio.CancelledError:
            if not exchange.disconnected:
                raise
            task.uncancel()
        finally:
            exchange.close()
            if span is not None:
                answered_id = response.headers.get("x-request-id", request_id)
                tracing.request_end(span, status=response.status, request_id=answered_id)


@dataclass(frozen=True, slots=True)
class _Shedding:
    """How a shed request of one operation is answered and counted."""

    endpoint: str  # the metric's label
    # the operation writes usage rows (a shed request gets one too, named in the answer)
    id_prefix: str | None
    # its error shape; None: by the request, as the operation's other answers
    error_body: ErrorRenderer | None


_SHEDDING: dict[str, _Shedding] = {
    "/v1/chat/completions": _Shedding(_OPENAI.endpoint, _OPENAI.id_prefix, _OPENAI.error_body),
    "/v1/messages": _Shedding(_ANTHROPIC.endpoint, _ANTHROPIC.id_prefix, _ANTHROPIC.error_body),
    "/v1/embeddings": _Shedding(embeddings_op.ENDPOINT, embeddings_op.ID_PREFIX, openai_error_body),
    "/v1/messages/count_tokens": _Shedding("messages.count_tokens", None, anthropic_error_body),
    "/v1/responses": _Shedding(responses_op.ENDPOINT, responses_op.ID_PREFIX, openai_error_body),
}
# GET / DELETE /v1/responses/{id}: no usage row (no provider is called)
_SHEDDING_STORED = _Shedding(responses_op.ENDPOINT, None, openai_error_body)
# GET /v1/models and /v1/models/{id}: no usage row, like their other answers
_SHEDDING_MODELS = _Shedding("models", None, None)


def _shed(request: EdgeRequest) -> EdgeResponse:
    """The answer of a request ``overload.try_enter()`` refused (the worker's event loop is
    behind, or it holds GATEWAY_MAX_IN_FLIGHT requests): no body read, no database, no
    cache -- a row only for a key already in memory."""
    shedding = _SHEDDING.get(request.path) or (
        _SHEDDING_STORED if request.path.startswith(responses_op.PATH_PREFIX) else _SHEDDING_MODELS
    )
    error = overload.overloaded()
    overload.record_shed(shedding.endpoint)
    if shedding.id_prefix is not None:
        ctx = cached_key_context(_secret_from(request))
        if ctx is not None:
            request_id = f"{shedding.id_prefix}{random_hex()}"
            _record_refused_body(ctx, shedding.endpoint, request_id, None, error)
            # the answer names its usage row, as every other answer of these operations does
            error.headers["x-request-id"] = request_id
    return error_response(error, shedding.error_body or error_renderer(request))


def _bad_host(host: str) -> InvalidRequest:
    error = InvalidRequest(
        f"the Host header {host[:100]!r} is not one this server answers for (ALLOWED_HOSTS)",
        code="invalid_host",
    )
    return error


async def _send(
    send: Send,
    response: EdgeResponse,
    request_id: str,
    site_headers: list[tuple[bytes, bytes]],
    exchange: _Exchange,
) -> None:
    content_type = _SSE if response.stream is not None else _JSON
    raw = [(b"content-type", content_type.encode())]
    for name, value in response.headers.items():
        raw.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
    if "x-request-id" not in response.headers:
        raw.append((b"x-request-id", request_id.encode("latin-1")))
    raw.extend(site_headers)
    if response.stream is None:
        exchange.answered = True
        raw.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        await send({"type": "http.response.body", "body": response.body})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": raw})
    if response.events is not None:
        await response.events.send_to(send)
    else:
        # aclosing: a stream left early (the client went away) still runs its ``finally``,
        # which records the usage so far
        async with aclosing(response.stream) as chunks:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    exchange.answered = True
    await send({"type": "http.response.body", "body": b""})
