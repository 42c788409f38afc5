"""The figures on the console dashboard: requests, errors, latency, tokens and
spend, today and this month, over the tenants the viewer may see (all of them
for staff), plus provider health at a glance.

Figures are cached for a few seconds per viewer scope: the dashboard is a page
people leave open and reload, and the month's latency percentiles sort that
month's rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDay, TruncHour
from django.utils import timezone

from providers_app.services.health import latest_provider_checks
from tenants_app.models import UsageRecord, UsageStatus
from tenants_app.selectors import tenants_visible_to

CACHE_SECONDS = 15


@dataclass(frozen=True)
class PeriodFigures:
    requests: int
    errors: int  # the provider or every candidate failed
    refused: int  # admission said no (limits, budget, model not allowed)
    cancelled: int
    prompt_tokens: int
    completion_tokens: int
    spend_usd: Decimal
    p50_ms: float | None
    p95_ms: float | None

    @property
    def error_percent(self) -> float | None:
        return None if not self.requests else 100 * self.errors / self.requests

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Dashboard:
    today: PeriodFigures
    month: PeriodFigures
    hours: list[dict[str, Any]]  # today, one row per hour: label, success, failed
    days: list[dict[str, Any]]  # this month, one row per day: label, requests, tokens, spend
    providers: list[dict[str, Any]]  # name, pk, healthy (None: never checked), checked_at


def _percentile(rows: QuerySet[UsageRecord], count: int, fraction: float) -> float | None:
    """The nearest-rank percentile of latency, in the database on any backend
    (SQLite has no percentile function): one ordered, offset read."""
    if not count:
        return None
    index = max(0, min(count - 1, round(fraction * count + 0.5) - 1))
    value = rows.order_by("latency_ms").values_list("latency_ms", flat=True)[index : index + 1]
    found = list(value)
    return found[0] if found else None


def _figures(rows: QuerySet[UsageRecord]) -> PeriodFigures:
    totals = rows.order_by().aggregate(
        requests=Count("id"),
        errors=Count("id", filter=Q(status=UsageStatus.ERROR)),
        refused=Count("id", filter=Q(status=UsageStatus.REFUSED)),
        cancelled=Count("id", filter=Q(status=UsageStatus.CANCELLED)),
        prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        spend_usd=Sum("cost_usd"),
    )
    # latency means something for requests that reached a provider, not refusals
    served = rows.filter(status__in=[UsageStatus.SUCCESS, UsageStatus.ERROR])
    served_count = served.count()
    return PeriodFigures(
        requests=totals["requests"],
        errors=totals["errors"],
        refused=totals["refused"],
        cancelled=totals["cancelled"],
        prompt_tokens=totals["prompt_tokens"],
        completion_tokens=totals["completion_tokens"],
        spend_usd=totals["spend_usd"] or Decimal(0),
        p50_ms=_percentile(served, served_count, 0.50),
        p95_ms=_percentile(served, served_count, 0.95),
    )


def _hours(rows: QuerySet[UsageRecord], day_start: dt.datetime) -> list[dict[str, Any]]:
    counted = {
        row["hour"]: row
        for row in rows.order_by()
        .annotate(hour=TruncHour("created_at", tzinfo=dt.UTC))
        .values("hour")
        .annotate(
            success=Count("id", filter=Q(status=UsageStatus.SUCCESS)),
            failed=Count("id", filter=~Q(status=UsageStatus.SUCCESS)),
        )
    }
    hours = []
    for offset in range(24):
        hour = day_start + dt.timedelta(hours=offset)
        row = counted.get(hour, {})
        hours.append(
            {
                "label": f"{hour:%H}h",
                "success": row.get("success", 0),
                "failed": row.get("failed", 0),
            }
        )
    return hours


def _days(rows: QuerySet[UsageRecord], month_start: dt.datetime, today: dt.date):
    counted = {
        row["day"].date(): row
        for row in rows.order_by()
        .annotate(day=TruncDay("created_at", tzinfo=dt.UTC))
        .values("day")
        .annotate(
            requests=Count("id"),
            tokens=Coalesce(Sum("prompt_tokens"), 0) + Coalesce(Sum("completion_tokens"), 0),
            spend=Sum("cost_usd"),
        )
    }
    days = []
    day = month_start.date()
    while day <= today:
        row = counted.get(day, {})
        days.append(
            {
                "label": f"{day:%d}",
                "requests": row.get("requests", 0),
                "tokens": row.get("tokens", 0),
                "spend": row.get("spend") or Decimal(0),
            }
        )
        day += dt.timedelta(days=1)
    return days


def dashboard_for(user: Any, *, now: dt.datetime | None = None) -> Dashboard:
    """The dashboard over the tenants ``user`` may see (every tenant for staff)."""
    now = (now or timezone.now()).astimezone(dt.UTC)
    scope_name = "staff" if user.is_staff else f"user:{user.pk}"
    cache_key = f"console:dashboard:{scope_name}:{now:%Y%m%d%H}"
    cached = cache.get(cache_key)
    if cached is not None:
        return cached

    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    scope = UsageRecord.objects.all()
    if not user.is_staff:
        scope = scope.filter(tenant__in=tenants_visible_to(user))
    month_rows = scope.filter(created_at__gte=month_start, created_at__lte=now)
    today_rows = month_rows.filter(created_at__gte=day_start)
    board = Dashboard(
        today=_figures(today_rows),
        month=_figures(month_rows),
        hours=_hours(today_rows, day_start),
        days=_days(month_rows, month_start, now.date()),
        providers=[
            {"name": name, "pk": pk, "healthy": healthy, "checked_at": checked_at}
            for name, pk, healthy, checked_at in latest_provider_checks()
        ],
    )
    cache.set(cache_key, board, CACHE_SECONDS)
    return board
