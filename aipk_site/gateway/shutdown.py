"""Graceful shutdown: on SIGTERM, stop taking requests, let those in flight finish, flush
usage rows, then let the server exit (docs/GATEWAY.md, "Faults").

Works in any ASGI server, because it lives in the application, not the server:

- ``ShutdownMiddleware`` wraps the ASGI application. It counts requests in flight
  (HTTP requests; websocket chat turns count themselves with ``request_in_flight``)
  and, once draining, answers new HTTP requests with 503 (``Connection: close``,
  ``Retry-After``) and new websockets with close code 1012 (service restart), so a
  load balancer moves traffic elsewhere.
- Servers that speak the ASGI *lifespan* protocol (uvicorn, granian, hypercorn) stop
  accepting on SIGTERM themselves and then send ``lifespan.shutdown``: the drain and
  the usage flush run there.
- daphne (``make run``'s ``manage.py run_embedded``, and runserver) has no
  lifespan and stops its reactor at once on SIGTERM, cancelling every request. So
  when no lifespan startup arrived, the middleware installs its own SIGTERM handler
  (from the main thread, on the first request; ``install_signal_handler`` for
  commands), which drains first and then calls the handler it replaced (Twisted's
  reactor stop), so the server's own shutdown finds nothing left to cancel.

The drain waits up to ``SHUTDOWN_DRAIN_SECONDS`` for requests in flight, slow streams
included. Requests still running then are ended by the gateway itself: their tasks are
cancelled and the gateway turns that cancel into an error event (503
``server_shutting_down``) and a usage row with error_type ``server_shutdown``, not a
cut connection. Then the usage writer's queue is flushed (rows the database cannot
take go to the durable spool), and the server exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings

from aipk_site.gateway.error_mapping import server_shutting_down

logger = logging.getLogger(__name__)

# After the drain deadline, how long ended requests get to send their error event and
# write their row before the usage flush goes ahead anyway.
FORCED_END_GRACE_SECONDS = 5.0


class _State:
    def __init__(self) -> None:
        self.draining = False
        self.forced = False  # the drain deadline passed: requests are being ended
        self.in_flight = 0
        # tasks running gateway work, with how many units each runs (a stream's task runs
        # the opening and then the relay): the ones the drain deadline cancels
        self.tasks: dict[asyncio.Task[Any], int] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lifespan = False
        self.signal_handler: Any = None  # ours, once installed
        self.drain_task: asyncio.Task[Any] | None = None
        self.drained = False


_state = _State()


def reset() -> None:
    """Forget a finished drain (tests only: one process serves many of them)."""
    global _state
    handler = _state.signal_handler
    _state = _State()
    _state.signal_handler = handler


def is_draining() -> bool:
    """True once shutdown began: refuse new work."""
    return _state.draining


def ended_by_shutdown() -> bool:
    """True when a cancel comes from the drain deadline, not from a client leaving."""
    return _state.forced


def raise_if_ended_by_shutdown() -> None:
    """Called with a CancelledError in flight: when the drain deadline sent it, take the
    cancel back (the task must still answer its client) and raise what the client sees."""
    if not ended_by_shutdown():
        return
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    raise server_shutting_down() from None


def track_begin() -> asyncio.Task[Any] | None:
    """Gateway work starts in the current task: the drain waits for it and, at its
    deadline, cancels the task; the gateway turns that cancel into an error the client
    sees (``ended_by_shutdown``). Pair with ``track_end``."""
    _state.in_flight += 1
    task = asyncio.current_task()
    if task is not None:
        _state.tasks[task] = _state.tasks.get(task, 0) + 1
    return task


def track_end(task: asyncio.Task[Any] | None) -> None:
    _state.in_flight -= 1
    if task is not None:
        left = _state.tasks.get(task, 1) - 1
        if left > 0:
            _state.tasks[task] = left
        else:
            _state.tasks.pop(task, None)


@contextmanager
def tracked() -> Iterator[None]:
    task = track_begin()
    try:
        yield
    finally:
        track_end(task)


@contextmanager
def _counted() -> Iterator[None]:
    # an HTTP request: waited for, never cancelled here (the gateway work inside is)
    _state.in_flight += 1
    try:
        yield
    finally:
        _state.in_flight -= 1


def _drain_seconds() -> float:
    return max(0.0, float(getattr(settings, "SHUTDOWN_DRAIN_SECONDS", 30.0)))


async def drain(seconds: float | None = None) -> None:
    """Stop taking work, wait for work in flight (at most ``seconds``, default
    SHUTDOWN_DRAIN_SECONDS), end what is left, flush usage rows. Idempotent: a second
    call waits for the first."""
    if _state.drain_task is None:
        _state.drain_task = asyncio.ensure_future(_drain(seconds))
    await asyncio.shield(_state.drain_task)


async def _idle_by(deadline: float) -> bool:
    """Poll the in-flight count until it is 0 or the deadline passes (a counter kept by
    plain context managers on the hot path; polling costs nothing until shutdown)."""
    while _state.in_flight > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return _state.in_flight <= 0


async def _drain(seconds: float | None) -> None:
    from aipk_site.gateway.usage import ausage_flush

    seconds = _drain_seconds() if seconds is None else seconds
    _state.draining = True
    started = time.monotonic()
    logger.info(
        "shutdown: draining %d requests in flight (at most %.0f s)", _state.in_flight, seconds
    )
    if not await _idle_by(started + seconds):
        _state.forced = True
        logger.warning(
            "shutdown: drain deadline passed; ending %d requests in flight", _state.in_flight
        )
        for task in list(_state.tasks):
            task.cancel()
        await _idle_by(time.monotonic() + FORCED_END_GRACE_SECONDS)
    try:
        stored = await ausage_flush()
    except Exception as error:  # noqa: BLE001 -- the atexit drain tries again
        logger.error("shutdown: usage flush failed (%s)", type(error).__name__)
    else:
        logger.info(
            "shutdown: drained in %.1f s; %d usage rows flushed", time.monotonic() - started, stored
        )
    _state.drained = True


# -- SIGTERM, for servers without lifespan (daphne) --------------------------------------


def install_signal_handler() -> bool:
    """Put the drain in front of the process's SIGTERM handler. Only from the main thread
    (Python's rule for signal handlers); True when ours is the handler now. Installing
    again after someone replaced it (Twisted installs its own when its reactor starts)
    chains to the new one."""
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not None and previous is _state.signal_handler:
        return True

    def on_sigterm(signum: int, frame: Any) -> None:
        loop = _state.loop
        if loop is None or loop.is_closed() or _state.drained:
            _chain(previous, signum, frame)
            return
        loop.call_soon_threadsafe(_start_drain_then_chain, previous, signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    _state.signal_handler = on_sigterm
    return True


def _start_drain_then_chain(previous: Any, signum: int) -> None:
    async def run() -> None:
        try:
            await drain()
        finally:
            _chain(previous, signum, None)

    if _state.drain_task is None:
        asyncio.ensure_future(run())
    else:  # a second SIGTERM: stop waiting
        _chain(previous, signum, None)


def _chain(previous: Any, signum: int, frame: Any) -> None:
    """Hand the signal to whoever had it: Twisted's reactor stop under daphne."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or unknown): end the process the default way
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


# -- the ASGI wrapper ---------------------------------------------------------------------


def _refusal_body(path: str) -> bytes:
    message = "aipk is shutting down; retry on another instance"
    error = {"type": "service_unavailable", "code": "server_shutting_down", "message": message}
    if path.startswith("/v1/messages"):  # Anthropic's error shape
        body: dict[str, Any] = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": message},
        }
    else:
        body = {"error": {**error, "param": None}}
    return json.dumps(body).encode()


class ShutdownMiddleware:
    """ASGI middleware: lifespan, in-flight counting, refusal while draining."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if _state.loop is None:
            self._first_call()
        if _state.draining:
            await self._refuse(scope, receive, send)
            return
        if kind != "http":
            # websockets: idle sockets do not hold the drain; their chat turns do
            await self.app(scope, receive, send)
            return
        with _counted():
            await self.app(scope, receive, send)

    def _first_call(self) -> None:
        from aipk_site.gateway.usage import usage_start

        _state.loop = asyncio.get_running_loop()
        usage_start()  # rows a previous process spooled are written without new traffic
        if not _state.lifespan:
            install_signal_handler()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _state.lifespan = True
                self._first_call()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await drain()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            # accepted first: a close before the accept is a bare HTTP 403 handshake
            # refusal, which does not tell the client to come back
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1012})
            return
        if scope["type"] != "http":
            return
        body = _refusal_body(scope.get("path", ""))
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", b"1"),
                    (b"connection", b"close"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
