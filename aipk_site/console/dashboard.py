"""The figures on the console dashboard over a time range (the last hour, day,
week, 30 days, or a custom since/until), over the tenants the viewer may see
(all of them for staff): totals, series per time bucket, errors by type, spend
by tenant and by model, provider health over time and, for staff, what the
providers last said about each credential's limits.

Figures are cached for a few seconds per viewer scope and range: the dashboard
is a page people leave open and reload. Nothing here reads every row of a big
range: totals and series are aggregated per bucket in the database; per-bucket
latency percentiles read the bucket's values when it is small and a systematic
sample (every k-th id) of at most ``SAMPLE_PER_BUCKET`` when it is not, while
the range's headline percentiles are exact (one ordered, offset read each)."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import async_to_sync, sync_to_async
from django.core.cache import cache
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, Mod, TruncDay, TruncHour, TruncMinute
from django.utils import timezone

from aipk_site.infra.time_ranges import RANGE_LABELS, RANGES, parse_moment
from providers_app.models import ApiKey, HealthCheck, OAuthCredential
from providers_app.services.health import latest_provider_checks
from providers_app.services.upstream_limits import (
    LimitWindow,
    ModelLimits,
    acredentials_upstream_limits,
    known_models,
)
from tenants_app.models import UsageRecord, UsageStatus
from tenants_app.selectors import tenants_visible_to

CACHE_SECONDS = 15
REQUESTS_PAGE = "/console/requests/"
SAMPLE_PER_BUCKET = 2000
MAX_CUSTOM_DAYS = 366
TOP_ROWS = 10  # tenants and models listed by spend

_BUCKETS = {
    "minute": (dt.timedelta(minutes=1), TruncMinute),
    "hour": (dt.timedelta(hours=1), TruncHour),
    "day": (dt.timedelta(days=1), TruncDay),
}
_SERVED = (UsageStatus.SUCCESS, UsageStatus.ERROR)


class RangeError(ValueError):
    """A range the dashboard cannot show; its message is meant for the page."""


@dataclass(frozen=True)
class Window:
    name: str  # hour, day, week, month, custom
    start: dt.datetime
    end: dt.datetime
    bucket: str  # minute, hour, day
    since_param: str = ""  # what a custom range was asked with, kept for links
    until_param: str = ""

    @property
    def label(self) -> str:
        return RANGE_LABELS[self.name]

    def params(self) -> dict[str, str]:
        """The range part of a dashboard or requests-page URL."""
        if self.name != "custom":
            return {"range": self.name}
        return {"range": "custom", "since": self.since_param, "until": self.until_param}


def _bucket_for(span: dt.timedelta) -> str:
    if span <= dt.timedelta(hours=3):
        return "minute"
    if span <= dt.timedelta(days=2):
        return "hour"
    return "day"


def parse_window(params: Mapping[str, str], *, now: dt.datetime | None = None) -> Window:
    """The window a dashboard URL asks for; RangeError with a message if it cannot be."""
    now = (now or timezone.now()).astimezone(dt.UTC)
    name = (params.get("range") or "").strip() or (
        "custom" if params.get("since") or params.get("until") else "day"
    )
    if name in RANGES:
        return Window(name, now - RANGES[name], now, _bucket_for(RANGES[name]))
    if name != "custom":
        raise RangeError(f"Unknown range “{name}”: choose hour, day, week, month or custom.")
    since_text, until_text = params.get("since", ""), params.get("until", "")
    if not since_text.strip():
        raise RangeError(
            "A custom range needs a start (since), e.g. 2026-01-31 or 2026-01-31T08:00."
        )
    start = parse_moment(since_text, end_of_day=False)
    if start is None:
        raise RangeError(
            f"“{since_text}” is not a date or time (since): use e.g. 2026-01-31T08:00."
        )
    end = now
    if until_text.strip():
        parsed = parse_moment(until_text, end_of_day=True)
        if parsed is None:
            raise RangeError(f"“{until_text}” is not a date or time (until): use e.g. 2026-01-31.")
        end = parsed
    if end <= start:
        raise RangeError("The end of the range (until) must come after its start (since).")
    if end - start > dt.timedelta(days=MAX_CUSTOM_DAYS):
        raise RangeError(f"A custom range can span at most {MAX_CUSTOM_DAYS} days.")
    return Window(
        "custom", start, end, _bucket_for(end - start), since_text.strip(), until_text.strip()
    )


def requests_link(window: Window | None, **filters: Any) -> str:
    """The requests page (contract: docs/CONSOLE.md) for a window and some filters."""
    params = dict(window.params()) if window is not None else {}
    params.update({name: str(value) for name, value in filters.items() if value not in ("", None)})
    return f"{REQUESTS_PAGE}?{urlencode(params)}"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bucket_link(start: dt.datetime, end: dt.datetime, **filters: Any) -> str:
    params = {"range": "custom", "since": _iso(start), "until": _iso(end)}
    params.update({name: str(value) for name, value in filters.items() if value not in ("", None)})
    return f"{REQUESTS_PAGE}?{urlencode(params)}"


def nearest_rank(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of values already sorted ascending."""
    if not ordered:
        return None
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


