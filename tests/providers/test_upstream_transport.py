"""The upstream client every adapter uses (httpx on aiohttp's pool) keeps the kit's
behaviour: each deadline, congestion, the kit's errors, closing an abandoned stream's
connection, and reuse of pooled connections. Against small real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiohttp import web

from providers_app.kit import errors
from providers_app.kit.adapters import BaseAdapter, Deadlines, ProviderConfig
from providers_app.kit.http_client import pooled_client
from providers_app.kit.providers import create_adapter
from providers_app.kit.types import ChatRequest, Message

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ask() -> ChatRequest:
    return ChatRequest(model="gpt-4o-mini", messages=[Message(role="user", content="hi")])


def sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def delta(text: str) -> bytes:
    return sse({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


REPLY = {
    "id": "c1",
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class Upstream:
    """An aiohttp server on a free port; records the client connections it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.peers: list[tuple[str, int]] = []
        self.closed = asyncio.Event()

    async def __aenter__(self) -> Upstream:
        async def record(request: web.Request) -> web.StreamResponse:
            assert request.transport is not None
            self.peers.append(request.transport.get_extra_info("peername"))
            return await self.handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        # handlers left stalled on purpose are cancelled at the end, not awaited
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def adapter_for(
    url: str, client: httpx.AsyncClient | None = None, **deadlines: float
) -> BaseAdapter:
    config = ProviderConfig(base_url=url, api_key="sk-test-0001", deadlines=Deadlines(**deadlines))
    return create_adapter("openai", config, client=client)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    client = pooled_client()
    yield client
    await client.aclose()


async def test_it_reuses_one_pooled_connection_for_requests_one_after_another(client):
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.json_response(REPLY)

    async with Upstream(reply) as upstream:
        adapter = adapter_for(upstream.url, client)
        for _ in range(3):
            assert (await adapter.chat(ask())).text == "hello"
    assert len(upstream.peers) == 3 and len(set(upstream.peers)) == 1


