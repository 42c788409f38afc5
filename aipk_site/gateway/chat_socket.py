"""The websocket chat's protocol (docs/WEBSOCKET.md): who is calling, what a client
message means, and the events one chat turn produces.

The consumer (aipk_site/gateway/consumers.py) only moves frames and runs one task per
request; everything here is independent of Channels so the rules read in one
place. A turn goes through the same ``gateway_stream`` as ``/v1`` — admission,
routing, failover, usage and cost are the gateway's, not this module's.

Callers are either an app with a virtual key (``Authorization: Bearer`` or the
``aipk-key.<key>`` subprotocol, since browsers cannot set headers on a
websocket) or a console user with a session, who names one of their tenants in
``?tenant=<slug>``. A console user has no key: their requests are admitted
against the tenant's limits only (``KeyContext.key_id`` None; the usage record's
``virtual_key`` stays empty). The caller is checked again before every request,
so a revoked key or a removed membership stops an open socket too.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.db import DatabaseError
from redis.exceptions import RedisError

from aipk_site.gateway.dispatch import StreamReply, gateway_stream
from aipk_site.gateway.formats.common import (
    InputLimits,
    ParsedRequest,
    load_json,
    public_tool_call_id,
)
from aipk_site.gateway.formats.openai_format import openai_finish_reason, parse_chat_completion
from aipk_site.gateway.key_auth import KeyContext, authenticate_virtual_key
from aipk_site.gateway.ledger import GatewayCall, log_infrastructure_fault
from aipk_site.infra.errors import (
    AipkError,
    AuthenticationFailed,
    InvalidRequest,
    PermissionDenied,
    UpstreamError,
)
from providers_app.kit.types import ToolCallAccumulator
from tenants_app.models import Membership, Role, VirtualKey
from tenants_app.services.pricing import cost_usd

SUBPROTOCOL = "aipk.chat.v1"
KEY_SUBPROTOCOL_PREFIX = "aipk-key."
ENDPOINT = "ws"  # UsageRecord.endpoint
REQUEST_ID_PREFIX = "wschat-"

# Close codes (4000-4999 are the application's own range in RFC 6455).
CLOSE_BAD_REQUEST = 4400  # a session user named no tenant
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN_LATER = 1013  # the database or cache is down

# A client-chosen request id: short, so it cannot be used to bloat every event.
MAX_ID_CHARS = 128

# chat.request "options" → the OpenAI body field each one is validated as.
_OPTIONS = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "user": "user",
    "parallel_tool_calls": "parallel_tool_calls",
    "cache": "aipk",
    # the request fields of /v1/chat/completions that change what is generated, checked
    # and translated (or refused for the provider, naming it) by the same rules
    # (providers_app/kit/fields.py); logprobs are not among them: the socket's events
    # have nowhere to carry them
    "response_format": "response_format",
    "reasoning_effort": "reasoning_effort",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "service_tier": "service_tier",
    "metadata": "metadata",
}

# The top-level fields of each client message type: anything else is refused by name
# (a misspelt "option" would otherwise be lost without a word).
_MESSAGE_FIELDS = {
    "chat.request": frozenset(
        {"type", "id", "model", "messages", "tools", "tool_choice", "options"}
    ),
    "chat.cancel": frozenset({"type", "id"}),
}

# Without its database or cache the gateway cannot admit anyone; the client gets an
# error it can retry instead of a dead socket.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, RedisError, OSError)


def service_unavailable() -> AipkError:
    return UpstreamError(
        "aipk cannot reach its database or cache; retry shortly",
        status=503,
        code="service_unavailable",
        retry_after=1,
    )


def close_code_for(error: AipkError) -> int:
    """The close code for a caller that may not use the socket."""
    if isinstance(error, AuthenticationFailed):
        return CLOSE_UNAUTHENTICATED
    if isinstance(error, PermissionDenied):
        return CLOSE_FORBIDDEN
    return CLOSE_BAD_REQUEST


# -- who is calling ------------------------------------------------------------------------


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            text: str = value.decode("latin1")
            return text
    return None


def accepted_subprotocol(scope: dict[str, Any]) -> str | None:
    """``aipk.chat.v1`` when offered. Never the key's own subprotocol: echoing it would
    put the secret in a response header that proxies log."""
    return SUBPROTOCOL if SUBPROTOCOL in scope.get("subprotocols", ()) else None


def _key_from(scope: dict[str, Any]) -> str | None:
    auth = _header(scope, b"authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for offered in scope.get("subprotocols", ()):
        if offered.startswith(KEY_SUBPROTOCOL_PREFIX):
            key: str = offered[len(KEY_SUBPROTOCOL_PREFIX) :]
            return key
    return _header(scope, b"x-api-key")


def _member_context(user_id: int, tenant_slug: str) -> KeyContext:
    membership = (
        Membership.objects.select_related("tenant")
        .filter(user_id=user_id, user__is_active=True, tenant__slug=tenant_slug)
        .first()
    )
    # An unknown tenant and someone else's tenant get the same answer: the socket
    # must not tell an outsider which slugs exist.
    if membership is None:
        raise PermissionDenied(
            f"you are not a member of a tenant {tenant_slug!r}", code="not_a_member"
        )
    if membership.role == Role.VIEWER:
        raise PermissionDenied("viewers may not chat", code="role_cannot_chat")
    tenant = membership.tenant
    if not tenant.active:
        raise PermissionDenied("this tenant is deactivated", code="tenant_inactive")
    allowed = frozenset(tenant.allowed_providers.values_list("id", flat=True))
    micro = 1_000_000
    return KeyContext(
        key_id=None,  # no key: admission counts the tenant's limits only
        key_prefix="",
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        tenant_active=True,
        revoked=False,
        expires_at=None,
        rpm=None,
        tpm=None,
        max_concurrent_streams=None,
        budget_micro_usd=None,
        tenant_rpm=tenant.default_rpm,
        tenant_tpm=tenant.default_tpm,
        tenant_budget_micro_usd=None
        if tenant.monthly_budget_usd is None
        else int(tenant.monthly_budget_usd * micro),
        allowed_models=(),
        allowed_provider_ids=allowed or None,
        # the response cache only when a request asks (options.cache), for a new key's TTL
        cache_enabled=False,
        cache_ttl_seconds=VirtualKey._meta.get_field("cache_ttl_seconds").default,
        pii_redaction=tenant.pii_redaction,
        capture_bodies=tenant.capture_bodies,
    )


@dataclass(frozen=True, slots=True)
class SocketCaller:
    """Who opened the socket: a virtual key, or a console user acting for one tenant."""

    secret: str | None = field(default=None, repr=False)  # never in a log or traceback
    user_id: int | None = None
    tenant_slug: str = ""

    async def context(self) -> KeyContext:
        """The caller's current context; raises AuthenticationFailed / PermissionDenied."""
        if self.secret is not None:
            return await authenticate_virtual_key(self.secret)
        assert self.user_id is not None
        ctx: KeyContext = await database_sync_to_async(_member_context)(
            self.user_id, self.tenant_slug
        )
        return ctx


