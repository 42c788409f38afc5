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
import time
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
from aipk_site.gateway.admission.rules import Counters, Held, Lease, SettleScope
from aipk_site.infra.local_cache import FastLocMemCache, LocalObjects
from aipk_site.infra.state import (
    LockedCacheStateStore,
    RedisStateStore,
    SharedStateStore,
    state_store,
)

# --- local memory: the pure steps under the process-wide lock ------------------------


def _admit_step(
    req: AdmitRequest,
    key: Counters,
    tenant: Counters,
    *,
    key_seed: int | None,
    tenant_seed: int | None,
) -> rules.AdmitResult:
    """``rules.admit_step`` for one admit request, over counters either store read."""
    return rules.admit_step(
        key,
        tenant,
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
            stored = self._read(k.ordered())
            key_names, tenant_names = k.scopes()
            result = _admit_step(
                req,
                self._counters(stored, key_names),
                self._counters(stored, tenant_names),
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
                self._write(k.reservation(req.request_id), 1, reservation_ttl(req.lease))
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

        reservation = k.reservation(s.request_id)

        def step() -> bool:
            stored = self._read([*k.ordered(), reservation])
            applied, key, tenant = rules.settle_step(
                *(scope(stored, names) for names in k.scopes()),
                reserved=stored.get(reservation) is not None,
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
            self._delete(reservation)
            return True

        return await self.shared.atomically(step)

    async def read(self, keys: AdmissionKeys, *, now: float, month: str) -> list[int | None]:
        def step() -> list[int | None]:
            stored = self._read(keys.ordered())
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


class _Scope:
    """One scope's counters (a key, or a tenant as a whole) as live objects: what the
    generic store keeps in four cache entries, in one.

    Every part keeps its cache entry's lifetime (``keys``), as a ``time.monotonic()``
    deadline like ``LocalObjects``' own, so each reads exactly as its entry did:
    windows (id → requests, tokens, until), months (YYYYMM → spend, until), and the
    stream and lease books with one deadline each (an empty book was a deleted entry)."""

    __slots__ = (
        "windows",
        "months",
        "streams",
        "streams_until",
        "leases",
        "leases_until",
        "kept",
    )

    def __init__(self) -> None:
        self.windows: dict[int, tuple[int, int, float]] = {}
        self.months: dict[str, tuple[int, float]] = {}
        self.streams: Held[float] = Held()
        self.leases: Held[Lease] = Held()
        self.streams_until = 0.0
        self.leases_until = 0.0
        self.kept = 0.0  # when its table entry (``LocalObjects``) expires, or 0: not stored

    def window(self, window: int, mono: float) -> tuple[int, int, float] | None:
        w = self.windows.get(window)
        return w if w is not None and w[2] > mono else None

    def spend(self, month: str, mono: float) -> int | None:
        m = self.months.get(month)
        return m[0] if m is not None and m[1] > mono else None

    def books(self, mono: float) -> tuple[Held[float], Held[Lease]]:
        """The books, emptied first if their entry's lifetime is over."""
        if self.streams_until <= mono:
            self.streams.clear()
        if self.leases_until <= mono:
            self.leases.clear()
        return self.streams, self.leases

    def counters(self, window: int, month: str, mono: float) -> Counters:
        w = self.window(window, mono)
        streams, leases = self.books(mono)
        return Counters(
            requests=0 if w is None else w[0],
            tokens=0 if w is None else w[1],
            spend=self.spend(month, mono),
            streams=streams,
            leases=leases,
        )

    def settle_scope(
        self, w: tuple[int, int, float] | None, s: SettleRequest, mono: float
    ) -> SettleScope:
        """What ``settle_step`` sees of this scope (``w``: the admission's window)."""
        streams, leases = self.books(mono)
        return SettleScope(
            tokens=w[1] if s.same_window and w is not None else None,
            spend=self.spend(s.month, mono),
            streams=streams,
            leases=leases,
        )

    def settled(
        self, w: tuple[int, int, float] | None, new: SettleScope, s: SettleRequest, mono: float
    ) -> float:
        """Store what ``settle_step`` returned; the latest deadline of what it wrote."""
        until = 0.0
        if new.tokens is not None:
            assert w is not None
            until = mono + window_ttl(s.window, s.now)
            self.set_window(s.window, w[0], new.tokens, until)
        if new.spend is not None:
            month_until = mono + month_ttl(s.admitted_at, s.now)
            self.set_spend(s.month, new.spend, month_until)
            until = max(until, month_until)
        self.set_books(new.streams, new.leases, s.now, mono)
        return until

    def set_window(self, window: int, requests: int, tokens: int, until: float) -> None:
        windows = self.windows
        windows[window] = (requests, tokens, until)
        # Entries live until their window ends (plus a margin): two at most on the real
        # clock. Past ones are never read again; the oldest go (bounded memory).
        while len(windows) > 3:
            del windows[min(windows)]

    def set_spend(self, month: str, spend: int, until: float) -> None:
        months = self.months
        months[month] = (spend, until)
        while len(months) > 3:  # (kept a day past their month: two at most are alive)
            del months[min(months)]

    def set_books(
        self, streams: Mapping[str, float], leases: Mapping[str, Lease], now: float, mono: float
    ) -> None:
        """Keep the books until their last entry expires (``_write_map``'s lifetimes)."""
        self.streams, self.leases = rules.held(streams), rules.held(leases)
        if self.streams:
            self.streams_until = mono + leases_ttl(max(0.0, self.streams.last - now))
        else:
            self.streams.clear()
            self.streams_until = 0.0
        if self.leases:
            self.leases_until = mono + leases_ttl(max(0.0, self.leases.last - now))
        else:
            self.leases.clear()
            self.leases_until = 0.0


# Held by the embedded store's steps: the scopes and their books are changed in place,
# and usage reads can come from other threads (``async_to_sync`` in the live API views).
# Its own lock: no other state shares these objects.
_OBJECTS_LOCK = threading.Lock()
# A scope's table entry outlives its longest-lived part (its month, a day past the
# month's end); refreshed at most once per this many seconds past that.
SCOPE_SLACK_SECONDS = 3600.0


class ObjectAdmissionStore:
    """The same steps (``rules.admit_step``, ``settle_step``, ``reclaim``) over the
    embedded cache's live objects (``FastLocMemCache.objects``): one ``_Scope`` per key
    and per tenant, found with one lookup, instead of eight cache entries read and
    rewritten per step. Nothing pickled and nothing copied: the steps update the
    scopes' stream and lease books (``rules.Held``) in place, so an admit or settle
    costs O(log n) in the requests in flight. That is safe because this store is
    their only reader and writer, always under ``_OBJECTS_LOCK``.

    Each part expires as its cache entry did (``_Scope``), so every admit, settle and
    read sees what ``LockedAdmissionStore`` sees; ``FastLocMemCache.clear()`` drops
    the scopes as it dropped the entries."""

    def __init__(self, shared: LockedCacheStateStore, objects: LocalObjects) -> None:
        self.shared = shared
        self.objects = objects

    def _scope(self, name: str) -> _Scope | None:
        scope = self.objects.get(name)
        return scope if isinstance(scope, _Scope) else None

    def _keep(self, name: str, scope: _Scope, until: float, mono: float) -> None:
        """Keep the scope's table entry at least ``until`` (its longest-lived part's end)."""
        until = max(until, scope.streams_until, scope.leases_until)
        if scope.kept < until:
            scope.kept = until + SCOPE_SLACK_SECONDS
            self.objects.set(name, scope, scope.kept - mono)

    async def admit(
        self, req: AdmitRequest, *, key_seed: int | None, tenant_seed: int | None
    ) -> rules.AdmitResult:
        k = req.keys
        now, window, month = req.now, req.window, req.month
        names = (k.key_streams, k.tenant_streams)
        with _OBJECTS_LOCK:
            mono = time.monotonic()
            scopes = [self._scope(n) or _Scope() for n in names]
            result = _admit_step(
                req,
                scopes[0].counters(window, month, mono),
                scopes[1].counters(window, month, mono),
                key_seed=key_seed,
                tenant_seed=tenant_seed,
            )
            if result.needs_seed:
                return result
            window_until = mono + window_ttl(window, now)
            month_until = mono + month_ttl(now, now)
            for name, scope, c in zip(names, scopes, (result.key, result.tenant), strict=True):
                if result.admitted:
                    scope.set_window(window, c.requests, c.tokens, window_until)
                assert c.spend is not None  # seeded
                scope.set_spend(month, c.spend, month_until)
                scope.set_books(c.streams, c.leases, now, mono)
                self._keep(name, scope, max(month_until, window_until), mono)
            if result.admitted:
                self.objects.set(k.reservation(req.request_id), 1, reservation_ttl(req.lease))
            return result

    async def settle(self, s: SettleRequest) -> bool:
        k = s.keys
        reservation = k.reservation(s.request_id)
        with _OBJECTS_LOCK:
            mono = time.monotonic()
            if self.objects.get(reservation) is None:
                return False  # settled already (or never admitted here): nothing to do
            key = self._scope(k.key_streams) or _Scope()
            tenant = self._scope(k.tenant_streams) or _Scope()
            key_window, tenant_window = key.window(s.window, mono), tenant.window(s.window, mono)
            applied, new_key, new_tenant = rules.settle_step(
                key.settle_scope(key_window, s, mono),
                tenant.settle_scope(tenant_window, s, mono),
                reserved=True,
                request_id=s.request_id,
                token_delta=s.token_delta,
                cost_delta=s.cost_delta,
                real_cost=s.real_cost,
            )
            self._keep(k.key_streams, key, key.settled(key_window, new_key, s, mono), mono)
            self._keep(
                k.tenant_streams, tenant, tenant.settled(tenant_window, new_tenant, s, mono), mono
            )
            self.objects.delete(reservation)
            return applied

    async def read(self, keys: AdmissionKeys, *, now: float, month: str) -> list[int | None]:
        window = rules.window_id(now)
        out: list[int | None] = []
        with _OBJECTS_LOCK:
            mono = time.monotonic()
            for name in (keys.key_streams, keys.tenant_streams):
                scope = self._scope(name) or _Scope()
                c = rules.reclaim(scope.counters(window, month, mono), now=now, month=month)
                until = 0.0
                if c.spend is not None:
                    until = mono + month_ttl(now, now)
                    scope.set_spend(month, c.spend, until)
                scope.set_books(c.streams, c.leases, now, mono)
                self._keep(name, scope, until, mono)
                out += [c.requests, c.tokens, c.spend, len(c.streams)]
        return out


# --- choosing the store ------------------------------------------------------------

# Connection handles, not state: one admission store per shared store, which
# state_store() rebuilds whenever the cache settings change.
_stores: weakref.WeakKeyDictionary[SharedStateStore, Any] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


AdmissionStore = RedisAdmissionStore | LockedAdmissionStore | ObjectAdmissionStore
# The last answer: asked twice per request, and a WeakKeyDictionary lookup builds a weakref.
_last: tuple[SharedStateStore, AdmissionStore] | None = None


def admission_store() -> AdmissionStore:
    global _last
    shared = state_store()
    last = _last
    if last is not None and last[0] is shared:
        return last[1]
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
    _last = (shared, store)
    return store
