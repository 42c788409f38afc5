"""Turning what happened into alerts.

Budget thresholds (50, 80 and 100 % of a key's or a tenant's monthly budget) are
detected in the gateway's usage writer, after each batch of usage rows is stored
(``budget_spend_observe``, called from aipk_site/gateway/usage): that runs in the
writer's own thread, off the event loop, so the /v1 request path gains no query, no
blocking call and no thread hop. Settle-time detection would need the month's spend on
the loop and a hop to enqueue; the batch already holds each request's cost. Per batch the
watch costs no query at all in the steady state: budgets and the month's spend are read
from the database at most once per ALERT_BUDGET_RESYNC_SECONDS per key or tenant (the
spend from the usage records, so every process's requests count), and in between this
process's own stored costs are added in memory. A crossing is announced once per
threshold per month: in memory, then ``cache.add`` across processes, then the delivery
rows' unique (channel, occurrence) in the database.

The other events come from providers_app's signals (a credential needing
re-authorisation, a provider degraded or recovered; providers_app/announcements.py) and
from a periodic scan for key rotations whose grace period ends soon.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone

from providers_app.announcements import credential_needs_reauth, provider_status_changed
from providers_app.models import ApiKey, OAuthCredential, Provider
from tenants_app.models import AlertKind, Tenant, UsageRecord, VirtualKey
from tenants_app.services.alerts.raising import alert_raise

logger = logging.getLogger(__name__)

THRESHOLDS = (50, 80, 100)
MICRO = Decimal(1_000_000)
ANNOUNCED_CACHE_SECONDS = 40 * 24 * 3600  # longer than any month


def _resync_seconds() -> float:
    return float(getattr(settings, "ALERT_BUDGET_RESYNC_SECONDS", 30.0))


def _month(now: dt.datetime) -> tuple[str, dt.datetime, dt.datetime]:
    start = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m"), start, end


@dataclass
class _Scope:
    """One key's or tenant's budget and spend, as this process last knows them."""

    budget_micro: int  # 0: no budget
    read_at: float
    month: str = ""
    spend_micro: int = 0
    spend_read_at: float = 0.0
    tenant_id: int | None = None
    label: str = ""


class BudgetWatch:
    """Per process; every method may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: dict[tuple[str, int], _Scope] = {}
        self._announced: set[str] = set()
        self._month = ""

    def reset(self) -> None:
        with self._lock:
            self._scopes.clear()
            self._announced.clear()

    def observe(self, rows: Iterable[dict[str, Any]]) -> int:
        costs: dict[tuple[str, int], int] = {}
        for row in rows:
            cost = row.get("cost_usd") or 0
            if not cost:
                continue
            micro = int(Decimal(cost) * MICRO)
            if row.get("virtual_key_id") is not None:
                key = ("key", row["virtual_key_id"])
                costs[key] = costs.get(key, 0) + micro
            scope = ("tenant", row["tenant_id"])
            costs[scope] = costs.get(scope, 0) + micro
        if not costs:
            return 0
        with self._lock:
            return self._check(costs)

    def _check(self, costs: dict[tuple[str, int], int]) -> int:
        now = time.monotonic()
        month, start, end = _month(timezone.now())
        if month != self._month:  # last month's crossings can no longer happen
            self._announced.clear()
            self._month = month
        self._load_budgets([s for s in costs if self._stale(s, now)], now)
        raised = 0
        for scope_id, cost in costs.items():
            scope = self._scopes.get(scope_id)
            if scope is None or scope.budget_micro <= 0:
                continue
            if scope.month != month or now - scope.spend_read_at >= _resync_seconds():
                # the stored rows of every process, this batch's included
                scope.spend_micro = self._recorded(scope_id, start, end)
                scope.month, scope.spend_read_at = month, now
            else:
                scope.spend_micro += cost
            raised += self._announce(scope_id, scope, month)
        return raised

    def _stale(self, scope_id: tuple[str, int], now: float) -> bool:
        scope = self._scopes.get(scope_id)
        return scope is None or now - scope.read_at >= _resync_seconds()

    def _load_budgets(self, scope_ids: list[tuple[str, int]], now: float) -> None:
        key_ids = [i for kind, i in scope_ids if kind == "key"]
        tenant_ids = [i for kind, i in scope_ids if kind == "tenant"]
        found: dict[tuple[str, int], tuple[Decimal | None, int | None, str]] = {}
        if key_ids:
            for pk, budget, tenant_id, name, prefix in VirtualKey.objects.filter(
                pk__in=key_ids
            ).values_list("pk", "monthly_budget_usd", "tenant_id", "name", "prefix"):
                found[("key", pk)] = (budget, tenant_id, f"{name} ({prefix}…)")
        if tenant_ids:
            for pk, budget, slug in Tenant.objects.filter(pk__in=tenant_ids).values_list(
                "pk", "monthly_budget_usd", "slug"
            ):
                found[("tenant", pk)] = (budget, pk, slug)
        for scope_id in scope_ids:
            budget, tenant_id, label = found.get(scope_id, (None, None, ""))
            micro = int(Decimal(budget) * MICRO) if budget else 0
            old = self._scopes.get(scope_id)
            if old is not None and old.budget_micro == micro:
                old.read_at = now
                continue
            # a new or changed budget: its spend is read again below
            self._scopes[scope_id] = _Scope(
                budget_micro=micro, read_at=now, tenant_id=tenant_id, label=label
            )

    @staticmethod
    def _recorded(scope_id: tuple[str, int], start: dt.datetime, end: dt.datetime) -> int:
        kind, pk = scope_id
        rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        rows = rows.filter(virtual_key_id=pk) if kind == "key" else rows.filter(tenant_id=pk)
        total = rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
        return int(Decimal(total) * MICRO)

    def _announce(self, scope_id: tuple[str, int], scope: _Scope, month: str) -> int:
        kind, pk = scope_id
        raised = 0
        for threshold in THRESHOLDS:
            if scope.spend_micro * 100 < scope.budget_micro * threshold:
                break
            occurrence = f"budget:{kind}:{pk}:{month}:{threshold}"
            if occurrence in self._announced:
                continue
            self._announced.add(occurrence)
            if not cache.add(f"aipk:alert:{occurrence}", 1, timeout=ANNOUNCED_CACHE_SECONDS):
                continue  # another process announced it
            tenant = Tenant.objects.filter(pk=scope.tenant_id).first()
            if tenant is None:
                continue
            spent, budget = Decimal(scope.spend_micro) / MICRO, Decimal(scope.budget_micro) / MICRO
            what = f"key {scope.label}" if kind == "key" else f"tenant {tenant.slug}"
            alert_raise(
                kind=AlertKind.BUDGET_THRESHOLD,
                subject=f"{what} has used {threshold}% of its {month} budget "
                f"(${spent:.2f} of ${budget:.2f})",
                payload={
                    "scope": kind,
                    "key": scope.label if kind == "key" else None,
                    "tenant": tenant.slug,
                    "threshold_percent": threshold,
                    "spent_usd": f"{spent:.4f}",
                    "budget_usd": f"{budget:.4f}",
                    "month": month,
                },
                dedup_key=occurrence,
                tenant=tenant,
            )
            raised += 1
        return raised