async def socket_caller(scope: dict[str, Any]) -> tuple[SocketCaller, KeyContext]:
    """Authenticate a connecting socket. A key, when one is presented, wins over a session
    (an app embedded in the console acts as its key, not as the logged-in user)."""
    secret = _key_from(scope)
    if secret:
        caller = SocketCaller(secret=secret)
        return caller, await caller.context()
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        raise AuthenticationFailed(
            "no credentials: send a virtual key ('Authorization: Bearer <key>' or the "
            f"'{KEY_SUBPROTOCOL_PREFIX}<key>' subprotocol) or log in to the console",
            code="missing_api_key",
        )
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    slug = (query.get("tenant") or [""])[0].strip()
    if not slug:
        raise InvalidRequest(
            "name the tenant to chat as: /ws/chat/?tenant=<slug>",
            code="missing_tenant",
            param="tenant",
        )
    caller = SocketCaller(user_id=user.pk, tenant_slug=slug)
    return caller, await caller.context()


# -- client messages -----------------------------------------------------------------------


class ProtocolError(InvalidRequest):
    """A client message the socket cannot act on; answered with chat.error, never a close.
    One of the error family (a 400's fields), rendered as the socket's own event."""

    def __init__(
        self, code: str, message: str, *, msg_id: Any = None, param: str | None = None
    ) -> None:
        super().__init__(message, code=code, param=param)
        self.msg_id = msg_id

    def event(self) -> dict[str, Any]:
        event = {"type": "chat.error", "id": self.msg_id, "code": self.code}
        event["message"] = self.message
        if self.param:
            event["param"] = self.param
        return event


@dataclass(frozen=True, slots=True)
class ChatStart:
    msg_id: str | int
    parsed: ParsedRequest


@dataclass(frozen=True, slots=True)
class ChatCancel:
    msg_id: str | int


@dataclass(frozen=True, slots=True)
class Ping:
    pass


