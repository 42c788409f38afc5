"""Writing responses: JSON bodies, SSE streams, and the transport failure modes.

A stream is precomputed as a list of events ``(wire bytes, is_content)``; the
writer only sleeps before content events (so time-to-first-token equals the
delay, and framing events cost nothing) and, with no delay, sends the whole
stream in one write.
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


async def respond_plain(
    request: web.Request, knobs: RequestKnobs, response: web.Response
) -> web.StreamResponse:
    """A non-stream success, after the configured delay, honouring transport failure modes."""
    if knobs.fail == "hang":
        await hang()
    if knobs.delay_s:
        await asyncio.sleep(knobs.delay_s)
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
    if mode in ("disconnect", "malformed", "midstream_error"):
        events = _head(events)
        if mode == "malformed":
            events.append((malformed_event, False))
        elif mode == "midstream_error":
            events.append((error_event, False))
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = content_type
    if content_type == SSE_CONTENT_TYPE:
        response.headers["Cache-Control"] = "no-cache"
    await response.prepare(request)
    await _write(response, events, knobs.delay_s)
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


async def _write(response: web.StreamResponse, events: list[Event], delay_s: float) -> None:
    if not delay_s:
        await response.write(b"".join(data for data, _ in events))
        return
    pending: list[bytes] = []
    for data, is_content in events:
        if is_content:
            if pending:
                await response.write(b"".join(pending))
                pending.clear()
            await asyncio.sleep(delay_s)
        pending.append(data)
    if pending:
        await response.write(b"".join(pending))
