"""`manage.py serve` (`make serve`): aipk in production, on uvicorn (uvloop + httptools,
websockets-sansio) with ``WEB_CONCURRENCY`` worker processes on ``HOST``:``PORT``.

uvicorn rather than granian: on this app the two served /health, /v1/models, chat
completions and a websocket chat turn at rates within each other's noise (the app, not
the server, is the limit), and only uvicorn takes a websocket message limit, which
daphne_server.py's contract needs, and trusted-proxy addresses (docs/DEPLOY.md).
daphne stays the development server (`make run`, ``manage.py run_embedded``).

Workers share nothing but the database and the cache: admission limits, key health and
snapshot invalidation live in the cache, so more than one worker needs Redis
(``REDIS_URL``); with local memory each worker would enforce its own limits. Refused
here, not discovered later as a quota multiplied by N.

SIGTERM: each worker first drains (aipk_site/gateway/shutdown.py: new requests get 503,
requests in flight finish or, after SHUTDOWN_DRAIN_SECONDS, end with an error event;
usage rows are flushed), then uvicorn stops; see ``worker_application``.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

APP = "aipk_site.gateway.management.commands.serve:worker_application"

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _DrainBeforeStop:
    """The ASGI application with aipk's drain put in front of uvicorn's SIGTERM handler.

    uvicorn on SIGTERM stops accepting, closes open websockets at once (1012) and then
    waits for HTTP requests without telling the application, which learns of it only
    at lifespan shutdown, after everything it could have ended cleanly is gone. Chaining
    shutdown.install_signal_handler() in front of uvicorn's handler runs the drain
    first, as under daphne: chat turns in flight on websockets finish too. It has to be
    installed after uvicorn's own handler (it chains to the one it finds), i.e. from
    the worker's event loop: the lifespan startup is the first call made there."""

    def __init__(self, app: Callable[[dict[str, Any], Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            from aipk_site.gateway.shutdown import install_signal_handler

            install_signal_handler()
        await self.app(scope, receive, send)


def worker_application() -> _DrainBeforeStop:
    """uvicorn's application factory, called in each worker process."""
    from aipk_site.asgi import application

    return _DrainBeforeStop(application)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise CommandError(f"{name} must be a whole number, not {raw!r}") from None


def _cores() -> int:
    # the cores this process may run on (a container's or taskset's cpuset), which
    # os.cpu_count() (the machine's) overstates
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _uses_local_memory() -> bool:
    backend = settings.CACHES["default"]["BACKEND"]
    return str(backend).endswith("LocMemCache")


def _uses_sqlite() -> bool:
    return "sqlite" in str(settings.DATABASES["default"]["ENGINE"])


def _trusted_proxies() -> str:
    # uvicorn trusts X-Forwarded-For/-Proto from 127.0.0.1 by default; aipk records the
    # client's address (REMOTE_ADDR, aipk_site/infra/client_ip.py) in audit events and
    # login throttling, so forwarded headers count only when the deployment names the
    # proxies that set them (FORWARDED_ALLOW_IPS: a setting, or else the environment).
    configured = getattr(settings, "FORWARDED_ALLOW_IPS", None)
    if configured is None:
        configured = os.environ.get("FORWARDED_ALLOW_IPS", "")
    if isinstance(configured, list | tuple):
        configured = ",".join(configured)
    return str(configured).strip()


def _raise_open_files_limit() -> None:
    """Every streamed request holds two sockets (the client's and the provider's): the
    usual soft limit of 1,024 descriptors would refuse connections near 500 concurrent
    streams. The hard limit is what the system allows this process; workers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):  # a container may refuse: serve with what there is
            pass


def _exit_quietly(signum: int, frame: Any) -> NoReturn:
    # uvicorn puts back the handler it found and raises the signal it stopped for once it
    # is done: the drain and the flush have run by then, so a SIGTERM'd single-worker
    # server ends with status 0 (as the multi-worker supervisor does), not as killed
    raise SystemExit(0)


class Command(BaseCommand):  # type: ignore[misc]  # django ships no types (no stubs installed)
    help = (
        "Run aipk in production: uvicorn with WEB_CONCURRENCY workers (default: the number "
        "of cores) on HOST:PORT (default 127.0.0.1:8000)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        from aipk_site.gateway.shutdown import FORCED_END_GRACE_SECONDS

        workers = _env_int("WEB_CONCURRENCY", _cores())
        host = os.environ.get("HOST", "").strip() or "127.0.0.1"
        port = _env_int("PORT", 8000)
        if workers < 1:
            raise CommandError(f"WEB_CONCURRENCY must be at least 1, not {workers}")
        if workers > 1 and _uses_local_memory():
            # one line and status 2 (a usage error), before anything starts
            self.stderr.write(
                f"error: {workers} workers (WEB_CONCURRENCY; default one per core) need "
                "REDIS_URL: with the local-memory cache each worker would keep its own rate "
                "limits, budgets and key health; set REDIS_URL or WEB_CONCURRENCY=1"
            )
            sys.exit(2)
        if workers > 1 and _uses_sqlite():
            self.stderr.write(
                f"warning: {workers} workers on SQLite: writers take turns on one file; "
                "use PostgreSQL (DATABASE_URL) in production"
            )
        proxies = _trusted_proxies()
        # uvicorn's own wait for requests in flight (SIGINT goes straight to it): as long
        # as the drain may take, so it never cuts what the drain would have let finish
        graceful = math.ceil(float(settings.SHUTDOWN_DRAIN_SECONDS) + FORCED_END_GRACE_SECONDS)

        if workers == 1:
            # scheduled jobs: in this process when there is no broker, as `make run` does
            from aipk_site.embedded_jobs import start_embedded_scheduler

            if start_embedded_scheduler() is not None:
                self.stdout.write("Scheduled jobs: running in this process (embedded mode).")
        if not _uses_local_memory():
            self.stdout.write(
                "Scheduled jobs: expected from a Celery worker and beat "
                "(celery -A aipk_site worker / celery -A aipk_site beat -S django)."
            )
        signal.signal(signal.SIGTERM, _exit_quietly)
        _raise_open_files_limit()
        self.stdout.write(
            f"aipk: serving on http://{host}:{port} with {workers} worker"
            f"{'s' if workers > 1 else ''} (uvicorn)"
        )
        self.stdout.flush()
        uvicorn.run(
            APP,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            ws="websockets-sansio",
            # the chat's limit (docs/WEBSOCKET.md), as daphne_server.py sets for daphne;
            # beyond it the websocket closes with 1009 "message too big"
            ws_max_size=int(settings.WS_MAX_MESSAGE_BYTES),
            lifespan="on",
            # a burst of new connections waits in the kernel's queue rather than being
            # reset: uvicorn's default (2048) is below the usual somaxconn (4096)
            backlog=4096,
            timeout_keep_alive=int(settings.SERVER_KEEP_ALIVE_SECONDS),
            access_log=False,  # the gateway writes its own request log
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
            timeout_graceful_shutdown=graceful,
            # Django's LOGGING (one record per line, secrets masked) formats uvicorn's
            # records too, instead of uvicorn's own logging configuration
            log_config=None,
        )
