"""Writing responses: JSON bodies, SSE streams, and the transport failure modes.

A stream is precomputed as a list of events ``(wire bytes, is_content)``; the
writer only sleeps before content events (the waits come from
:meth:`RequestKnobs.content_waits`: the first one is the time to first token,
the framing before it goes out at once, as real APIs send headers and the
role chunk right away) and, with no wait at all, sends the whole stream in one
write. A non-stream response waits the whole generation before its headers,
as a real long completion does.
"""

from __future__ import annotations

import asyncio
import json
from typing import NoReturn

from aiohttp import web

from providers_app.simulator.failures import RequestKnobs

Event = tuple[bytes, bool]

SSE_CONTENT_TYPE = "text/event-stream"
CHUNKS_BEFORE_FAILURE = 2  # content chunks sent before disconnect / malformed / midstream_error


def dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def json_response(
    obj: object,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    indent: int | None = None,
) -> web.Response:
    text = json.dumps(obj, ensure_ascii=False, indent=indent) if indent else dumps(obj)
    return web.Response(
        body=text.encode(), status=status, headers=headers, content_type="application/json"
    )


def bytes_response(body: bytes, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, headers=headers, content_type="application/json")


async def hang() -> NoReturn:
    """Never answer. The handler is cancelled when the client gives up (handler_cancellation)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def cut_connection(request: web.Request) -> NoReturn:
    """Close the TCP connection without finishing the response.

    Raising CancelledError lets aiohttp drop the request quietly instead of
    trying to finish (and log) a response on a dead transport.
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    raise asyncio.CancelledError


async def stall(request: web.Request, response: web.StreamResponse) -> NoReturn:
    """Send the status line and headers, then nothing, never closing.

    The headers are flushed at once (``prepare``), so a client sees a 200 and
    then waits for a body that never comes -- what a wedged upstream behind a
    proxy looks like. The handler is cancelled when the client leaves.
    """
    await response.prepare(request)
    await hang()


async def respond_plain(
    request: web.Request, knobs: RequestKnobs, response: web.Response, content_units: int = 0
) -> web.StreamResponse:
    """A non-stream success after the generation time, honouring transport failure modes.

    ``content_units`` is how many chunks the same reply would stream; with
    timing knobs the response waits as long as that stream would take.
    """
    if knobs.fail == "hang":
        await hang()
    if knobs.fail in ("stall", "stall_midstream"):
        body = bytes(response.body or b"")  # type: ignore[arg-type]
        stalled = web.StreamResponse(status=response.status, headers=response.headers)
        stalled.content_length = len(body)  # promises a body that never comes
        await stall(request, stalled)
    wait = knobs.plain_wait(content_units)
    if wait:
        await asyncio.sleep(wait)
    if knobs.fail == "disconnect":
        cut_connection(request)
    if knobs.fail == "malformed" and response.body is not None:
        body = bytes(response.body)  # type: ignore[arg-type]
        response.body = body[: max(1, len(body) // 2)]
    return response


async def respond_stream(
    request: web.Request,
    knobs: RequestKnobs,
    events: list[Event],
    *,
    headers: dict[str, str],
    malformed_event: bytes,
    error_event: bytes,
    content_type: str = SSE_CONTENT_TYPE,
) -> web.StreamResponse:
    if knobs.fail == "hang":
        await hang()
    mode = knobs.fail
    # Paced as the whole reply would be, even when a failure cuts it short.
    waits = knobs.content_waits(sum(1 for _, is_content in events if is_content))
    if mode in ("disconnect", "malformed", "midstream_error", "stall_midstream"):
        events = _head(events)
        if mode == "malformed":
            events.append((malformed_event, False))
        elif mode == "midstream_error":
            events.append((error_event, False))
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = content_type
    if content_type == SSE_CONTENT_TYPE:
        response.headers["Cache-Control"] = "no-cache"
    if mode == "stall":
        await stall(request, response)
    await response.prepare(request)
    await _write(response, events, waits)
    if mode == "stall_midstream":
        await hang()  # the two chunks are out; the connection stays open and silent
    if mode == "disconnect":
        cut_connection(request)
    await response.write_eof()
    return response


def _head(events: list[Event]) -> list[Event]:
    """The events up to and including the CHUNKS_BEFORE_FAILURE-th content chunk."""
    seen = 0
    for i, (_, is_content) in enumerate(events):
        if is_content:
            seen += 1
            if seen == CHUNKS_BEFORE_FAILURE:
                return list(events[: i + 1])
    return list(events)


async def _write(response: web.StreamResponse, events: list[Event], waits: list[float]) -> None:
    if not any(waits):
        await response.write(b"".join(data for data, _ in events))
        return
    pending: list[bytes] = []
    remaining = iter(waits)
    for data, is_content in events:
        if is_content:
            wait = next(remaining, 0.0)
            if wait:
                if pending:
                    await response.write(b"".join(pending))
                    pending.clear()
                await asyncio.sleep(wait)
        pending.append(data)
    if pending:
        await response.write(b"".join(pending))
