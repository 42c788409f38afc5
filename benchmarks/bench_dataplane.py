"""The /v1 data plane side by side: direct, LiteLLM's proxy and aipk, one run, one mock upstream.

Starts, as separate processes on free 127.0.0.1 ports:

- the mock upstream (``benchmarks/mock_upstream.py``: raw asyncio + httptools on uvloop,
  a fixed OpenAI chat completion or an SSE stream of 8 content chunks + usage);
- LiteLLM's proxy (``litellm --config cfg.yaml --num_workers 1``, no database, a master
  key, one ``openai/`` model whose api_base is the mock), from its own virtualenv
  ``benchmarks/.litellm-venv`` made on the first run (python3.11, ``litellm[proxy]``
  pinned to LITELLM_VERSION) and kept between runs;
- aipk, with ``manage.py serve`` (or, before that command exists, uvicorn with uvloop +
  httptools), DEBUG off, logging at WARNING:
  *embedded*: 1 worker, a fresh SQLite file, local-memory cache;
  *production*: 2 workers, a PostgreSQL database created for the run and dropped after,
  Redis (its db flushed first).

aipk is seeded through the project's services: a tenant, a virtual key with generous
limits, an ``openai`` provider whose base_url is the mock, with one API key.

The load generator is this process (aiohttp, uvloop). For JSON and streamed requests:
closed loops (c=1, 50, 200) and open loops at fixed rates (500 and 1,000 rps); open-loop
latency is counted from the request's scheduled start, so a server that falls behind is
charged for its queue. Per run: p50/p99, added p50/p99 (target minus direct, same load,
same section), time to first content token (streams), rps, errors, the target's CPU per
request (its process and its workers, from /proc/<pid>/stat; on the "direct" rows, the
mock's), its RSS, the generator's own CPU. ``uptime``'s load average is printed before
and after each section, and at the start and the end a CPU calibration (the time of a
fixed 5M-iteration Python loop, best of 3: compare runs on different machines by it).

Paced streams ("stream paced c=50"): 50 concurrent streams, closed loop, against a second
mock whose 8 content chunks come 30 ms ± 50 % apart (``--paced-interval``,
``--paced-jitter``, ``--paced-streams``;
PACED_* below says why those figures) -- direct, LiteLLM (embedded) and aipk, aipk through a
second provider ``paced``. Against the instant mock every target is saturated at c=50 and
the added TTFT there is queueing (50 / rps); paced, the gateway is busy but not saturated,
as in service, so "added TTFT p50 at c=50" is judged on this mode (the saturated figure
is still shown, as info).

Usage rows: every request carries its own ``x-request-id``; aipk names the request's usage
row in every answer (the ``x-request-id`` it answers with), so after each aipk section
(after a SIGTERM drain) each answer is matched to its row by id -- "lost" counts answers
whose row is missing, exactly. Requests without an answer are counted by how they ended
(connect failed: never sent; server disconnected / reset; given up by the client) and set
against the rows no answer named (see ``Accounting``); shed requests (503
gateway_overloaded) are their own category. A last table sets each of issue 12's targets
against the figure. LiteLLM's open loops are skipped
when the rate is over twice its best closed-loop rps (they would only measure its queue).

    .venv/bin/python benchmarks/bench_dataplane.py                # default run (~6-8 min)
    .venv/bin/python benchmarks/bench_dataplane.py --quick        # smoke run, < 60 s
    .venv/bin/python benchmarks/bench_dataplane.py --full         # + 60 s 1,000 rps check,
                                                                  #   soak and slow streams
    .venv/bin/python benchmarks/bench_dataplane.py --soak [N]     # RSS over N requests
    .venv/bin/python benchmarks/bench_dataplane.py --slow-streams [N]
    .venv/bin/python benchmarks/bench_dataplane.py --mock-compare # raw vs aiohttp mock

Other options: --sections embedded production, --duration S, --no-litellm,
--pg-database NAME, --redis-url URL, --paced-interval MS (0: no paced runs),
--paced-jitter F (0: chunks on a clock), --paced-streams N. ``--concurrency --rates``
(both empty) runs only the paced mode.
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
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from _common import (
    REPO_ROOT,
    calibration_line,
    cpu_seconds,
    environment,
    free_port,
    load_line,
    markdown_table,
    percentile,
    process_tree,
    rss_mb,
)

PYTHON = sys.executable
BIN = Path(PYTHON).parent
BENCH_DIR = REPO_ROOT / "benchmarks"
LITELLM_VENV = BENCH_DIR / ".litellm-venv"
LITELLM_VERSION = "1.108.7"
LITELLM_KEY = "sk-litellm-bench-master"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
UPSTREAM_KEY = "sk-mock-0001"
MODEL = "gpt-4o-mini"
# the first content token of a chat chunk, whatever the JSON spacing of the server
CONTENT = re.compile(rb'"content":\s?"[^"]')
# how long an open loop waits for stragglers after its last start, and warm-up seconds
# per target and reply kind (both shortened by --quick)
TUNING = {"grace": 10.0, "warm": 1.0}
STARTED = time.monotonic()
# The paced mock of the TTFT-at-c=50 runs: 8 content chunks 30 ms apart, a ~0.24 s
# stream. 30 ms a chunk is ~33 chunks/s, the order of a hosted chat model's output
# speed (one token or a few per chunk), so 50 concurrent streams ask ~200 streams/s of
# a gateway that can relay ~800/s in one process: it is busy but not saturated, as in
# service, and the added TTFT is its own work, not a queue (in the closed loop at c=50
# against the instant mock every target is saturated, and the added TTFT is 50 / rps).
PACED_CHUNKS, PACED_INTERVAL_MS = 8, 30.0
# Each paced gap is drawn from 15-45 ms (mean 30). On an exact clock every stream lasts
# exactly as long, so a closed loop keeps the 50 streams in step for the whole run: their
# chunks reach a gateway in bursts of up to 50 at the same instant, every 30 ms, and each
# new stream starts at such an instant (the one its predecessor ended on) -- its first
# token is timed behind a burst by construction. No hosted model paces its tokens on a
# shared clock, so that measured an artefact of the load generator; with the gaps drawn,
# the streams drift apart within a few chunks and new ones arrive at any moment, as in
# service. ``--paced-jitter 0`` still gives the in-step variant (docs/BENCHMARKS.md shows
# both).
PACED_JITTER = 0.5
SERVE_COMMAND = REPO_ROOT / "aipk_site" / "gateway" / "management" / "commands" / "serve.py"


def log(text: str = "") -> None:
    print(text, flush=True)


# --- child processes -------------------------------------------------------------------


class Proc:
    """A child process with its output in a temp file; ``stop()`` always ends it."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path = REPO_ROOT
    ) -> None:
        self.name = name
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.output()}")

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (aipk drains its requests and flushes usage rows on it), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"  ! {self.name} did not stop in {timeout:g} s: killed")
                for pid in reversed(process_tree(self.pid)):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(timeout=5)
        self.log.close()


