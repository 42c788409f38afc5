"""Admission: per key and per tenant RPM, TPM, concurrent streams and monthly budget.

The gateway calls ``admit`` before it sends a request upstream and ``settle``
(in a ``finally``) once it knows what the request really used:

- ``admit`` reserves one request, the estimated tokens and the estimated cost
  on the key's and the tenant's counters -- and a stream slot where a
  concurrency limit applies -- all or nothing, atomically across every
  process sharing the cache (``admission_rules.admit_step``). A refusal
  reserves nothing and raises ``LimitExceeded``.
- ``settle`` swaps the reservation for the real tokens and cost (the request
  still counts) and frees the stream slot. It is idempotent: the reservation
  is recorded under the request id, and only the settle that removes that
  record changes anything.

Late settles (documented choice): tokens are counted in the window the
request was admitted in. If that window is over by settle time, its counter
has reset and the token correction is dropped -- charging the difference to
a newer window would bill one minute's limit for another's request. The cost
correction goes to the month of admission for as long as that counter is
kept (one day past the month's end), so a month's spend is always the sum of
its requests' real costs.

Budgets survive a cache restart: a missing month counter is seeded,
set-if-absent, from the month's ``UsageRecord.cost_usd`` (in micro-dollars,
rounded half up). Money is integer micro-dollars throughout, never a float.

Stores, chosen by the cache like ``providers_app.state``: on Redis one Lua
script per admit and per settle, every key of a key+tenant under the Redis
Cluster hash tag ``{t<tenant_id>}``; on local memory ``admit_step`` and
``settle_step`` under the process-wide lock. Layout, under the cache prefix:

    adm:{t<T>}:k<K>:w:<window>   key K's requests and tokens in a window
    adm:{t<T>}:k<K>:m:<YYYYMM>   key K's spend that month (micro-USD)
    adm:{t<T>}:k<K>:s            key K's running streams (request id → start)
    adm:{t<T>}:t:w|m|s           the same for the tenant as a whole
    adm:{t<T>}:r:<request id>    a reservation not yet settled

Every key has a TTL: windows until they end, months one day past theirs,
stream sets and reservations ``ADMISSION_STREAM_MAX_SECONDS`` plus a margin.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db.models import Sum

from providers_app.state import (
    LockedCacheStateStore,
    RedisStateStore,
    SharedStateStore,
    _ms,
    state_store,
)
from tenants_app.models import UsageRecord
from tenants_app.services import admission_rules as rules
from tenants_app.services.admission_rules import Counters, Limits, SettleScope
from tenants_app.services.errors import LimitExceeded

__all__ = ["Admission", "Limits", "admit", "settle", "usage_now"]

# The time source; tests replace it to step through windows and months.
clock: Callable[[], float] = time.time

# Kept past their month so a settle arriving after midnight UTC still lands.
MONTH_MARGIN_SECONDS = 86400
# Covers a few seconds of clock difference between processes.
WINDOW_MARGIN_SECONDS = 5
# A reservation outlives the longest stream, so any real request can settle.
RESERVATION_MARGIN_SECONDS = 3600
# Dead entries are dropped on every admit; a stream set's own TTL only clears
# up after a scope nobody uses any more.
STREAMS_MARGIN_SECONDS = 60


@dataclass
class Admission:
    """An admitted request's reservation; ``settle`` needs nothing else."""

    request_id: str
    key_id: int | None  # None: no key, only the tenant's limits (a console user)
    tenant_id: int
    window: int
    month: str
    tokens: int
    cost_micro: int
    stream: bool
    admitted_at: float
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