def _percentile(rows: QuerySet[UsageRecord], column: str, count: int, fraction: float):
    """The exact nearest-rank percentile in the database on any backend (SQLite has no
    percentile function): one ordered, offset read."""
    if not count:
        return None
    index = max(0, min(count - 1, math.ceil(fraction * count) - 1))
    found = list(rows.order_by(column).values_list(column, flat=True)[index : index + 1])
    return found[0] if found else None


@dataclass(frozen=True)
class Totals:
    requests: int
    errors: int  # the provider or every candidate failed
    refused: int  # admission said no (limits, budget, model not allowed)
    cancelled: int
    prompt_tokens: int
    completion_tokens: int
    spend_usd: Decimal
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None

    @property
    def error_percent(self) -> float | None:
        return None if not self.requests else 100 * self.errors / self.requests

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Bucket:
    start: dt.datetime
    end: dt.datetime
    requests: int = 0
    succeeded: int = 0
    errors: int = 0
    refused: int = 0
    cancelled: int = 0
    served: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend: Decimal = Decimal(0)
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    sampled: bool = False  # percentiles from a sample of the bucket's rows


@dataclass(frozen=True)
class Dashboard:
    window: Window
    totals: Totals
    buckets: list[Bucket]
    errors_by_type: list[dict[str, Any]]  # error_type, status, count
    spend_by_tenant: list[dict[str, Any]]  # slug, name, requests, spend
    spend_by_model: list[dict[str, Any]]  # model, requests, tokens, spend
    providers: list[dict[str, Any]]  # name, pk, healthy (None: never checked), checked_at
    health: dict[int, list[float | None]]  # provider pk -> percent of healthy checks per bucket
    credential_limits: list[dict[str, Any]] = field(default_factory=list)  # staff only


def _totals(rows: QuerySet[UsageRecord]) -> Totals:
    totals = rows.order_by().aggregate(
        requests=Count("id"),
        errors=Count("id", filter=Q(status=UsageStatus.ERROR)),
        refused=Count("id", filter=Q(status=UsageStatus.REFUSED)),
        cancelled=Count("id", filter=Q(status=UsageStatus.CANCELLED)),
        served=Count("id", filter=Q(status__in=_SERVED)),
        streamed=Count("id", filter=Q(status__in=_SERVED, ttft_ms__isnull=False)),
        prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        spend_usd=Sum("cost_usd"),
    )
    # latency means something for requests that reached a provider, not refusals
    served = rows.filter(status__in=_SERVED)
    first_tokens = served.filter(ttft_ms__isnull=False)
    return Totals(
        requests=totals["requests"],
        errors=totals["errors"],
        refused=totals["refused"],
        cancelled=totals["cancelled"],
        prompt_tokens=totals["prompt_tokens"],
        completion_tokens=totals["completion_tokens"],
        spend_usd=totals["spend_usd"] or Decimal(0),
        p50_ms=_percentile(served, "latency_ms", totals["served"], 0.50),
        p95_ms=_percentile(served, "latency_ms", totals["served"], 0.95),
        p99_ms=_percentile(served, "latency_ms", totals["served"], 0.99),
        ttft_p50_ms=_percentile(first_tokens, "ttft_ms", totals["streamed"], 0.50),
        ttft_p95_ms=_percentile(first_tokens, "ttft_ms", totals["streamed"], 0.95),
    )


def _bucket_starts(window: Window) -> list[dt.datetime]:
    step, _ = _BUCKETS[window.bucket]
    first = window.start.replace(second=0, microsecond=0)
    if window.bucket in ("hour", "day"):
        first = first.replace(minute=0)
    if window.bucket == "day":
        first = first.replace(hour=0)
    starts = []
    moment = first
    while moment < window.end:
        starts.append(moment)
        moment += step
    return starts


