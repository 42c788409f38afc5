"""Where admission keeps its counters, chosen by the cache like ``aipk_site.infra.state``:
on Redis one Lua script per admit and per settle (``admission_redis``); on local
memory, here, ``admit_step`` and ``settle_step`` under the process-wide lock -- over
live objects (``ObjectAdmissionStore``) with the embedded mode's cache, or over
pickled cache entries with any other local cache.
Both do the same atomic admit, settle and read, so the API above them
(``admission``) need not know which one runs.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

from aipk_site.gateway.admission import rules as rules
from aipk_site.gateway.admission.keys import (
    AdmissionKeys,
    AdmitRequest,
    SettleRequest,
    leases_ttl,
    month_ttl,
    reservation_ttl,
    window_ttl,
)
from aipk_site.gateway.admission.redis_store import RedisAdmissionStore
from aipk_site.gateway.admission.rules import Counters, Held, SettleScope
from aipk_site.infra.local_cache import FastLocMemCache, LocalObjects
from aipk_site.infra.state import (
    LockedCacheStateStore,
    RedisStateStore,
    SharedStateStore,
    state_store,
)

# --- local memory: the pure steps under the process-wide lock ------------------------


class LockedAdmissionStore:
    """For a cache only this process sees (``LocMemCache``).

    The cache pickles what it stores, so every admit and settle here still copies a
    scope's books whole; the embedded mode's cache uses ``ObjectAdmissionStore``."""

    def __init__(self, shared: LockedCacheStateStore) -> None:
        self.shared = shared
        self.cache = shared.cache

    def _read(self, keys: list[str]) -> dict[str, Any]:
        full = {self.shared.full_key(k): k for k in keys}
        return {full[f]: v for f, v in self.cache.get_many(list(full)).items()}

    def _write(self, key: str, value: Any, ttl: float) -> None:
        self.cache.set(self.shared.full_key(key), value, timeout=ttl)

    def _delete(self, key: str) -> None:
        self.cache.delete(self.shared.full_key(key))

    def _write_map(self, key: str, entries: Mapping[str, Any], now: float) -> None:
        """Stream slots or leases, kept until the last expires (``book.last``: O(1))."""
        book = rules.held(entries)
        if book:
            self._write(key, book, leases_ttl(max(0.0, book.last - now)))
        else:
            self._delete(key)

    @staticmethod
    def _book(value: Any) -> Held[Any]:
        """The stored book itself (live objects: the steps update it in place), or a new one."""
        return value if isinstance(value, Held) else Held(value)

    @classmethod
    def _counters(cls, stored: dict[str, Any], names: tuple[str, str, str, str]) -> Counters:
        window, month, streams, leases = names
        w = stored.get(window) or {}
        return Counters(
            requests=int(w.get("requests", 0)),
            tokens=int(w.get("tokens", 0)),
            spend=None if stored.get(month) is None else int(stored[month]),
            streams=cls._book(stored.get(streams)),
            leases=cls._book(stored.get(leases)),
        )

    async def admit(
        self, req: AdmitRequest, *, key_seed: int | None, tenant_seed: int | None
    ) -> rules.AdmitResult:
        k = req.keys

        def step() -> rules.AdmitResult:
            stored = self._read(k.ordered()[:8])
            key_names, tenant_names = k.scopes()
            result = rules.admit_step(
                self._counters(stored, key_names),
                self._counters(stored, tenant_names),
                key_limits=req.key_limits,
                tenant_limits=req.tenant_limits,
                request_id=req.request_id,
                tokens=req.tokens,
                cost=req.cost,
                stream=req.stream,
                now=req.now,
                month=req.month,
                lease_seconds=req.lease,
                key_seed=key_seed,
                tenant_seed=tenant_seed,
            )
            if result.needs_seed:
                return result
            for c, (window, month, streams, leases) in zip(
                (result.key, result.tenant), k.scopes(), strict=True
            ):
                if result.admitted:
                    counts = {"requests": c.requests, "tokens": c.tokens}
                    self._write(window, counts, window_ttl(req.window, req.now))
                self._write(month, c.spend, month_ttl(req.now, req.now))
                self._write_map(streams, c.streams, req.now)
                self._write_map(leases, c.leases, req.now)
            if result.admitted:
                self._write(k.reservation, 1, reservation_ttl(req.lease))
            return result

        return await self.shared.atomically(step)

    async def settle(self, s: SettleRequest) -> bool:
        k = s.keys

        def scope(stored: dict[str, Any], names: tuple[str, str, str, str]) -> SettleScope:
            window, month, streams, leases = names
            w = stored.get(window)
            return SettleScope(
                tokens=int(w["tokens"]) if s.same_window and w is not None else None,
                spend=None if stored.get(month) is None else int(stored[month]),
                streams=self._book(stored.get(streams)),
                leases=self._book(stored.get(leases)),
            )

        def step() -> bool:
            stored = self._read(k.ordered())
            applied, key, tenant = rules.settle_step(
                *(scope(stored, names) for names in k.scopes()),
                reserved=stored.get(k.reservation) is not None,
                request_id=s.request_id,
                token_delta=s.token_delta,
                cost_delta=s.cost_delta,
                real_cost=s.real_cost,
            )
            if not applied:
                return False
            for new, (window, month, streams, leases) in zip(
                (key, tenant), k.scopes(), strict=True
            ):
                if new.tokens is not None:
                    counts = {"requests": stored[window]["requests"], "tokens": new.tokens}
                    self._write(window, counts, window_ttl(s.window, s.now))
                if new.spend is not None:
                    self._write(month, new.spend, month_ttl(s.admitted_at, s.now))
                self._write_map(streams, new.streams, s.now)
                self._write_map(leases, new.leases, s.now)
            self._delete(k.reservation)
            return True

        return await self.shared.atomically(step)

    async def read(self, keys: AdmissionKeys, *, now: float, month: str) -> list[int | None]:
        def step() -> list[int | None]:
            stored = self._read(keys.ordered()[:8])
            out: list[int | None] = []
            for names in keys.scopes():
                _, month_key, streams, leases = names
                c = rules.reclaim(self._counters(stored, names), now=now, month=month)
                if c.spend is not None:
                    self._write(month_key, c.spend, month_ttl(now, now))
                self._write_map(streams, c.streams, now)
                self._write_map(leases, c.leases, now)
                out += [c.requests, c.tokens, c.spend, len(c.streams)]
            return out

        return await self.shared.atomically(step)


class ObjectAdmissionStore(LockedAdmissionStore):
    """The same steps over the embedded cache's live objects (``FastLocMemCache.objects``):
    nothing pickled, no cache key built, and nothing copied: the steps update the stored
    stream and lease books (``rules.Held``) in place, so an admit or settle costs
    O(log n) in the requests in flight, not O(n). That is safe because this store is
    their only reader and writer, always inside the process-wide lock (``atomically``);
    the window and month counters are still replaced, never changed."""

    def __init__(self, shared: LockedCacheStateStore, objects: LocalObjects) -> None:
        super().__init__(shared)
        self.objects = objects

    def _read(self, keys: list[str]) -> dict[str, Any]:
        return self.objects.get_many(keys)

    def _write(self, key: str, value: Any, ttl: float) -> None:
        self.objects.set(key, value, ttl)

    def _delete(self, key: str) -> None:
        self.objects.delete(key)


# --- choosing the store ------------------------------------------------------------

# Connection handles, not state: one admission store per shared store, which
# state_store() rebuilds whenever the cache settings change.
_stores: weakref.WeakKeyDictionary[SharedStateStore, Any] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def admission_store() -> RedisAdmissionStore | LockedAdmissionStore:
    shared = state_store()
    store = _stores.get(shared)
    if store is None:
        with _stores_lock:
            store = _stores.get(shared)
            if store is None:
                if isinstance(shared, RedisStateStore):
                    store = RedisAdmissionStore(shared)
                else:
                    assert isinstance(shared, LockedCacheStateStore), type(shared)
                    if isinstance(shared.cache, FastLocMemCache):
                        store = ObjectAdmissionStore(shared, shared.cache.objects)
                    else:
                        store = LockedAdmissionStore(shared)
                _stores[shared] = store
    return store