@dataclass(frozen=True, slots=True)
class _Keys:
    """Cache keys (before the cache prefix) of one key+tenant for one window and month."""

    key_window: str
    key_month: str
    key_streams: str
    tenant_window: str
    tenant_month: str
    tenant_streams: str
    reservation: str

    @classmethod
    def of(
        cls, *, tenant_id: int, key_id: int | None, window: int, month: str, request_id: str = ""
    ) -> _Keys:
        base = f"adm:{{t{tenant_id}}}"
        k = f"{base}:k{key_id}" if key_id is not None else f"{base}:k-"
        return cls(
            key_window=f"{k}:w:{window}",
            key_month=f"{k}:m:{month}",
            key_streams=f"{k}:s",
            tenant_window=f"{base}:t:w:{window}",
            tenant_month=f"{base}:t:m:{month}",
            tenant_streams=f"{base}:t:s",
            reservation=f"{base}:r:{request_id}",
        )

    def ordered(self) -> list[str]:
        return [
            self.key_window,
            self.key_month,
            self.key_streams,
            self.tenant_window,
            self.tenant_month,
            self.tenant_streams,
            self.reservation,
        ]

    def scopes(self) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
        """(window, month, streams) of the key, then of the tenant."""
        return (
            (self.key_window, self.key_month, self.key_streams),
            (self.tenant_window, self.tenant_month, self.tenant_streams),
        )


def _stream_max() -> float:
    return float(settings.ADMISSION_STREAM_MAX_SECONDS)


def _window_ttl(window: int, now: float) -> float:
    return (window + 1) * rules.WINDOW_SECONDS - now + WINDOW_MARGIN_SECONDS


def _month_ttl(month_of: float, now: float) -> float:
    """Until one margin past the end of the month holding ``month_of``."""
    return rules.month_bounds(month_of)[1].timestamp() - now + MONTH_MARGIN_SECONDS


def _streams_ttl() -> float:
    return _stream_max() + STREAMS_MARGIN_SECONDS


def _reservation_ttl() -> float:
    return _stream_max() + RESERVATION_MARGIN_SECONDS


@dataclass(frozen=True, slots=True)
class _AdmitRequest:
    keys: _Keys
    window: int
    key_limits: Limits
    tenant_limits: Limits
    request_id: str
    tokens: int
    cost: int
    stream: bool
    now: float


@dataclass(frozen=True, slots=True)
class _Settle:
    keys: _Keys
    window: int
    admitted_at: float
    same_window: bool
    request_id: str
    token_delta: int
    cost_delta: int
    now: float


# --- local memory: the pure steps under the process-wide lock ------------------------


class _LockedAdmissionStore:
    """For a cache only this process sees (``LocMemCache``)."""

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

    def _write_streams(self, key: str, streams: dict[str, float]) -> None:
        if streams:
            self._write(key, streams, _streams_ttl())
        else:
            self._delete(key)

    async def admit(
        self, req: _AdmitRequest, *, key_seed: int | None, tenant_seed: int | None
    ) -> rules.AdmitResult:
        k = req.keys

        def counters(stored: dict[str, Any], window: str, month: str, streams: str) -> Counters:
            w = stored.get(window) or {}
            return Counters(
                requests=int(w.get("requests", 0)),
                tokens=int(w.get("tokens", 0)),
                spend=None if stored.get(month) is None else int(stored[month]),
                streams=dict(stored.get(streams) or {}),
            )

        def step() -> rules.AdmitResult:
            stored = self._read(k.ordered()[:6])
            (kw, km, ks), (tw, tm, ts) = k.scopes()
            result = rules.admit_step(
                counters(stored, kw, km, ks),
                counters(stored, tw, tm, ts),
                key_limits=req.key_limits,
                tenant_limits=req.tenant_limits,
                request_id=req.request_id,
                tokens=req.tokens,
                cost=req.cost,
                stream=req.stream,
                now=req.now,
                stream_max_seconds=_stream_max(),
                key_seed=key_seed,
                tenant_seed=tenant_seed,
            )
            if result.needs_seed:
                return result
            for c, (window, month, streams) in zip(
                (result.key, result.tenant), k.scopes(), strict=True
            ):
                if result.admitted:
                    counts = {"requests": c.requests, "tokens": c.tokens}
                    self._write(window, counts, _window_ttl(req.window, req.now))
                self._write(month, c.spend, _month_ttl(req.now, req.now))
                self._write_streams(streams, dict(c.streams))
            if result.admitted:
                self._write(k.reservation, 1, _reservation_ttl())
            return result

        return await self.shared.atomically(step)

    async def settle(self, s: _Settle) -> bool:
        k = s.keys

        def scope(stored: dict[str, Any], window: str, month: str, streams: str) -> SettleScope:
            w = stored.get(window)
            return SettleScope(
                tokens=int(w["tokens"]) if s.same_window and w is not None else None,
                spend=None if stored.get(month) is None else int(stored[month]),
                streams=dict(stored.get(streams) or {}),
            )

        def step() -> bool:
            stored = self._read(k.ordered())
            applied, key, tenant = rules.settle_step(
                *(scope(stored, *names) for names in k.scopes()),
                reserved=stored.get(k.reservation) is not None,
                request_id=s.request_id,
                token_delta=s.token_delta,
                cost_delta=s.cost_delta,
            )
            if not applied:
                return False
            for new, (window, month, streams) in zip((key, tenant), k.scopes(), strict=True):
                if new.tokens is not None:
                    counts = {"requests": stored[window]["requests"], "tokens": new.tokens}
                    self._write(window, counts, _window_ttl(s.window, s.now))
                if new.spend is not None:
                    self._write(month, new.spend, _month_ttl(s.admitted_at, s.now))
                self._write_streams(streams, dict(new.streams))
            self._delete(k.reservation)
            return True

        return await self.shared.atomically(step)

    async def read(self, keys: _Keys, *, cutoff: float) -> list[int | None]:
        def step() -> list[int | None]:
            stored = self._read(keys.ordered()[:6])
            out: list[int | None] = []
            for window, month, streams in keys.scopes():
                w = stored.get(window) or {}
                spend = stored.get(month)
                live = rules.live_streams(stored.get(streams) or {}, cutoff)
                out += [w.get("requests", 0), w.get("tokens", 0), spend, len(live)]
            return out

        return await self.shared.atomically(step)