def wait_http(proc: Proc, url: str, headers: dict[str, str] | None = None, timeout=90.0) -> None:
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


def start_mock(
    interval: float = 0.0, impl: str = "raw", chunks: int = 10, jitter: float = 0.0
) -> tuple[Proc, str]:
    port = free_port()
    argv = [PYTHON, str(BENCH_DIR / "mock_upstream.py"), "--port", str(port), "--impl", impl]
    if interval:
        argv += ["--chunk-interval", str(interval), "--slow-chunks", str(chunks)]
        argv += ["--chunk-jitter", str(jitter)]
    mock = Proc(f"mock ({impl})", argv, dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    wait_http(mock, f"{url}/v1/models")
    return mock, url


# --- LiteLLM ---------------------------------------------------------------------------


def litellm_venv() -> str:
    """Make (once) LiteLLM's own virtualenv; return the version installed in it."""
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        log(f"creating {LITELLM_VENV} (python3.11, litellm[proxy]=={LITELLM_VERSION}) ...")
        subprocess.run(["python3.11", "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        exact = subprocess.run([*pip, f"litellm[proxy]=={LITELLM_VERSION}"])
        if exact.returncode != 0:
            log(f"  litellm {LITELLM_VERSION} not on the index: installing the newest available")
            subprocess.run([*pip, "litellm[proxy]"], check=True)
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return version


def start_litellm(mock_url: str, workdir: Path, paced_mock_url: str = "") -> tuple[Proc, str]:
    port = free_port()
    config = workdir / "litellm.yaml"
    models = [(MODEL, mock_url)] + ([(f"paced-{MODEL}", paced_mock_url)] if paced_mock_url else [])
    # JSON is YAML: no YAML library needed here
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": name,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": f"{url}/v1",
                            "api_key": UPSTREAM_KEY,
                        },
                    }
                    for name, url in models
                ],
                "general_settings": {"master_key": LITELLM_KEY},
                "litellm_settings": {"telemetry": False, "set_verbose": False},
            }
        )
    )
    env = {
        "PATH": f"{LITELLM_VENV / 'bin'}:/usr/bin:/bin",
        "HOME": str(workdir),
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_MODE": "PRODUCTION",
    }
    argv = [
        str(LITELLM_VENV / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    return Proc("litellm", argv, env, cwd=workdir), f"http://127.0.0.1:{port}"


# --- aipk ------------------------------------------------------------------------------

SEED = """
from decimal import Decimal
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import Tenant
from tenants_app.services.keys import virtual_key_create
provider = provider_create(
    name="mock", type="openai", base_url={base_url!r}, default_model={model!r}
)
api_key_add(provider=provider, label="bench", secret={upstream_key!r})
if {paced_url!r}:  # the paced mock: a second provider, "paced/<model>"
    paced = provider_create(
        name="paced", type="openai", base_url={paced_url!r}, default_model={model!r}
    )
    api_key_add(provider=paced, label="bench", secret={upstream_key!r})
tenant = Tenant.objects.create(name="Bench", slug="bench")
key, secret = virtual_key_create(
    tenant=tenant, name="bench", actor=None, rpm=100_000_000, tpm=2_000_000_000,
    max_concurrent_streams=1_000_000, monthly_budget_usd=Decimal("1000000"),
)
print("SECRET=" + secret)
"""


def aipk_env(workdir: Path, database_url: str, redis_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aipk_site.settings",
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-secret-key-not-for-production",
        "FERNET_KEYS": "bench-fernet-key",
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",  # plain http on loopback
        "DATABASE_URL": database_url,
        "USAGE_SPOOL_DIR": str(workdir / "usage-spool"),
    }
    # unset, not empty: prometheus_client takes an empty value as "multiprocess, here"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("prometheus_multiproc_dir", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    return env


def prepare_aipk(env: dict[str, str], mock_url: str, paced_mock_url: str = "") -> str:
    """Migrate and seed the database; return the virtual key's secret."""
    run = {"cwd": REPO_ROOT, "env": env, "check": True}
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], **run)  # type: ignore[call-overload]
    code = SEED.format(
        base_url=f"{mock_url}/v1",
        model=MODEL,
        upstream_key=UPSTREAM_KEY,
        paced_url=f"{paced_mock_url}/v1" if paced_mock_url else "",
    )
    seeded = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code], capture_output=True, text=True, **run
    )  # type: ignore[call-overload]
    return str(seeded.stdout.split("SECRET=", 1)[1].split()[0])


def start_aipk(env: dict[str, str], workers: int) -> tuple[Proc, str, str]:
    port = free_port()
    if SERVE_COMMAND.exists():
        how = "manage.py serve"
        argv = [PYTHON, "manage.py", "serve"]
        env = {**env, "WEB_CONCURRENCY": str(workers), "HOST": "127.0.0.1", "PORT": str(port)}
    else:
        how = "uvicorn (manage.py serve not there yet)"
        argv = [str(BIN / "uvicorn"), "aipk_site.asgi:application", "--workers", str(workers)]
        argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--backlog", "4096"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return Proc("aipk", argv, env), f"http://127.0.0.1:{port}", how


def usage_rows(database_url: str) -> dict[str, str]:
    """Every usage row's request id and status, read straight from the database after
    aipk has stopped (its SIGTERM drain flushed the writer)."""
    sql = "SELECT request_id, status FROM tenants_app_usagerecord"
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            return dict(db.execute(sql).fetchall())
    import psycopg

    with psycopg.connect(database_url) as db:
        return dict(db.execute(sql).fetchall())  # type: ignore[arg-type]


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as db:
        db.execute(sql)  # type: ignore[arg-type]


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


# --- usage-row accounting ----------------------------------------------------------------

