"""Admission arithmetic: the pure steps every admission store applies atomically.

Framework-free (no Django), like the kit's transitions in
``providers_app/kit/resilience/transitions.py``: ``admit_step`` and ``settle_step`` take a
key's and its tenant's counters as stored and return what to store, and the
stores (``store.py`` and ``redis_store.py`` beside it) run each as one indivisible
step -- under a process-wide lock on local memory, as one Lua script on Redis,
which mirrors these lines.

The window and month counters are values: the steps return new ones. The stream
slots and leases are ``Held`` books, which the steps **update in place** (a
plain mapping passed in is copied into a new book first): a request's admission
must not cost O(requests in flight), and copying and scanning every lease of a
scope at each admit and settle did (the pair took 0.13 ms of CPU with 50 requests
in flight, 0.73 ms with 1,000; now 0.08 ms either way). A book finds its expired
entries through a heap ordered by expiry, so admit, settle and reclaim are
O(log n) in the leases held -- as on Redis, where a lease set is a sorted set
scored by expiry.

Counters per scope (a virtual key, or its tenant as a whole):

- requests and tokens in a fixed 60-second window (id ``floor(now / 60)``,
  reset when the window ends);
- spend in integer micro-dollars for the UTC calendar month (``None`` when the
  cache has lost it: the store seeds it from the usage records, set-if-absent);
- running streams, request id → lease expiry;
- leases: request id → (expiry, reserved cost, month) for every admitted
  request not yet settled.

Reservations and stream slots are **leases**: each expires ``lease_seconds``
after admission. A request whose process was killed never settles, so the next
admit (or usage read) in that scope reclaims its expired lease: the reserved
cost goes back off the month's spend and its stream slot frees. Tokens are not
reclaimed: the one-minute window holding them resets on its own. A settle that
arrives after its lease was reclaimed (a request that outlived its lease) adds
the request's whole real cost, so the month's spend still equals the sum of
its requests' real costs.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, TypeVar

WINDOW_SECONDS = 60

Scope = Literal["key", "tenant"]
SCOPES: tuple[Scope, Scope] = ("key", "tenant")
LimitKind = Literal["rpm", "tpm", "concurrency", "budget"]


@dataclass(frozen=True, slots=True)
class Limits:
    """A scope's limits; ``None`` means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None  # streams running at once
    budget_micro_usd: int | None = None  # per calendar month, integer micro-dollars


@dataclass(frozen=True, slots=True)
class Lease:
    """What an admitted, unsettled request holds in a scope until ``expires``."""

    expires: float
    cost: int  # micro-USD added to the spend of ``month`` at admission
    month: str  # YYYYMM

    def __reduce__(self) -> tuple[type[Lease], tuple[float, int, str]]:
        # Pickled by the local-memory cache on every admission: the generic dataclass
        # pickling (a fields() walk per object) was ~4 % of a request's CPU.
        return (Lease, (self.expires, self.cost, self.month))


V = TypeVar("V", Lease, float)

# A book's heap is rebuilt from its live entries once stale entries (settled before they
# expired) outnumber them by this factor: memory stays O(live), the rebuild amortised O(1).
_STALE_FACTOR = 2
_STALE_SLACK = 64


def _expiry(value: Lease | float) -> float:
    return value.expires if isinstance(value, Lease) else value


