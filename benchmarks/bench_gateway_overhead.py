"""What the aipk gateway adds to a chat request: the same load sent straight to the
simulator's OpenAI endpoint and through aipk's /v1/chat/completions.

Starts, as separate processes on free 127.0.0.1 ports:

- the provider simulator (``manage.py simulate_providers --delay-ms <d>``);
- aipk with the production command, ``manage.py serve`` (uvicorn, uvloop, httptools),
  one worker (``WEB_CONCURRENCY=1``), DEBUG off, logging at WARNING, on a fresh
  SQLite file (migrated first) and local-memory cache -- or, with ``--redis``,
  REDIS_URL=redis://127.0.0.1:6379/7 and, with ``--postgres``, a PostgreSQL
  database created for the run and dropped after.

Seeds a tenant, a virtual key and an OpenAI provider with one API key pointing
at the simulator (through the project's services), then runs, for streaming
and non-streaming requests, closed loops at concurrency 1, 50 and 200 and open
loops at fixed rates (100 and 500 rps by default), each against the simulator
directly and then through aipk. Open-loop latency is measured from the
request's scheduled start, so a server that falls behind is charged for the
queue it builds. The load generator is one aiohttp process; its CPU use is
printed per run so it can be seen not to be the bottleneck.

Reported per run: p50/p99 latency, p50/p99 time to first content token
(streams), completed requests per second, errors, aipk's CPU per request and
aipk's RSS before/after. "Added" = through aipk minus direct, same percentile
and load.

    .venv/bin/python benchmarks/bench_gateway_overhead.py [--duration 10] [--delay-ms 20]
        [--redis] [--postgres] [--only stream|nostream] [--profile py-spy-output.svg]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import aiohttp
from _common import REPO_ROOT, environment, markdown_table

PYTHON = sys.executable
BIN = os.path.dirname(PYTHON)
REDIS_URL = "redis://127.0.0.1:6379/7"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 8  # the simulator streams one word per chunk: 8 content chunks
CONTENT = re.compile(rb'"content":"[^"]')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_simulator(env: dict[str, str], delay_ms: int) -> tuple[Proc, str]:
    """The provider simulator on a free loopback port: (its process, its URL)."""
    port = free_port()
    argv = [PYTHON, "manage.py", "simulate_providers", "--host", "127.0.0.1", "--port", str(port)]
    sim = Proc("simulator", [*argv, "--delay-ms", str(delay_ms)], env)
    return sim, f"http://127.0.0.1:{port}"


class Proc:
    """A child process with its output in a temp file; ``stop()`` always ends it."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


SEED = """
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import Tenant
from tenants_app.services.keys import virtual_key_create
provider = provider_create(
    name="sim", type="openai", base_url={base_url!r}, default_model={model!r}
)
api_key_add(provider=provider, label="bench", secret="sk-bench-0001")
tenant = Tenant.objects.create(name="Bench", slug="bench")
key, secret = virtual_key_create(tenant=tenant, name="bench", actor=None)
print("SECRET=" + secret)
"""


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # ms
    ttfts: list[float] = field(default_factory=list)  # ms
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    rss_before: float = 0.0
    rss_after: float = 0.0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-int(p * 10) * len(ordered) // 1000))  # nearest rank, p in percent
    return ordered[min(rank, len(ordered)) - 1]


class Target:
    def __init__(self, name: str, url: str, model: str, headers: dict[str, str], pid: int | None):
        self.name, self.url, self.model, self.headers, self.pid = name, url, model, headers, pid

    def body(self, stream: bool) -> bytes:
        body: dict = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Say hello to the benchmark, please."}],
            "max_tokens": MAX_TOKENS,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body).encode()


async def one(
    session: aiohttp.ClientSession,
    target: Target,
    body: bytes,
    stream: bool,
    start: float,
    result: Result,
    record: bool,
) -> None:
    ttft = None
    try:
        async with session.post(target.url, data=body, headers=target.headers) as resp:
            if stream:
                seen = b""
                async for data in resp.content.iter_any():
                    if ttft is None:
                        seen = seen[-32:] + data
                        if CONTENT.search(seen):
                            ttft = time.perf_counter()
            else:
                await resp.read()
            ok = resp.status == 200
            status = resp.status
    except Exception as error:  # noqa: BLE001 -- every failure is counted, not raised
        if record:
            result.error(type(error).__name__)
        return
    end = time.perf_counter()
    if not record:
        return
    if not ok:
        result.error(f"http {status}")
        return
    if stream and ttft is None:
        result.error("no content")
        return
    result.latencies.append((end - start) * 1000)
    if ttft is not None:
        result.ttfts.append((ttft - start) * 1000)