# What became of a request, as the load generator saw it. aipk names a request's usage
# row in every answer it gives for it (``x-request-id``: a reply's completion id, an
# error's id too -- dispatch.py); an answer is therefore matched to its row exactly.
OK = "ok (complete 2xx)"
SHED = "shed (503 gateway_overloaded)"
BROKEN = "answered, then cut"  # status line and headers came, the body or stream did not end
# no answer at all, so no id: these are matched against the rows no answer named
NOT_SENT = "not sent (connect failed)"  # the socket never connected: aipk never saw it
NO_REPLY = "no reply"  # prefix: sent (or being sent), the connection ended before any answer
GIVEN_UP = "no reply: given up by the client"  # open loop's grace, or the client's timeout


@dataclass
class Book:
    """Every request one target was sent, by outcome, and the row ids its answers named."""

    outcomes: dict[str, int] = field(default_factory=dict)
    answered: dict[str, str] = field(default_factory=dict)  # row id named -> outcome
    # answers naming only the caller's own id back: refused before the gateway gave the
    # request a row id (a bad key), or a row written under an id the answer does not name
    echoed: dict[str, int] = field(default_factory=dict)
    sequence: int = 0

    def next_id(self, prefix: str) -> str:
        self.sequence += 1
        return f"{prefix}-{self.sequence}"

    def record(self, outcome: str, named: str | None = None, sent_id: str = "") -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if named is None:
            return
        if named == sent_id:
            self.echoed[outcome] = self.echoed.get(outcome, 0) + 1
        else:
            self.answered[named] = outcome

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())


@dataclass
class Accounting:
    """A target's book set against the usage rows aipk wrote.

    - ``lost``: answers naming a row id that is not there. Exact: an answer proves the
      request reached the gateway, and the id it names is its row's.
    - answers naming no row (the caller's id echoed): matched by count against the
      ``refused`` rows no answer named; the rest have no row (a refusal before the key
      was known: none by design).
    - ``unanswered``: requests that got no status line, by how they ended. The rows left
      over are theirs (the gateway saw the client go, or finished after it gave up);
      ``without_row`` of them have none: the kernel reset them before uvicorn took
      them, a connection closed under them, or the gateway lost them -- from outside
      the server the three look alike.
    - ``not sent``: the client could not connect: aipk never saw them; no row expected.
    """

    book: Book
    rows: dict[str, str]

    @property
    def lost(self) -> int:
        return sum(1 for named in self.book.answered if named not in self.rows)

    def lost_by_outcome(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for named, outcome in self.book.answered.items():
            if named not in self.rows:
                out[outcome] = out.get(outcome, 0) + 1
        return out

    def unanswered(self) -> dict[str, int]:
        return {k: v for k, v in self.book.outcomes.items() if k.startswith(NO_REPLY)}

    def orphan_rows(self) -> dict[str, int]:
        """Rows no answer named, by status."""
        out: dict[str, int] = {}
        for request_id, status in self.rows.items():
            if request_id not in self.book.answered:
                out[status] = out.get(status, 0) + 1
        return out

    def echoed_matched(self) -> int:
        return min(sum(self.book.echoed.values()), self.orphan_rows().get("refused", 0))

    def leftover_rows(self) -> int:
        return sum(self.orphan_rows().values()) - self.echoed_matched()

    @property
    def without_row(self) -> int:
        """Unanswered requests with no row (an upper bound of rows lost among them)."""
        return max(0, sum(self.unanswered().values()) - self.leftover_rows())

    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for status in self.rows.values():
            out[status] = out.get(status, 0) + 1
        return out

    def line(self) -> str:
        book = self.book
        echoed = sum(book.echoed.values())
        parts = [
            f"{self.lost} lost (answers naming a row that is missing: "
            f"{self.lost_by_outcome() or 0})",
            f"{book.sent} sent: {dict(sorted(book.outcomes.items()))}",
            f"rows {self.statuses()}",
            f"{len(book.answered)} answers named their row, {len(book.answered) - self.lost} "
            f"found by id",
        ]
        if echoed:
            parts.append(
                f"{echoed} answers named no row ({book.echoed}): {self.echoed_matched()} "
                f"matched by count to refused rows no answer named, "
                f"{echoed - self.echoed_matched()} without a row"
            )
        unanswered = sum(self.unanswered().values())
        extra = self.leftover_rows() - unanswered
        if unanswered or self.leftover_rows():
            parts.append(
                f"{unanswered} unanswered, {self.leftover_rows()} rows left for them: "
                f"{self.without_row} unanswered without a row (never taken by the server "
                f"or lost in it: alike from the client)"
                + (f", {extra} rows no request accounts for" if extra > 0 else "")
            )
        return "; ".join(parts)


# --- load generator --------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    model: str
    headers: dict[str, str]
    pid: int | None = None  # the server's root process (its workers are found under it)
    # the paced-stream mode: the same server through the paced mock (a second provider)
    paced_url: str = ""
    paced_model: str = ""
    # the usage-row check, warm-up included: every request's outcome and the row id its
    # answer named (Accounting)
    book: Book = field(default_factory=Book)

    def body(self, stream: bool, paced: bool = False) -> bytes:
        body: dict[str, Any] = {
            "model": self.paced_model if paced else self.model,
            "messages": [{"role": "user", "content": "Say hello to the benchmark, please."}],
            "max_tokens": 16,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body).encode()

    def pids(self) -> list[int]:
        return process_tree(self.pid) if self.pid else []


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # ms
    ttfts: list[float] = field(default_factory=list)  # ms
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    rss_after: float = 0.0

    examples: dict[str, str] = field(default_factory=dict)

    def error(self, kind: str, detail: str = "") -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
        if detail:
            self.examples.setdefault(kind, detail[:160])

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu / max(1, len(self.latencies) + self.errors)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one(
    session: aiohttp.ClientSession,
    target: Target,
    body: bytes,
    stream: bool,
    start: float,
    result: Result,
    paced: bool = False,
) -> None:
    """One request; a reply counts only if it is 200 and complete (a stream to [DONE]).

    It carries its own ``x-request-id`` (aipk keeps a sane caller id for its logs and
    echoes it when it refuses a request before giving it a row id); the id the answer
    names is booked with the outcome (Book), to be matched to aipk's usage rows."""
    ttft = None
    payload = b""
    named: str | None = None
    sent_id = target.book.next_id(target.name)
    headers = {**target.headers, "x-request-id": sent_id}
    url = target.paced_url if paced else target.url
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            status = resp.status
            named = resp.headers.get("x-request-id")
            if status != 200:
                payload = await resp.read()
            elif stream:
                async for data in resp.content.iter_any():
                    if ttft is None and CONTENT.search(payload[-48:] + data):
                        ttft = time.perf_counter()
                    payload = (payload + data)[-64:]
            else:
                payload = await resp.read()
    except asyncio.CancelledError:  # the open loop gave up on it
        target.book.record(BROKEN if named else GIVEN_UP, named, sent_id)
        raise
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        if named is not None:
            outcome = BROKEN
        elif isinstance(error, aiohttp.ClientConnectorError):
            outcome = NOT_SENT
        elif isinstance(error, TimeoutError):
            outcome = GIVEN_UP
        else:  # ServerDisconnectedError, a reset (ClientOSError), ...
            outcome = f"{NO_REPLY}: {type(error).__name__}"
        target.book.record(outcome, named, sent_id)
        result.error(type(error).__name__, str(error))
        return
    end = time.perf_counter()
    if status != 200:
        if status == 503 and b"gateway_overloaded" in payload:
            target.book.record(SHED, named, sent_id)
            result.error(SHED)
            return
        target.book.record(f"http {status}", named, sent_id)
        result.error(f"http {status}", payload.decode(errors="replace"))
        return
    if stream and (ttft is None or b"[DONE]" not in payload):
        target.book.record(BROKEN, named, sent_id)
        result.error("incomplete stream")
        return
    if not stream and b'"choices"' not in payload:
        target.book.record(BROKEN, named, sent_id)
        result.error("no choices")
        return
    target.book.record(OK, named, sent_id)
    result.latencies.append((end - start) * 1000)
    if ttft is not None:
        result.ttfts.append((ttft - start) * 1000)


async def closed_loop(
    session: aiohttp.ClientSession,
    target: Target,
    stream: bool,
    concurrency: int,
    duration: float,
    result: Result,
    paced: bool = False,
) -> None:
    body = target.body(stream, paced)
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            await one(session, target, body, stream, time.perf_counter(), result, paced)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def open_loop(
    session: aiohttp.ClientSession,
    target: Target,
    stream: bool,
    rate: float,
    duration: float,
    result: Result,
) -> None:
    """``rate`` requests a second for ``duration`` s, each started when due whether or not
    the earlier ones are done; what has not finished TUNING["grace"] s (10) after the last
    start is an error."""
    body = target.body(stream)
    total = int(rate * duration)
    t0 = time.perf_counter() + 0.05
    tasks: list[asyncio.Task[None]] = []
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due_now = min(total, int((now - t0) * rate) + 1)
        while sent < due_now:
            due = t0 + sent / rate
            tasks.append(asyncio.create_task(one(session, target, body, stream, due, result)))
            sent += 1
        # start everything due, then sleep until the next one is (timer granularity ~1 ms)
        await asyncio.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
    done, pending = await asyncio.wait(tasks, timeout=TUNING["grace"]) if tasks else (set(), set())
    for task in pending:
        task.cancel()
        result.error(f"unfinished {TUNING['grace']:g} s after the last start")
    await asyncio.gather(*pending, return_exceptions=True)


async def measured(target: Target, work: Callable[[Result], Awaitable[None]]) -> Result:
    result = Result()
    pids = target.pids()
    server0 = cpu_seconds(pids)
    cpu0, t0 = own_cpu(), time.perf_counter()
    await work(result)
    result.elapsed = time.perf_counter() - t0
    result.client_cpu = own_cpu() - cpu0
    pids = target.pids()
    result.server_cpu = cpu_seconds(pids) - server0 if pids else 0.0
    result.rss_after = rss_mb(pids) if pids else 0.0
    return result


def session_for(total_timeout: float | None = 60) -> aiohttp.ClientSession:
    # keep-alive shorter than the servers' idle timeout (uvicorn's is 5 s): otherwise a
    # connection idle while another target ran is reused just as the server closes it,
    # and the client's race is counted as the server's error
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=2.0)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=total_timeout)
    )