class Held(Mapping[str, V]):
    """A scope's stream slots (request id → expiry) or leases (request id → ``Lease``),
    changed in place: ``put`` and ``expire`` O(log n), ``pop`` O(1) (amortised).

    The heap holds ``(expiry, request id)`` for every entry put; an entry popped
    before it expired stays there, stale, until it surfaces or the heap is rebuilt.
    ``last`` is never earlier than the latest expiry held: a store keeps the book
    until then."""

    __slots__ = ("_items", "_heap", "last")

    def __init__(self, entries: Mapping[str, V] | None = None) -> None:
        self._items: dict[str, V] = {}
        self._heap: list[tuple[float, str]] = []
        self.last = 0.0
        if entries:  # (most books start empty: a scope with nothing in flight)
            self._items.update(entries)
            self._heap = [(_expiry(v), k) for k, v in self._items.items()]
            heapq.heapify(self._heap)
            self.last = max(e for e, _ in self._heap)

    def __getitem__(self, request_id: str) -> V:
        return self._items[request_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._items

    def __repr__(self) -> str:
        return f"Held({self._items!r})"

    def put(self, request_id: str, value: V) -> None:
        expires = _expiry(value)
        self._items[request_id] = value
        heapq.heappush(self._heap, (expires, request_id))
        if expires > self.last:
            self.last = expires

    def pop(self, request_id: str) -> V | None:
        """Remove and return the entry, or None if it is not held."""
        value = self._items.pop(request_id, None)
        if value is not None and len(self._heap) > _STALE_FACTOR * len(self._items) + _STALE_SLACK:
            self._heap = [(_expiry(v), k) for k, v in self._items.items()]
            heapq.heapify(self._heap)
        return value

    def expire(self, now: float) -> list[V]:
        """Remove and return the entries whose expiry is at or before ``now``."""
        heap, items = self._heap, self._items
        out: list[V] = []
        while heap and heap[0][0] <= now:
            expires, request_id = heapq.heappop(heap)
            value = items.get(request_id)
            # a stale entry: popped (settled) already, or put again with another expiry
            if value is not None and _expiry(value) == expires:
                del items[request_id]
                out.append(value)
        return out

    def clear(self) -> None:
        self._items.clear()
        self._heap.clear()
        self.last = 0.0


def held(entries: Mapping[str, V]) -> Held[V]:
    """``entries`` itself if it is a book, else a new book holding a copy of them."""
    return entries if isinstance(entries, Held) else Held(entries)


# Counters, AdmitResult and SettleScope are values the steps never change (they build
# new ones), but not frozen: several are built per request, and a frozen dataclass's
# __init__ (object.__setattr__ per field) costs twice a plain one's.
@dataclass(slots=True)
class Counters:
    """One scope's counters for the current window and month, as stored."""

    requests: int = 0
    tokens: int = 0
    spend: int | None = None  # micro-USD this month; None = not in the cache
    # request id → lease expiry, and request id → its lease; ``Held`` books once a step ran
    streams: Mapping[str, float] = field(default_factory=dict)
    leases: Mapping[str, Lease] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: Scope
    kind: LimitKind

    @property
    def code(self) -> str:
        return f"{self.scope}_{self.kind}"


@dataclass(slots=True)
class AdmitResult:
    """What to store, and the verdict.

    ``key``/``tenant`` are always the counters to write back: reserved when
    admitted; otherwise unchanged apart from seeded spend and dropped dead
    streams. ``needs_seed`` names scopes whose month spend is missing with no
    seed given: nothing at all is written then.
    """

    admitted: bool
    key: Counters
    tenant: Counters
    refusal: Refusal | None = None
    needs_seed: tuple[Scope, ...] = ()


# --- time ----------------------------------------------------------------------


def window_id(now: float) -> int:
    return math.floor(now / WINDOW_SECONDS)


def window_reset(now: float) -> float:
    """Seconds until the current window ends, in (0, 60]."""
    return (window_id(now) + 1) * WINDOW_SECONDS - now


# The month last asked about, as (start, end, bounds, id): every admit and settle asks
# for the current one, and building it from a timestamp was ~2 % of a request's CPU.
_last_month: tuple[float, float, tuple[datetime, datetime], str] | None = None


def month_bounds(now: float) -> tuple[datetime, datetime]:
    """The UTC calendar month holding ``now``: [start, end)."""
    return _month(now)[2]


def _month(now: float) -> tuple[float, float, tuple[datetime, datetime], str]:
    global _last_month
    last = _last_month
    if last is not None and last[0] <= now < last[1]:
        return last
    bounds = _month_bounds(now)
    last = (bounds[0].timestamp(), bounds[1].timestamp(), bounds, bounds[0].strftime("%Y%m"))
    _last_month = last
    return last


def _month_bounds(now: float) -> tuple[datetime, datetime]:
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start.month == 12:
        end = start.replace(year=start.year + 1, month=1)
    else:
        end = start.replace(month=start.month + 1)
    return start, end


def month_end(now: float) -> float:
    """The timestamp at which the UTC month holding ``now`` ends."""
    return _month(now)[1]


def month_id(now: float) -> str:
    return _month(now)[3]


def month_reset(now: float) -> float:
    """Seconds until the current UTC month ends."""
    return month_bounds(now)[1].timestamp() - now


def reclaim(c: Counters, *, now: float, month: str) -> Counters:
    """Give back what expired leases hold: their cost (if it went to ``month``, the
    counter in hand) and their stream slots. A missing spend stays missing.

    The books are updated in place and returned in the new counters."""
    streams, leases = held(c.streams), held(c.leases)
    expired = leases.expire(now)
    streams.expire(now)
    if not expired and streams is c.streams and leases is c.leases:
        return c  # the same counters (the usual case: nothing expired)
    spend = c.spend
    if spend is not None and expired:
        spend = max(0, spend - sum(lease.cost for lease in expired if lease.month == month))
    return Counters(c.requests, c.tokens, spend, streams, leases)


# --- the steps ---------------------------------------------------------------------


def _check(
    c: Counters, limits: Limits, *, tokens: int, cost: int, stream: bool
) -> LimitKind | None:
    if limits.rpm is not None and c.requests + 1 > limits.rpm:
        return "rpm"
    if limits.tpm is not None and c.tokens + tokens > limits.tpm:
        return "tpm"
    if stream and limits.max_concurrent is not None and len(c.streams) + 1 > limits.max_concurrent:
        return "concurrency"
    budget, spend = limits.budget_micro_usd, c.spend or 0
    # A spent budget refuses even a request estimated at zero cost.
    if budget is not None and (spend >= budget or spend + cost > budget):
        return "budget"
    return None


def _reserve(
    c: Counters,
    limits: Limits,
    *,
    request_id: str,
    tokens: int,
    cost: int,
    stream: bool,
    lease: Lease,
) -> Counters:
    streams, leases = held(c.streams), held(c.leases)
    if stream and limits.max_concurrent is not None:
        streams.put(request_id, lease.expires)
    leases.put(request_id, lease)
    assert c.spend is not None  # seeded before any check
    return Counters(c.requests + 1, c.tokens + tokens, c.spend + cost, streams, leases)


def admit_step(
    key: Counters,
    tenant: Counters,
    *,
    key_limits: Limits,
    tenant_limits: Limits,
    request_id: str,
    tokens: int,
    cost: int,
    stream: bool,
    now: float,
    month: str,
    lease_seconds: float,
    key_seed: int | None = None,
    tenant_seed: int | None = None,
) -> AdmitResult:
    """Reserve one request, ``tokens`` and ``cost`` on both scopes, or nothing.

    First each scope's expired leases are reclaimed (kept even on refusal). Checks
    run key first, then tenant, each rpm → tpm → concurrency → budget; the first
    that fails is the refusal. The reservation is a lease in both scopes; a stream
    slot is taken only in a scope with ``max_concurrent`` set.

    The scopes' books (``Held``) are updated in place and returned in the result's
    counters; when a seed is missing nothing is touched at all.
    """
    # Written out for the two scopes, not looped over: this runs on every request.
    key_missing = key.spend is None and key_seed is None
    tenant_missing = tenant.spend is None and tenant_seed is None
    if key_missing or tenant_missing:
        missing: tuple[Scope, ...] = ("key",) if key_missing else ()
        if tenant_missing:
            missing += ("tenant",)
        return AdmitResult(False, key, tenant, needs_seed=missing)

    key = reclaim(_seeded(key, key_seed), now=now, month=month)
    tenant = reclaim(_seeded(tenant, tenant_seed), now=now, month=month)
    kind = _check(key, key_limits, tokens=tokens, cost=cost, stream=stream)
    if kind is not None:
        return AdmitResult(False, key, tenant, Refusal("key", kind))
    kind = _check(tenant, tenant_limits, tokens=tokens, cost=cost, stream=stream)
    if kind is not None:
        return AdmitResult(False, key, tenant, Refusal("tenant", kind))
    lease = Lease(expires=now + lease_seconds, cost=cost, month=month)
    return AdmitResult(
        True,
        _reserve(
            key,
            key_limits,
            request_id=request_id,
            tokens=tokens,
            cost=cost,
            stream=stream,
            lease=lease,
        ),
        _reserve(
            tenant,
            tenant_limits,
            request_id=request_id,
            tokens=tokens,
            cost=cost,
            stream=stream,
            lease=lease,
        ),
    )


def _seeded(c: Counters, seed: int | None) -> Counters:
    """The counters with a missing spend set to ``seed`` (the recorded spend)."""
    if c.spend is not None:
        return c
    # the seed (recorded spend) holds none of the old leases' costs:
    # dropping them makes their late settles add their whole real cost
    leases = held(c.leases)
    leases.clear()
    return replace(c, spend=seed, leases=leases)


@dataclass(slots=True)
class SettleScope:
    """A scope's counters as settle sees them; ``None`` = not (or no longer) counted."""

    tokens: int | None  # the admission's window, if it is still the current one
    spend: int | None  # the admission's month
    streams: Mapping[str, float] = field(default_factory=dict)
    leases: Mapping[str, Lease] = field(default_factory=dict)


def settle_step(
    key: SettleScope,
    tenant: SettleScope,
    *,
    reserved: bool,
    request_id: str,
    token_delta: int,
    cost_delta: int,
    real_cost: int,
) -> tuple[bool, SettleScope, SettleScope]:
    """Swap the reservation for the real figures: (applied, key, tenant).

    ``reserved`` says the reservation is still on record; without it this is a
    no-op, which makes a second settle harmless. In a scope that still holds the
    request's lease the spend moves by ``cost_delta`` (real minus reserved); in one
    whose lease was reclaimed (it expired), by the whole ``real_cost``. Counters
    the cache no longer holds stay missing rather than being recreated without
    their history (a month counter is then reseeded from the usage records).

    The request's lease and stream slot leave the scopes' books in place.
    """
    if not reserved:
        return False, key, tenant

    def one(s: SettleScope) -> SettleScope:
        streams, leases = held(s.streams), held(s.leases)
        delta = real_cost if leases.pop(request_id) is None else cost_delta
        streams.pop(request_id)
        return SettleScope(
            tokens=None if s.tokens is None else max(0, s.tokens + token_delta),
            spend=None if s.spend is None else max(0, s.spend + delta),
            streams=streams,
            leases=leases,
        )

    return True, one(key), one(tenant)


# --- what the caller is told ----------------------------------------------------------


def duration(seconds: float) -> str:
    """``12s``, ``5m3s``, ``3d4h``: whole seconds, rounded up (OpenAI's header style)."""
    total = max(1, math.ceil(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def usd(micro: int) -> str:
    """Micro-dollars as ``$12.50`` (more digits only when they matter), without floats."""
    text = f"{Decimal(micro).scaleb(-6):.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def _tightest(
    key_limit: int | None, key_used: int, tenant_limit: int | None, tenant_used: int
) -> tuple[int, int] | None:
    """(limit, used) with the fewest remaining; a tie goes to the smaller limit, then
    to the key. None when neither scope has the limit."""
    if key_limit is None:
        return None if tenant_limit is None else (tenant_limit, tenant_used)
    if tenant_limit is None:
        return (key_limit, key_used)
    if (max(0, tenant_limit - tenant_used), tenant_limit) < (
        max(0, key_limit - key_used),
        key_limit,
    ):
        return (tenant_limit, tenant_used)
    return (key_limit, key_used)


def rate_headers(
    key: Counters, tenant: Counters, *, key_limits: Limits, tenant_limits: Limits, now: float
) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for whichever of key and tenant is tighter."""
    headers: dict[str, str] = {}
    requests = _tightest(key_limits.rpm, key.requests, tenant_limits.rpm, tenant.requests)
    tokens = _tightest(key_limits.tpm, key.tokens, tenant_limits.tpm, tenant.tokens)
    if requests is None and tokens is None:
        return headers
    reset = duration(window_reset(now))
    if requests is not None:
        headers["x-ratelimit-limit-requests"] = str(requests[0])
        headers["x-ratelimit-remaining-requests"] = str(max(0, requests[0] - requests[1]))
        headers["x-ratelimit-reset-requests"] = reset
    if tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(tokens[0])
        headers["x-ratelimit-remaining-tokens"] = str(max(0, tokens[0] - tokens[1]))
        headers["x-ratelimit-reset-tokens"] = reset
    return headers


# A finished stream frees its slot at any moment: suggest trying again soon.
CONCURRENCY_RETRY_SECONDS = 1


def refusal_details(
    refusal: Refusal, limits: Limits, *, tokens: int, now: float
) -> tuple[str, int]:
    """(message, retry-after seconds) for a refusal under ``limits`` (the refused scope's)."""
    who = refusal.scope
    if refusal.kind == "rpm":
        wait = window_reset(now)
        text = f"{who} rate limit of {limits.rpm} requests per minute reached"
    elif refusal.kind == "tpm":
        wait = window_reset(now)
        text = f"{who} token limit of {limits.tpm} tokens per minute reached"
        if limits.tpm is not None and tokens > limits.tpm:
            text = (
                f"{who} token limit of {limits.tpm} tokens per minute is below this "
                f"request's estimate of {tokens} tokens"
            )
    elif refusal.kind == "concurrency":
        return (
            f"{who} limit of {limits.max_concurrent} concurrent streams reached; "
            "a slot frees when one of them ends",
            CONCURRENCY_RETRY_SECONDS,
        )
    else:
        wait = month_reset(now)
        text = f"{who} monthly budget of {usd(limits.budget_micro_usd or 0)} reached"
    return f"{text}; resets in {duration(wait)}", max(1, math.ceil(wait))