async def closed_loop(
    session, target: Target, stream: bool, concurrency: int, duration: float, result: Result
) -> None:
    body = target.body(stream)
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            await one(session, target, body, stream, time.perf_counter(), result, True)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def open_loop(
    session, target: Target, stream: bool, rate: float, duration: float, result: Result
) -> None:
    body = target.body(stream)
    total = int(rate * duration)
    t0 = time.perf_counter() + 0.05
    tasks = []
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(session, target, body, stream, due, result, True)))
    await asyncio.gather(*tasks)


async def run_one(session, target: Target, stream: bool, kind: str, level: float, duration: float):
    result = Result()
    if target.pid:
        result.rss_before = rss_mb(target.pid)
        server_cpu0 = cpu_seconds(target.pid)
    cpu0, t0 = own_cpu(), time.perf_counter()
    if kind == "closed":
        await closed_loop(session, target, stream, int(level), duration, result)
    else:
        await open_loop(session, target, stream, level, duration, result)
    result.elapsed = time.perf_counter() - t0
    result.client_cpu = own_cpu() - cpu0
    if target.pid:
        result.rss_after = rss_mb(target.pid)
        result.server_cpu = cpu_seconds(target.pid) - server_cpu0
    return result


async def warm(session, target: Target) -> None:
    for stream in (False, True):
        result = Result()
        await closed_loop(session, target, stream, 20, 2.0, result)
        if result.errors:
            raise RuntimeError(f"warm-up against {target.name}: errors {result.error_kinds}")


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


async def bench(args, direct: Target, gateway: Target) -> list[list[object]]:
    rows: list[list[object]] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await warm(session, direct)
        await warm(session, gateway)
        modes = [("closed", c) for c in args.concurrency] + [("open", r) for r in args.rates]
        streams = {"stream": [True], "nostream": [False]}.get(args.only, [False, True])
        for stream in streams:
            for kind, level in modes:
                pair = {}
                for target in (direct, gateway):
                    await asyncio.sleep(1.0)  # let the last run's stragglers finish
                    pair[target.name] = r = await run_one(
                        session, target, stream, kind, level, args.duration
                    )
                    label = f"{'stream' if stream else 'json'} {kind} {level:g}"
                    print(
                        f"  {label:<20} {target.name:<7} n={len(r.latencies):>6} "
                        f"p50={fmt(pct(r.latencies, 50), 2)} p99={fmt(pct(r.latencies, 99), 2)} "
                        f"rps={len(r.latencies) / r.elapsed:.0f} err={r.error_kinds or 0} "
                        f"client cpu={100 * r.client_cpu / r.elapsed:.0f}%"
                        + (
                            f" aipk cpu={100 * r.server_cpu / r.elapsed:.0f}%" if target.pid else ""
                        ),
                        flush=True,
                    )
                d, g = pair["direct"], pair["aipk"]
                mode = f"{'stream' if stream else 'json'}, {kind} " + (
                    f"c={level:g}" if kind == "closed" else f"{level:g} rps"
                )
                for name, r in (("direct", d), ("aipk", g)):
                    n = len(r.latencies)
                    row: list[object] = [
                        mode if name == "direct" else "",
                        name,
                        str(n),
                        f"{n / r.elapsed:.0f}",
                        str(r.errors),
                        fmt(pct(r.latencies, 50), 2),
                        fmt(pct(r.latencies, 99), 2),
                        fmt(pct(r.ttfts, 50), 2) if stream else "-",
                        fmt(pct(r.ttfts, 99), 2) if stream else "-",
                    ]
                    if name == "aipk":
                        row += [
                            fmt(pct(g.latencies, 50) - pct(d.latencies, 50), 2),
                            fmt(pct(g.latencies, 99) - pct(d.latencies, 99), 2),
                            fmt(1000 * g.server_cpu / max(1, n + g.errors), 2),
                            f"{g.rss_before:.0f}→{g.rss_after:.0f}",
                        ]
                    else:
                        row += ["", "", "", ""]
                    row.append(f"{100 * r.client_cpu / r.elapsed:.0f}%")
                    rows.append(row)
    return rows