async def warm(session: aiohttp.ClientSession, target: Target) -> None:
    kinds = [(False, False), (True, False)] + ([(True, True)] if target.paced_url else [])
    for stream, paced in kinds:
        result = Result()
        await closed_loop(session, target, stream, 10, TUNING["warm"], result, paced)
        if result.errors or not result.latencies:
            raise RuntimeError(f"warm-up against {target.name}: errors {result.error_kinds}")


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


@dataclass
class Run:
    section: str
    stream: bool
    kind: str  # closed / open
    level: float
    target: str
    result: Result

    @property
    def mode(self) -> str:
        load = f"{self.level:g} rps" if self.kind == "open" else f"c={self.level:g}"
        return f"{'stream' if self.stream else 'json'} {self.kind} {load}"


async def settle(target: Target, limit: float = 15.0) -> None:
    """Wait until the target's processes are idle (< 10% of a core over 0.25 s), at most
    ``limit`` s: an overloaded server still working off the last run's queue (requests
    the generator gave up on) would otherwise be charged to the next run."""
    pids = target.pids()
    deadline = time.monotonic() + limit
    while pids and time.monotonic() < deadline:
        before = cpu_seconds(pids)
        await asyncio.sleep(0.25)
        if cpu_seconds(pids) - before < 0.025:
            return