# --- Redis: one Lua script per admit and per settle ----------------------------------

# Mirrors admission_rules.admit_step. Counts are integers; money goes through
# INCRBY and SET of the caller's own digits, never through a Lua double printed
# back (tostring would print 1e+15).
# KEYS: key window, key month, key streams, tenant window, tenant month,
#       tenant streams, reservation.
# ARGV: 1 now, 2 stream cutoff, 3 request id, 4 tokens, 5 cost, 6 stream (1/0),
#       7-10 key rpm, tpm, max concurrent, budget; 11-14 the tenant's (-1: none);
#       15 key seed, 16 tenant seed (-1: none); TTLs in ms: 17 window, 18 month,
#       19 streams, 20 reservation.
# Returns {2, "key,tenant"} when a month counter needs a seed, else
# {admitted 1/0, refusal code, then per scope requests, tokens, spend, streams}.
_LUA_ADMIT = """
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local stream = ARGV[6] == '1'
local function limit(i)
  local v = tonumber(ARGV[i])
  if v < 0 then return nil end
  return v
end
local scopes = {
  {name = 'key', w = KEYS[1], m = KEYS[2], s = KEYS[3], seed = ARGV[15],
   rpm = limit(7), tpm = limit(8), conc = limit(9), budget = limit(10)},
  {name = 'tenant', w = KEYS[4], m = KEYS[5], s = KEYS[6], seed = ARGV[16],
   rpm = limit(11), tpm = limit(12), conc = limit(13), budget = limit(14)},
}
local missing = {}
for _, sc in ipairs(scopes) do
  local spend = redis.call('GET', sc.m)
  if spend then
    sc.spend = tonumber(spend)
  elseif tonumber(sc.seed) >= 0 then
    sc.spend = tonumber(sc.seed)
    sc.seeded = true
  else
    table.insert(missing, sc.name)
  end
end
if #missing > 0 then return {2, table.concat(missing, ',')} end
for _, sc in ipairs(scopes) do
  if sc.seeded then redis.call('SET', sc.m, sc.seed, 'PX', ARGV[18]) end
  redis.call('ZREMRANGEBYSCORE', sc.s, '-inf', ARGV[2])
  local counts = redis.call('HMGET', sc.w, 'r', 't')
  sc.requests = tonumber(counts[1]) or 0
  sc.tokens = tonumber(counts[2]) or 0
  sc.streams = redis.call('ZCARD', sc.s)
end
local refusal = ''
for _, sc in ipairs(scopes) do
  local kind = nil
  if sc.rpm and sc.requests + 1 > sc.rpm then kind = 'rpm'
  elseif sc.tpm and sc.tokens + tokens > sc.tpm then kind = 'tpm'
  elseif stream and sc.conc and sc.streams + 1 > sc.conc then kind = 'concurrency'
  elseif sc.budget and (sc.spend >= sc.budget or sc.spend + cost > sc.budget) then
    kind = 'budget'
  end
  if kind then
    refusal = sc.name .. '_' .. kind
    break
  end
end
if refusal == '' then
  for _, sc in ipairs(scopes) do
    sc.requests = redis.call('HINCRBY', sc.w, 'r', 1)
    sc.tokens = redis.call('HINCRBY', sc.w, 't', ARGV[4])
    redis.call('PEXPIRE', sc.w, ARGV[17])
    sc.spend = redis.call('INCRBY', sc.m, ARGV[5])
    if stream and sc.conc then
      redis.call('ZADD', sc.s, ARGV[1], ARGV[3])
      redis.call('PEXPIRE', sc.s, ARGV[19])
      sc.streams = redis.call('ZCARD', sc.s)
    end
  end
  redis.call('SET', KEYS[7], '1', 'PX', ARGV[20])
end
local out = {refusal == '' and 1 or 0, refusal}
for _, sc in ipairs(scopes) do
  table.insert(out, sc.requests)
  table.insert(out, sc.tokens)
  table.insert(out, sc.spend)
  table.insert(out, sc.streams)
end
return out
"""