HEADERS = [
    "mode",
    "target",
    "ok",
    "rps",
    "errors",
    "p50 ms",
    "p99 ms",
    "ttft p50",
    "ttft p99",
    "added p50",
    "added p99",
    "aipk CPU ms/req",
    "aipk RSS MB",
    "loadgen CPU",
]


def wait_http(proc: Proc, url: str, headers: dict | None = None, timeout: float = 60) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready at {url}:\n{proc.output()}")


def psql(sql: str) -> None:
    subprocess.run(
        [
            PYTHON,
            "-c",
            "import psycopg,sys; c=psycopg.connect(sys.argv[1], autocommit=True); "
            "c.execute(sys.argv[2])",
            PG_ADMIN,
            sql,
        ],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--delay-ms", type=int, default=20, help="simulator delay")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 50, 200])
    parser.add_argument("--rates", type=float, nargs="*", default=[100, 500])
    parser.add_argument("--only", choices=["stream", "nostream"])
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument(
        "--profile", metavar="FILE", help="record aipk with py-spy (speedscope JSON) to FILE"
    )
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="aipk-bench-")
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
    }
    # one process: in-process metrics. Unset, not empty: prometheus_client takes an
    # empty PROMETHEUS_MULTIPROC_DIR as "multiprocess, files in the working directory"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("prometheus_multiproc_dir", None)
    pg_db = f"aipk_bench_{os.getpid()}"
    if args.postgres:
        psql(f"CREATE DATABASE {pg_db}")
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{pg_db}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
    if args.redis:
        env["REDIS_URL"] = REDIS_URL
    else:
        env.pop("REDIS_URL", None)

    procs: list[Proc] = []
    try:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=REPO_ROOT,
            env=env,
            check=True,
        )
        if args.redis:
            subprocess.run(
                [PYTHON, "-c", f"import redis; redis.Redis.from_url({REDIS_URL!r}).flushdb()"],
                check=True,
            )
        aipk_port = free_port()
        sim, sim_url = start_simulator(env, args.delay_ms)
        procs.append(sim)
        seeded = subprocess.run(
            [
                PYTHON,
                "manage.py",
                "shell",
                "-c",
                SEED.format(base_url=f"{sim_url}/openai/v1", model=MODEL),
            ],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        secret = seeded.stdout.split("SECRET=", 1)[1].split()[0]
        # the production command, one worker: uvicorn runs the app in this very process,
        # so its pid is the one whose CPU and RSS are read (and py-spy records)
        serve_env = {
            **env,
            "WEB_CONCURRENCY": "1",
            "HOST": "127.0.0.1",
            "PORT": str(aipk_port),
        }
        aipk = Proc("aipk (manage.py serve)", [PYTHON, "manage.py", "serve"], serve_env)
        procs.append(aipk)
        wait_http(sim, f"{sim_url}/_sim/health")
        auth = {"authorization": f"Bearer {secret}"}
        wait_http(aipk, f"http://127.0.0.1:{aipk_port}/v1/models", auth)

        direct = Target(
            "direct",
            f"{sim_url}/openai/v1/chat/completions",
            MODEL,
            {"authorization": "Bearer sk-bench-0001", "content-type": "application/json"},
            None,
        )
        gateway = Target(
            "aipk",
            f"http://127.0.0.1:{aipk_port}/v1/chat/completions",
            f"sim/{MODEL}",
            {**auth, "content-type": "application/json"},
            aipk.pid,
        )
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    os.path.join(BIN, "py-spy"),
                    "record",
                    "-p",
                    str(aipk.pid),
                    "-o",
                    args.profile,
                    "-f",
                    "speedscope",
                    "-r",
                    "200",
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        print(environment())
        print(
            f"load average at start: {os.getloadavg()[0]:.2f}; simulator delay "
            f"{args.delay_ms} ms; {MAX_TOKENS} content chunks per reply; "
            f"{'redis' if args.redis else 'locmem'} cache, "
            f"{'postgres' if args.postgres else 'sqlite'}; {args.duration:g} s per run",
            flush=True,
        )
        rows = asyncio.run(bench(args, direct, gateway))
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        print()
        print(markdown_table(HEADERS, rows))
        aipk.check()
    finally:
        for proc in reversed(procs):
            proc.stop()
        if args.postgres:
            psql(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
