"""What the kit adds to one streamed request, next to a raw read of the same bytes.

Starts the provider simulator (``manage.py simulate_providers --delay-ms 0``)
as a subprocess on a free 127.0.0.1 port, then for OpenAI, Anthropic and
Gemini sends the same streamed request (a ~500-word user message, so the
reply "Simulated reply to: ..." comes back as ~500 one-word chunks) three ways,
interleaved, over shared pooled clients:

* ``raw httpx``   -- ``httpx.AsyncClient.stream()`` + ``aiter_bytes()`` to the end
                     (nothing parsed; each read is only checked for a text-delta marker
                     until the first one is seen, to time the first chunk);
                     URL, body and headers are built once, outside the timing;
* ``kit``         -- ``adapter.stream(request)`` iterated to the end over the same
                     httpx client (builds the request, parses SSE, decodes chunks,
                     reads rate-limit headers);
* ``raw aiohttp`` -- reference: the same read with aiohttp's client.

Reported: wall time per request and time to first chunk (the first read
carrying a text delta for the raw reads, the first ChatChunk for the kit),
median and p95, and the client process's CPU time per request
(``time.process_time_ns``; the simulator is another process, so this is the
client's own cost). Then the same with the simulator pacing the stream
(``x-sim-delay-ms: 1``, a 250-word message) so every event arrives in its own
read, as tokens do from a real provider. Then 50 concurrent streams per
variant (wall time of the batch).

Usage::

    .venv/bin/python benchmarks/bench_stream_overhead.py            # 30 repeats
    .venv/bin/python benchmarks/bench_stream_overhead.py --quick    # 5 repeats
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import httpx
from _common import REPO_ROOT, environment, markdown_table, median, p95, words

from providers_app.kit.adapters import AnthropicAdapter, GeminiAdapter, OpenAIAdapter
from providers_app.kit.adapters.base import BaseAdapter, ProviderConfig
from providers_app.kit.types import ChatRequest, Message

USER_WORDS = 500
PACED_USER_WORDS = 250
# name, adapter, base path, model, bytes that mark a text delta on the wire (so the raw
# reads' "first chunk" is the first read carrying reply text, like the kit's first ChatChunk)
PROVIDERS = (
    ("OpenAI", OpenAIAdapter, "/openai/v1", "gpt-4o-mini", b'"delta":{"content":"'),
    ("Anthropic", AnthropicAdapter, "/anthropic", "claude-sonnet-4-20250514", b'"text_delta"'),
    ("Gemini", GeminiAdapter, "/gemini", "gemini-2.5-flash", b'"text":'),
)
VARIANTS = ("raw httpx", "kit", "raw aiohttp")


# -- the simulator subprocess ------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Simulator:
    """``manage.py simulate_providers`` in a subprocess; always stopped by ``stop()``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "simulate_providers",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--delay-ms",
                "0",
            ],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"simulator exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(f"{self.url}/_sim/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"simulator not healthy after {timeout:g}s:\n{self.output()}")

    def cpu_seconds(self) -> float:
        """utime + stime of the simulator process, from /proc (clock-tick resolution)."""
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


# -- one request, three ways -------------------------------------------------------------
@dataclass
class Sample:
    total_ns: int
    ttfc_ns: int
    cpu_ns: int


@dataclass
class Target:
    name: str
    adapter: BaseAdapter
    request: ChatRequest
    url: str
    body: dict
    headers: dict[str, str]
    expected_text: str
    marker: bytes
    chunks: int = 0
    response_bytes: int = 0
    samples: dict[str, list[Sample]] = field(default_factory=dict)


async def raw_httpx(client: httpx.AsyncClient, t: Target) -> tuple[int, int]:
    start = time.perf_counter_ns()
    first = 0
    size = 0
    async with client.stream("POST", t.url, json=t.body, headers=t.headers) as response:
        async for raw in response.aiter_bytes():
            if not first and t.marker in raw:
                first = time.perf_counter_ns()
            size += len(raw)
    assert response.status_code == 200 and size == t.response_bytes, (response.status_code, size)
    return first - start, size


async def kit(t: Target) -> tuple[int, int]:
    start = time.perf_counter_ns()
    first = 0
    texts = 0
    async for chunk in t.adapter.stream(t.request):
        if not first:
            first = time.perf_counter_ns()
        if chunk.text:
            texts += 1
    assert texts == t.chunks, (texts, t.chunks)
    return first - start, texts


