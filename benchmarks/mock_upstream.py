"""The cheapest OpenAI-compatible upstream we can write, so it does not hide a gateway's cost.

Answers ``POST …/chat/completions`` with a fixed chat completion (JSON) or, when the
body asks for ``"stream": true``, a fixed Server-Sent-Events reply: 8 content chunks
of one word, a finish chunk, a usage chunk (``choices: []``, as OpenAI sends with
``stream_options.include_usage``) and ``data: [DONE]``. Every other request gets a
small JSON list (``GET /v1/models``). The replies are built once at start; a request
costs one parse (httptools) and one ``transport.write``.

Two implementations, same bytes on the wire:

- ``raw`` (default): an ``asyncio.Protocol`` on uvloop with httptools' request parser
  -- no framework, no per-request objects beyond the parser's callbacks;
- ``aiohttp``: an ``aiohttp.web`` app, for comparison.

``bench_dataplane.py --mock-compare`` measures both (closed loop, c=50, JSON and
stream). On the 2-core box (load ~4.7, 2026-12-05) the raw one used 0.012 ms of CPU per
request against aiohttp's 0.054 (JSON) and 0.076 (stream), 4-7x less, and answered
5,900 vs 3,200 rps (JSON; there the one-process load generator is the limit), so it
is the default: the mock's share of the machine stays negligible next to a gateway.

``--chunk-interval S --slow-chunks N`` makes streams slow: N content chunks,
one every S seconds (the ``--slow-streams`` check of bench_dataplane.py: 10 chunks 1 s
apart; its paced-stream runs: 8 chunks 30 ms apart, a model's output speed).
``--chunk-jitter F`` draws each gap uniformly from ``S * (1 - F)`` to ``S * (1 + F)``
(mean S): a hosted model's chunks do not come on a clock, and streams that all last
exactly as long stay in step with each other (see bench_dataplane.py's paced mode).

    python benchmarks/mock_upstream.py --port 9000 [--impl raw|aiohttp]
        [--chunk-interval 1.0 --slow-chunks 10 [--chunk-jitter 0.5]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import time
from typing import Any

MODEL = "gpt-4o-mini"
CHUNKS = 8
WORDS = "Hello there from the mock upstream of aipk benchmarks today".split()
STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')
USAGE = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def completion_body() -> bytes:
    return _dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(WORDS[:CHUNKS])},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def sse_events(chunks: int) -> list[bytes]:
    """The SSE events of one streamed reply, each ``data: …\\n\\n``."""
    events = [_chunk({"role": "assistant", "content": WORDS[0]})]
    events += [_chunk({"content": " " + WORDS[i % len(WORDS)]}) for i in range(1, chunks)]
    events.append(_chunk({}, "stop"))
    usage = {**USAGE, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    events.append({**_chunk({}), "choices": [], "usage": usage})
    return [b"data: " + _dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


MODELS_BODY = _dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


def json_response(body: bytes, keep_alive: bool) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
        % (len(body), b"" if keep_alive else b"connection: close\r\n", body)
    )


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n"
)


class Replies:
    def __init__(self, interval: float, slow_chunks: int, jitter: float = 0.0) -> None:
        self.interval = interval
        self.jitter = min(max(jitter, 0.0), 1.0)
        self.json = completion_body()
        # slow streams: the content chunks are paced; the tail (finish, usage, DONE) is not
        events = sse_events(slow_chunks if interval else CHUNKS)
        self.events = events
        self.stream_body = b"".join(http_chunk(e) for e in events) + b"0\r\n\r\n"

    def gap(self) -> float:
        """The wait before the next chunk of a slow stream."""
        if not self.jitter:
            return self.interval
        return self.interval * random.uniform(1 - self.jitter, 1 + self.jitter)


def run_raw(host: str, port: int, replies: Replies) -> None:
    import httptools
    import uvloop

    class Protocol(asyncio.Protocol):
        __slots__ = ("transport", "parser", "body", "stream", "busy")

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.parser = httptools.HttpRequestParser(self)
            self.body = b""

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_message_begin(self) -> None:
            self.body = b""

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            keep_alive = self.parser.should_keep_alive()
            if self.parser.get_method() != b"POST":
                self.transport.write(json_response(MODELS_BODY, keep_alive))
            elif STREAM_FLAG.search(self.body) is None:
                self.transport.write(json_response(replies.json, keep_alive))
            elif not replies.interval:
                self.transport.write(
                    STREAM_HEAD
                    + (b"" if keep_alive else b"connection: close\r\n")
                    + b"\r\n"
                    + replies.stream_body
                )
            else:
                asyncio.get_running_loop().create_task(self.slow(keep_alive))
                return
            if not keep_alive:
                self.transport.close()

        async def slow(self, keep_alive: bool) -> None:
            write = self.transport.write
            write(STREAM_HEAD + b"\r\n")
            *content, finish, usage, done = replies.events
            for event in content:
                if self.transport.is_closing():
                    return
                write(http_chunk(event))
                await asyncio.sleep(replies.gap())
            if not self.transport.is_closing():
                write(http_chunk(finish) + http_chunk(usage) + http_chunk(done) + b"0\r\n\r\n")
                if not keep_alive:
                    self.transport.close()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Protocol, host, port, backlog=4096, reuse_address=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        async with server:
            await stop.wait()

    uvloop.run(serve())


def run_aiohttp(host: str, port: int, replies: Replies) -> None:
    import uvloop
    from aiohttp import web

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if STREAM_FLAG.search(body) is None:
            return web.Response(body=replies.json, content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if not replies.interval:
            await response.write(b"".join(replies.events))
        else:
            content, tail = replies.events[:-3], replies.events[-3:]
            for event in content:
                await response.write(event)
                await asyncio.sleep(replies.gap())
            await response.write(b"".join(tail))
        await response.write_eof()
        return response

    async def models(request: web.Request) -> web.Response:
        return web.Response(body=MODELS_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", chat)
    app.router.add_get("/{tail:.*}", models)
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=None,
        backlog=4096,
        loop=uvloop.new_event_loop(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--impl", choices=["raw", "aiohttp"], default="raw")
    parser.add_argument("--chunk-interval", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--slow-chunks", type=int, default=10)
    parser.add_argument(
        "--chunk-jitter", type=float, default=0.0, help="each gap: interval x U(1-F, 1+F)"
    )
    args = parser.parse_args()
    replies = Replies(args.chunk_interval, args.slow_chunks, args.chunk_jitter)
    (run_raw if args.impl == "raw" else run_aiohttp)(args.host, args.port, replies)


if __name__ == "__main__":
    main()