_watch = BudgetWatch()


def budget_spend_observe(rows: Iterable[dict[str, Any]]) -> int:
    """After a batch of usage rows is stored: announce the budget thresholds it crossed;
    returns how many. Never raises: alerting must not cost a usage row."""
    try:
        return _watch.observe(rows)
    except Exception:  # noqa: BLE001 -- logged; the next batch tries again
        logger.exception("alerts: budget check failed")
        return 0


def budget_watch_reset() -> None:
    """Forget what this process knows (tests, whose ids restart with each database)."""
    _watch.reset()


# -- key rotations ----------------------------------------------------------------------


def rotation_grace_alerts(*, now: dt.datetime | None = None) -> int:
    """Alert for every rotated API key whose grace period ends within
    ALERT_GRACE_WARNING_HOURS (once per rotation); returns how many were announced."""
    now = now or timezone.now()
    within = dt.timedelta(hours=float(getattr(settings, "ALERT_GRACE_WARNING_HOURS", 24)))
    keys = (
        ApiKey.objects.select_related("provider", "tenant")
        .filter(retire_at__gt=now, retire_at__lte=now + within)
        .exclude(state=ApiKey.State.RETIRED)
    )
    announced = 0
    for key in keys:
        assert key.retire_at is not None
        hours = (key.retire_at - now).total_seconds() / 3600
        created = alert_raise(
            kind=AlertKind.ROTATION_GRACE_ENDING,
            subject=f"API key {key.label!r} (…{key.last4}) of {key.provider.name} was rotated "
            f"and stops serving in {hours:.1f} h",
            payload={
                "provider": key.provider.name,
                "credential": f"key:{key.pk}",
                "label": key.label,
                "last4": key.last4,
                "retire_at": key.retire_at.isoformat(),
            },
            dedup_key=f"grace:key:{key.pk}:{key.retire_at.isoformat()}",
            tenant=key.tenant,
        )
        announced += bool(created)
    return announced


# -- providers_app's announcements ------------------------------------------------------


def _on_credential_needs_reauth(sender: Any, credential: OAuthCredential, **kwargs: Any) -> None:
    provider = credential.provider
    alert_raise(
        kind=AlertKind.CREDENTIAL_REAUTH,
        subject=f"OAuth account {credential.account_label!r} (…{credential.last4}) of "
        f"{provider.name} needs re-authorisation",
        payload={
            "provider": provider.name,
            "credential": f"oauth:{credential.pk}",
            "account_label": credential.account_label,
            "last4": credential.last4,
            "error": credential.last_refresh_error,
        },
        dedup_key=f"reauth:oauth:{credential.pk}:{timezone.now():%Y%m%dT%H%M%S.%f}",
        tenant=Tenant.objects.filter(pk=credential.tenant_id).first(),
    )


def _on_provider_status_changed(
    sender: Any, provider: Provider, degraded: bool, reason: str, **kwargs: Any
) -> None:
    # the tenants holding a credential of their own on this provider hear of it too
    owners = set(
        ApiKey.objects.filter(provider_id=provider.pk, tenant__isnull=False).values_list(
            "tenant_id", flat=True
        )
    ) | set(
        OAuthCredential.objects.filter(provider_id=provider.pk, tenant__isnull=False).values_list(
            "tenant_id", flat=True
        )
    )
    state = "degraded" if degraded else "recovered"
    alert_raise(
        kind=AlertKind.PROVIDER_DEGRADED if degraded else AlertKind.PROVIDER_RECOVERED,
        subject=f"provider {provider.name} is {state}: {reason}",
        payload={"provider": provider.name, "state": state, "reason": reason},
        dedup_key=f"provider:{provider.pk}:{state}:{timezone.now():%Y%m%dT%H%M%S.%f}",
        also_tenant_ids=owners,
    )


def connect() -> None:
    """Listen to providers_app (called from the app's ``ready``)."""
    credential_needs_reauth.connect(_on_credential_needs_reauth, dispatch_uid="aipk-alerts-reauth")
    provider_status_changed.connect(
        _on_provider_status_changed, dispatch_uid="aipk-alerts-provider-status"
    )