# Mirrors admission_rules.settle_step. KEYS as for admit; ARGV: 1 same window
# (1/0), 2 token delta, 3 cost delta, 4 request id. Returns 1 if applied.
# Only existing counters change, so their TTLs stand (HINCRBY and INCRBY keep them).
_LUA_SETTLE = """
if redis.call('DEL', KEYS[7]) == 0 then return 0 end
for i = 0, 3, 3 do
  local w, m, s = KEYS[i + 1], KEYS[i + 2], KEYS[i + 3]
  if ARGV[1] == '1' and redis.call('EXISTS', w) == 1 then
    if redis.call('HINCRBY', w, 't', ARGV[2]) < 0 then redis.call('HSET', w, 't', '0') end
  end
  if redis.call('EXISTS', m) == 1 then
    if redis.call('INCRBY', m, ARGV[3]) < 0 then redis.call('SET', m, '0', 'KEEPTTL') end
  end
  redis.call('ZREM', s, ARGV[4])
end
return 1
"""

# A consistent snapshot. KEYS: the first six of admit's; ARGV: 1 stream cutoff.
# Per scope: requests, tokens, spend (-1: not in the cache), live streams.
_LUA_READ = """
local out = {}
for i = 0, 3, 3 do
  local counts = redis.call('HMGET', KEYS[i + 1], 'r', 't')
  local spend = redis.call('GET', KEYS[i + 2])
  table.insert(out, tonumber(counts[1]) or 0)
  table.insert(out, tonumber(counts[2]) or 0)
  table.insert(out, spend and tonumber(spend) or -1)
  table.insert(out, redis.call('ZCOUNT', KEYS[i + 3], '(' .. ARGV[1], '+inf'))
end
return out
"""


def _limit_args(limits: Limits) -> list[int]:
    values = (limits.rpm, limits.tpm, limits.max_concurrent, limits.budget_micro_usd)
    return [-1 if v is None else int(v) for v in values]


