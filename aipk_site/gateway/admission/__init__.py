"""Admission: per key and per tenant RPM, TPM, concurrent streams and monthly budget.

The gateway calls ``admit`` before it sends a request upstream and ``settle``
(in a ``finally``) once it knows what the request really used:

- ``admit`` reserves one request, the estimated tokens and the estimated cost
  on the key's and the tenant's counters -- and a stream slot where a
  concurrency limit applies -- all or nothing, atomically across every
  process sharing the cache (``rules.admit_step``). A refusal
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

Reservations and stream slots are leases (``rules``): each
expires ``ADMISSION_LEASE_SECONDS`` after admission, and the next admit or
usage read in its scope gives back what an expired one holds -- so a killed
process's reservations and stream slots return without an admin. Set the
lease at least as long as the longest request (the providers' total
deadlines); a request that outlives its lease is still charged its whole real
cost when it settles, but its hold was released early.

The arithmetic is ``rules``; the cache keys and their lifetimes
``keys``; the stores that hold the counters ``store``
(local memory, and the choice) and ``redis_store``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Sum

from aipk_site.gateway.admission import rules as rules
from aipk_site.gateway.admission.keys import (
    AdmissionKeys,
    AdmitRequest,
    SettleRequest,
    lease_floor,
    lease_member,
)
from aipk_site.gateway.admission.rules import Limits
from aipk_site.gateway.admission.store import admission_store
from aipk_site.infra.errors import LimitExceeded
from tenants_app.models import UsageRecord

__all__ = ["Admission", "Limits", "admit", "settle", "settle_later", "usage_now"]

# The time source; tests replace it to step through windows and months.
clock: Callable[[], float] = time.time
logger = logging.getLogger(__name__)


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

    @property
    def lease_member(self) -> str:
        """The lease's member in the Redis lease sets: settle removes exactly this."""
        return lease_member(self.request_id, self.cost_micro, self.month)


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
    lease_seconds: float | None = None,
) -> Admission:
    """Reserve the request on the key and its tenant, or raise ``LimitExceeded``.

    The reservation (and stream slot) is a lease of ``lease_seconds`` -- never less
    than ``ADMISSION_LEASE_SECONDS`` -- after which it is reclaimed if never settled:
    give at least the request's own total deadline."""
    if estimated_tokens < 0 or estimated_cost_micro < 0:
        raise ValueError("estimates cannot be negative")
    lease = max(lease_floor(), float(lease_seconds or 0))
    now = clock()
    window, month = rules.window_id(now), rules.month_id(now)
    req = AdmitRequest(
        keys=AdmissionKeys.of(tenant_id=tenant_id, key_id=key_id, window=window, month=month),
        window=window,
        month=month,
        key_limits=key_limits,
        tenant_limits=tenant_limits,
        request_id=request_id,
        tokens=int(estimated_tokens),
        cost=int(estimated_cost_micro),
        stream=stream,
        now=now,
        lease=lease,
    )
    store = admission_store()
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
    real_cost = max(0, int(cost_micro))
    await admission_store().settle(
        SettleRequest(
            keys=AdmissionKeys.of(
                tenant_id=admission.tenant_id,
                key_id=admission.key_id,
                window=admission.window,
                month=admission.month,
            ),
            window=admission.window,
            month=admission.month,
            admitted_at=admission.admitted_at,
            same_window=rules.window_id(now) == admission.window,
            request_id=admission.request_id,
            token_delta=max(0, int(tokens)) - admission.tokens,
            cost_delta=real_cost - admission.cost_micro,
            real_cost=real_cost,
            now=now,
        )
    )
    admission.settled = True


# A settle that failed (Redis lost as a request ended) is tried again from this process,
# after these waits and then every last one, for SETTLE_RETRY_HORIZON_SECONDS. Without
# it the real cost would never reach the counters: once the lease expired its reservation
# would be reclaimed and the request would count for nothing against the budget.
SETTLE_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
SETTLE_RETRY_HORIZON_SECONDS = 3600.0
_settles_pending: set[asyncio.Task[None]] = set()


def settle_later(admission: Admission, *, tokens: int, cost_micro: int) -> None:
    """Retry ``settle`` in the background until the store answers again.

    A settle that lands after its lease was reclaimed charges the whole real cost (see
    ``settle``), so retrying late is always safe; a restarted Redis seeds the month from
    the usage rows instead, and this settle then adds the cost once more -- an
    over-count that refuses early, never one that lets money past the budget."""

    async def retry() -> None:
        deadline = time.monotonic() + SETTLE_RETRY_HORIZON_SECONDS
        attempt = 0
        while True:
            await asyncio.sleep(SETTLE_RETRY_DELAYS[min(attempt, len(SETTLE_RETRY_DELAYS) - 1)])
            attempt += 1
            try:
                await settle(admission, tokens=tokens, cost_micro=cost_micro)
            except Exception as error:  # noqa: BLE001 -- still unreachable: wait and retry
                if time.monotonic() < deadline:
                    continue
                logger.warning(
                    "admission: gave up settling request %s after %d tries (%s)",
                    admission.request_id,
                    attempt,
                    type(error).__name__,
                )
                return
            logger.info(
                "admission: settled request %s after %d retries", admission.request_id, attempt
            )
            return

    task = asyncio.get_running_loop().create_task(retry())
    _settles_pending.add(task)  # a strong reference until it ends
    task.add_done_callback(_settles_pending.discard)


async def usage_now(*, key_id: int | None, tenant_id: int) -> dict[str, Any]:
    """This window's requests and tokens, the month's spend and running streams.

    ``{"window_resets_in", "month", "month_resets_in", "key", "tenant"}``, each
    scope ``{"requests", "tokens", "spend_micro_usd", "streams"}`` (``key`` is
    None when no key was asked for). A month the cache has lost is read from
    the usage records. Streams are counted only where a concurrency limit applies.
    Expired leases are reclaimed first, so what a killed process held is not shown.
    """
    now = clock()
    month = rules.month_id(now)
    keys = AdmissionKeys.of(
        tenant_id=tenant_id, key_id=key_id, window=rules.window_id(now), month=month
    )
    values = await admission_store().read(keys, now=now, month=month)
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
