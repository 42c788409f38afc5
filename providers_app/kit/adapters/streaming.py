"""A reply stream as the kit hands it out: bytes in, normalised chunks out.

``StreamDecoder`` is what each adapter writes for its wire format; ``StreamReader`` joins
the SSE parser to a decoder, apart from the HTTP code, so transcripts and benchmarks drive
the exact path a live stream takes; ``ChatStream`` owns the upstream response and closes
it when the caller stops early; ``ReadDeadline`` bounds each wait for the next bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from .. import errors
from ..sse import SSEEvent, SSEParser
from ..types import ChatChunk, ChatRequest

if TYPE_CHECKING:
    from .base import BaseAdapter

__all__ = ["ChatStream", "ReadDeadline", "StreamDecoder", "StreamReader"]


class ReadDeadline:
    """Bounds each wait of one stream for its next bytes, with one timer per stream.

    Why not ``asyncio.timeout`` around each read: it schedules a timer and cancels it
    again on every read, and a paced stream waits once per chunk -- ~3 % of a paced
    stream's CPU in the relay (py-spy, ``bench_edge_cpu.py --stream --paced 30``). Here a
    read only notes when its own wait ends; the one timer, when it fires, re-arms itself
    for the latest such moment, and cancels the reading task only when a read is still
    waiting past its own end -- which the read turns into ``TimeoutError``, as
    ``asyncio.timeout`` does (a cancellation from anyone else stays a cancellation).
    """

    __slots__ = ("_loop", "_task", "_handle", "_until", "_waiting", "_expired")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._until = 0.0
        self._waiting = False
        self._expired = False

    async def read(self, read: Callable[[], Awaitable[bytes]], wait: float) -> bytes:
        """``await read()``, or ``TimeoutError`` when it takes more than ``wait`` seconds."""
        loop = self._loop
        until = self._until = loop.time() + wait
        handle = self._handle
        if handle is None or handle.when() > until:
            if handle is not None:
                handle.cancel()
            self._handle = loop.call_at(until, self._fire)
        task = self._task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        self._waiting = True
        try:
            return await read()
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                if task.uncancel() <= cancelling:
                    raise TimeoutError from None
            raise
        finally:
            self._waiting = False

    def _fire(self) -> None:
        self._handle = None
        if not self._waiting or self._task is None:
            return  # no read is waiting: the next one arms the timer again
        if self._loop.time() >= self._until:
            self._expired = True
            self._task.cancel()
        else:  # a later read moved the end on (or the loop ran the timer a hair early)
            self._handle = self._loop.call_at(self._until, self._fire)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class StreamDecoder:
    """Turns one provider's SSE events into normalised chunks. One instance per stream.

    A decoder sets ``finished`` when it sees the provider's end of reply; a
    connection that closes before that was cut short.
    """

    __slots__ = ("adapter", "finished")

    def __init__(self, adapter: BaseAdapter) -> None:
        self.adapter = adapter
        self.finished = False

    def feed(self, event: SSEEvent) -> list[ChatChunk]:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> list[ChatChunk]:
        """Called when the connection ends; raises if the stream was cut short."""
        if not self.finished:
            raise errors.NetworkError(
                f"{self.adapter.name}: stream ended before the reply was complete",
                provider=self.adapter.name,
            )
        return []


class StreamReader:
    """Bytes in, normalised chunks out: the SSE parser and a provider's decoder together.

    Kept apart from the HTTP code so transcripts and benchmarks can drive the
    exact code path a live stream takes.
    """

    __slots__ = ("parser", "decoder", "saw_usage", "completion_chars")

    def __init__(self, decoder: StreamDecoder) -> None:
        self.parser = SSEParser()
        self.decoder = decoder
        self.saw_usage = False
        # size of the reply so far, for estimating usage when a provider reports
        # none -- a count, not the text, so nothing buffers the stream
        self.completion_chars = 0

    def feed(self, raw: bytes) -> Iterator[ChatChunk]:
        """Chunks completed by these bytes, yielded one by one so that a chunk
        decoded before an in-stream error still reaches the caller."""
        return self._decode(self.parser.feed(raw))

    def close(self) -> Iterator[ChatChunk]:
        """End of the byte stream: flush the last event, then let the decoder check completeness."""
        yield from self._decode(self.parser.flush())
        yield from self.decoder.finish()

    def _decode(self, events: list[SSEEvent]) -> Iterator[ChatChunk]:
        for event in events:
            for chunk in self.decoder.feed(event):
                if chunk.usage is not None:
                    self.saw_usage = True
                self.completion_chars += len(chunk.text)
                if chunk.tool_calls:
                    self.completion_chars += sum(
                        len(d.name or "") + len(d.arguments) for d in chunk.tool_calls
                    )
                yield chunk


class ChatStream:
    """An async iterator of ChatChunks that owns the upstream response.

    ``rate_limit`` is filled as soon as the response headers arrive. Closing the
    stream early (``aclose()`` or leaving ``async with``) closes the upstream
    connection, so an abandoned client never keeps a provider request running.
    """

    def __init__(
        self, adapter: BaseAdapter, request: ChatRequest, deadline: float | None = None
    ) -> None:
        self.rate_limit: Any = None
        self.model = request.model
        self._iterator = adapter._stream_chunks(request, self, deadline)

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        # ``async for`` reads the adapter's generator itself: no call through this class
        # per chunk. ``__anext__`` stays for a caller that takes one chunk at a time.
        return self._iterator

    async def __anext__(self) -> ChatChunk:
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        await self._iterator.aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
