"""A tiny change bus: "this changed, drop your copy", to every process at once.

The request path reads virtual keys, routes, providers, credentials and prices
from snapshots held in each process's memory (no I/O on a hit). A management
write calls ``publish(topic, payload)``; every ``subscribe``d handler runs in
this process at once and, with Redis (``REDIS_URL``), in every other process as
soon as the message arrives over Redis pub/sub. A handler gets the payload, or
``None`` for a reset: "events may have been missed, drop everything".

Why a daemon thread with redis-py's blocking PubSub rather than an asyncio
task: handlers only drop dict entries, which is safe from any thread, and a
thread works the same under uvicorn, daphne, a management command or a test
that runs several event loops; an asyncio task would belong to one loop and die
with it.

Guarantees and their limits:
- A subscription (the first, and again after every lost connection) resets
  every subscriber, because events sent while nobody listened are lost. The
  first one also covers the snapshot loaded before the listener was ready.
- Inside a transaction the local handlers run now (the writer's own reads) and
  again on commit, and the message leaves for other processes on commit only:
  sent earlier, another process could reload the old rows and keep them.
- Publishing never fails the write that asked for it: with Redis down it is
  logged and the other processes rely on the snapshots' safety TTL (and on the
  reset their listeners make when Redis comes back).
- A process skips its own messages (its handlers already ran).
- Payloads carry ids and hashes only and are never logged.
- A forked child starts with no listener and empty snapshots; its first
  snapshot load starts its own listener (``snapshot_load`` → ``ensure_listening``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, transaction
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

logger = logging.getLogger(__name__)

T = TypeVar("T")
Payload = Mapping[str, Any]
# called with the event's payload, or None: reset, drop everything
Handler = Callable[[Payload | None], None]

# Backoff between reconnection attempts: quick after a blip, gentle while Redis is away.
RECONNECT_MIN_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
# How long the listener blocks for one message before checking it should stop.
POLL_SECONDS = 1.0

_handlers: dict[str, list[Handler]] = {}
_origin = uuid.uuid4().hex  # this process; replaced in a forked child
_start_lock = threading.Lock()
_listener: _Listener | None = None
_publisher: tuple[str, redis.Redis] | None = None  # (its URL, the client)


def subscribe(topic: str, handler: Handler) -> None:
    """Run ``handler(payload)`` on every event of ``topic`` from any process, and
    ``handler(None)`` whenever events may have been missed. It must be quick and
    thread-safe: it runs on the publisher's thread or on the listener's."""
    handlers = _handlers.setdefault(topic, [])
    if handler not in handlers:
        handlers.append(handler)


def unsubscribe(topic: str, handler: Handler) -> None:
    """Stop calling ``handler`` (tests)."""
    handlers = _handlers.get(topic, [])
    if handler in handlers:
        handlers.remove(handler)


def publish(topic: str, payload: Payload | None = None) -> None:
    """Announce a change of ``topic``: this process's handlers run now, every other
    process's as soon as the message reaches it (after the transaction commits)."""
    body = dict(payload or {})
    _deliver(topic, body)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _after_commit(topic, body), robust=True)
    else:
        _send(topic, body)


def _after_commit(topic: str, body: dict[str, Any]) -> None:
    # a request between the write and the commit may have reloaded the old rows
    _deliver(topic, body)
    _send(topic, body)


def _deliver(topic: str, payload: Payload) -> None:
    for handler in tuple(_handlers.get(topic, ())):
        _call(handler, payload)


def reset_all() -> None:
    """Every subscriber drops everything (its snapshot may have missed events)."""
    for handlers in tuple(_handlers.values()):
        for handler in tuple(handlers):
            _call(handler, None)


def _call(handler: Handler, payload: Payload | None) -> None:
    try:
        handler(payload)
    except Exception:
        # the payload is not logged (ids and hashes only, but still no business of the log)
        logger.exception("change event handler %s failed", getattr(handler, "__qualname__", ""))


# --- Redis -----------------------------------------------------------------------------


def _redis_url() -> str:
    return str(getattr(settings, "REDIS_URL", "") or "")


def channel_name() -> str:
    """``<cache key prefix>:changes:<db>``: pub/sub channels ignore Redis's database
    numbers, so two deployments (or test runs) sharing a server on different dbs or
    prefixes must not hear each other's events."""
    prefix = settings.CACHES.get("default", {}).get("KEY_PREFIX") or "aipk"
    url = _redis_url()
    # redis-py's own reading of the URL (path, ?db=), so the db is the one the cache uses
    db = parse_url(url).get("db", 0) if url else 0  # type: ignore[no-untyped-call]
    return f"{prefix}:changes:{db}"


def _client(**options: Any) -> redis.Redis:
    keepalive: dict[int, int] = {}
    # A silently dead connection (no RST: a partition) must not leave the listener
    # deaf for the kernel's default 2 h keepalive; these are Linux's names.
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            keepalive[getattr(socket, name)] = value
    return redis.Redis.from_url(
        _redis_url(),
        socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_keepalive=True,
        socket_keepalive_options=keepalive,
        **options,
    )


