"""The request path's Redis connection: one pipelined connection per event loop.

Every /v1 request sends a few Redis commands (admission, key pool, settle), from many
coroutines at once. ``redis.asyncio`` checks a connection out of a pool per command and
wraps each write in ``asyncio.wait_for`` (a new task) and each read in a timeout context,
plus its retry and observability hooks: about 0.1 ms of CPU per command on this
project's benchmark machine, a third of a production request's CPU (docs/BENCHMARKS.md,
"The data plane"). Redis itself answers commands in order on a connection, so many
coroutines can share ONE connection: each writes its command and waits for the reply in
its place in the queue. redis-py offers no such multiplexed connection (its pipeline is
an explicit batch from one caller), hence this small client: hiredis (redis-py's own C
reply parser) reads the replies; the rest is the RESP request encoding and a queue.

Faults keep redis-py's exception classes (``redis.exceptions``), so callers handle them
as before: a reply error is a ``ResponseError`` (``NoScriptError`` for NOSCRIPT), a lost
or refused connection a ``ConnectionError``, a reply later than the socket timeout a
``TimeoutError``. A late reply leaves the connection out of step with its queue, so a
timeout closes the connection and fails every command still waiting on it (as redis-py
drops a connection that timed out); the next command opens a new one.

Only plain ``redis://`` and ``unix://`` locations use it; TLS (``rediss://``) and
anything else keep the redis-py client (``aipk_site.infra.state``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["PipelinedRedis", "WireScript", "supports"]


def supports(url: str) -> bool:
    """Whether this client can serve the location (else the redis-py client does)."""
    return urlparse(url).scheme in ("redis", "unix")


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):  # as redis-py refuses booleans, refuse them here too
        raise TypeError("Redis arguments cannot be booleans")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, memoryview):
        return value.tobytes()
    raise TypeError(f"Redis arguments must be bytes, str, int or float, not {type(value)}")


def pack(args: Sequence[Any]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _arg(arg)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


def _reply_error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    """One connection: commands written in order, replies matched in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.outgoing: list[bytes] = []
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but act alike
        self.transport = cast(asyncio.Transport, transport)

    def queue(self, command: bytes) -> None:
        """Write ``command`` with the others queued in the same turn of the event loop:
        one write (one system call) for all the commands the request coroutines send
        between two turns, instead of one each."""
        if self.outgoing:
            self.outgoing.append(command)
        else:
            self.outgoing = [command]
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and self.lost is None:
            self.transport.write(b"".join(outgoing))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while (reply := reader.gets()) is not False:
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.fail(RedisConnectionError("Redis sent a reply no command asked for"))
                return
            future = waiting.popleft()
            if future.done():  # its caller was cancelled: the reply is dropped in its turn
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(_reply_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis connection lost: {exc or 'closed by the server'}"))

    def fail(self, error: BaseException) -> None:
        """Close the connection and fail every command waiting on it."""
        if self.lost is None:
            self.lost = error
        if self.transport is not None:
            self.transport.abort()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class PipelinedRedis:
    """One event loop's connection to one Redis server, shared by all its coroutines."""

    def __init__(
        self,
        url: str,
        *,
        socket_timeout: float | None = None,
        socket_connect_timeout: float | None = None,
    ) -> None:
        parsed = urlparse(url)
        self._unix_path = parsed.path if parsed.scheme == "unix" else None
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or 6379
        self._username = unquote(parsed.username) if parsed.username else None
        self._password = unquote(parsed.password) if parsed.password else None
        db: str | None = None
        if parsed.scheme == "unix":
            for part in parsed.query.split("&"):
                if part.startswith("db="):
                    db = part[3:]
        else:
            db = parsed.path.lstrip("/") or None
        self._db = int(db) if db else 0
        self._timeout = socket_timeout
        self._connect_timeout = socket_connect_timeout
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Lock | None = None
        self._loop = asyncio.get_running_loop()

    # -- the connection ---------------------------------------------------------------

    async def _open(self) -> _Protocol:
        loop = self._loop
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._unix_path is not None:
                    _, protocol = await loop.create_unix_connection(_Protocol, self._unix_path)
                else:
                    _, protocol = await loop.create_connection(_Protocol, self._host, self._port)
                try:
                    await self._handshake(protocol)
                except BaseException:
                    protocol.fail(RedisConnectionError("Redis connection handshake failed"))
                    raise
        except TimeoutError as exc:
            raise RedisTimeoutError("Timeout connecting to Redis") from exc
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to Redis: {exc}") from exc
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        """Authentication and the database, first on a new connection."""
        if self._password is not None:
            auth: list[Any] = ["AUTH", self._password]
            if self._username is not None:
                auth.insert(1, self._username)
            await self._send(protocol, auth)
        if self._db:
            await self._send(protocol, ["SELECT", self._db])

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        # one coroutine opens the connection; the others queue behind it and take it
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            protocol = self._protocol
            if protocol is None or protocol.lost is not None:
                protocol = self._protocol = await self._open()
            return protocol

    def _send(self, protocol: _Protocol, args: Sequence[Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        if protocol.lost is not None:
            # lost between the caller's check and now: nothing would ever answer
            future.set_exception(protocol.lost)
            return future
        protocol.queue(pack(args))
        protocol.waiting.append(future)
        return future

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (hiredis's types: bytes, int, list, None)."""
        protocol = await self._connection()
        future = self._send(protocol, args)
        if self._timeout is None:
            return await future
        timer = self._loop.call_later(self._timeout, self._expire, protocol, future)
        try:
            return await future
        finally:
            timer.cancel()

    @staticmethod
    def _expire(protocol: _Protocol, future: asyncio.Future[Any]) -> None:
        if not future.done():
            protocol.fail(RedisTimeoutError("Timeout reading from Redis"))

    async def aclose(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    # -- the commands the request path sends --------------------------------------------

    async def get(self, key: str) -> bytes | None:
        reply: bytes | None = await self.execute("GET", key)
        return reply

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        reply: list[bytes | None] = await self.execute("MGET", *keys)
        return reply

    async def set(
        self, key: str, value: bytes | str, *, px: int | None = None, ex: int | None = None
    ) -> bool:
        args: list[Any] = ["SET", key, value]
        if px is not None:
            args += ["PX", px]
        if ex is not None:
            args += ["EX", ex]
        return bool(await self.execute(*args))

    async def delete(self, *keys: str) -> int:
        return int(await self.execute("DEL", *keys))

    def register_script(self, source: str) -> WireScript:
        return WireScript(self, source)


class WireScript:
    """A Lua script run by its SHA1 (EVALSHA), loaded with EVAL when the server lacks it."""

    __slots__ = ("client", "source", "sha")

    def __init__(self, client: PipelinedRedis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return await self.client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # a restarted or flushed server: EVAL runs it and caches it for the next EVALSHA
            return await self.client.execute("EVAL", self.source, len(keys), *keys, *args)
