"""The websocket chat at /ws/chat/: a second transport over the gateway, next to api.py.

DESIGN.md places the consumer in providers_app, but it is a gateway transport
like aipk_site/gateway/edge.py — same key auth, admission, routing, usage and cost —
so it lives beside the gateway. Protocol, auth and close codes:
docs/WEBSOCKET.md; the rules themselves are in services/chat_socket.py.

This class only moves frames: read a message, start or cancel a turn, send what
the turn yields. Each chat.request runs in its own asyncio task so several run
at once on one socket; every event carries the client's id, and each send is
one ASGI message (one whole frame), so concurrent tasks never interleave bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from aipk_site.gateway.chat_socket import (
    CLOSE_TRY_AGAIN_LATER,
    ENDPOINT,
    INFRASTRUCTURE_ERRORS,
    ChatCancel,
    ChatStart,
    ChatTurn,
    ProtocolError,
    SocketCaller,
    accepted_subprotocol,
    close_code_for,
    error_event,
    new_request_id,
    read_message,
    service_unavailable,
    socket_caller,
)
from aipk_site.gateway.formats.common import InputLimits
from aipk_site.gateway.ledger import GatewayCall
from aipk_site.infra.errors import AipkError, AuthenticationFailed, PermissionDenied
from aipk_site.infra.metrics import record_ws_connections

logger = logging.getLogger(__name__)


class ChatConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no types
    caller: SocketCaller | None = None
    counted = False  # in the websocket connections gauge
    # No channel layer: nothing sends to a chat socket through one, and subscribing made
    # every socket wait on Redis (a BZPOPMIN each), so losing Redis closed every open
    # socket with 1011 instead of ending its turns with chat.error (issue 10).
    channel_layer_alias = None
    # set per connection by __call__
    turns: dict[Any, asyncio.Task[None]]
    cancelled: set[Any]

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        self.turns = {}
        self.cancelled = set()
        self.gone = False
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ends (even cancelled by the server), no turn outlives it.
            await self._cancel_all()

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(event, ensure_ascii=False, separators=(",", ":")))

    async def connect(self) -> None:
        subprotocol = accepted_subprotocol(self.scope)
        try:
            self.caller, _ = await socket_caller(self.scope)
        except AipkError as error:
            # Accept first: a close before the handshake reaches the client as a bare
            # HTTP 403, and the reason (and our close code) would be lost.
            await self._refuse(subprotocol, error_event(None, error), close_code_for(error))
            return
        except INFRASTRUCTURE_ERRORS:
            await self._refuse(
                subprotocol, error_event(None, service_unavailable()), CLOSE_TRY_AGAIN_LATER
            )
            return
        await self.accept(subprotocol)
        self.counted = True
        record_ws_connections(+1)

    async def _refuse(self, subprotocol: str | None, event: dict[str, Any], code: int) -> None:
        await self.accept(subprotocol)
        await self.send_event(event)
        await self.close(code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.caller is None:
            return  # refused in connect(); the close is on its way
        try:
            message = read_message(
                # channels passes one of the two, never neither
                text_data if text_data is not None else (bytes_data or b""),
                max_bytes=settings.GATEWAY_MAX_BODY_BYTES,
                limits=InputLimits(
                    max_messages=settings.GATEWAY_MAX_MESSAGES,
                    max_message_chars=settings.GATEWAY_MAX_MESSAGE_CHARS,
                    max_tools=settings.GATEWAY_MAX_TOOLS,
                    max_media_part_bytes=settings.GATEWAY_MAX_MEDIA_PART_BYTES,
                    max_media_request_bytes=settings.GATEWAY_MAX_MEDIA_REQUEST_BYTES,
                ),
            )
        except ProtocolError as error:
            await self.send_event(error.event())
            return
        except Exception as error:  # a bug in reading one message must not close the socket
            logger.exception("websocket chat: could not read a message")
            await self.send_event(
                ProtocolError("internal_error", f"internal error ({type(error).__name__})").event()
            )
            return
        if isinstance(message, ChatStart):
            await self._start(message)
        elif isinstance(message, ChatCancel):
            self._cancel(message.msg_id)
        else:
            await self.send_event({"type": "pong"})

    async def _start(self, message: ChatStart) -> None:
        msg_id = message.msg_id
        if msg_id in self.turns:
            await self.send_event(
                ProtocolError(
                    "duplicate_id",
                    f"a request with id {msg_id!r} is already running",
                    msg_id=msg_id,
                ).event()
            )
            return
        limit = settings.WS_MAX_IN_FLIGHT
        if len(self.turns) >= limit:
            await self.send_event(
                ProtocolError(
                    "too_many_in_flight",
                    f"{limit} requests are already running on this socket (WS_MAX_IN_FLIGHT)",
                    msg_id=msg_id,
                ).event()
            )
            return
        assert self.caller is not None
        try:
            # Checked per request: a key revoked or a membership removed ends the socket.
            ctx = await self.caller.context()
        except (AuthenticationFailed, PermissionDenied) as error:
            await self.send_event(error_event(msg_id, error))
            await self.close(close_code_for(error))
            return
        except INFRASTRUCTURE_ERRORS:
            await self.send_event(error_event(msg_id, service_unavailable()))
            return
        turn = ChatTurn(msg_id, GatewayCall(ctx, message.parsed, ENDPOINT, new_request_id()))
        task = self.turns[msg_id] = asyncio.create_task(self._run(turn))
        # A backstop for the finally in _run, which never runs if the task is cancelled
        # before its first step.
        task.add_done_callback(lambda done: self._forget(msg_id, done))
        # Let the turn start (and reach the gateway, which accounts a cancel from then on)
        # before the next message — possibly its chat.cancel — is read.
        await asyncio.sleep(0)

    async def _run(self, turn: ChatTurn) -> None:
        msg_id = turn.msg_id
        try:
            async with aclosing(turn.events()) as events:
                async for event in events:
                    await self.send_event(event)
        except asyncio.CancelledError:
            # Ours: chat.cancel or the socket going away. The gateway has accounted the
            # request as cancelled by now; tell a client that is still there.
            if msg_id in self.cancelled and not self.gone:
                for event in turn.cancelled_events():
                    await self.send_event(event)
        except Exception as error:  # a bug must cost one request, not the socket
            logger.exception("websocket chat: request %s failed", turn.call.request_id)
            if not self.gone:
                await self.send_event(
                    error_event(
                        msg_id,
                        AipkError(
                            f"internal error ({type(error).__name__})", code="internal_error"
                        ),
                    )
                )
        finally:
            # No await between the last send and here: a client that reuses the id right
            # after chat.done finds it free.
            self.turns.pop(msg_id, None)
            self.cancelled.discard(msg_id)

    def _forget(self, msg_id: Any, task: asyncio.Task[None]) -> None:
        if self.turns.get(msg_id) is task:
            del self.turns[msg_id]
            self.cancelled.discard(msg_id)

    def _cancel(self, msg_id: Any) -> None:
        """Cancelling an id that is not running (finished already, or never was) does
        nothing: a cancel racing the last event is normal."""
        task = self.turns.get(msg_id)
        if task is not None and msg_id not in self.cancelled:
            self.cancelled.add(msg_id)
            task.cancel()

    async def disconnect(self, code: int) -> None:
        if self.counted:
            self.counted = False
            record_ws_connections(-1)
        await self._cancel_all()

    async def _cancel_all(self) -> None:
        self.gone = True
        tasks = list(self.turns.values())
        for task in tasks:
            task.cancel()
        # Wait, so every turn's usage is recorded before the consumer is gone.
        await asyncio.gather(*tasks, return_exceptions=True)