async def raw_aiohttp(session: aiohttp.ClientSession, t: Target) -> tuple[int, int]:
    start = time.perf_counter_ns()
    first = 0
    size = 0
    async with session.post(t.url, json=t.body, headers=t.headers) as response:
        async for raw in response.content.iter_any():
            if not first and t.marker in raw:
                first = time.perf_counter_ns()
            size += len(raw)
    assert response.status == 200 and size == t.response_bytes, (response.status, size)
    return first - start, size


def runner(
    variant: str, client: httpx.AsyncClient, session: aiohttp.ClientSession
) -> Callable[[Target], Awaitable]:
    if variant == "raw httpx":
        return lambda t: raw_httpx(client, t)
    if variant == "kit":
        return kit
    return lambda t: raw_aiohttp(session, t)


async def timed(fn: Callable[[Target], Awaitable], t: Target) -> Sample:
    cpu = time.process_time_ns()
    start = time.perf_counter_ns()
    ttfc, _ = await fn(t)
    return Sample(time.perf_counter_ns() - start, ttfc, time.process_time_ns() - cpu)


async def prepare(
    base: str, client: httpx.AsyncClient, extra_headers: dict[str, str], user_words: int
) -> list[Target]:
    """Build the three targets and check, once, that every variant reads the whole reply."""
    user_text = " ".join(words(user_words))
    targets = []
    for name, cls, path, model, marker in PROVIDERS:
        adapter = cls(
            ProviderConfig(
                base_url=base + path, api_key="sk-bench-key", extra_headers=extra_headers
            ),
            client=client,
        )
        request = ChatRequest(model=model, messages=[Message(role="user", content=user_text)])
        t = Target(
            name,
            adapter,
            request,
            adapter.chat_url(request, stream=True),
            adapter.chat_body(request, stream=True),
            adapter.request_headers(),
            f"Simulated reply to: {user_text}",
            marker,
        )
        chunks = [c async for c in adapter.stream(request)]
        text = "".join(c.text for c in chunks)
        assert text == t.expected_text, f"{name}: kit read {text[:60]!r}..."
        assert any(c.finish_reason == "stop" for c in chunks), f"{name}: no stop"
        t.chunks = sum(1 for c in chunks if c.text)
        async with client.stream("POST", t.url, json=t.body, headers=t.headers) as response:
            t.response_bytes = len(await response.aread())
        targets.append(t)
    return targets


async def sequential(targets: list[Target], client, session, warmup: int, repeats: int) -> None:
    for t in targets:
        fns = {v: runner(v, client, session) for v in VARIANTS}
        for _ in range(warmup):
            for fn in fns.values():
                await fn(t)
        t.samples = {v: [] for v in VARIANTS}
        for i in range(repeats):
            # rotate the order so no variant always runs right after another
            order = VARIANTS[i % 3 :] + VARIANTS[: i % 3]
            for v in order:
                t.samples[v].append(await timed(fns[v], t))


def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f}"


def us(ns: float) -> str:
    return f"{ns / 1e3:.1f}"


def sequential_tables(targets: list[Target]) -> tuple[str, str]:
    rows, summary = [], []
    for t in targets:
        for v in VARIANTS:
            s = t.samples[v]
            total = [x.total_ns for x in s]
            ttfc = [x.ttfc_ns for x in s]
            cpu = [x.cpu_ns for x in s]
            rows.append(
                [
                    t.name,
                    v,
                    ms(median(total)),
                    ms(p95(total)),
                    ms(median(ttfc)),
                    ms(p95(ttfc)),
                    ms(median(cpu)),
                ]
            )
        raw = t.samples["raw httpx"]
        kit_s = t.samples["kit"]
        d_total = median([x.total_ns for x in kit_s]) - median([x.total_ns for x in raw])
        d_ttfc = median([x.ttfc_ns for x in kit_s]) - median([x.ttfc_ns for x in raw])
        d_cpu = median([x.cpu_ns for x in kit_s]) - median([x.cpu_ns for x in raw])
        summary.append(
            [
                t.name,
                t.chunks,
                f"{t.response_bytes / 1024:.0f}",
                ms(d_total),
                us(d_total / t.chunks),
                ms(d_cpu),
                us(d_cpu / t.chunks),
                ms(d_ttfc),
            ]
        )
    table = markdown_table(
        [
            "provider",
            "variant",
            "total ms (median)",
            "total ms (p95)",
            "first chunk ms (median)",
            "first chunk ms (p95)",
            "client CPU ms (median)",
        ],
        rows,
    )
    added = markdown_table(
        [
            "provider",
            "text chunks",
            "reply KiB",
            "kit − raw httpx: wall ms/request",
            "wall µs/chunk",
            "CPU ms/request",
            "CPU µs/chunk",
            "first chunk ms",
        ],
        summary,
    )
    return table, added


