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
  ``httpx.PoolTimeout`` (aipk's congestion, not the provider's fault), told apart by
  counting the requests that hold a connection (a counter is cheaper than aiohttp's
  trace signals, which would run on every request); any other is ``ConnectTimeout``;
- no cookies kept, neither by aiohttp nor by httpx: one pooled client serves every tenant
  and credential of a provider, so a cookie set in the reply to one tenant must not ride
  along with the next tenant's request; and httpx's cookie extraction (a stdlib
  ``email.message`` built from the headers of every reply) was ~10% of the client's CPU.

``read`` maps to aiohttp's ``sock_read``; ``write`` has no aiohttp counterpart (the kit
bounds the whole wait with ``asyncio.timeout`` anyway).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream

__all__ = [
    "DEFAULT_LIMITS",
    "BodyReader",
    "UpstreamTransport",
    "body_reader",
    "pooled_client",
    "send",
]

# As many kept alive as may be open: under a burst, closing and reopening connections
# above a smaller keep-alive limit costs more than holding them. The 5 s expiry is
# httpx's default, shorter than common server keep-alives (uvicorn: 5 s, others more),
# so aipk does not reuse a connection the server is about to close.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=200, max_keepalive_connections=200, keepalive_expiry=5.0
)


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


def _fault(exc: aiohttp.ClientError) -> httpx.TransportError:
    translated = _translated(exc)
    assert translated is not None  # every aiohttp.ClientError has its httpx counterpart
    return translated


class _TranslatedStream(httpx.AsyncByteStream):
    """The response body, with aiohttp's read errors translated like the request's; its
    connection counts as held until it is closed."""

    __slots__ = ("_stream", "_transport", "_open")

    def __init__(self, stream: httpx.AsyncByteStream, transport: UpstreamTransport) -> None:
        self._stream = stream
        self._transport = transport
        self._open = True

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
        if self._open:
            self._open = False
            self._transport.held -= 1
        # releasing an aiohttp response whose body was not read to the end closes its
        # connection, so an abandoned stream stops the provider's generation
        await self._stream.aclose()