async def run_modes(
    section: str,
    targets: list[Target],
    modes: list[tuple[bool, str, float, float]],
) -> list[Run]:
    runs: list[Run] = []
    capacity: dict[tuple[str, bool], float] = {}  # best closed-loop rps per target and kind
    async with session_for() as session:
        for target in targets:
            await warm(session, target)
        for stream, kind, level, duration in modes:
            for target in targets:
                mode = Run(section, stream, kind, level, target.name, Result()).mode
                best = capacity.get((target.name, stream), 0.0)
                if target.name == "litellm" and kind == "open" and level > 2 * best:
                    # an open loop at many times a server's capacity only measures its
                    # queue, and leaves it busy for minutes: skipped, and said so
                    log(
                        f"  {mode:<22} {target.name:<8} skipped: {level:g} rps is over twice "
                        f"its closed-loop best ({best:.0f} rps)"
                    )
                    continue
                if kind == "paced" and not target.paced_url:
                    continue
                await asyncio.sleep(0.2)
                await settle(target)
                if kind == "paced":
                    work = partial(
                        closed_loop, session, target, True, int(level), duration, paced=True
                    )
                elif kind == "closed":
                    work = partial(closed_loop, session, target, stream, int(level), duration)
                else:
                    work = partial(open_loop, session, target, stream, level, duration)
                r = await measured(target, work)
                if kind == "closed":
                    capacity[(target.name, stream)] = max(best, r.rps)
                runs.append(Run(section, stream, kind, level, target.name, r))
                cpu = f" server cpu={fmt(r.cpu_ms_per_request())} ms/req" if target.pid else ""
                log(
                    f"  {mode:<22} {target.name:<8} n={len(r.latencies):>6} "
                    f"p50={fmt(percentile(r.latencies, 50))} "
                    f"p99={fmt(percentile(r.latencies, 99))} "
                    f"rps={r.rps:.0f} err={r.error_kinds or 0} "
                    f"loadgen cpu={100 * r.client_cpu / r.elapsed:.0f}%{cpu}"
                )
                for error_kind, detail in r.examples.items():
                    log(f"      {error_kind}: {detail}")
    return runs


HEADERS = [
    "section",
    "mode",
    "target",
    "ok",
    "rps",
    "errors",
    "p50 ms",
    "p99 ms",
    "added p50",
    "added p99",
    "ttft p50",
    "added ttft p50",
    "CPU ms/req",
    "RSS MB",
    "loadgen CPU",
]


def _added(a: list[float], b: list[float], p: float) -> str:
    return fmt(percentile(a, p) - percentile(b, p))


def runs_table(runs: list[Run]) -> str:
    direct = {(r.section, r.mode): r.result for r in runs if r.target == "direct"}
    rows: list[list[object]] = []
    previous = None
    for run in runs:
        r, d = run.result, direct.get((run.section, run.mode))
        first = (run.section, run.mode) != previous
        previous = (run.section, run.mode)
        is_direct = run.target == "direct"

        rows.append(
            [
                run.section if first else "",
                run.mode if first else "",
                run.target,
                len(r.latencies),
                f"{r.rps:.0f}",
                r.errors,
                fmt(percentile(r.latencies, 50)),
                fmt(percentile(r.latencies, 99)),
                "" if is_direct or d is None else _added(r.latencies, d.latencies, 50),
                "" if is_direct or d is None else _added(r.latencies, d.latencies, 99),
                fmt(percentile(r.ttfts, 50)) if run.stream else "-",
                "-"
                if not run.stream
                else ("" if is_direct or d is None else _added(r.ttfts, d.ttfts, 50)),
                fmt(r.cpu_ms_per_request()) if r.server_cpu else "",
                f"{r.rss_after:.0f}" if r.rss_after else "",
                f"{100 * r.client_cpu / r.elapsed:.0f}%",
            ]
        )
    return markdown_table(HEADERS, rows)


def paced_table(runs: list[Run]) -> str:
    """TTFT of the paced runs: the figure the "added TTFT at c=50" target is judged on."""
    direct = {r.section: r.result for r in runs if r.target == "direct"}
    rows: list[list[object]] = []
    for run in runs:
        r, d = run.result, direct.get(run.section)
        other = run.target != "direct" and d is not None
        rows.append(
            [
                run.section,
                run.target,
                len(r.latencies),
                r.errors,
                f"{r.rps:.0f}",
                fmt(percentile(r.ttfts, 50)),
                fmt(percentile(r.ttfts, 99)),
                _added(r.ttfts, d.ttfts, 50) if other and d else "",
                _added(r.ttfts, d.ttfts, 99) if other and d else "",
                fmt(percentile(r.latencies, 50)),
                fmt(r.cpu_ms_per_request()) if r.server_cpu else "",
            ]
        )
    headers = ["section", "target", "streams", "errors", "streams/s", "ttft p50 ms"]
    headers += ["ttft p99 ms", "added ttft p50", "added ttft p99", "stream p50 ms", "CPU ms/req"]
    return markdown_table(headers, rows)


# --- sections ----------------------------------------------------------------------------


@dataclass
class Section:
    name: str
    runs: list[Run] = field(default_factory=list)
    accounting: Accounting | None = None
    how: str = ""

    @property
    def lost_rows(self) -> int:
        """Answered requests whose usage row is missing (exact: matched by id)."""
        return self.accounting.lost if self.accounting else 0

    def usage_line(self) -> str:
        return self.accounting.line() if self.accounting else "-"


def section_modes(
    args: argparse.Namespace, production: bool
) -> list[tuple[bool, str, float, float]]:
    modes = []
    for stream in (False, True):
        for c in args.concurrency:
            modes.append((stream, "closed", float(c), args.duration))
        for rate in args.rates:
            long = production and args.full and not stream and rate == 1000
            modes.append((stream, "open", rate, 60.0 if long else args.duration))
    if args.paced_interval > 0:
        modes.append((True, "paced", float(args.paced_streams), args.duration))
    return modes


