"""Which upstream HTTP client keeps up with concurrency: requests/s and client CPU per request.

Starts the provider simulator (``manage.py simulate_providers --delay-ms 0``) on a free
127.0.0.1 port and sends the same OpenAI chat request through four clients, each with one
pool of up to 200 connections:

* ``httpx pool``       -- ``httpx.AsyncClient`` on its own (httpcore) pool, aipk before issue 12;
* ``httpx+aiohttp``    -- ``httpx.AsyncClient`` on the stock ``httpx_aiohttp.AiohttpTransport``;
* ``kit client``       -- ``providers_app.kit.http_client.pooled_client()``: the same transport
                          with the kit's error/deadline corrections (what aipk uses now);
* ``aiohttp``          -- a bare ``aiohttp.ClientSession`` (the ceiling).

Two replies: a small JSON reply (``stream: false``) and an SSE stream of 8 events
(read incrementally, byte chunks as they arrive). Each is run at concurrency 1, 50 and
200: ``c`` workers loop for a fixed time, each sending one request after the other.
Reported: requests/s, and the client process's CPU time per request (``process_time``;
the simulator is another process, so this is the client's own cost -- at high concurrency
the simulator, not the client, may bound requests/s, and CPU per request is the fairer
comparison). The variants run interleaved per cell, so load changes hit all alike.

Usage::

    .venv/bin/python benchmarks/bench_upstream_client.py           # ~80 s
    .venv/bin/python benchmarks/bench_upstream_client.py --seconds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from _common import REPO_ROOT, environment, markdown_table
from httpx_aiohttp import AiohttpTransport

from providers_app.kit.http_client import pooled_client

LIMIT = 200
CONCURRENCY = (1, 50, 200)
VARIANTS = ("httpx pool", "httpx+aiohttp", "kit client", "aiohttp")
# the simulator streams this as 8 SSE events (role, 6 words, finish) and then [DONE]
MESSAGE = "one two three"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Simulator:
    """``manage.py simulate_providers`` in a subprocess; always stopped by ``stop()``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "simulate_providers", "--port", str(self.port)]
            + ["--delay-ms", "0"],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/_sim/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("simulator not healthy in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


Send = Callable[[], Awaitable[int]]


def body(stream: bool) -> bytes:
    return json.dumps(
        {
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": MESSAGE}],
        }
    ).encode()


HEADERS = {"authorization": "Bearer sk-bench-0001", "content-type": "application/json"}


def httpx_sender(client: httpx.AsyncClient, url: str, stream: bool) -> Send:
    content = body(stream)
    timeout = httpx.Timeout(connect=5.0, read=None, write=30.0, pool=5.0)

    async def send() -> int:
        request = client.build_request(
            "POST", url, content=content, headers=HEADERS, timeout=timeout
        )
        response = await client.send(request, stream=True)
        try:
            size = 0
            async for raw in response.aiter_bytes():  # incrementally, as the kit reads
                size += len(raw)
        finally:
            await response.aclose()
        if response.status_code != 200 or not size:
            raise RuntimeError(f"HTTP {response.status_code}")
        return size

    return send


def aiohttp_sender(session: aiohttp.ClientSession, url: str, stream: bool) -> Send:
    content = body(stream)

    async def send() -> int:
        async with session.post(url, data=content, headers=HEADERS) as response:
            size = 0
            async for raw in response.content.iter_any():
                size += len(raw)
        if response.status != 200 or not size:
            raise RuntimeError(f"HTTP {response.status}")
        return size

    return send


async def run_cell(send: Send, concurrency: int, seconds: float) -> tuple[float, float]:
    """(requests/s, client CPU ms per request) of ``concurrency`` workers for ``seconds``."""
    for _ in range(min(concurrency, 20)):  # warm the pool
        await send()
    count = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            await send()
            count += 1

    cpu = time.process_time()
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu
    return count / elapsed, cpu * 1000 / max(count, 1)


async def bench(url: str, seconds: float) -> list[list[object]]:
    chat = f"{url}/openai/v1/chat/completions"
    own = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=LIMIT, max_keepalive_connections=LIMIT)
    )
    stock = httpx.AsyncClient(
        transport=AiohttpTransport(
            limits=httpx.Limits(max_connections=LIMIT, max_keepalive_connections=LIMIT)
        )
    )
    kit = pooled_client()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=LIMIT))
    rows: list[list[object]] = []
    try:
        for stream in (False, True):
            senders: dict[str, Send] = {
                "httpx pool": httpx_sender(own, chat, stream),
                "httpx+aiohttp": httpx_sender(stock, chat, stream),
                "kit client": httpx_sender(kit, chat, stream),
                "aiohttp": aiohttp_sender(session, chat, stream),
            }
            for concurrency in CONCURRENCY:
                results = {}
                for name in VARIANTS:  # interleaved per cell
                    results[name] = await run_cell(senders[name], concurrency, seconds)
                rows.append(
                    [
                        "SSE, 8 chunks" if stream else "JSON",
                        concurrency,
                        *(f"{results[n][0]:,.0f} / {results[n][1]:.2f}" for n in VARIANTS),
                    ]
                )
                print(f"  done: {rows[-1][0]} c={concurrency}", file=sys.stderr, flush=True)
    finally:
        await own.aclose()
        await stock.aclose()
        await kit.aclose()
        await session.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.5, help="per cell and variant")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aipk_site.settings")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    simulator = Simulator()
    try:
        simulator.wait_ready()
        rows = asyncio.run(bench(simulator.url, args.seconds))
    finally:
        simulator.stop()
    print(f"\n{environment()}; uvloop client; simulator --delay-ms 0 in its own process")
    print(
        f"{args.seconds:g} s per cell and variant; cells: requests/s / client CPU ms per request\n"
    )
    print(markdown_table(["reply", "c", *VARIANTS], rows))
    print("\nuptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
