"""The kit's upstream HTTP client: httpx as the API, aiohttp underneath.

httpx's own connection pool spends most of its time in pool bookkeeping once tens of
requests share it (benchmarks/bench_upstream_client.py: it collapses at 50 concurrent
requests); aiohttp's pool does not. The adapters are written against httpx, so they keep
it and get ``httpx_aiohttp.AiohttpTransport`` underneath, with three corrections the stock
transport lacks:

- errors: its map sends every ``aiohttp.ClientConnectionError`` to ``httpx.ConnectTimeout``,
  so a refused connection or a server that hangs up would read as a connect deadline.
  Here each aiohttp error becomes the exception httpx's own transport raises for the same
  fault (refused -> ConnectError, hang-up -> RemoteProtocolError, reset -> ReadError ...),
  also while the body is read, and no aiohttp exception escapes untranslated;
- deadlines: aiohttp has no limit on the wait for a free pooled connection alone; its
  ``connect`` covers the wait *and* the opening of a new one. The transport gives it
  httpx's ``pool`` (the kit keeps that at most half the request's wait, so congestion is
  told apart from the deadline around the whole wait) and ``connect`` becomes
  ``sock_connect``. A timeout while the request still queues for a connection is
  ``httpx.PoolTimeout`` (aipk's congestion, not the provider's fault), told apart
  through aiohttp's connection-queue trace signals; any other is ``ConnectTimeout``;
- no cookie jar: one pooled session serves every tenant, and httpx keeps cookies itself.

``read`` maps to aiohttp's ``sock_read``; ``write`` has no aiohttp counterpart (the kit
bounds the whole wait with ``asyncio.timeout`` anyway).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = ["DEFAULT_LIMITS", "UpstreamTransport", "pooled_client"]

# As many kept alive as may be open: under a burst, closing and reopening connections
# above a smaller keep-alive limit costs more than holding them. The 5 s expiry is
# httpx's default, shorter than common server keep-alives (uvicorn: 5 s, others more),
# so aipk does not reuse a connection the server is about to close.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=200, max_keepalive_connections=200, keepalive_expiry=5.0
)


class _Queue:
    """Whether the current request is waiting for a free pooled connection."""

    __slots__ = ("waiting",)

    def __init__(self) -> None:
        self.waiting = False


_queue: contextvars.ContextVar[_Queue | None] = contextvars.ContextVar(
    "aipk_upstream_queue", default=None
)


async def _queued_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if (queue := _queue.get()) is not None:
        queue.waiting = True


async def _queued_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if (queue := _queue.get()) is not None:
        queue.waiting = False


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_connection_queued_start.append(_queued_start)
    config.on_connection_queued_end.append(_queued_end)
    config.freeze()
    return config


def _translated(exc: BaseException, *, queued: bool = False) -> httpx.TransportError | None:
    """The httpx exception httpx's own transport raises for this aiohttp fault."""
    if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if not isinstance(exc, aiohttp.ClientError):
        return None
    message = str(exc) or type(exc).__name__
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.PoolTimeout if queued else httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.SocketTimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        kind = httpx.ProxyError
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.InvalidURL):
        kind = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        # a hang-up before a whole reply, or bytes that are not HTTP
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientPayloadError):
        # the body ended early or was malformed (httpx: "peer closed connection
        # without sending complete message body")
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientConnectionResetError | aiohttp.ClientOSError):
        kind = httpx.ReadError
    else:
        kind = httpx.NetworkError
    return kind(message)


class _TranslatedStream(httpx.AsyncByteStream):
    """The response body, with aiohttp's read errors translated like the request's."""

    __slots__ = ("_stream",)

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            translated = _translated(exc)
            if translated is None:
                raise
            raise translated from exc

    async def aclose(self) -> None:
        # releasing an aiohttp response whose body was not read to the end closes its
        # connection, so an abandoned stream stops the provider's generation
        await self._stream.aclose()


class UpstreamTransport(AiohttpTransport):
    """``AiohttpTransport`` with httpx's error classes, deadlines and no cookie jar.

    One per client; its aiohttp session (and so its pool) is created on first use, in
    the event loop that uses it, and belongs to that loop.
    """

    def __init__(self, limits: httpx.Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits=limits)

    def get_client(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=[_trace_config()],
            # every request carries its own timeouts (below); none session-wide
            timeout=aiohttp.ClientTimeout(total=None),
        )

    def __del__(self) -> None:
        # A client dropped without aclose() -- one pooled per event loop, and asgiref's
        # sync-to-async bridges run throwaway loops -- closes its sockets quietly, as an
        # httpx pool would; aiohttp would log "Unclosed client session" at ERROR for each.
        # The connector's synchronous close (the public one is a coroutine, and the loop
        # may be gone).
        session = self.client
        if isinstance(session, aiohttp.ClientSession) and not session.closed:
            if (connector := session.connector) is not None:
                connector._close()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        queue = _Queue()
        token = _queue.set(queue)
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            translated = _translated(exc, queued=queue.waiting)
            if translated is None:
                raise
            raise translated from exc
        finally:
            _queue.reset(token)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TranslatedStream(response.stream)
        return response


def pooled_client(
    limits: httpx.Limits = DEFAULT_LIMITS, *, timeout: httpx.Timeout | None = None
) -> httpx.AsyncClient:
    """An httpx client on aiohttp's pool: what every adapter uses, shared or its own."""
    if timeout is None:
        return httpx.AsyncClient(transport=UpstreamTransport(limits))
    return httpx.AsyncClient(transport=UpstreamTransport(limits), timeout=timeout)