class _RedisAdmissionStore:
    """Every admit and settle is one Lua script on the Redis server."""

    def __init__(self, shared: RedisStateStore) -> None:
        self.shared = shared
        client = shared.client()
        # register_script only hashes the text: the server learns the script on first use.
        self._admit = client.register_script(_LUA_ADMIT)
        self._settle = client.register_script(_LUA_SETTLE)
        self._read = client.register_script(_LUA_READ)

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        full = [self.shared.full_key(k) for k in keys]
        client = self.shared.client(full[0])
        return await asyncio.to_thread(script, keys=full, args=args, client=client)

    async def admit(
        self, req: _AdmitRequest, *, key_seed: int | None, tenant_seed: int | None
    ) -> rules.AdmitResult:
        args = [
            repr(req.now),
            repr(rules.stream_cutoff(req.now, _stream_max())),
            req.request_id,
            req.tokens,
            req.cost,
            1 if req.stream else 0,
            *_limit_args(req.key_limits),
            *_limit_args(req.tenant_limits),
            -1 if key_seed is None else key_seed,
            -1 if tenant_seed is None else tenant_seed,
            _ms(_window_ttl(req.window, req.now)),
            _ms(_month_ttl(req.now, req.now)),
            _ms(_streams_ttl()),
            _ms(_reservation_ttl()),
        ]
        reply = await self._run(self._admit, req.keys.ordered(), args)
        status = int(reply[0])
        code = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        if status == 2:
            return rules.AdmitResult(
                False, Counters(), Counters(), needs_seed=tuple(code.split(","))
            )
        # Only the number of streams comes back; headers need no more.
        key, tenant = (
            Counters(requests=int(r), tokens=int(t), spend=int(m))
            for r, t, m in (reply[2:5], reply[6:9])
        )
        refusal = None
        if code:
            scope, kind = code.split("_", 1)
            refusal = rules.Refusal(scope, kind)  # type: ignore[arg-type]
        return rules.AdmitResult(status == 1, key, tenant, refusal)

    async def settle(self, s: _Settle) -> bool:
        args = [1 if s.same_window else 0, s.token_delta, s.cost_delta, s.request_id]
        return bool(await self._run(self._settle, s.keys.ordered(), args))

    async def read(self, keys: _Keys, *, cutoff: float) -> list[int | None]:
        reply = await self._run(self._read, keys.ordered()[:6], [repr(cutoff)])
        out: list[int | None] = [int(v) for v in reply]
        for spend in (2, 6):
            if out[spend] == -1:
                out[spend] = None
        return out


# --- choosing the store ------------------------------------------------------------

# Connection handles, not state: one admission store per shared store, which
# state_store() rebuilds whenever the cache settings change.
_stores: weakref.WeakKeyDictionary[SharedStateStore, Any] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def _store() -> _RedisAdmissionStore | _LockedAdmissionStore:
    shared = state_store()
    store = _stores.get(shared)
    if store is None:
        with _stores_lock:
            store = _stores.get(shared)
            if store is None:
                if isinstance(shared, RedisStateStore):
                    store = _RedisAdmissionStore(shared)
                else:
                    assert isinstance(shared, LockedCacheStateStore), type(shared)
                    store = _LockedAdmissionStore(shared)
                _stores[shared] = store
    return store


# --- the API -----------------------------------------------------------------------


async def _recorded_spend(*, tenant_id: int, key_id: int | None, now: float) -> int:
    """The month's spend in the usage records, in micro-dollars."""
    start, end = rules.month_bounds(now)
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    if key_id is not None:
        rows = rows.filter(virtual_key_id=key_id)
    else:
        rows = rows.filter(tenant_id=tenant_id)
    total = (await rows.aaggregate(total=Sum("cost_usd")))["total"] or Decimal(0)
    return int((Decimal(total) * 1_000_000).to_integral_value(rounding=ROUND_HALF_UP))