def _message_id(message: dict[str, Any]) -> str | int:
    if "id" not in message or message["id"] is None:
        raise ProtocolError("missing_id", "id: is required", param="id")
    value = message["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProtocolError("invalid_id", "id: must be a string or an integer", param="id")
    if isinstance(value, str) and not 0 < len(value) <= MAX_ID_CHARS:
        raise ProtocolError(
            "invalid_id", f"id: must be 1 to {MAX_ID_CHARS} characters long", param="id"
        )
    return value


def _as_ws_param(param: str | None) -> str | None:
    """An OpenAI body field path in this protocol's terms: ``max_tokens`` is
    ``options.max_tokens`` here, ``aipk.cache`` is ``options.cache``."""
    if not param:
        return param
    if param == "aipk" or param.startswith("aipk."):
        return "options.cache"
    head = re.split(r"[.\[]", param, maxsplit=1)[0]
    return f"options.{param}" if head in _OPTIONS else param


def _parse_request(
    message: dict[str, Any], msg_id: str | int, limits: InputLimits
) -> ParsedRequest:
    options = message.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ProtocolError(
            "invalid_request", "options: must be an object", msg_id=msg_id, param="options"
        )
    body: dict[str, Any] = {
        "model": message.get("model"),
        "messages": message.get("messages"),
        "tools": message.get("tools"),
        "tool_choice": message.get("tool_choice"),
        "stream": True,  # the socket always streams; admission counts it as a stream
    }
    for name, value in options.items():
        body_field = _OPTIONS.get(name)
        if body_field is None:
            # Strict, unlike /v1 (which must accept whatever the SDKs send): a typo such
            # as "max_token" would otherwise be silently ignored.
            known = ", ".join(_OPTIONS)
            raise ProtocolError(
                "invalid_request",
                f"options.{name}: is not a known option ({known})",
                msg_id=msg_id,
                param=f"options.{name}",
            )
        body[body_field] = {"cache": value} if name == "cache" else value
    try:
        return parse_chat_completion(body, limits)
    except AipkError as error:
        param = _as_ws_param(error.param)
        text = error.message
        if error.param and param and param != error.param and text.startswith(error.param):
            text = param + text[len(error.param) :]
        raise ProtocolError(error.code, text, msg_id=msg_id, param=param) from None


def read_message(
    data: str | bytes, *, max_bytes: int, limits: InputLimits
) -> ChatStart | ChatCancel | Ping:
    """One client frame → what it asks for, or ProtocolError saying what is wrong."""
    size = len(data)
    if isinstance(data, str) and max_bytes < size * 4:
        # A character is at most 4 bytes in UTF-8: encode only when the answer depends on it.
        size = size if size > max_bytes else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        # Not parsed (that is what the limit is for), so the error cannot carry its id.
        raise ProtocolError("payload_too_large", f"the message is larger than {max_bytes} bytes")
    try:
        # strict UTF-8, nesting bounded, no lone surrogates (formats.common.load_json)
        message = load_json(data)
    except InvalidRequest as error:
        text = error.message.replace("the body", "the message", 1)
        param = None if error.param == "body" else error.param
        raise ProtocolError(error.code, text, param=param) from None
    if not isinstance(message, dict):
        raise ProtocolError("invalid_json", "the message must be a JSON object")
    kind = message.get("type")
    if kind == "ping":
        return Ping()
    if kind not in ("chat.request", "chat.cancel"):
        msg_id = message.get("id") if isinstance(message.get("id"), (str, int)) else None
        raise ProtocolError(
            "unknown_type",
            f"type: {kind!r} is not one of 'chat.request', 'chat.cancel', 'ping'",
            msg_id=msg_id,
            param="type",
        )
    msg_id = _message_id(message)
    unknown = [name for name in message if name not in _MESSAGE_FIELDS[kind]]
    if unknown:
        raise ProtocolError(
            "unknown_parameter",
            f"{unknown[0]}: is not a field of {kind} "
            f'({", ".join(sorted(_MESSAGE_FIELDS[kind]))}); options go under "options"',
            msg_id=msg_id,
            param=unknown[0],
        )
    if kind == "chat.cancel":
        return ChatCancel(msg_id)
    return ChatStart(msg_id, _parse_request(message, msg_id, limits))


# -- server events -------------------------------------------------------------------------


def new_request_id() -> str:
    return f"{REQUEST_ID_PREFIX}{uuid.uuid4().hex}"


def error_event(msg_id: Any, error: AipkError) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "chat.error",
        "id": msg_id,
        "code": error.code,
        "message": error.message,
    }
    if error.param:
        event["param"] = _as_ws_param(error.param)
    if error.retry_after is not None:
        event["retry_after"] = max(1, round(error.retry_after))
    return event