async def test_it_reads_a_stream_incrementally(client):
    second_chunk_may_go = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(delta("one"))
        await second_chunk_may_go.wait()  # only once the client has had the first
        await response.write(delta("two"))
        await response.write(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        await response.write(b"data: [DONE]\n\n")
        return response

    async with Upstream(stream) as upstream:
        texts = []
        async with adapter_for(upstream.url, client, first_byte=5).stream(ask()) as chunks:
            async for chunk in chunks:
                texts.append(chunk.text)
                second_chunk_may_go.set()
    assert "".join(texts) == "onetwo"


async def test_it_closes_the_upstream_connection_when_a_stream_is_abandoned(client):
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(delta("more "))
                await asyncio.sleep(0.02)
        except (ConnectionError, OSError):
            upstream.closed.set()  # the client hung up: the provider may stop generating
        return response

    async with Upstream(endless) as upstream:
        stream = adapter_for(upstream.url, client).stream(ask())
        assert (await stream.__anext__()).text == "more "
        await stream.aclose()
        await asyncio.wait_for(upstream.closed.wait(), 10)


async def test_it_closes_the_upstream_connection_when_the_caller_is_cancelled(client):
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(delta("more "))
                await asyncio.sleep(0.02)
        except (ConnectionError, OSError):
            upstream.closed.set()
        return response

    async def consume() -> None:
        async with adapter_for(upstream.url, client).stream(ask()) as chunks:
            async for _ in chunks:
                pass

    async with Upstream(endless) as upstream:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(upstream.closed.wait(), 10)


async def test_it_reports_a_refused_connection_as_a_network_error_not_a_timeout(client):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{port}/")
    with pytest.raises(errors.NetworkError) as caught:
        await adapter_for(f"http://127.0.0.1:{port}/v1", client).chat(ask())
    assert "ConnectError" in caught.value.message


async def test_it_reports_a_server_that_hangs_up_without_a_reply_as_a_protocol_fault(client):
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{port}/")
        with pytest.raises(errors.NetworkError) as caught:
            await adapter_for(f"http://127.0.0.1:{port}/v1", client).chat(ask())
        assert "RemoteProtocolError" in caught.value.message
    finally:
        server.close()
        await server.wait_closed()


async def test_it_reports_a_stream_cut_mid_body_as_a_network_error(client):
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        chunk = delta("partial")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 10000\r\n\r\n"
            + chunk
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        texts = []
        with pytest.raises(errors.NetworkError):
            async for chunk in adapter_for(f"http://127.0.0.1:{port}/v1", client).stream(ask()):
                texts.append(chunk.text)
        assert texts == ["partial"]
    finally:
        server.close()
        await server.wait_closed()


async def test_it_keeps_the_first_byte_deadline_when_the_provider_never_answers(client):
    async def silent(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.json_response(REPLY)

    async with Upstream(silent) as upstream:
        with pytest.raises(errors.TimeoutError) as plain:
            await adapter_for(upstream.url, client, first_byte=0.3).chat(ask())
        with pytest.raises(errors.TimeoutError) as streamed:
            async for _ in adapter_for(upstream.url, client, first_byte=0.3).stream(ask()):
                pass
    assert plain.value.phase == "first_byte"
    assert streamed.value.phase == "headers"


async def test_it_keeps_the_idle_deadline_between_chunks(client):
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(delta("one"))
        await asyncio.sleep(30)
        return response

    async with Upstream(stalls) as upstream:
        texts = []
        with pytest.raises(errors.TimeoutError) as caught:
            async for chunk in adapter_for(upstream.url, client, idle=0.3).stream(ask()):
                texts.append(chunk.text)
    assert texts == ["one"] and caught.value.phase == "idle"


async def test_it_keeps_the_total_deadline_across_a_slow_steady_stream(client):
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(300):
            await response.write(delta("x"))
            await asyncio.sleep(0.05)
        return response

    async with Upstream(trickle) as upstream:
        with pytest.raises(errors.TimeoutError) as caught:
            async for _ in adapter_for(upstream.url, client, idle=5, total=0.5).stream(ask()):
                pass
    assert caught.value.phase == "total"


async def test_it_reports_a_full_pool_as_local_congestion():
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return web.json_response(REPLY)

    client = pooled_client(httpx.Limits(max_connections=1))
    try:
        async with Upstream(slow) as upstream:
            adapter = adapter_for(upstream.url, client, first_byte=0.1)
            busy = asyncio.create_task(adapter_for(upstream.url, client).chat(ask()))
            await asyncio.sleep(0.05)  # holds the only connection
            with pytest.raises(errors.LocalCongestionError):
                await adapter.chat(ask())
            assert (await busy).text == "hello"
    finally:
        await client.aclose()


async def test_it_gives_an_adapter_without_a_client_its_own_pooled_one_and_closes_it():
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.json_response(REPLY)

    async with Upstream(reply) as upstream:
        adapter = adapter_for(upstream.url)
        assert (await adapter.chat(ask())).text == "hello"
        await adapter.aclose()
    assert adapter._client.is_closed


async def test_it_keeps_no_cookie_from_one_reply_for_the_next_request(client):
    async def sets_cookie(request: web.Request) -> web.StreamResponse:
        response = web.json_response({**REPLY, "cookie": request.headers.get("cookie")})
        response.set_cookie("session", "tenant-a")
        return response

    async with Upstream(sets_cookie) as upstream:
        first = await client.post(upstream.url + "/chat/completions", json={})
        second = await client.post(upstream.url + "/chat/completions", json={})
    assert first.cookies.get("session") == "tenant-a"  # the reply still shows it
    assert second.json()["cookie"] is None  # but the shared client does not send it on


async def test_it_frees_the_connection_of_every_ended_request_so_a_pool_of_one_keeps_serving():
    async def handler(request: web.Request) -> web.StreamResponse:
        if "/silent" in request.path:
            await asyncio.sleep(30)
        if "/endless" in request.path:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            while True:
                await response.write(delta("more "))
                await asyncio.sleep(0.02)
        return web.json_response(REPLY)

    client = pooled_client(httpx.Limits(max_connections=1))
    try:
        async with Upstream(handler) as upstream:
            timeout = httpx.Timeout(5.0)
            abandoned = adapter_for(upstream.url + "/endless", client).stream(ask())
            await abandoned.__anext__()
            await abandoned.aclose()
            with pytest.raises(httpx.ReadTimeout):
                await client.get(upstream.url + "/silent", timeout=httpx.Timeout(5, read=0.2))
            for _ in range(3):
                response = await client.get(upstream.url + "/x", timeout=timeout)
                assert response.json()["choices"][0]["message"]["content"] == "hello"
            # no request is counted as holding the connection (the count tells a full
            # pool's queue apart from a slow connect), and a slow reply is the provider's
            assert client._transport.held == 0
            with pytest.raises(errors.TimeoutError) as caught:
                await adapter_for(upstream.url + "/silent", client, first_byte=0.3).chat(ask())
            assert caught.value.phase == "first_byte"
    finally:
        await client.aclose()


async def test_it_decodes_a_gzipped_whole_reply_and_asks_for_one_as_httpx_does(client):
    import gzip

    seen: dict[str, str] = {}

    async def gzipped(request: web.Request) -> web.StreamResponse:
        seen.update(request.headers)
        body = gzip.compress(json.dumps(REPLY).encode())
        headers = {"content-encoding": "gzip", "content-type": "application/json"}
        return web.Response(body=body, headers=headers)

    async with Upstream(gzipped) as upstream:
        assert (await adapter_for(upstream.url, client).chat(ask())).text == "hello"
    assert "gzip" in seen["Accept-Encoding"]
    assert seen["Content-Type"] == "application/json"
    assert seen["Authorization"] == "Bearer sk-test-0001"
