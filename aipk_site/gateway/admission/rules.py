"""Admission arithmetic: the pure steps every admission store applies atomically.

Framework-free (no Django), like the kit's transitions in
``providers_app/kit/resilience/transitions.py``: ``admit_step`` and ``settle_step`` take a
key's and its tenant's counters as stored and return what to store, and the
stores (``store.py`` and ``redis_store.py`` beside it) run each as one indivisible
step -- under a process-wide lock on local memory, as one Lua script on Redis,
which mirrors these lines.

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

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

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


@dataclass(frozen=True, slots=True)
class Counters:
    """One scope's counters for the current window and month, as stored."""

    requests: int = 0
    tokens: int = 0
    spend: int | None = None  # micro-USD this month; None = not in the cache
    streams: Mapping[str, float] = field(default_factory=dict)  # request id → lease expiry
    leases: Mapping[str, Lease] = field(default_factory=dict)  # request id → its lease


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: Scope
    kind: LimitKind

    @property
    def code(self) -> str:
        return f"{self.scope}_{self.kind}"


@dataclass(frozen=True, slots=True)
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


def month_id(now: float) -> str:
    return _month(now)[3]


def month_reset(now: float) -> float:
    """Seconds until the current UTC month ends."""
    return month_bounds(now)[1].timestamp() - now


def live_streams(streams: Mapping[str, float], now: float) -> dict[str, float]:
    """The stream slots whose lease has not expired at ``now``."""
    return {rid: expires for rid, expires in streams.items() if expires > now}


def reclaim(c: Counters, *, now: float, month: str) -> Counters:
    """Give back what expired leases hold: their cost (if it went to ``month``, the
    counter in hand) and their stream slots. A missing spend stays missing."""
    expired = [lease for lease in c.leases.values() if lease.expires <= now]
    spend = c.spend
    if spend is not None and expired:
        spend = max(0, spend - sum(lease.cost for lease in expired if lease.month == month))
    return replace(
        c,
        spend=spend,
        streams=live_streams(c.streams, now),
        leases={rid: lease for rid, lease in c.leases.items() if lease.expires > now},
    )


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
    streams = dict(c.streams)
    if stream and limits.max_concurrent is not None:
        streams[request_id] = lease.expires
    assert c.spend is not None  # seeded before any check
    return Counters(
        requests=c.requests + 1,
        tokens=c.tokens + tokens,
        spend=c.spend + cost,
        streams=streams,
        leases={**c.leases, request_id: lease},
    )


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
    """
    missing: list[Scope] = []
    seeded: dict[Scope, Counters] = {}
    scopes: tuple[tuple[Scope, Counters, int | None], ...] = (
        ("key", key, key_seed),
        ("tenant", tenant, tenant_seed),
    )
    for scope, c, seed in scopes:
        if c.spend is None:
            if seed is None:
                missing.append(scope)
            else:
                # the seed (recorded spend) holds none of the old leases' costs:
                # dropping them makes their late settles add their whole real cost
                c = replace(c, spend=seed, leases={})
        seeded[scope] = c
    if missing:
        return AdmitResult(False, key, tenant, needs_seed=tuple(missing))

    current = {s: reclaim(c, now=now, month=month) for s, c in seeded.items()}
    limits: dict[Scope, Limits] = {"key": key_limits, "tenant": tenant_limits}
    for scope in SCOPES:
        kind = _check(current[scope], limits[scope], tokens=tokens, cost=cost, stream=stream)
        if kind is not None:
            return AdmitResult(False, current["key"], current["tenant"], Refusal(scope, kind))
    new = {
        s: _reserve(
            current[s],
            limits[s],
            request_id=request_id,
            tokens=tokens,
            cost=cost,
            stream=stream,
            lease=Lease(expires=now + lease_seconds, cost=cost, month=month),
        )
        for s in current
    }
    return AdmitResult(True, new["key"], new["tenant"])


@dataclass(frozen=True, slots=True)
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
    """
    if not reserved:
        return False, key, tenant

    def one(s: SettleScope) -> SettleScope:
        delta = cost_delta if request_id in s.leases else real_cost
        return SettleScope(
            tokens=None if s.tokens is None else max(0, s.tokens + token_delta),
            spend=None if s.spend is None else max(0, s.spend + delta),
            streams={rid: t for rid, t in s.streams.items() if rid != request_id},
            leases={rid: lease for rid, lease in s.leases.items() if rid != request_id},
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


def _tightest(pairs: list[tuple[int, int]]) -> tuple[int, int] | None:
    """(limit, used) with the fewest remaining; a tie goes to the smaller limit."""
    if not pairs:
        return None
    return min(pairs, key=lambda p: (max(0, p[0] - p[1]), p[0]))


def rate_headers(
    key: Counters, tenant: Counters, *, key_limits: Limits, tenant_limits: Limits, now: float
) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for whichever of key and tenant is tighter."""
    headers: dict[str, str] = {}
    reset = duration(window_reset(now))
    scopes = ((key, key_limits), (tenant, tenant_limits))
    requests = _tightest([(lim.rpm, c.requests) for c, lim in scopes if lim.rpm is not None])
    if requests is not None:
        headers["x-ratelimit-limit-requests"] = str(requests[0])
        headers["x-ratelimit-remaining-requests"] = str(max(0, requests[0] - requests[1]))
        headers["x-ratelimit-reset-requests"] = reset
    tokens = _tightest([(lim.tpm, c.tokens) for c, lim in scopes if lim.tpm is not None])
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
