"""A reply stream as the kit hands it out: bytes in, normalised chunks out.

``StreamDecoder`` is what each adapter writes for its wire format; ``StreamReader`` joins
the SSE parser to a decoder, apart from the HTTP code, so transcripts and benchmarks drive
the exact path a live stream takes; ``ChatStream`` owns the upstream response and closes
it when the caller stops early.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from .. import errors
from ..sse import SSEEvent, SSEParser
from ..types import ChatChunk, ChatRequest

if TYPE_CHECKING:
    from .base import BaseAdapter

__all__ = ["ChatStream", "StreamDecoder", "StreamReader"]


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