class BodyReader:
    """A streamed reply's body as it arrives: ``read()`` waits for more (``b""`` at its
    end), ``buffered()`` takes what has already arrived without waiting (``b""`` if none).

    This one reads through httpx (``aiter_bytes``: any client, any content-encoding);
    ``_DirectBody`` reads aiohttp's buffer itself.
    """

    __slots__ = ("_chunks",)

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_bytes().__aiter__()

    def buffered(self) -> bytes:
        return b""

    def ended(self) -> bool:
        """The whole body has been read (``read()`` would return ``b""`` at once); False
        when that cannot be told without reading."""
        return False

    async def read(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""


class _DirectBody(BodyReader):
    """Straight from the aiohttp response's buffer, whatever has arrived in one piece:
    not through httpx's ``aiter_bytes`` -> ``aiter_raw`` -> ``_TranslatedStream`` ->
    httpx_aiohttp's ``iter_chunked`` (four async generators per read, most of a stream's
    byte-reading CPU). Faults are translated as ``_TranslatedStream`` does."""

    __slots__ = ("_content",)

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content

    def buffered(self) -> bytes:
        try:
            return self._content.read_nowait()
        except aiohttp.ClientError as exc:
            raise _fault(exc) from exc

    def ended(self) -> bool:
        return self._content.at_eof()

    async def read(self) -> bytes:
        try:
            return await self._content.readany()
        except aiohttp.ClientError as exc:
            raise _fault(exc) from exc


def body_reader(response: httpx.Response) -> BodyReader:
    """The reader for a reply sent with ``send(..., stream=True)``: direct on the kit's
    own pool when the body needs no decoding, through httpx otherwise."""
    stream = response.stream
    if (
        isinstance(stream, _TranslatedStream)
        and isinstance(stream._stream, AiohttpResponseStream)
        and "content-encoding" not in response.headers
    ):
        return _DirectBody(stream._stream._aiohttp_response.content)
    return BodyReader(response)


def _whole_response(reply: aiohttp.ClientResponse, body: bytes) -> httpx.Response:
    """An ``httpx.Response`` holding a body already read in full.

    Built on a ``ByteStream``: given ``content=`` httpx would encode the body again and
    set its headers (~45 µs per reply, 4 % of a gateway request's CPU; ~7 µs this way).
    A body with a ``content-encoding`` is read through httpx's decoders as before; one
    without is the content as it is, set where ``read()`` would put it (httpx 0.28's
    ``_content``: the kit's tests read every reply's ``content`` and ``json()``).
    """
    response = httpx.Response(
        reply.status, headers=reply.raw_headers, stream=httpx.ByteStream(body)
    )
    if "content-encoding" in reply.headers:
        response.read()
    else:
        response._content = body
        response.is_stream_consumed = True
        response.is_closed = True
    return response


class UpstreamTransport(AiohttpTransport):
    """``AiohttpTransport`` with httpx's error classes, deadlines and no cookie jar.

    One per client; its aiohttp session (and so its pool) is created on first use, in
    the event loop that uses it, and belongs to that loop.
    """

    def __init__(self, limits: httpx.Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits=limits)
        # requests that hold (or wait for) a pooled connection; more than the pool's size
        # means some wait in aiohttp's queue
        self.held = 0

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
            # each request carries its own timeouts (AiohttpTransport passes them)
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

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """The request counts as holding (or queued for) a pooled connection from here;
        if sending it fails, it gives the count back and raises the httpx fault."""
        self.held += 1
        try:
            yield
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            # others held every connection: this one was still queued for one
            queued = self.limits.max_connections is not None and (
                self.held > self.limits.max_connections
            )
            self.held -= 1
            translated = _translated(exc, queued=queued)
            if translated is None:
                raise
            raise translated from exc
        except BaseException:  # cancelled while waiting: no connection is held
            self.held -= 1
            raise

    async def _open(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
        timeout: httpx.Timeout,  # noqa: ASYNC109 -- httpx's per-phase limits, not a deadline
    ) -> aiohttp.ClientResponse:
        """The request sent and its reply's headers read, straight on the aiohttp pool:
        what ``handle_async_request`` does, without httpx building a Request, merging its
        headers and URL, and wrapping the body in streams on the way in and out -- a third
        of an upstream call's CPU (docs/BENCHMARKS.md "Data plane"). The connection counts
        as held until the reply is released (``send_whole``) or its stream closed
        (``send_streamed``); every fault is the httpx exception the other path raises."""
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        with self._holding():
            return await self.client.request(
                method,
                url,
                data=content,
                headers=headers,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes, as on the other path
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
                ),
            ).__aenter__()

    async def send_whole(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
        timeout: httpx.Timeout,  # noqa: ASYNC109 -- httpx's per-phase limits, not a deadline
    ) -> httpx.Response:
        """One whole request and reply; an ``httpx.Response`` all the same (status,
        headers, body decoded by httpx as usual)."""
        reply = await self._open(method, url, content, headers, timeout)
        try:
            body = await reply.read()
        except aiohttp.ClientError as exc:
            translated = _translated(exc)
            if translated is None:
                raise
            raise translated from exc
        finally:
            reply.release()
            self.held -= 1
        return _whole_response(reply, body)

    async def send_streamed(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
        timeout: httpx.Timeout,  # noqa: ASYNC109 -- httpx's per-phase limits, not a deadline
    ) -> httpx.Response:
        """A reply read as it arrives: the headers now, the body through the response's
        ``aiter_bytes``; the connection stays held until the response is closed (closing
        one not read to the end closes its connection)."""
        reply = await self._open(method, url, content, headers, timeout)
        stream = _TranslatedStream(AiohttpResponseStream(reply), self)
        return httpx.Response(reply.status, headers=reply.raw_headers, stream=stream)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with self._holding():
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TranslatedStream(response.stream, self)
        return response


class _NoCookies(httpx.Cookies):
    """Keeps no cookie and sends none (see the module docstring). Not just an empty jar:
    httpx wraps every reply in urllib's cookie machinery before it asks the jar, which
    cost ~2 % of a gateway request's CPU even with nothing to keep."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


class _UpstreamClient(httpx.AsyncClient):
    """An httpx client whose cookie store is always ``_NoCookies``, and whose whole
    replies can skip httpx's request machinery (``send``)."""

    def __init__(self, *, transport: UpstreamTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self.upstream = transport
        # what httpx would send with every request (accept-encoding, user-agent ...)
        self.base_headers = dict(self.headers)

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        """Cookies given to the client are ignored: it keeps and sends none."""


_NO_COOKIES = _NoCookies()


def pooled_client(
    limits: httpx.Limits = DEFAULT_LIMITS, *, timeout: httpx.Timeout | None = None
) -> httpx.AsyncClient:
    """An httpx client on aiohttp's pool: what every adapter uses, shared or its own."""
    transport = UpstreamTransport(limits)
    if timeout is None:
        return _UpstreamClient(transport=transport)
    return _UpstreamClient(transport=transport, timeout=timeout)


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL | str,
    *,
    content: bytes | None,
    headers: dict[str, str],
    timeout: httpx.Timeout,  # noqa: ASYNC109 -- httpx's per-phase limits, not a deadline
    stream: bool,
) -> httpx.Response:
    """A request and its reply, whole or (``stream=True``; close the response when done)
    read as it arrives: straight on the aiohttp pool for the kit's own clients, through
    httpx for any other client (a caller's own, a test's)."""
    if isinstance(client, _UpstreamClient) and not client.is_closed:
        upstream = client.upstream
        direct = upstream.send_streamed if stream else upstream.send_whole
        return await direct(method, str(url), content, {**client.base_headers, **headers}, timeout)
    sent = client.build_request(method, url, content=content, headers=headers, timeout=timeout)
    return await client.send(sent, stream=stream)