def run_section(
    name: str,
    args: argparse.Namespace,
    mock_url: str,
    workdir: Path,
    direct: Target,
    litellm: Target | None,
    litellm_proc: Proc | None = None,
    paced_mock_url: str = "",
) -> Section:
    production = name == "production"
    section = Section(name)
    log(f"\n## {name}\n\nbefore: {load_line()} (+{time.monotonic() - STARTED:.0f} s)")
    pg_url = f"postgres://postgres@127.0.0.1:5432/{args.pg_database}"
    if production:
        pg_admin(f"DROP DATABASE IF EXISTS {args.pg_database} WITH (FORCE)")
        pg_admin(f"CREATE DATABASE {args.pg_database}")
        flush_redis(args.redis_url)
        database_url = pg_url
    else:
        database_url = f"sqlite:///{workdir}/embedded.sqlite3"
    env = aipk_env(workdir, database_url, args.redis_url if production else None)
    aipk = None
    try:
        secret = prepare_aipk(env, mock_url, paced_mock_url)
        aipk, aipk_url, section.how = start_aipk(env, 2 if production else 1)
        auth = {"authorization": f"Bearer {secret}"}
        wait_http(aipk, f"{aipk_url}/v1/models", auth)
        if litellm and litellm_proc and not production:
            # LiteLLM started before aipk's migrations: its slow start overlaps them
            wait_http(
                litellm_proc,
                litellm.url.replace("/v1/chat/completions", "/health/liveliness"),
                timeout=180,
            )
        gateway = Target(
            "aipk",
            f"{aipk_url}/v1/chat/completions",
            f"mock/{MODEL}",
            {**auth, "content-type": "application/json"},
            aipk.pid,
            paced_url=f"{aipk_url}/v1/chat/completions" if paced_mock_url else "",
            paced_model=f"paced/{MODEL}" if paced_mock_url else "",
        )
        workers = 2 if production else 1
        store = "PostgreSQL + Redis" if production else "SQLite + local memory"
        log(f"aipk: {section.how}, {workers} worker(s), {store}")
        targets = [direct] + ([litellm] if litellm and not production else []) + [gateway]
        section.runs = uvloop.run(run_modes(name, targets, section_modes(args, production)))
        aipk.check()
        aipk.stop()
        aipk = None
        section.accounting = Accounting(gateway.book, usage_rows(database_url))
        log(f"usage rows: {section.usage_line()}")
    finally:
        if aipk is not None:
            aipk.stop()
        if production:
            pg_admin(f"DROP DATABASE IF EXISTS {args.pg_database} WITH (FORCE)")
    log(f"after: {load_line()}")
    return section


# --- soak, slow streams, mock comparison ---------------------------------------------------


def embedded_aipk(workdir: Path, mock_url: str, name: str) -> tuple[Proc, Target, str]:
    database_url = f"sqlite:///{workdir}/{name}.sqlite3"  # a fresh database per check
    env = aipk_env(workdir, database_url, None)
    secret = prepare_aipk(env, mock_url)
    aipk, url, how = start_aipk(env, 1)
    auth = {"authorization": f"Bearer {secret}"}
    wait_http(aipk, f"{url}/v1/models", auth)
    target = Target(
        "aipk",
        f"{url}/v1/chat/completions",
        f"mock/{MODEL}",
        {**auth, "content-type": "application/json"},
        aipk.pid,
    )
    return aipk, target, database_url


async def soak_load(target: Target, total: int, every: int = 10_000) -> tuple[list, Result]:
    samples: list[tuple[int, float]] = []
    result = Result()
    body = target.body(False)
    started = 0
    async with session_for() as session:
        await warm(session, target)

        async def worker() -> None:
            nonlocal started
            while started < total:
                started += 1
                await one(session, target, body, False, time.perf_counter(), result)
                done = len(result.latencies) + result.errors
                if done % every == 0:
                    samples.append((done, rss_mb(target.pids())))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(50)))
        result.elapsed = time.perf_counter() - t0
    return samples, result


def soak(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    log(f"\n## soak: {args.soak} JSON requests at c=50, aipk embedded\n\nbefore: {load_line()}")
    mock, mock_url = start_mock()
    aipk = None
    try:
        aipk, target, database_url = embedded_aipk(workdir, mock_url, "soak")
        samples, result = uvloop.run(soak_load(target, args.soak))
        aipk.check()
        aipk.stop()
        aipk = None
        accounting = Accounting(target.book, usage_rows(database_url))
    finally:
        if aipk is not None:
            aipk.stop()
        mock.stop()
    log(markdown_table(["requests", "aipk RSS MB"], [[n, f"{mb:.1f}"] for n, mb in samples]))
    first, last = samples[0][1], samples[-1][1]
    drift = 100 * (last - first) / first
    peak = max(mb for _, mb in samples)
    log(
        f"RSS first {first:.1f} MB, last {last:.1f} MB, max {peak:.1f} MB: drift {drift:+.1f}% "
        f"(first sample at {samples[0][0]} requests); {result.rps:.0f} rps, "
        f"errors {result.error_kinds or 0}; usage rows: {accounting.line()}"
    )
    log(f"after: {load_line()}")
    return {
        "figure": f"{drift:+.1f}% over {args.soak:,} (max {peak:.0f} MB)",
        "held": "held" if abs(drift) <= 10 else "NOT held",
    }


async def slow_load(target: Target, n: int, ramp: float) -> Result:
    result = Result()
    body = target.body(True)
    # no total deadline: a slow stream lasts ~10 s; a stalled one fails on the 60 s read
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        t0 = time.perf_counter()
        for i in range(n):
            due = t0 + ramp * i / n
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, target, body, True, due, result)))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - t0
    return result