def _buckets(rows: QuerySet[UsageRecord], window: Window) -> list[Bucket]:
    step, trunc = _BUCKETS[window.bucket]
    buckets = {start: Bucket(start=start, end=start + step) for start in _bucket_starts(window)}
    counted = (
        rows.order_by()
        .annotate(bucket=trunc("created_at", tzinfo=dt.UTC))
        .values("bucket")
        .annotate(
            requests=Count("id"),
            succeeded=Count("id", filter=Q(status=UsageStatus.SUCCESS)),
            errors=Count("id", filter=Q(status=UsageStatus.ERROR)),
            refused=Count("id", filter=Q(status=UsageStatus.REFUSED)),
            cancelled=Count("id", filter=Q(status=UsageStatus.CANCELLED)),
            served=Count("id", filter=Q(status__in=_SERVED)),
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            completion_tokens=Coalesce(Sum("completion_tokens"), 0),
            spend=Sum("cost_usd"),
        )
    )
    for row in counted:
        bucket = buckets.get(row["bucket"])
        if bucket is None:
            continue
        for name in ("requests", "succeeded", "errors", "refused", "cancelled", "served"):
            setattr(bucket, name, row[name])
        bucket.prompt_tokens = row["prompt_tokens"]
        bucket.completion_tokens = row["completion_tokens"]
        bucket.spend = row["spend"] or Decimal(0)
    _bucket_percentiles(rows.filter(status__in=_SERVED), list(buckets.values()), trunc)
    return list(buckets.values())