async def admit(
    *,
    request_id: str,
    key_id: int | None,
    tenant_id: int,
    key_limits: Limits,
    tenant_limits: Limits,
    estimated_tokens: int,
    estimated_cost_micro: int,
    stream: bool,
) -> Admission:
    """Reserve the request on the key and its tenant, or raise ``LimitExceeded``."""
    if estimated_tokens < 0 or estimated_cost_micro < 0:
        raise ValueError("estimates cannot be negative")
    now = clock()
    window, month = rules.window_id(now), rules.month_id(now)
    req = _AdmitRequest(
        keys=_Keys.of(
            tenant_id=tenant_id, key_id=key_id, window=window, month=month, request_id=request_id
        ),
        window=window,
        key_limits=key_limits,
        tenant_limits=tenant_limits,
        request_id=request_id,
        tokens=int(estimated_tokens),
        cost=int(estimated_cost_micro),
        stream=stream,
        now=now,
    )
    store = _store()
    seeds: dict[str, int] = {}
    result = await store.admit(req, key_seed=None, tenant_seed=None)
    # Once a month per scope, or after the cache lost its counters. Each pass
    # seeds every scope it reports, so this ends after at most two more.
    while result.needs_seed:
        for scope in result.needs_seed:
            seeds[scope] = await _recorded_spend(
                tenant_id=tenant_id, key_id=key_id if scope == "key" else None, now=now
            )
        result = await store.admit(req, key_seed=seeds.get("key"), tenant_seed=seeds.get("tenant"))

    headers = rules.rate_headers(
        result.key, result.tenant, key_limits=key_limits, tenant_limits=tenant_limits, now=now
    )
    if not result.admitted:
        refusal = result.refusal
        assert refusal is not None
        limits = key_limits if refusal.scope == "key" else tenant_limits
        message, retry_after = rules.refusal_details(refusal, limits, tokens=req.tokens, now=now)
        headers["retry-after"] = str(retry_after)
        raise LimitExceeded(message, code=refusal.code, retry_after=retry_after, headers=headers)
    return Admission(
        request_id=request_id,
        key_id=key_id,
        tenant_id=tenant_id,
        window=window,
        month=month,
        tokens=req.tokens,
        cost_micro=req.cost,
        stream=stream,
        admitted_at=now,
        headers=headers,
    )


async def settle(admission: Admission, *, tokens: int, cost_micro: int) -> None:
    """Replace the reservation with what the request used; a second call does nothing."""
    if admission.settled:
        return
    now = clock()
    await _store().settle(
        _Settle(
            keys=_Keys.of(
                tenant_id=admission.tenant_id,
                key_id=admission.key_id,
                window=admission.window,
                month=admission.month,
                request_id=admission.request_id,
            ),
            window=admission.window,
            admitted_at=admission.admitted_at,
            same_window=rules.window_id(now) == admission.window,
            request_id=admission.request_id,
            token_delta=max(0, int(tokens)) - admission.tokens,
            cost_delta=max(0, int(cost_micro)) - admission.cost_micro,
            now=now,
        )
    )
    admission.settled = True


async def usage_now(*, key_id: int | None, tenant_id: int) -> dict:
    """This window's requests and tokens, the month's spend and running streams.

    ``{"window_resets_in", "month", "month_resets_in", "key", "tenant"}``, each
    scope ``{"requests", "tokens", "spend_micro_usd", "streams"}`` (``key`` is
    None when no key was asked for). A month the cache has lost is read from
    the usage records. Streams are counted only where a concurrency limit applies.
    """
    now = clock()
    keys = _Keys.of(
        tenant_id=tenant_id, key_id=key_id, window=rules.window_id(now), month=rules.month_id(now)
    )
    values = await _store().read(keys, cutoff=rules.stream_cutoff(now, _stream_max()))
    scopes: dict[str, dict[str, int] | None] = {}
    for name, chunk in (("key", values[:4]), ("tenant", values[4:])):
        if name == "key" and key_id is None:
            scopes[name] = None
            continue
        requests, tokens, spend, streams = chunk
        if spend is None:
            spend = await _recorded_spend(
                tenant_id=tenant_id, key_id=key_id if name == "key" else None, now=now
            )
        scopes[name] = {
            "requests": int(requests or 0),
            "tokens": int(tokens or 0),
            "spend_micro_usd": int(spend),
            "streams": int(streams or 0),
        }
    start = rules.month_bounds(now)[0]
    return {
        "window_resets_in": math.ceil(rules.window_reset(now)),
        "month": start.strftime("%Y-%m"),
        "month_resets_in": math.ceil(rules.month_reset(now)),
        "key": scopes["key"],
        "tenant": scopes["tenant"],
    }