def _send(topic: str, payload: Payload) -> None:
    global _publisher
    url = _redis_url()
    if not url:
        return  # embedded: one process, its handlers already ran
    message = json.dumps({"origin": _origin, "topic": topic, "payload": payload})
    try:
        if _publisher is None or _publisher[0] != url:
            # one attempt, no retries: a write must not wait on a Redis that is away
            client = _client(
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT_SECONDS,
                retry=Retry(NoBackoff(), 0),
            )
            _publisher = (url, client)
        _publisher[1].publish(channel_name(), message)
    except (redis.RedisError, OSError) as exc:
        logger.warning(
            "change event %r not published (%s): other processes see it within their "
            "snapshots' safety TTL",
            topic,
            type(exc).__name__,
        )


def _receive(data: bytes | str) -> None:
    try:
        message = json.loads(data)
        origin, topic, payload = message["origin"], message["topic"], message["payload"]
    except (ValueError, KeyError, TypeError):
        logger.warning("ignoring a malformed change event on %s", channel_name())
        return
    if origin == _origin:
        return  # published here: the handlers ran already
    if isinstance(topic, str) and isinstance(payload, dict):
        _deliver(topic, payload)


class _Listener(threading.Thread):
    """Subscribes to the channel and applies what arrives, reconnecting for ever."""

    def __init__(self) -> None:
        super().__init__(name="aipk-change-events", daemon=True)
        self.subscribed = threading.Event()  # set while subscribed (tests wait on it)
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        channel = channel_name()
        while not self._stop_event.is_set():
            client = _client(socket_timeout=None)
            pubsub = client.pubsub()  # type: ignore[no-untyped-call]  # redis-py: untyped
            try:
                pubsub.subscribe(channel)
                while not self._stop_event.is_set():
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        # a first subscription or redis-py's own resubscription after a
                        # reconnect: anything may have been missed in between
                        reset_all()
                        self.subscribed.set()
                        delay = RECONNECT_MIN_SECONDS
                    elif message["type"] == "message":
                        _receive(message["data"])
            except (redis.RedisError, OSError) as exc:
                self.subscribed.clear()
                logger.warning(
                    "change events: lost Redis (%s), reconnecting in %.1f s",
                    type(exc).__name__,
                    delay,
                )
            except Exception:
                self.subscribed.clear()
                logger.exception("change events: listener failed, restarting")
            finally:
                self.subscribed.clear()
                try:
                    pubsub.close()
                    client.close()
                except Exception:
                    pass
            self._stop_event.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)


def ensure_listening() -> threading.Thread | None:
    """Start this process's listener if Redis is configured and it is not running yet.
    Cheap after the first call; every snapshot load calls it (on its worker thread: the
    first call waits up to REDIS_CONNECT_TIMEOUT_SECONDS for the subscription)."""
    global _listener
    listener = _listener
    if listener is not None or not _redis_url():
        return listener
    with _start_lock:
        if _listener is None:
            _listener = _Listener()
            _listener.start()
            started = _listener
        else:
            return _listener
    # Wait (once, briefly) for the subscription, so the reset it makes comes before the
    # snapshot this call is about to load rather than throwing that load away.
    started.subscribed.wait(settings.REDIS_CONNECT_TIMEOUT_SECONDS)
    return started


def listener() -> _Listener | None:
    """This process's listener, if started (for readiness checks and tests)."""
    return _listener


def stop_listening() -> None:
    """Stop this process's listener (tests; a process that exits needs nothing)."""
    global _listener
    with _start_lock:
        running, _listener = _listener, None
    if running is not None:
        running.stop()
        running.join(timeout=POLL_SECONDS * 3)


async def watch() -> None:
    """Make sure this process listens, before noting a snapshot's generation and loading
    it: the reset of a first subscription then comes before the load, not after it
    (which would throw the load away)."""
    if _listener is None and _redis_url():
        await sync_to_async(ensure_listening, thread_sensitive=False)()


async def snapshot_load(load: Callable[[], T]) -> T:
    """Run a snapshot's database read on a thread, for the event loop.

    Starts the listener first, so no snapshot is held unwatched. The lean /v1
    edge runs no request_started/finished signals, so the connection is checked
    here instead: one that broke or outlived CONN_MAX_AGE is closed before and
    after (not inside a transaction: a test's, or a caller's, is left alone)."""
    return await sync_to_async(_with_fresh_connection)(load)


def _with_fresh_connection(load: Callable[[], T]) -> T:
    ensure_listening()
    managed = not transaction.get_connection().in_atomic_block
    if managed:
        close_old_connections()
    try:
        return load()
    finally:
        if managed:
            close_old_connections()


def _after_fork_in_child() -> None:
    global _origin, _listener, _publisher, _start_lock
    # the parent's thread did not come along, its sockets must not be shared, and its
    # snapshots were watched by that thread only
    _origin = uuid.uuid4().hex
    _listener = None
    _publisher = None
    _start_lock = threading.Lock()
    reset_all()


os.register_at_fork(after_in_child=_after_fork_in_child)
