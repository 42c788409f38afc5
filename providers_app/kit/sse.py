"""Incremental Server-Sent-Events parser.

Written by hand rather than taken from httpx-sse because the kit needs two
things that library does not do: flushing the last event when a stream ends
without its blank line (Anthropic and Gemini fixtures do exactly that), and
handing back lines that are not SSE at all (Gemini sends a bare pretty-printed
JSON error object in the middle of an SSE stream). Everything else follows the
WHATWG "event stream" rules: LF, CR or CRLF line ends, ``:`` comments, multi-
line ``data``, one optional space after the colon, unknown fields ignored.

Bytes may be split anywhere -- mid-line, mid-CRLF, mid UTF-8 character -- and
the parser keeps only the incomplete tail between feeds, so it never buffers a
whole stream.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

DONE = "[DONE]"


@dataclass(slots=True)
class SSEEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    # True for a block of lines that were not SSE fields (e.g. a bare JSON error body)
    raw: bool = False


class SSEParser:
    __slots__ = (
        "_decoder",
        "_pending",
        "_held_cr",
        "_data",
        "_event",
        "_id",
        "_retry",
        "_raw",
        "_has_field",
    )

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Pieces of the line still waiting for its end. Kept as a list and joined
        # once when the line ends, so a long line arriving in many small reads
        # costs linear, not quadratic, time.
        self._pending: list[str] = []
        # a CR ended the last read: it may be the first half of a CRLF
        self._held_cr = False
        self._reset_event()
        self._raw: list[str] = []

    def _reset_event(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._has_field = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse more bytes; return the events they completed."""
        text = self._decoder.decode(chunk)
        if not self._held_cr and "\n" not in text and "\r" not in text:
            if text:
                self._pending.append(text)
            return []
        text = "".join(self._pending) + ("\r" if self._held_cr else "") + text
        self._pending = []
        self._held_cr = text.endswith("\r")
        if self._held_cr:
            text = text[:-1]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        tail = lines.pop()
        if tail:
            self._pending.append(tail)
        events: list[SSEEvent] = []
        for line in lines:
            if line[:6] == "data: " and not self._raw:
                # the line nearly every event is made of, without ``_line``'s dispatch
                self._data.append(line[6:])
                self._has_field = True
            else:
                self._line(line, events)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: dispatch whatever is pending, as if a blank line followed."""
        events: list[SSEEvent] = []
        rest = "".join(self._pending) + self._decoder.decode(b"", final=True)
        self._pending = []
        self._held_cr = False
        for line in rest.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if line:
                self._line(line, events)
        self._line("", events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            return  # comment / keep-alive
        field, sep, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._flush_raw(events)
            self._data.append(value)
            self._has_field = True
        elif field == "event":
            self._flush_raw(events)
            self._event = value
            self._has_field = True
        elif field == "id":
            if "\0" not in value:
                self._id = value
            self._has_field = True
        elif field == "retry":
            if value.isdigit():
                self._retry = int(value)
            self._has_field = True
        else:
            # Not an SSE field: the spec ignores it, we keep it so the adapter can
            # recognise a bare error body.
            self._raw.append(line)

    def _flush_raw(self, events: list[SSEEvent]) -> None:
        if self._raw:
            events.append(SSEEvent(event="", data="\n".join(self._raw), raw=True))
            self._raw = []

    def _dispatch(self, events: list[SSEEvent]) -> None:
        self._flush_raw(events)
        if self._data:
            events.append(
                SSEEvent(
                    event=self._event or "message",
                    data="\n".join(self._data),
                    id=self._id,
                    retry=self._retry,
                )
            )
        self._reset_event()