def slow_streams(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    n = args.slow_streams
    log(
        f"\n## slow streams: {n} concurrent streams (10 chunks, 1 s apart) through one aipk "
        f"process\n\nbefore: {load_line()}; fd limit {resource.getrlimit(resource.RLIMIT_NOFILE)}"
    )
    mock, mock_url = start_mock(interval=1.0)
    aipk = None
    try:
        aipk, target, database_url = embedded_aipk(workdir, mock_url, "slow")
        rss0 = rss_mb(target.pids())
        peak = [rss0]

        async def sampled() -> Result:
            async def sample() -> None:
                while True:
                    await asyncio.sleep(1)
                    peak.append(rss_mb(target.pids()))

            async def work(result: Result) -> None:
                # ramp over <= 5 s (the listen backlog), so all N overlap for ~5 of their ~10 s
                got = await slow_load(target, n, ramp=min(5.0, n / 1000))
                result.latencies, result.ttfts = got.latencies, got.ttfts
                result.errors, result.error_kinds = got.errors, got.error_kinds
                result.examples = got.examples

            sampler = asyncio.create_task(sample())
            try:
                return await measured(target, work)
            finally:
                sampler.cancel()

        result = uvloop.run(sampled())
        aipk.check()
        aipk.stop()
        aipk = None
        accounting = Accounting(target.book, usage_rows(database_url))
    finally:
        if aipk is not None:
            aipk.stop()
        mock.stop()
    log(
        f"completed {len(result.latencies)}/{n}, errors {result.error_kinds or 0}; stream "
        f"duration p50 {fmt(percentile(result.latencies, 50) / 1000)} s, p99 "
        f"{fmt(percentile(result.latencies, 99) / 1000)} s; TTFT p50 "
        f"{fmt(percentile(result.ttfts, 50))} ms p99 {fmt(percentile(result.ttfts, 99))} ms; "
        f"aipk RSS {rss0:.0f} -> max {max(peak):.0f} MB; aipk CPU {result.server_cpu:.1f} s; "
        f"usage rows: {accounting.line()}"
    )
    for kind, detail in result.examples.items():
        log(f"    {kind}: {detail}")
    log(f"after: {load_line()}")
    return {
        "figure": f"{result.errors} errors of {n}",
        "held": "held" if result.errors == 0 and len(result.latencies) == n else "NOT held",
    }


def mock_compare(duration: float) -> None:
    log(f"\n## mock upstream: raw asyncio + httptools vs aiohttp.web\n\nbefore: {load_line()}")
    rows: list[list[object]] = []
    for impl in ("raw", "aiohttp"):
        mock, url = start_mock(impl=impl)
        try:
            target = Target(impl, f"{url}/v1/chat/completions", MODEL, {}, mock.pid)

            async def go(t: Target = target) -> list[Result]:
                out = []
                async with session_for() as session:
                    await warm(session, t)
                    for stream in (False, True):
                        work = partial(closed_loop, session, t, stream, 50, duration)
                        out.append(await measured(t, work))
                return out

            for stream, r in zip((False, True), uvloop.run(go()), strict=True):
                rows.append(
                    [
                        impl,
                        "stream" if stream else "json",
                        f"{r.rps:.0f}",
                        fmt(percentile(r.latencies, 50)),
                        fmt(r.cpu_ms_per_request(), 3),
                        r.errors,
                    ]
                )
        finally:
            mock.stop()
    log(markdown_table(["mock", "reply", "rps c=50", "p50 ms", "mock CPU ms/req", "errors"], rows))
    log(f"after: {load_line()}")


# --- targets -------------------------------------------------------------------------------


def find(sections: list[Section], section: str, mode: str, target: str) -> Result | None:
    for s in sections:
        for run in s.runs:
            if (run.section, run.mode, run.target) == (section, mode, target):
                return run.result
    return None


def targets_table(
    sections: list[Section], extra: dict[str, dict[str, str]], args: argparse.Namespace
) -> str:
    rows: list[list[object]] = []

    def add(name: str, figure: str, held: bool | str | None) -> None:
        verdict = "not run" if held is None else ("held" if held else "NOT held")
        rows.append([name, figure, held if isinstance(held, str) else verdict])

    def p(section: str, mode: str, target: str = "aipk") -> Result | None:
        return find(sections, section, mode, target)

    def added(
        section: str, mode: str, target: str = "aipk", ttft: bool = False, pct: float = 50
    ) -> float:
        g, d = p(section, mode, target), p(section, mode, "direct")
        if g is None or d is None:
            return float("nan")
        a, b = (g.ttfts, d.ttfts) if ttft else (g.latencies, d.latencies)
        return percentile(a, pct) - percentile(b, pct)

    def check(value: float, ok: Callable[[float], bool]) -> bool | None:
        return None if value != value else ok(value)

    v = added("embedded", "json closed c=1")
    add("embedded: added p50 at c=1 (JSON) ≤ 1 ms", f"{fmt(v)} ms", check(v, lambda x: x <= 1))
    for section, mode, goal in (
        ("embedded", "json closed c=50", 1500),
        ("embedded", "stream closed c=50", 800),
        ("production", "json closed c=50", 1500),
    ):
        r = p(section, mode)
        v = r.rps if r else float("nan")
        add(f"{section}: ≥ {goal:,} rps, {mode}", f"{fmt(v, 0)} rps", None if v != v else v >= goal)
    n = args.paced_streams
    paced = f"stream paced c={n}"
    pacing = f"{PACED_CHUNKS} chunks {args.paced_interval:g} ms ±{args.paced_jitter:.0%} apart"
    v = added("embedded", paced, ttft=True)
    r = p("embedded", paced)
    add(
        f"embedded: added TTFT p50, {n} concurrent paced streams ({pacing}) ≤ 2 ms",
        f"{fmt(v)} ms (p99 {fmt(added('embedded', paced, ttft=True, pct=99))} ms)" if r else "-",
        check(v, lambda x: x <= 2),
    )
    if p("production", paced):
        v = added("production", paced, ttft=True)
        add(f"(info) production: added TTFT p50, {n} paced streams", f"{fmt(v)} ms", "info")
    v = added("embedded", "stream closed c=50", ttft=True)
    if v == v:
        add(
            "(info) embedded: added TTFT p50, stream closed c=50 (saturated: queueing, 50/rps)",
            f"{fmt(v)} ms",
            "info",
        )
    r = p("production", "json open 1000 rps")
    seconds = 60 if args.full else args.duration
    # a short open loop proves little: its queue drains in the grace period after the
    # last start; only the 60 s run (--full) is judged, a shorter one is shown
    verdict: bool | str | None = None
    if r is not None:
        verdict = r.errors == 0 if seconds >= 60 else f"not judged ({seconds:g} s; --full)"
    add(
        f"production: 0 errors, open loop 1,000 rps for 60 s (this run: {seconds:g} s)",
        f"{r.errors} errors, {len(r.latencies)} ok, {r.rps:.0f} rps done, "
        f"p99 {fmt(percentile(r.latencies, 99), 0)} ms"
        if r
        else "-",
        verdict,
    )
    for name in ("production", "embedded"):
        sec = next((s for s in sections if s.name == name and s.runs), None)
        acc = sec.accounting if sec else None
        if sec is None and name == "embedded":
            continue
        if acc is None:
            add(f"{name}: 0 lost usage rows", "-", None)
            continue
        figure = f"{acc.lost} answered without a row"
        if acc.without_row:
            figure += f"; {acc.without_row} unanswered without a row (see the usage line)"
        add(f"{name}: 0 lost usage rows (answers matched to rows by id)", figure, acc.lost == 0)
    g, lite = p("embedded", "json closed c=50"), p("embedded", "json closed c=50", "litellm")
    ratio = g.rps / lite.rps if g and lite and lite.rps else float("nan")
    add(
        "≥ 10× LiteLLM's rps (JSON c=50, 1 process each)",
        f"{fmt(ratio, 1)}×",
        check(ratio, lambda x: x >= 10),
    )
    a, b = added("embedded", "json closed c=1"), added("embedded", "json closed c=1", "litellm")
    share = a / b if b == b and b > 0 else float("nan")
    add(
        "≤ 1/5 of LiteLLM's added p50 (JSON c=1)",
        f"aipk {fmt(a)} ms / LiteLLM {fmt(b)} ms = {fmt(share)}",
        check(share, lambda x: x <= 0.2),
    )
    g, lite = p("embedded", "stream closed c=50"), p("embedded", "stream closed c=50", "litellm")
    if g and lite and lite.rps:
        add("(info) aipk / LiteLLM rps, stream c=50", f"{g.rps / lite.rps:.1f}×", "info")
    for name, key in (
        ("RSS flat ±10% over the soak", "soak"),
        ("5,000 slow streams, 0 errors", "slow"),
    ):
        if key in extra:
            add(name, extra[key]["figure"], extra[key]["held"] == "held")
        else:
            add(name, "-", None)
    return markdown_table(["target", "figure", "result"], rows)


# --- main ----------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    """Soft fd limit up to the hard one. Set before any server starts: a child inherits
    its parent's limits, so the mock and aipk get it too (in production the service
    manager sets it, e.g. systemd's LimitNOFILE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    parser.add_argument(
        "--full", action="store_true", help="60 s 1,000 rps check, soak, slow streams"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 50, 200])
    parser.add_argument("--rates", type=float, nargs="*", default=[500, 1000])
    parser.add_argument("--sections", nargs="*", choices=["embedded", "production"], default=None)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--soak", type=int, nargs="?", const=200_000, default=None)
    parser.add_argument("--slow-streams", type=int, nargs="?", const=5_000, default=None)
    parser.add_argument("--mock-compare", action="store_true")
    parser.add_argument(
        "--paced-interval",
        type=float,
        default=PACED_INTERVAL_MS,
        help="ms between the paced mock's content chunks (0: no paced-stream runs)",
    )
    parser.add_argument(
        "--paced-streams", type=int, default=50, help="concurrent paced streams (closed loop)"
    )
    parser.add_argument(
        "--paced-jitter",
        type=float,
        default=PACED_JITTER,
        help="each paced gap: interval x U(1-F, 1+F); 0: on a clock, the streams in step",
    )
    parser.add_argument("--pg-database", default="aipk_h5")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()
    only_modes = args.soak is not None or args.slow_streams is not None or args.mock_compare
    if args.quick:
        args.duration, args.concurrency, args.rates = 1.0, [1, 50], [500]
        TUNING.update(grace=3.0, warm=0.5)
        args.sections = args.sections or ["embedded"]
    if args.full:
        args.soak = args.soak or 200_000
        args.slow_streams = args.slow_streams or 5_000
    if args.sections is None:
        args.sections = [] if only_modes and not args.full else ["embedded", "production"]
    raise_fd_limit()

    log(f"# aipk data plane benchmark\n\n{environment()}")
    log(f"uptime: {load_line()}; {calibration_line()}")
    workdir = Path(tempfile.mkdtemp(prefix="aipk-dataplane-"))
    sections: list[Section] = []
    extra: dict[str, dict[str, str]] = {}
    procs: list[Proc] = []
    try:
        if args.mock_compare or (args.full and not args.quick):
            mock_compare(3.0)
        if args.sections:
            mock, mock_url = start_mock()
            procs.append(mock)
            paced_url = ""
            if args.paced_interval > 0:
                paced_mock, paced_url = start_mock(
                    interval=args.paced_interval / 1000,
                    chunks=PACED_CHUNKS,
                    jitter=args.paced_jitter,
                )
                procs.append(paced_mock)
            direct = Target(
                "direct",
                f"{mock_url}/v1/chat/completions",
                MODEL,
                {"authorization": f"Bearer {UPSTREAM_KEY}", "content-type": "application/json"},
                mock.pid,  # "direct" rows show the mock's own CPU per request: its cost
                paced_url=f"{paced_url}/v1/chat/completions" if paced_url else "",
                paced_model=MODEL,
            )
            litellm_target = None
            if not args.no_litellm and "embedded" in args.sections:
                version = litellm_venv()
                lite, lite_url = start_litellm(mock_url, workdir, paced_url)
                procs.append(lite)
                log(f"LiteLLM {version} (proxy, 1 worker, no database) at {lite_url}")
                litellm_target = Target(
                    "litellm",
                    f"{lite_url}/v1/chat/completions",
                    MODEL,
                    {"authorization": f"Bearer {LITELLM_KEY}", "content-type": "application/json"},
                    lite.pid,
                    paced_url=f"{lite_url}/v1/chat/completions" if paced_url else "",
                    paced_model=f"paced-{MODEL}",
                )
            log(
                f"mock upstream (raw asyncio + httptools, uvloop) at {mock_url}; 8 content "
                f"chunks per stream; {args.duration:g} s per run"
            )
            if paced_url:
                log(
                    f"paced mock at {paced_url}: {PACED_CHUNKS} content chunks "
                    f"{args.paced_interval:g} ms ±{args.paced_jitter:.0%} apart; "
                    f"{args.paced_streams} concurrent "
                    f"streams per paced run"
                )
            for name in ("embedded", "production"):
                if name not in args.sections:
                    continue
                sections.append(
                    run_section(
                        name,
                        args,
                        mock_url,
                        workdir,
                        direct,
                        litellm_target,
                        procs[-1] if litellm_target else None,
                        paced_url,
                    )
                )
                if litellm_target is not None and name == "embedded":
                    procs.pop().stop()  # LiteLLM is compared in one process, embedded only
                    litellm_target = None
            log("\n## all runs\n")
            log(runs_table([run for s in sections for run in s.runs]))
            paced_runs = [run for s in sections for run in s.runs if run.kind == "paced"]
            if paced_runs:
                log(
                    f"\n## paced streams: {args.paced_streams} concurrent, "
                    f"{PACED_CHUNKS} chunks {args.paced_interval:g} ms "
                    f"±{args.paced_jitter:.0%} apart\n"
                )
                log(paced_table(paced_runs))
        if args.soak:
            extra["soak"] = soak(args, workdir)
        if args.slow_streams:
            extra["slow"] = slow_streams(args, workdir)
        if sections or extra:
            log("\n## targets (issue 12)\n")
            log(targets_table(sections, extra, args))
        log(
            f"\nuptime at the end: {load_line()}; {calibration_line()}; "
            f"{time.monotonic() - STARTED:.0f} s in all"
        )
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