async def concurrent(
    targets: list[Target], client, session, n: int, repeats: int, sim: Simulator
) -> str:
    rows = []
    for t in targets:
        fns = {v: runner(v, client, session) for v in VARIANTS}
        walls: dict[str, list[int]] = {v: [] for v in VARIANTS}
        cpus: dict[str, list[int]] = {v: [] for v in VARIANTS}
        sim_cpus: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for v in VARIANTS:  # warm-up: opens the n pooled connections
            await asyncio.gather(*(fns[v](t) for _ in range(n)))
        for i in range(repeats):
            order = VARIANTS[i % 3 :] + VARIANTS[: i % 3]
            for v in order:
                sim_cpu = sim.cpu_seconds()
                cpu = time.process_time_ns()
                start = time.perf_counter_ns()
                await asyncio.gather(*(fns[v](t) for _ in range(n)))
                walls[v].append(time.perf_counter_ns() - start)
                cpus[v].append(time.process_time_ns() - cpu)
                sim_cpus[v].append(sim.cpu_seconds() - sim_cpu)
        raw_wall = median(walls["raw httpx"])
        for v in VARIANTS:
            wall = median(walls[v])
            rows.append(
                [
                    t.name,
                    v,
                    n,
                    ms(wall),
                    ms(max(walls[v])),
                    f"{wall / raw_wall:.2f}x",
                    ms(median(cpus[v])),
                    f"{median(sim_cpus[v]) * 1000:.0f}",
                    f"{n * t.chunks / (wall / 1e9):,.0f}",
                ]
            )
    return markdown_table(
        [
            "provider",
            "variant",
            "streams",
            "batch wall ms (median)",
            "batch wall ms (max)",
            "vs raw httpx",
            "client CPU ms",
            "simulator CPU ms",
            "chunks/s",
        ],
        rows,
    )


async def main_async(args: argparse.Namespace, sim: Simulator) -> None:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    connector = aiohttp.TCPConnector(limit=200)
    async with (
        httpx.AsyncClient(limits=limits, timeout=60) as client,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        print(f"## Stream overhead: kit vs raw read, simulator on {sim.url}, delay 0\n")
        print(f"{environment()}\n")
        print(
            f"User message {USER_WORDS} words; {args.warmup} warm-up rounds, then "
            f"{args.repeats} interleaved repeats per variant. "
            f"Load average at start: {os.getloadavg()[0]:.2f}\n"
        )

        targets = await prepare(sim.url, client, {}, USER_WORDS)
        await sequential(targets, client, session, args.warmup, args.repeats)
        table, added = sequential_tables(targets)
        print("### One streamed request at a time (delay 0: the whole reply in one write)\n")
        print(table + "\n")
        print(added + "\n")

        paced = await prepare(
            sim.url, client, {"x-sim-delay-ms": str(args.paced_delay_ms)}, PACED_USER_WORDS
        )
        await sequential(paced, client, session, 1, args.paced_repeats)
        table, added = sequential_tables(paced)
        print(
            f"### Paced: x-sim-delay-ms {args.paced_delay_ms:g}, so every event arrives in its "
            f"own read ({PACED_USER_WORDS}-word message, 1 warm-up round, "
            f"{args.paced_repeats} repeats)\n"
        )
        print(table + "\n")
        print(added + "\n")

        print(
            f"### {args.concurrency} concurrent streams per variant "
            f"(delay 0, {args.concurrency_repeats} repeats, median)\n"
        )
        print(
            await concurrent(
                targets, client, session, args.concurrency, args.concurrency_repeats, sim
            )
            + "\n"
        )
        print(f"Load average at end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short run: 5 repeats, 2 paced, 2 concurrent"
    )
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--paced-repeats", type=int)
    parser.add_argument("--paced-delay-ms", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--concurrency-repeats", type=int)
    args = parser.parse_args()
    args.repeats = args.repeats or (5 if args.quick else 30)
    args.warmup = args.warmup or (2 if args.quick else 5)
    args.paced_repeats = args.paced_repeats or (2 if args.quick else 8)
    args.concurrency_repeats = args.concurrency_repeats or (2 if args.quick else 7)

    # SIGTERM should stop the simulator too, like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    sim = Simulator()
    try:
        sim.wait_ready()
        asyncio.run(main_async(args, sim))
    finally:
        sim.stop()
    print(f"(run took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