def _bucket_percentiles(served: QuerySet[UsageRecord], buckets: list[Bucket], trunc) -> None:
    values: dict[dt.datetime, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    small = [b.start for b in buckets if 0 < b.served <= SAMPLE_PER_BUCKET]
    reads: list[QuerySet[UsageRecord]] = []
    if small:
        reads.append(
            served.order_by()
            .annotate(bucket=trunc("created_at", tzinfo=dt.UTC))
            .filter(bucket__in=small)
        )
    for bucket in buckets:
        if bucket.served > SAMPLE_PER_BUCKET:
            # every k-th id: spread over the whole bucket, unlike its first rows
            every = math.ceil(bucket.served / SAMPLE_PER_BUCKET)
            bucket.sampled = True
            reads.append(
                served.order_by()
                .filter(created_at__gte=bucket.start, created_at__lt=bucket.end)
                .annotate(bucket=trunc("created_at", tzinfo=dt.UTC), pick=Mod("id", every))
                .filter(pick=0)
            )
    for read in reads:
        for start, latency, ttft in read.values_list("bucket", "latency_ms", "ttft_ms"):
            latencies, first_tokens = values[start]
            latencies.append(latency)
            if ttft is not None:
                first_tokens.append(ttft)
    for bucket in buckets:
        if bucket.start not in values:
            continue
        latencies, first_tokens = (sorted(v) for v in values[bucket.start])
        bucket.p50_ms = nearest_rank(latencies, 0.50)
        bucket.p95_ms = nearest_rank(latencies, 0.95)
        bucket.p99_ms = nearest_rank(latencies, 0.99)
        bucket.ttft_p50_ms = nearest_rank(first_tokens, 0.50)
        bucket.ttft_p95_ms = nearest_rank(first_tokens, 0.95)


def _errors_by_type(rows: QuerySet[UsageRecord]) -> list[dict[str, Any]]:
    counted = (
        rows.order_by()
        .exclude(status=UsageStatus.SUCCESS)
        .values("error_type", "status")
        .annotate(count=Count("id"))
        .order_by("-count", "error_type")
    )
    return [
        {"error_type": row["error_type"], "status": row["status"], "count": row["count"]}
        for row in counted
    ]


def _spend_by_tenant(rows: QuerySet[UsageRecord]) -> list[dict[str, Any]]:
    counted = (
        rows.order_by()
        .values("tenant__slug", "tenant__name")
        .annotate(requests=Count("id"), spend=Coalesce(Sum("cost_usd"), Decimal(0)))
        .order_by("-spend", "-requests", "tenant__slug")[:TOP_ROWS]
    )
    return [
        {
            "slug": row["tenant__slug"],
            "name": row["tenant__name"],
            "requests": row["requests"],
            "spend": row["spend"],
        }
        for row in counted
    ]


def _spend_by_model(rows: QuerySet[UsageRecord]) -> list[dict[str, Any]]:
    counted = (
        rows.order_by()
        .exclude(model="")
        .values("model")
        .annotate(
            requests=Count("id"),
            tokens=Coalesce(Sum("prompt_tokens"), 0) + Coalesce(Sum("completion_tokens"), 0),
            spend=Coalesce(Sum("cost_usd"), Decimal(0)),
        )
        .order_by("-spend", "-requests", "model")[:TOP_ROWS]
    )
    return [dict(row) for row in counted]


def _health(window: Window, providers: list[dict[str, Any]]) -> dict[int, list[float | None]]:
    """Per provider, the share of its own (not per-credential) health checks that
    passed in each bucket; None where it was not checked."""
    _, trunc = _BUCKETS[window.bucket]
    starts = _bucket_starts(window)
    counted = (
        HealthCheck.objects.filter(
            provider_id__in=[p["pk"] for p in providers],
            api_key__isnull=True,
            oauth_credential__isnull=True,
            checked_at__gte=window.start,
            checked_at__lte=window.end,
        )
        .order_by()
        .annotate(bucket=trunc("checked_at", tzinfo=dt.UTC))
        .values("provider_id", "bucket")
        .annotate(checks=Count("id"), healthy=Count("id", filter=Q(healthy=True)))
    )
    shares: dict[tuple[int, dt.datetime], float] = {
        (row["provider_id"], row["bucket"]): 100 * row["healthy"] / row["checks"] for row in counted
    }
    return {p["pk"]: [shares.get((p["pk"], start)) for start in starts] for p in providers}


async def _alimits_of(
    credentials: list[ApiKey] | list[OAuthCredential],
) -> list[tuple[Any, list[ModelLimits]]]:
    by_provider: dict[int, list[Any]] = defaultdict(list)
    for credential in credentials:
        by_provider[credential.provider_id].append(credential)
    found: list[tuple[Any, list[ModelLimits]]] = []
    for same_provider in by_provider.values():
        provider = same_provider[0].provider
        models = await sync_to_async(known_models)(provider)
        limits = await acredentials_upstream_limits(provider, same_provider, models)
        found.extend((credential, limits.get(credential.pk, [])) for credential in same_provider)
    return found


def _credential_limits() -> list[dict[str, Any]]:
    """Each usable credential's last known upstream limits (what the credentials API
    returns for keys), one row per model and window. Labels and last four only."""
    keys = list(
        ApiKey.objects.exclude(state=ApiKey.State.RETIRED)
        .select_related("provider")
        .order_by("provider__name", "label")
    )
    accounts = list(
        OAuthCredential.objects.exclude(state=OAuthCredential.State.REVOKED)
        .select_related("provider")
        .order_by("provider__name", "account_label")
    )
    found = async_to_sync(_alimits_of)(keys) + async_to_sync(_alimits_of)(accounts)
    rows = []
    for credential, entries in found:
        label = getattr(credential, "label", "") or getattr(credential, "account_label", "")
        name = f"{label} ····{credential.last4}" if credential.last4 else label
        for entry in entries:
            windows: list[LimitWindow | None] = list(entry.windows) or [None]
            for window in windows:
                rows.append(
                    {
                        "provider": credential.provider.name,
                        "provider_pk": credential.provider_id,
                        "key": name,
                        "model": entry.model,
                        "window": window.name if window else "",
                        "limit": window.limit if window else None,
                        "remaining": window.remaining if window else None,
                        "resets_at": window.resets_at if window else None,
                        "retry_after_until": entry.retry_after_until,
                    }
                )
    rows.sort(key=lambda row: (row["provider"], row["key"], row["model"], row["window"]))
    return rows


def dashboard_for(user: Any, window: Window) -> Dashboard:
    """The dashboard over the tenants ``user`` may see (every tenant for staff)."""
    scope_name = "staff" if user.is_staff else f"user:{user.pk}"
    cache_key = "console:dashboard:{}:{}".format(
        scope_name, ":".join(f"{k}={v}" for k, v in sorted(window.params().items()))
    )
    cached = cache.get(cache_key)
    if cached is not None:
        return cached

    scope = UsageRecord.objects.all()
    if not user.is_staff:
        scope = scope.filter(tenant__in=tenants_visible_to(user))
    rows = scope.filter(created_at__gte=window.start, created_at__lte=window.end)
    providers = [
        {"name": name, "pk": pk, "healthy": healthy, "checked_at": checked_at}
        for name, pk, healthy, checked_at in latest_provider_checks()
    ]
    board = Dashboard(
        window=window,
        totals=_totals(rows),
        buckets=_buckets(rows, window),
        errors_by_type=_errors_by_type(rows),
        spend_by_tenant=_spend_by_tenant(rows),
        spend_by_model=_spend_by_model(rows),
        providers=providers,
        health=_health(window, providers),
        credential_limits=_credential_limits() if user.is_staff else [],
    )
    cache.set(cache_key, board, CACHE_SECONDS)
    return board
