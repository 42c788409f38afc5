"""Relaying an opened stream to the client and accounting it when it ends.

Apart from the request path (dispatch) because a stream outlives it: dispatch
returns once the first chunk is in, and everything after -- forwarding, a
provider or infrastructure fault mid-stream, a client that leaves, a shutdown
drain -- ends here, in the relay's ``finally``, with one settle and one record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from aipk_site.gateway import shutdown
from aipk_site.gateway.error_mapping import (
    infrastructure_fault,
    infrastructure_unavailable,
    upstream_error,
)
from aipk_site.gateway.ledger import (
    GatewayCall,
    Ledger,
    log_infrastructure_fault,
    usage_or_estimate,
)
from aipk_site.gateway.response_cache import cache_put
from aipk_site.infra.metrics import stream_ended, stream_started
from providers_app.kit.errors import ProviderError
from providers_app.kit.types import ChatChunk, ChatRequest, ResponseBuilder
from tenants_app.models import UsageStatus


async def started(
    relay: AsyncGenerator[ChatChunk, None],
) -> AsyncGenerator[ChatChunk, None]:
    """Start the relay before handing it over. A transport may drop a stream it never
    iterates (the client leaves between the response head and the body), and Python never
    runs a never-started generator's ``finally``; asyncio does close a started one that is
    dropped, so the relay's ``finally`` accounts the request either way."""
    try:
        head = await relay.__anext__()
    except StopAsyncIteration:
        return replay([])
    return _Prepended(head, relay)


class _Prepended(AsyncGenerator[ChatChunk, None]):
    """``head`` then the rest of ``relay``. A class rather than one more async generator
    around the relay: each chunk passes through one call, not a generator's frame, and
    closing it closes the relay (whose ``finally`` accounts the stream)."""

    __slots__ = ("_head", "_relay")

    def __init__(self, head: ChatChunk, relay: AsyncGenerator[ChatChunk, None]) -> None:
        self._head: ChatChunk | None = head
        self._relay = relay

    def __aiter__(self) -> _Prepended:
        return self

    async def __anext__(self) -> ChatChunk:
        head = self._head
        if head is not None:
            self._head = None
            return head
        return await self._relay.__anext__()

    async def asend(self, value: None) -> ChatChunk:
        return await self.__anext__()

    async def athrow(self, *args: Any) -> ChatChunk:
        self._head = None
        return await self._relay.athrow(*args)

    async def aclose(self) -> None:
        self._head = None
        await self._relay.aclose()


async def _aclose(chunks: AsyncIterator[ChatChunk]) -> None:
    """Close an upstream stream now (an async generator: its ``finally`` releases the
    connection), not whenever it is garbage-collected."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


async def replay(chunks: list[ChatChunk]) -> AsyncGenerator[ChatChunk, None]:
    for chunk in chunks:
        yield chunk


async def relay_stream(
    call: GatewayCall,
    ledger: Ledger,
    request: ChatRequest,
    chunks: AsyncIterator[ChatChunk],
    first: ChatChunk | None,
    key: str | None,
) -> AsyncGenerator[ChatChunk, None]:
    """Forward chunks as they arrive; whatever ends the stream, account it once."""
    builder = ResponseBuilder(call.request_id, request.model)
    completion_chars = 0
    status, error_type = UsageStatus.CANCELLED, "client_disconnected"
    finished = False  # the provider said its last word (a finish reason)
    stream_started(call.endpoint)
    tracked_task = shutdown.track_begin()  # the shutdown drain waits for this stream
    try:
        if first is not None:
            ledger.first_token()
            builder.add(first)
            completion_chars += len(first.text) + sum(len(d.arguments) for d in first.tool_calls)
            finished = bool(first.finish_reason)
            yield first
        async for chunk in chunks:
            builder.add(chunk)
            completion_chars += len(chunk.text)
            if chunk.tool_calls:
                completion_chars += sum(len(d.arguments) for d in chunk.tool_calls)
            if chunk.finish_reason:
                finished = True
            yield chunk
        status, error_type = UsageStatus.SUCCESS, ""
    except ProviderError as error:
        status, error_type = UsageStatus.ERROR, error.type
        raise upstream_error(error) from error
    except asyncio.CancelledError:
        if shutdown.ended_by_shutdown():  # the drain deadline, not the client, ended it
            status, error_type = UsageStatus.ERROR, "server_shutdown"
        shutdown.raise_if_ended_by_shutdown()
        raise
    except Exception as error:
        # aipk's own fault (Redis, the database, a bug) mid-stream: the client gets an
        # error event now, not a stream that never ends. Tokens already relayed are
        # counted. When the provider had already said its last word, the client holds
        # a whole answer: it ends normally (an error event would make the SDKs raise
        # and the app pay again) and the row's error_type names the fault.
        error_type = infrastructure_fault(error)
        log_infrastructure_fault(call, "streaming", error)
        if not finished:
            status = UsageStatus.ERROR
            raise infrastructure_unavailable() from error
        status = UsageStatus.SUCCESS
    finally:
        stream_ended(call.endpoint)
        if status == UsageStatus.CANCELLED and shutdown.ended_by_shutdown():
            status, error_type = UsageStatus.ERROR, "server_shutdown"
        try:
            await _aclose(chunks)
        except Exception as error:  # noqa: BLE001 -- closing must not hide the accounting
            log_infrastructure_fault(call, "closing the upstream stream of", error)
        response = builder.build()
        usage = usage_or_estimate(
            request, response.usage if response.usage.total_tokens else None, completion_chars
        )
        if call.ctx.capture_bodies:
            # the text the builder already holds for the usage count; the body writer
            # keeps at most REQUEST_LOG_BODY_MAX_BYTES of it
            ledger.response_text = response.text
        await asyncio.shield(ledger.close(status=status, usage=usage, error_type=error_type))
        if status == UsageStatus.SUCCESS and key is not None and not ledger.infra_fault:
            response.usage = usage
            try:
                await cache_put(key, response, call.ctx.cache_ttl_seconds)
            except Exception as error:  # noqa: BLE001 -- a cache miss next time, no more
                log_infrastructure_fault(call, "caching the reply of", error)
        shutdown.track_end(tracked_task)
    # A stream the provider finished ends normally even when settling it failed (Redis
    # lost at the end): the client holds a whole answer, and an error event would make
    # the SDKs raise and the app retry -- paying twice. The fault is logged and named in
    # the usage row's error_type, as for a non-stream reply.
