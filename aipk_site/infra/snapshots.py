"""Per-process copies of small database tables for the request path: read once, kept
until a change event drops them, refreshed behind the callers' backs when they lapse.

One class for what four hand-written copies did (providers and routes, usable
credentials, prices, models' output limits), because two of those had no single
flight: when a copy lapsed under load, every request that arrived while the first
re-read ran started its own read on the one database thread, each opening its own
connection (CONN_MAX_AGE is 0 under ASGI), so the reads queued faster than they ran
and a worker taking 500 requests a second never caught up -- the production open
loop's p99 of 45 s in docs/BENCHMARKS.md. Here:

- a fresh copy is a dict lookup;
- a lapsed copy (its TTL passed and no change event dropped it) is still served while
  ONE refresh runs on the database thread. The TTL (ROUTING_CACHE_SECONDS) is only a
  safety net for an event lost while Redis was away, so serving the old copy for one
  more read is harmless, and no request waits for it;
- a missing copy (first use, or dropped by a change) is read once however many
  callers want it at once: they all await the same read (per event loop, since a task
  belongs to its loop, and per generation, so nobody who came after a drop gets a read
  that started before it);
- every drop bumps the generation, and a read that started before a drop never stores
  what it read.

Drops may come from another thread (the change events' listener): each step here is
one dict operation, atomic under the GIL, so no lock is taken on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings

from aipk_site.infra import change_events

logger = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

# Keys may come from clients (model ids): past this many entries a table starts over
# (one read per key again), so memory stays bounded whatever they send.
DEFAULT_MAX_ENTRIES = 10_000


def routing_ttl() -> float:
    """The safety TTL of the gateway's copies (0 or less: keep nothing, read every time)."""
    return float(getattr(settings, "ROUTING_CACHE_SECONDS", 60.0))


class SnapshotTable(Generic[K, V]):
    """key -> a value read from the database by a plain function, kept per process."""

    def __init__(
        self,
        name: str,
        *,
        ttl: Callable[[], float] = routing_ttl,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.name = name
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[K, tuple[V, float]] = {}
        self._reads: dict[tuple[asyncio.AbstractEventLoop, int, K], asyncio.Task[V]] = {}
        self.generation = 0
        # after a failed refresh, how long the old copy is served before the next try
        self.retry_after_failure = 1.0

    def __len__(self) -> int:
        return len(self._entries)

    # -- reading ---------------------------------------------------------------------

    async def get(self, key: K, read: Callable[[], V]) -> V:
        """The copy for ``key``; ``read`` (run on the database thread) makes it when
        there is none, and refreshes it in the background once it has lapsed."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry[1] <= time.monotonic():
                self._refresh(key, read)
            return entry[0]
        # shielded: a caller that is cancelled (its client left) does not cancel the
        # read the others wait for
        return await asyncio.shield(self._read_once(key, read))

    def get_blocking(self, key: K, read: Callable[[], V]) -> V:
        """``get`` for synchronous callers (invoices, the admin): a fresh copy, or
        ``read`` run here and kept. No single flight: these callers are few."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        change_events.ensure_listening()
        generation = self.generation
        value = read()
        self._keep(key, value, generation)
        return value

    def _read_once(self, key: K, read: Callable[[], V]) -> asyncio.Task[V]:
        slot = (asyncio.get_running_loop(), self.generation, key)
        task = self._reads.get(slot)
        if task is None:
            task = asyncio.ensure_future(self._read(key, read))
            self._reads[slot] = task
            task.add_done_callback(lambda _: self._reads.pop(slot, None))
        return task

    def _refresh(self, key: K, read: Callable[[], V]) -> None:
        slot = (asyncio.get_running_loop(), self.generation, key)
        if slot in self._reads:
            return
        generation = self.generation
        task = self._read_once(key, read)
        task.add_done_callback(lambda done: self._refreshed(key, generation, done))

    def _refreshed(self, key: K, generation: int, task: asyncio.Task[V]) -> None:
        # nobody awaits a refresh: its failure is said here, and the old copy is kept
        # for ``retry_after_failure`` more seconds -- with the database down, a refresh
        # per request (and a warning per request) would only add to the trouble
        if task.cancelled() or (error := task.exception()) is None:
            return
        logger.warning(
            "%s: refreshing a copy failed (%s); the old one is kept for %g s",
            self.name,
            type(error).__name__,
            self.retry_after_failure,
        )
        entry = self._entries.get(key)
        if entry is not None and generation == self.generation:
            self._entries[key] = (entry[0], time.monotonic() + self.retry_after_failure)

    async def _read(self, key: K, read: Callable[[], V]) -> V:
        # listening before the generation is noted: the reset of a first subscription
        # then comes before the read, not after it (which would throw the read away)
        await change_events.watch()
        generation = self.generation
        value = await change_events.snapshot_load(read)
        self._keep(key, value, generation)
        return value

    def _keep(self, key: K, value: V, generation: int) -> None:
        ttl = self._ttl()
        if ttl <= 0 or generation != self.generation:
            return  # nothing is kept, or a change arrived while this was read
        if len(self._entries) >= self._max_entries and key not in self._entries:
            self._entries.clear()
        self._entries[key] = (value, time.monotonic() + ttl)

    # -- dropping --------------------------------------------------------------------

    def drop(self, where: Callable[[K], bool] | None = None) -> None:
        """Forget the copies whose key matches ``where`` (all of them by default)."""
        self.generation += 1
        if where is None:
            self._entries.clear()
            return
        for key in [k for k in list(self._entries) if where(k)]:
            self._entries.pop(key, None)

    def clear(self) -> None:
        self.drop()
