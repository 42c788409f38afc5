"""CPU per /v1 request of aipk's ASGI application alone: no HTTP server, no load generator.

Calls ``aipk_site.asgi.application`` in this process with hand-made ASGI messages
(``POST /v1/chat/completions`` with a virtual key, the full path: edge, key snapshot,
admission, routing, the kit adapter, the usage writer, metrics), against the cheap mock
upstream (``mock_upstream.py``) in its own process, over loopback. Reports process CPU
per request (``time.process_time``: every thread of this process, the usage writer
included) and, with ``--profile``, a cProfile listing. Because nothing else shares the
process, the figure moves little with the machine's load: it is the number to watch
while shaving the request path; the end-to-end figures are bench_dataplane.py's.

    .venv/bin/python benchmarks/bench_edge_cpu.py [--stream [--paced MS]] [--redis URL]
        [-n 4000] [-c 50]
        [--database-url URL] [--profile] [--sort tottime|cumulative] [--top 45]

Uses a fresh SQLite file in a temporary directory, or with ``--database-url`` that
database (migrated, then flushed: every table emptied), and, with ``--redis``, that
Redis database (flushed first) as the cache.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time

from _common import REPO_ROOT, calibration_line, free_port, load_line

PYTHON = sys.executable

SEED = """
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import Tenant
from tenants_app.services.keys import virtual_key_create
provider = provider_create(
    name="sim", type="openai", base_url="http://127.0.0.1:{port}/v1", default_model="gpt-4o-mini"
)
api_key_add(provider=provider, label="bench", secret="sk-bench-0001")
tenant = Tenant.objects.create(name="Bench", slug="bench")
key, secret = virtual_key_create(tenant=tenant, name="bench", actor=None)
print("SECRET=" + secret)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--redis", metavar="URL", help="use this Redis database as the cache")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="use this database (e.g. PostgreSQL) instead of a fresh SQLite file; EMPTIED first",
    )
    parser.add_argument("-n", type=int, default=4000, help="requests measured")
    parser.add_argument("-c", type=int, default=50, help="concurrent requests")
    parser.add_argument(
        "--paced",
        type=float,
        default=0.0,
        metavar="MS",
        help="streams of 8 content chunks this many ms apart (a hosted model's pace; "
        "every chunk then costs its own wake-up, as in bench_dataplane's paced mode)",
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="aipk-edge-cpu-")
    env = dict(
        os.environ,
        DATABASE_URL=args.database_url or f"sqlite:///{workdir}/db.sqlite3",
        DJANGO_SETTINGS_MODULE="aipk_site.settings",
        DEBUG="false",
        DJANGO_SECRET_KEY="bench-" + "x" * 50,
        FERNET_KEYS="Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=",
        SECURE_SSL_REDIRECT="false",
        LOG_LEVEL="WARNING",
        USAGE_SPOOL_DIR=f"{workdir}/spool",
        # CPU per request, not overload: the load generator shares this process's loop,
        # so on a busy machine its lag would shed requests (the calibration blocks it too)
        GATEWAY_MAX_QUEUE_DELAY_MS="0",
    )
    env.pop("REDIS_URL", None)
    if args.redis:
        env["REDIS_URL"] = args.redis
        import redis

        redis.Redis.from_url(args.redis).flushdb()
    os.environ.clear()
    os.environ.update(env)
    port = free_port()
    mock = subprocess.Popen(
        [PYTHON, "benchmarks/mock_upstream.py", "--port", str(port)]
        + (
            ["--chunk-interval", str(args.paced / 1000), "--slow-chunks", "8"] if args.paced else []
        ),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=REPO_ROOT, env=env, check=True
        )
        if args.database_url:  # the seed below expects no tenant, provider or usage yet
            subprocess.run(
                [PYTHON, "manage.py", "flush", "--no-input", "-v", "0"],
                cwd=REPO_ROOT,
                env=env,
                check=True,
            )
        seeded = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", SEED.format(port=port)],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        secret = seeded.split("SECRET=", 1)[1].split()[0]
        sys.path.insert(0, str(REPO_ROOT))
        os.chdir(REPO_ROOT)
        import django

        django.setup()
        import uvloop

        from aipk_site.asgi import application
        from aipk_site.gateway.usage import usage_flush

        uvloop.run(run(application, secret, args))
        usage_flush()
    finally:
        mock.terminate()
        mock.wait(timeout=10)


async def run(application, secret: str, args: argparse.Namespace) -> None:  # noqa: ANN001
    body = json.dumps(
        {
            "model": "sim/gpt-4o-mini",
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 8,
            "stream": args.stream,
        }
    ).encode()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", f"Bearer {secret}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def one() -> None:
        done = asyncio.Event()
        first = True
        status = 0

        async def receive() -> dict:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body"):
                done.set()

        await application(dict(scope), receive, send)
        if status != 200:
            raise SystemExit(f"aipk answered {status}")

    async def many(n: int) -> None:
        gate = asyncio.Semaphore(args.c)

        async def guarded() -> None:
            async with gate:
                await one()

        await asyncio.gather(*(guarded() for _ in range(n)))

    await many(min(500, args.n))  # warm: snapshots, pools, first-use imports
    print(f"{load_line()}; {calibration_line()}", flush=True)
    cpu, wall = time.process_time(), time.perf_counter()
    await many(args.n)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    kind = "stream" if args.stream else "json"
    cache = "redis" if args.redis else "local memory"
    if args.database_url:
        cache += ", " + args.database_url.split(":", 1)[0]
    print(
        f"{kind}, {cache}: {args.n} requests at c={args.c}: "
        f"{1000 * cpu / args.n:.3f} ms CPU per request, {args.n / wall:.0f} rps in-process"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await many(args.n // 2)
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
        if os.environ.get("BENCH_PROFILE_DUMP"):
            profiler.dump_stats(os.environ["BENCH_PROFILE_DUMP"])


if __name__ == "__main__":
    main()
