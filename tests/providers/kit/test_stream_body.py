"""How a streamed reply's body reaches the SSE parser: whatever has arrived is read in
one go, events split anywhere across reads are put back together, and a body the
provider compressed is still decoded (through httpx). Against a real server on
127.0.0.1, through the kit's pooled client."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from providers_app.kit.adapters import Deadlines, ProviderConfig
from providers_app.kit.http_client import pooled_client
from providers_app.kit.providers import create_adapter
from providers_app.kit.types import ChatRequest, Message

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def delta(text: str, finish: str | None = None) -> bytes:
    return sse({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


USAGE = sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
WHOLE = b"".join(delta(w) for w in ["Hé", "llo", " wörld"]) + delta("", "stop") + USAGE
WHOLE += b"data: [DONE]\n\n"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


async def streamed(url: str) -> tuple[str, list]:
    client = pooled_client()
    try:
        config = ProviderConfig(base_url=url, api_key="sk-test-0001", deadlines=Deadlines(idle=5))
        adapter = create_adapter("openai", config, client=client)
        request = ChatRequest(model="gpt-4o-mini", messages=[Message(role="user", content="hi")])
        chunks = [chunk async for chunk in adapter.stream(request)]
    finally:
        await client.aclose()
    return "".join(c.text for c in chunks), chunks


async def test_it_reads_a_whole_reply_that_arrives_in_one_write(serve):
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(WHOLE)
        return response

    text, chunks = await streamed(await serve(handler))
    assert text == "Héllo wörld"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_it_puts_together_events_and_characters_split_across_writes(serve):
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for start in range(0, len(WHOLE), 7):  # mid-line, mid-character, mid-blank-line
            await response.write(WHOLE[start : start + 7])
            await asyncio.sleep(0)
        return response

    text, chunks = await streamed(await serve(handler))
    assert text == "Héllo wörld"
    assert any(c.finish_reason == "stop" for c in chunks)


async def test_it_decodes_a_stream_the_provider_sent_gzipped(serve):
    async def handler(request: web.Request) -> web.StreamResponse:
        body = gzip.compress(WHOLE)
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "content-encoding": "gzip"}
        )
        await response.prepare(request)
        await response.write(body[:20])
        await response.write(body[20:])
        return response

    text, _ = await streamed(await serve(handler))
    assert text == "Héllo wörld"
