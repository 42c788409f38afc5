"""The websocket chat (/ws/chat/) under load: many sockets, many streamed requests at
once, every message checked to belong where it arrived; and the memory an idle
socket costs the server.

Starts, as separate processes on free 127.0.0.1 ports (the same way and with the
same helpers as ``bench_gateway_overhead.py``):

- the provider simulator (``manage.py simulate_providers --delay-ms <d>``);
- aipk with the production command, ``manage.py serve`` (uvicorn, uvloop, httptools,
  websockets-sansio), one worker (``WEB_CONCURRENCY=1``), DEBUG off, logging at
  WARNING, on a fresh SQLite file in a temp dir and the local-memory cache and
  in-memory channel layer -- or, with ``--database-url postgres://…/<name>``, a
  PostgreSQL database of that name created for the run and dropped after, and with
  ``--redis-url``, Redis (cache and channels-redis channel layer; the db is flushed).

Seeds, through the project's services, a tenant, an OpenAI and an Anthropic provider
on the simulator (one API key each) and a virtual key whose limits are far above the
load. Requests alternate between the two providers.

Runs:

1. ``load``: ``--connections`` sockets (500) open at once, authenticated with the
   virtual key (``Authorization: Bearer``); once all are open, each sends
   ``--turns`` streamed chat.requests one after the other.
2. ``multiplexed``: ``--mux-sockets`` sockets (100) each with ``--mux-requests`` (5)
   requests running at once on the same socket, ``--turns`` times.

Every request has a unique id and a unique prompt; the simulator's reply is
"Simulated reply to: <prompt>", so the text a request streams must be exactly that
(a delta of another request, or a lost delta, breaks it). Prompts have different
lengths, so chat.usage's prompt_tokens (the simulator counts words) must match too.
Per socket it is checked that every event carries the id of a request running on
that socket, that each request ends with exactly one chat.usage then one chat.done
(a chat.error is a failure), that nothing arrives after a request's end (a ping/pong
fence closes each socket), and that no request goes unanswered (lost). After the
runs the server is stopped with SIGTERM (it drains and flushes the usage writer's queue
before it exits) and the database must hold exactly one UsageRecord per request,
with the request ids the chat.done events named.

3. ``idle memory``: a fresh server process; its VmRSS (``/proc/<pid>/status``) with
   no socket, then with N idle authenticated sockets open (``--idle 500 1000``),
   each answered an application ping; (RSS_N - RSS_0) / N is the cost per socket.

Exit status: 1 if any message was lost or mixed or the usage rows do not match,
2 if there were only failures (chat.error, refused connections), 0 otherwise.

    .venv/bin/python benchmarks/bench_websocket_load.py [--connections 500] [--turns 1]
        [--mux-sockets 100] [--mux-requests 5] [--idle 500 1000] [--delay-ms 20]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_ws_db]
        [--redis-url redis://127.0.0.1:6379/8]
        [--json results.json] [--logs DIR] [--profile py-spy.json]

Results and their reading: docs/BENCHMARKS.md, "Websocket chat load".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from _common import REPO_ROOT, environment, markdown_table, words
from bench_gateway_overhead import (
    BIN,
    PYTHON,
    SEED,
    Proc,
    cpu_seconds,
    free_port,
    own_cpu,
    pct,
    start_simulator,
    wait_http,
)

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5-20251001"
MODELS = (f"sim/{OPENAI_MODEL}", f"simanthropic/{ANTHROPIC_MODEL}")
MAX_TOKENS = 64  # above every reply's word count, so no reply is cut
REPLY_PREFIX = "Simulated reply to: "

# Runs after bench_gateway_overhead.SEED in the same shell: a second provider, and
# limits on the key far above anything this benchmark sends (admission still runs).
EXTRA_SEED = """
from tenants_app.services.keys import virtual_key_update
anthropic = provider_create(
    name="simanthropic", type="anthropic", base_url={anthropic_url!r},
    default_model={anthropic_model!r},
)
api_key_add(provider=anthropic, label="bench", secret="sk-ant-bench-0001")
virtual_key_update(
    key=key, actor=None, rpm=10_000_000, tpm=1_000_000_000, max_concurrent_streams=100_000
)
"""

USAGE_ROWS = """
import json
from tenants_app.models import UsageRecord
rows = list(UsageRecord.objects.values_list("request_id", "status"))
print("ROWS=" + json.dumps(rows))
"""


# -- process helpers ------------------------------------------------------------------


def proc_status_kib(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{name} not in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> None:
    # "5" resets VmHWM to the current RSS (proc(5), /proc/pid/clear_refs), so each
    # run reports its own peak.
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE (children inherit it: the server needs one
    descriptor per socket plus its upstream connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < needed:
            print(f"warning: RLIMIT_NOFILE hard limit {hard} < {needed} needed", flush=True)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def stop_cleanly(proc: Proc, timeout: float = 60) -> str:
    """SIGTERM and wait (the server drains its requests and flushes the usage writer);
    returns all the process wrote (WARNING and above: problems only)."""
    if proc.proc.poll() is None:
        proc.proc.send_signal(signal.SIGTERM)
        try:
            proc.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"warning: {proc.name} did not exit within {timeout:g} s", flush=True)
    proc.log.seek(0)
    output = proc.log.read().decode(errors="replace")
    proc.stop()
    return output


SERVE_BANNER = ("aipk: serving on ", "Scheduled jobs: ")


def report_log(label: str, output: str, log_dir: str | None) -> int:
    """Print one line per record the server logged (JSON lines: level, logger,
    message; the first traceback in full) and keep the whole log if asked."""
    # manage.py serve's own start-up lines (stdout) are not log records
    lines = [
        line for line in output.splitlines() if line.strip() and not line.startswith(SERVE_BANNER)
    ]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        with open(os.path.join(log_dir, f"aipk-{label}.log"), "w") as log:
            log.write(output)
    if not lines:
        return 0
    print(f"  aipk ({label}) logged {len(lines)} records (WARNING and above):")
    shown_traceback = False
    for line in lines[:20]:
        try:
            record = json.loads(line)
        except ValueError:
            print(f"    {line[:300]}")
            continue
        print(f"    {record.get('level')} {record.get('logger')}: {record.get('message')[:300]}")
        trace = record.get("exc_info")
        if trace and not shown_traceback:
            shown_traceback = True
            print("      " + str(trace)[-2500:].replace("\n", "\n      "))
    return len(lines)


def start_server(env: dict[str, str], port: int) -> Proc:
    """The production command with one worker: uvicorn runs the app in this very process,
    so its pid is the one whose CPU and RSS are read (and py-spy records)."""
    serve_env = {**env, "WEB_CONCURRENCY": "1", "HOST": "127.0.0.1", "PORT": str(port)}
    return Proc("aipk (manage.py serve)", [PYTHON, "manage.py", "serve"], serve_env)


def start_profiler(output: str, pid: int) -> subprocess.Popen:
    spy = os.path.join(BIN, "py-spy")
    if not os.path.exists(spy):
        spy = shutil.which("py-spy") or spy
    return subprocess.Popen(
        [spy, "record", "-p", str(pid), "-o", output, "-f", "speedscope", "-r", "200"]
        + ["--nonblocking", "--threads"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def manage_shell(env: dict[str, str], code: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def recreate_postgres_database(url: str, drop_only: bool = False) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"unexpected database name {name!r}")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if not drop_only:
            connection.execute(f"CREATE DATABASE {name}")


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


# -- one request, one socket ---------------------------------------------------------


@dataclass
class Request:
    msg_id: str
    model: str
    prompt: str
    sent_at: float = 0.0
    first_delta_at: float | None = None
    end_at: float | None = None
    text: list[str] = field(default_factory=list)
    usage: dict | None = None
    done: dict | None = None
    error: dict | None = None

    @property
    def expected_text(self) -> str:
        return REPLY_PREFIX + self.prompt

    @property
    def ended(self) -> bool:
        return self.done is not None or self.error is not None

    def message(self) -> str:
        return json.dumps(
            {
                "type": "chat.request",
                "id": self.msg_id,
                "model": self.model,
                "messages": [{"role": "user", "content": self.prompt}],
                "options": {"max_tokens": MAX_TOKENS},
            }
        )


def make_request(run: str, socket_index: int, number: int, counter: int) -> Request:
    msg_id = f"{run}-s{socket_index}-r{number}"
    # The id makes the prompt (and so the reply) unique; a varying number of filler
    # words makes prompt_tokens differ between neighbours too.
    filler = " ".join(words(2 + counter % 9, offset=counter))
    return Request(msg_id, MODELS[counter % len(MODELS)], f"marker {msg_id} {filler}")


@dataclass
class Tally:
    """Problems found, by kind. 'mixed' and 'lost' must stay at zero."""

    failures: dict[str, int] = field(default_factory=dict)
    mixed: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    examples: list[str] = field(default_factory=list)

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def mix(self, kind: str, example: str) -> None:
        self.mixed[kind] = self.mixed.get(kind, 0) + 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {example}")


class ChatSocket:
    """One websocket: runs its rounds of requests (each round's requests at once) and
    checks every event it receives."""

    def __init__(self, rounds: list[list[Request]], everyone: dict[str, Request], tally: Tally):
        self.rounds = rounds
        self.mine = {r.msg_id: r for batch in rounds for r in batch}
        self.everyone = everyone
        self.tally = tally
        self.connect_ms: float | None = None

    def check_event(self, event: dict, running: dict[str, Request], now: float) -> None:
        kind, msg_id = event.get("type"), str(event.get("id"))
        request = running.get(msg_id)
        if request is None:
            if msg_id in self.mine:
                self.tally.mix("event_after_end", f"{kind} for {msg_id} after its end")
            elif msg_id in self.everyone:
                self.tally.mix("crossed_socket", f"{kind} for {msg_id} on another socket")
            else:
                self.tally.mix("unknown_id", json.dumps(event)[:200])
            return
        if kind == "chat.delta":
            if request.usage is not None:
                self.tally.mix("delta_after_usage", msg_id)
            if request.first_delta_at is None:
                request.first_delta_at = now
            request.text.append(event.get("text", ""))
        elif kind == "chat.usage":
            if request.usage is not None:
                self.tally.mix("second_usage", msg_id)
            request.usage = event
        elif kind == "chat.done":
            request.done, request.end_at = event, now
            del running[msg_id]
            self.check_finished(request)
        elif kind == "chat.error":
            request.error, request.end_at = event, now
            del running[msg_id]
            self.tally.fail(f"chat.error {event.get('code')}")
        else:
            self.tally.mix("unexpected_event", json.dumps(event)[:200])

    def check_finished(self, request: Request) -> None:
        text = "".join(request.text)
        if text != request.expected_text:
            self.tally.mix(
                "text_mismatch", f"{request.msg_id}: {text[:80]!r} != {request.expected_text!r}"
            )
        if request.usage is None:
            self.tally.mix("done_without_usage", request.msg_id)
            return
        prompt_words = len(request.prompt.split())
        if request.usage.get("prompt_tokens") != prompt_words:
            self.tally.mix(
                "prompt_tokens_mismatch",
                f"{request.msg_id}: {request.usage.get('prompt_tokens')} != {prompt_words}",
            )

    async def run(
        self,
        session: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
        opened: asyncio.Event | None,
        gate: asyncio.Event,
        deadline: float,
    ) -> None:
        t0 = time.perf_counter()
        try:
            ws = await session.ws_connect(url, headers=headers, autoping=True, heartbeat=None)
        except (TimeoutError, aiohttp.ClientError) as error:
            for request in self.mine.values():
                request.error = {"code": f"connect: {type(error).__name__}"}
            self.tally.fail(f"connect {type(error).__name__}")
            if opened is not None:
                opened.set()
            return
        self.connect_ms = (time.perf_counter() - t0) * 1000
        if opened is not None:
            opened.set()
        try:
            await gate.wait()
            for batch in self.rounds:
                running = {}
                for request in batch:
                    running[request.msg_id] = request
                    request.sent_at = time.perf_counter()
                    await ws.send_str(request.message())
                if not await self.read_until(ws, running, deadline):
                    break
            else:
                await self.fence(ws, deadline)
        finally:
            await ws.close()

    async def read_until(self, ws, running: dict[str, Request], deadline: float) -> bool:
        """Read until every running request has ended; False if the socket closed or
        time ran out (what is still running then is lost)."""
        while running:
            remaining = deadline - time.perf_counter()
            try:
                message = await ws.receive(timeout=max(0.001, remaining))
            except TimeoutError:
                self.tally.lost += len(running)
                return False
            now = time.perf_counter()
            if message.type == aiohttp.WSMsgType.TEXT:
                self.check_event(json.loads(message.data), running, now)
            elif message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                self.tally.lost += len(running)
                self.tally.fail(f"socket closed ({ws.close_code})")
                return False
        return True

    async def fence(self, ws, deadline: float) -> None:
        """ping → pong: anything that arrives before the pong, once every request has
        ended, is an event that should not exist."""
        await ws.send_str('{"type":"ping"}')
        running: dict[str, Request] = {}
        while True:
            try:
                message = await ws.receive(timeout=max(0.001, deadline - time.perf_counter()))
            except TimeoutError:
                self.tally.fail("no pong")
                return
            if message.type != aiohttp.WSMsgType.TEXT:
                self.tally.fail("no pong (closed)")
                return
            event = json.loads(message.data)
            if event.get("type") == "pong":
                return
            self.check_event(event, running, time.perf_counter())


# -- a load run ------------------------------------------------------------------------


@dataclass
class RunResult:
    name: str
    sockets: int
    concurrent_per_socket: int
    turns: int
    requests: list[Request]
    tally: Tally
    connect_ms: list[float]
    wall_s: float
    server_cpu_s: float
    simulator_cpu_s: float
    client_cpu_s: float
    server_peak_rss_mib: float
    server_rss_before_mib: float
    server_rss_after_mib: float

    @property
    def ok(self) -> list[Request]:
        return [r for r in self.requests if r.done is not None]

    def summary(self) -> dict:
        ok = self.ok
        ttfd = [(r.first_delta_at - r.sent_at) * 1000 for r in ok if r.first_delta_at]
        total = [(r.end_at - r.sent_at) * 1000 for r in ok if r.end_at]
        failures = sum(self.tally.failures.values())
        return {
            "run": self.name,
            "connections": self.sockets,
            "concurrent_per_socket": self.concurrent_per_socket,
            "turns": self.turns,
            "requests": len(self.requests),
            "ok": len(ok),
            "failures": failures,
            "failure_kinds": self.tally.failures,
            "mixed": sum(self.tally.mixed.values()),
            "mixed_kinds": self.tally.mixed,
            "lost": self.tally.lost,
            "examples": self.tally.examples,
            "wall_s": round(self.wall_s, 3),
            "requests_per_s": round(len(ok) / self.wall_s, 1) if self.wall_s else None,
            "connect_ms": percentiles(self.connect_ms),
            "ttfd_ms": percentiles(ttfd),
            "total_ms": percentiles(total),
            "server_cpu_s": round(self.server_cpu_s, 2),
            "server_cpu_ms_per_request": round(1000 * self.server_cpu_s / len(self.requests), 2),
            "simulator_cpu_s": round(self.simulator_cpu_s, 2),
            "client_cpu_s": round(self.client_cpu_s, 2),
            "server_rss_mib_before": round(self.server_rss_before_mib, 1),
            "server_rss_mib_after": round(self.server_rss_after_mib, 1),
            "server_peak_rss_mib": round(self.server_peak_rss_mib, 1),
        }


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    return {
        "p50": round(pct(values, 50), 1),
        "p95": round(pct(values, 95), 1),
        "p99": round(pct(values, 99), 1),
        "max": round(max(values), 1),
    }


async def load_run(
    name: str,
    url: str,
    headers: dict[str, str],
    sockets: int,
    per_socket: int,
    turns: int,
    server: Proc,
    simulator: Proc,
    run_timeout_s: float,
) -> RunResult:
    tally = Tally()
    everyone: dict[str, Request] = {}
    chats: list[ChatSocket] = []
    counter = 0
    for s in range(sockets):
        rounds = []
        for t in range(turns):
            batch = []
            for k in range(per_socket):
                request = make_request(name, s, t * per_socket + k, counter)
                counter += 1
                everyone[request.msg_id] = request
                batch.append(request)
            rounds.append(batch)
        chats.append(ChatSocket(rounds, everyone, tally))

    rss_before = proc_status_kib(server.pid, "VmRSS") / 1024
    reset_peak_rss(server.pid)
    server_cpu0, sim_cpu0, client_cpu0 = (
        cpu_seconds(server.pid),
        cpu_seconds(simulator.pid),
        own_cpu(),
    )
    gate = asyncio.Event()
    openings = [asyncio.Event() for _ in chats]
    # One connection per socket, no pool limit; generous handshake timeout because 500
    # handshakes queue behind each other on a busy 2-core machine.
    connector = aiohttp.TCPConnector(limit=0)
    client_timeout = aiohttp.ClientTimeout(total=None, connect=60, sock_connect=60)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        deadline = time.perf_counter() + run_timeout_s
        tasks = [
            asyncio.create_task(chat.run(session, url, headers, opened, gate, deadline))
            for chat, opened in zip(chats, openings, strict=True)
        ]
        # All sockets open (or refused) first, then every socket sends at once.
        await asyncio.gather(*(opened.wait() for opened in openings))
        start = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
    requests = list(everyone.values())
    ends = [r.end_at for r in requests if r.end_at is not None]
    wall = (max(ends) - start) if ends else time.perf_counter() - start
    server.check()
    return RunResult(
        name=name,
        sockets=sockets,
        concurrent_per_socket=per_socket,
        turns=turns,
        requests=requests,
        tally=tally,
        connect_ms=[c.connect_ms for c in chats if c.connect_ms is not None],
        wall_s=wall,
        server_cpu_s=cpu_seconds(server.pid) - server_cpu0,
        simulator_cpu_s=cpu_seconds(simulator.pid) - sim_cpu0,
        client_cpu_s=own_cpu() - client_cpu0,
        server_peak_rss_mib=proc_status_kib(server.pid, "VmHWM") / 1024,
        server_rss_before_mib=rss_before,
        server_rss_after_mib=proc_status_kib(server.pid, "VmRSS") / 1024,
    )


# -- idle memory -----------------------------------------------------------------------


class IdleSocket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pong = asyncio.Event()
        self.closed_code: int | None = None
        self.unexpected = 0
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        # receive() also answers the server's protocol pings (autoping)
        async for message in self.ws:
            if (
                message.type == aiohttp.WSMsgType.TEXT
                and json.loads(message.data)["type"] == "pong"
            ):
                self.pong.set()
            else:
                self.unexpected += 1
        self.closed_code = self.ws.close_code

    async def ping(self, wait_s: float) -> bool:
        self.pong.clear()
        try:
            await self.ws.send_str('{"type":"ping"}')
            await asyncio.wait_for(self.pong.wait(), wait_s)
        except (TimeoutError, aiohttp.ClientError):  # closed by the server: counted below
            return False
        return True


def rss_samples_kib(pid: int, seconds: float, every: float = 0.5) -> int:
    """Median VmRSS over a short window: one reading can catch a transient."""
    samples = []
    end = time.monotonic() + seconds
    while True:
        samples.append(proc_status_kib(pid, "VmRSS"))
        if time.monotonic() >= end:
            break
        time.sleep(every)
    return int(statistics.median(samples))


async def idle_memory(
    url: str, headers: dict[str, str], levels: list[int], server: Proc, settle: float
) -> dict:
    results: dict = {"levels": []}
    connector = aiohttp.TCPConnector(limit=0)
    client_timeout = aiohttp.ClientTimeout(total=None, connect=60, sock_connect=60)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        # One full request first, so everything the chat path imports or caches on first
        # use is already in RSS_0 and not charged to the idle sockets.
        warm = ChatSocket([[make_request("idle-warm", 0, 0, 0)]], {}, Tally())
        open_gate = asyncio.Event()
        open_gate.set()
        await warm.run(session, url, headers, None, open_gate, time.perf_counter() + 60)
        await asyncio.sleep(settle)
        rss0 = await asyncio.to_thread(rss_samples_kib, server.pid, 3.0)
        results["rss0_kib"] = rss0
        cpu0 = cpu_seconds(server.pid)
        sockets: list[IdleSocket] = []
        refused = 0
        for level in sorted(levels):
            opened = await asyncio.gather(
                *(
                    session.ws_connect(url, headers=headers, autoping=True, heartbeat=None)
                    for _ in range(level - len(sockets))
                ),
                return_exceptions=True,
            )
            for ws in opened:
                if isinstance(ws, BaseException):
                    refused += 1
                else:
                    sockets.append(IdleSocket(ws))
            await asyncio.sleep(settle)
            # Alive and authenticated: the server answers each socket's ping.
            answered = await asyncio.gather(*(s.ping(30) for s in sockets))
            await asyncio.sleep(settle)
            rss = await asyncio.to_thread(rss_samples_kib, server.pid, 3.0)
            alive = sum(answered)
            close_codes: dict[str, int] = {}
            for s in sockets:
                if s.closed_code is not None:
                    close_codes[str(s.closed_code)] = close_codes.get(str(s.closed_code), 0) + 1
            closed = sum(close_codes.values())
            results["levels"].append(
                {
                    "sockets": level,
                    "open": len(sockets),
                    "answered_ping": alive,
                    "closed_by_server": closed,
                    "close_codes": close_codes,
                    "refused": refused,
                    "rss_kib": rss,
                    "kib_per_socket": round((rss - rss0) / level, 1),
                }
            )
            print(
                f"  idle {level:>5} sockets: open {len(sockets)}, answered ping {alive}, "
                f"closed by the server {closed} {close_codes or ''}, refused {refused}, "
                f"RSS {rss0 / 1024:.1f} → {rss / 1024:.1f} MiB, "
                f"{(rss - rss0) / level:.1f} KiB per socket",
                flush=True,
            )
        results["server_cpu_s_while_idle_sockets"] = round(cpu_seconds(server.pid) - cpu0, 2)
        results["unexpected_messages"] = sum(s.unexpected for s in sockets)
        for s in sockets:
            await s.ws.close()
        await asyncio.gather(*(s.reader for s in sockets), return_exceptions=True)
    return results


# -- main ------------------------------------------------------------------------------


def check_usage_rows(env: dict[str, str], runs: list[RunResult]) -> dict:
    """After the server has exited: one UsageRecord per request, with the ids chat.done
    named (every request of every run, the warm-up included)."""
    stdout = manage_shell(env, USAGE_ROWS)
    rows = json.loads(stdout.split("ROWS=", 1)[1].strip())
    stored = [request_id for request_id, _ in rows]
    expected = [r.done["request_id"] for run in runs for r in run.requests if r.done]
    errors = sum(1 for run in runs for r in run.requests if r.error is not None)
    statuses: dict[str, int] = {}
    for _, status in rows:
        statuses[status] = statuses.get(status, 0) + 1
    missing = set(expected) - set(stored)
    sent = sum(1 for run in runs for r in run.requests if r.sent_at)
    return {
        "requests": sum(len(run.requests) for run in runs),
        "requests_sent": sent,
        "done_events": len(expected),
        "error_events": errors,
        "usage_rows": len(stored),
        "distinct_request_ids": len(set(stored)),
        "missing_rows_for_done": len(missing),
        "rows_without_done": len(set(stored) - set(expected)),
        "statuses": statuses,
        # One row per request sent (not those of a socket that never opened): a request
        # that ended in chat.error or never ended (lost) still has its row (refused,
        # failed, cancelled); and every chat.done names a stored row.
        "ok": not missing and len(stored) == len(set(stored)) and len(stored) == sent,
    }


def print_run(run: RunResult) -> None:
    s = run.summary()
    print(
        f"  {s['run']:<12} {s['connections']} sockets × {s['concurrent_per_socket']} at once"
        f" × {s['turns']} turns: {s['ok']}/{s['requests']} ok, failures {s['failures']}"
        f" {s['failure_kinds'] or ''}, mixed {s['mixed']} {s['mixed_kinds'] or ''}, "
        f"lost {s['lost']}; {s['wall_s']:.2f} s, {s['requests_per_s']} req/s; "
        f"aipk CPU {s['server_cpu_s']} s, peak RSS {s['server_peak_rss_mib']} MiB",
        flush=True,
    )
    for example in s["examples"]:
        print(f"    {example}")


def fmt(value: object) -> str:
    return "-" if value is None else str(value)


def tables(runs: list[RunResult], usage: dict, idle: dict | None) -> str:
    rows = []
    for run in runs:
        s = run.summary()
        rows.append(
            [
                s["run"],
                s["connections"],
                s["concurrent_per_socket"],
                s["requests"],
                s["failures"],
                s["mixed"],
                s["lost"],
                f"{s['wall_s']:.2f}",
                s["requests_per_s"],
                "/".join(fmt(s["connect_ms"][p]) for p in ("p50", "p99")),
                "/".join(fmt(s["ttfd_ms"][p]) for p in ("p50", "p95", "p99")),
                "/".join(fmt(s["total_ms"][p]) for p in ("p50", "p95", "p99")),
                s["server_cpu_s"],
                s["server_cpu_ms_per_request"],
                s["server_peak_rss_mib"],
                s["simulator_cpu_s"],
                s["client_cpu_s"],
            ]
        )
    out = [
        markdown_table(
            [
                "run",
                "sockets",
                "req at once/socket",
                "requests",
                "failures",
                "mixed",
                "lost",
                "wall s",
                "req/s",
                "connect ms p50/p99",
                "first delta ms p50/p95/p99",
                "total ms p50/p95/p99",
                "aipk CPU s",
                "aipk CPU ms/req",
                "aipk peak RSS MiB",
                "simulator CPU s",
                "client CPU s",
            ],
            rows,
        ),
        "",
        f"Usage rows after a clean stop: {usage['usage_rows']} rows "
        f"({usage['distinct_request_ids']} distinct request ids) for {usage['requests']} "
        f"requests ({usage['done_events']} chat.done, {usage['error_events']} chat.error); "
        f"statuses {usage['statuses']}; done without a row {usage['missing_rows_for_done']}, "
        f"rows without a done {usage['rows_without_done']} → "
        f"{'OK' if usage['ok'] else 'MISMATCH'}",
    ]
    if idle:
        out += [
            "",
            markdown_table(
                ["idle sockets", "open", "answered ping", "RSS_0 MiB", "RSS_N MiB", "KiB/socket"],
                [
                    [
                        level["sockets"],
                        level["open"],
                        level["answered_ping"],
                        f"{idle['rss0_kib'] / 1024:.1f}",
                        f"{level['rss_kib'] / 1024:.1f}",
                        level["kib_per_socket"],
                    ]
                    for level in idle["levels"]
                ],
            ),
            "",
            "aipk CPU while the idle sockets were open: "
            f"{idle['server_cpu_s_while_idle_sockets']} s",
        ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--turns", type=int, default=1, help="requests in turn per socket")
    parser.add_argument("--mux-sockets", type=int, default=100, help="0 skips the run")
    parser.add_argument("--mux-requests", type=int, default=5, help="at once per socket")
    parser.add_argument("--idle", type=int, nargs="*", default=[500, 1000])
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before RSS reads")
    parser.add_argument("--delay-ms", type=int, default=20, help="simulator delay per chunk")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per load run")
    parser.add_argument(
        "--database-url",
        help="postgres://…/<name>: that database is dropped, created for the run, dropped "
        "after (default: SQLite in a temp dir)",
    )
    parser.add_argument("--redis-url", help="redis://…/<db>: flushed before and after")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--logs", metavar="DIR", help="keep aipk's full logs in DIR")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record aipk with py-spy (speedscope JSON) to FILE during the load runs "
        "(py-spy from the venv or PATH)",
    )
    args = parser.parse_args()
    if args.database_url and not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a PostgreSQL URL")

    most_sockets = max([args.connections, args.mux_sockets, *args.idle])
    nofile = raise_fd_limit(4 * most_sockets + 1024)

    workdir = tempfile.mkdtemp(prefix="aipk-bench-ws-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aipk_site.settings",
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-secret-key-not-for-production",
        "FERNET_KEYS": "bench-fernet-key",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # plain http on loopback: with DEBUG off aipk redirects to https by default
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": args.database_url or f"sqlite:///{workdir}/bench.sqlite3",
    }
    # prometheus_client turns multiprocess mode on when the variable merely exists (even
    # empty) and then writes its .db files into the working directory, the repo root.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("prometheus_multiproc_dir", None)
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    else:
        env.pop("REDIS_URL", None)
    layer = "channels_redis RedisChannelLayer" if args.redis_url else "InMemoryChannelLayer"
    backends = (
        f"{'PostgreSQL' if args.database_url else 'SQLite'} + "
        f"{'Redis' if args.redis_url else 'local-memory'} cache, {layer}"
    )

    procs: list[Proc] = []
    runs: list[RunResult] = []
    idle = None
    try:
        if args.database_url:
            recreate_postgres_database(args.database_url)
        if args.redis_url:
            flush_redis(args.redis_url)
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=REPO_ROOT,
            env=env,
            check=True,
        )
        sim, sim_url = start_simulator(env, args.delay_ms)
        procs.append(sim)
        seeded = manage_shell(
            env,
            SEED.format(base_url=f"{sim_url}/openai/v1", model=OPENAI_MODEL)
            + EXTRA_SEED.format(
                anthropic_url=f"{sim_url}/anthropic", anthropic_model=ANTHROPIC_MODEL
            ),
        )
        secret = seeded.split("SECRET=", 1)[1].split()[0]
        auth = {"Authorization": f"Bearer {secret}"}

        aipk_port = free_port()
        aipk = start_server(env, aipk_port)
        procs.append(aipk)
        wait_http(sim, f"{sim_url}/_sim/health")
        wait_http(aipk, f"http://127.0.0.1:{aipk_port}/v1/models", auth)
        ws_url = f"ws://127.0.0.1:{aipk_port}/ws/chat/"

        print(environment())
        print(
            f"load average at start: {os.getloadavg()[0]:.2f}; {backends}; simulator delay "
            f"{args.delay_ms} ms per chunk; RLIMIT_NOFILE {nofile[0]}/{nofile[1]}",
            flush=True,
        )
        # Warm-up: one request per provider, so first-use imports and the routing cache
        # are not charged to the first run.
        runs.append(asyncio.run(load_run("warmup", ws_url, auth, 1, 2, 1, aipk, sim, args.timeout)))
        print_run(runs[-1])
        spy = start_profiler(args.profile, aipk.pid) if args.profile else None
        plan = [("load", args.connections, 1)]
        if args.mux_sockets:
            plan.append(("multiplexed", args.mux_sockets, args.mux_requests))
        for name, sockets, per_socket in plan:
            time.sleep(2.0)  # let the previous run's usage rows flush
            run = asyncio.run(
                load_run(
                    name, ws_url, auth, sockets, per_socket, args.turns, aipk, sim, args.timeout
                )
            )
            runs.append(run)
            print_run(run)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=120)

        log_lines = report_log("load", stop_cleanly(aipk), args.logs)
        procs.remove(aipk)
        usage = check_usage_rows(env, runs)
        print(
            f"  usage rows: {usage['usage_rows']} for {usage['requests']} requests "
            f"→ {'OK' if usage['ok'] else 'MISMATCH'} {usage}",
            flush=True,
        )

        if args.idle:
            aipk_port = free_port()
            ws_url = f"ws://127.0.0.1:{aipk_port}/ws/chat/"
            aipk = start_server(env, aipk_port)
            procs.append(aipk)
            wait_http(aipk, f"http://127.0.0.1:{aipk_port}/v1/models", auth)
            idle = asyncio.run(idle_memory(ws_url, auth, args.idle, aipk, args.settle))
            log_lines += report_log("idle", stop_cleanly(aipk), args.logs)
            procs.remove(aipk)

        measured = [run for run in runs if run.name != "warmup"]
        print()
        print(tables(measured, usage, idle))
        if args.json:
            with open(args.json, "w") as out:
                json.dump(
                    {
                        "environment": environment(),
                        "backends": backends,
                        "delay_ms": args.delay_ms,
                        "runs": [run.summary() for run in runs],
                        "usage_rows": usage,
                        "idle_memory": idle,
                        "server_log_records": log_lines,
                    },
                    out,
                    indent=2,
                )
        mixed_or_lost = sum(run.tally.lost + sum(run.tally.mixed.values()) for run in runs)
        failures = sum(sum(run.tally.failures.values()) for run in runs)
        if mixed_or_lost or not usage["ok"]:
            print(f"FAIL: {mixed_or_lost} messages lost or mixed; usage rows ok={usage['ok']}")
            return 1
        if failures:
            print(f"FAIL: {failures} failures (no message lost or mixed)")
            return 2
        return 0
    finally:
        for proc in reversed(procs):
            proc.stop()
        if args.database_url:
            recreate_postgres_database(args.database_url, drop_only=True)
        if args.redis_url:
            flush_redis(args.redis_url)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