class ChatTurn:
    """One chat.request on a socket: the gateway's stream as protocol events.

    ``events()`` yields chat.thinking… and chat.delta…, chat.tool_call…, chat.usage,
    chat.done, or a
    chat.error at whatever point the request fails. Closing it early (the client
    cancelled or went away) closes the gateway's stream, which accounts the
    request once as cancelled; ``cancelled_events()`` then says so to the client.
    """

    def __init__(self, msg_id: str | int, call: GatewayCall) -> None:
        self.msg_id = msg_id
        self.call = call
        self.streamed: StreamReply | None = None

    async def events(self) -> AsyncGenerator[dict[str, Any], None]:
        msg_id = self.msg_id
        try:
            self.streamed = streamed = await gateway_stream(self.call)
        except AipkError as error:
            yield self._error_event(error)
            return
        except Exception as error:  # noqa: BLE001 -- a turn always ends with an event
            log_infrastructure_fault(self.call, "opening", error)
            yield self._error_event(service_unavailable())
            return
        calls = ToolCallAccumulator()
        finish: str | None = None
        try:
            # aclosing: if this generator is closed mid-stream, the gateway's stream is
            # closed at once (not whenever it is garbage-collected), so it is accounted now.
            async with aclosing(streamed.chunks) as chunks:
                async for chunk in chunks:
                    if chunk.thinking is not None and chunk.thinking.text:
                        # the model's readable reasoning, before its answer (redacted
                        # blocks and signatures have no use to a chat client)
                        yield {"type": "chat.thinking", "id": msg_id, "text": chunk.thinking.text}
                    if chunk.text:
                        yield {"type": "chat.delta", "id": msg_id, "text": chunk.text}
                    for delta in chunk.tool_calls:
                        calls.add(delta)
                    if chunk.finish_reason:
                        finish = chunk.finish_reason
        except AipkError as error:
            # provider and infrastructure faults mid-stream (the gateway has accounted
            # the request and logged the fault): chat.error is the turn's last event
            yield self._error_event(error)
            return
        except Exception as error:  # noqa: BLE001 -- a turn always ends with an event
            log_infrastructure_fault(self.call, "streaming", error)
            yield self._error_event(service_unavailable())
            return
        # Calls go out whole, once the turn is over: fragments are keyed by index and
        # nothing in every provider's stream says a call is complete before that.
        tool_calls = calls.calls()
        for index, call in enumerate(tool_calls):
            yield {
                "type": "chat.tool_call",
                "id": msg_id,
                "index": index,
                "call_id": public_tool_call_id(call.id or f"call_{index}", call.signature),
                "name": call.name,
                "arguments": call.arguments or "{}",
            }
        yield self._usage_event()
        yield self._done_event(openai_finish_reason(finish, bool(tool_calls)))

    def _error_event(self, error: AipkError) -> dict[str, Any]:
        # the request's id, as chat.done carries it: the id of its usage record, so a
        # failed turn can be found in the usage like a finished one
        return {**error_event(self.msg_id, error), "request_id": self.call.request_id}

    def cancelled_events(self) -> list[dict[str, Any]]:
        """What a client that cancelled is told: usage so far (once the stream had
        opened) and chat.done with finish_reason "cancelled"."""
        events = []
        if self.streamed is not None and self.streamed.ledger.closed:
            events.append(self._usage_event())
        events.append(self._done_event("cancelled"))
        return events

    def _usage_event(self) -> dict[str, Any]:
        assert self.streamed is not None
        ledger = self.streamed.ledger
        usage = self.streamed.usage()
        cached = self.streamed.headers.get("x-aipk-cache") == "hit"
        # A cache hit costs nothing; otherwise the Ledger's figure (unknown without a price).
        cost = "0" if cached else None
        if usage is not None and ledger.price is not None and not cached:
            cost = str(cost_usd(ledger.price, usage))
        return {
            "type": "chat.usage",
            "id": self.msg_id,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "total_tokens": usage.total_tokens if usage else 0,
            # parts of the two counts above, each billed at its own rate
            "cached_tokens": usage.cached_tokens if usage else 0,
            "cache_write_tokens": usage.cache_write_tokens if usage else 0,
            "reasoning_tokens": usage.reasoning_tokens if usage else 0,
            "estimated": usage.estimated if usage else True,
            "cost_usd": cost,
            "cached": cached,
            "latency_ms": round((time.perf_counter() - ledger.started) * 1000, 1),
            "ttft_ms": None if ledger.ttft_ms is None else round(ledger.ttft_ms, 1),
        }

    def _done_event(self, finish_reason: str) -> dict[str, Any]:
        headers = self.streamed.headers if self.streamed is not None else {}
        return {
            "type": "chat.done",
            "id": self.msg_id,
            "request_id": self.call.request_id,
            "finish_reason": finish_reason,
            "provider": headers.get("x-aipk-provider"),
            "model": headers.get("x-aipk-model"),
        }
