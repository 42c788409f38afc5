"""The dashboard's charts as data (tenants_app/console/charts.py: drawn by
static/console/charts.js, printed as a table too). Every point carries the link to
the requests page it stands for (the drill-down), and a full title for tooltips."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from aipk_site.console.dashboard import Bucket, Dashboard, bucket_link, requests_link
from tenants_app.console.charts import Number, chart


def _bucket_label(start: dt.datetime, bucket: str, span: dt.timedelta) -> str:
    # labels stay unique over the range they are used for (no repeated ticks)
    if bucket == "minute":
        return f"{start:%H:%M}"
    if bucket == "hour":
        return f"{start:%a %H:00}"
    return f"{start:%Y-%m-%d}" if span > dt.timedelta(days=300) else f"{start:%b %d}"


def _bucket_title(bucket: Bucket, unit: str) -> str:
    if unit == "day":
        return f"{bucket.start:%Y-%m-%d} (UTC)"
    return f"{bucket.start:%Y-%m-%d %H:%M}–{bucket.end:%H:%M} UTC"


def _over_time(
    board: Dashboard,
    chart_id: str,
    title: str,
    *,
    kind: str,
    unit: str,
    series: list[tuple[str, str, Callable[[Bucket], Number]]],
    stacked: bool = False,
    link_filters: dict[str, str] | None = None,
) -> dict[str, Any]:
    window = board.window
    span = window.end - window.start
    return chart(
        chart_id,
        title,
        kind=kind,
        unit=unit,
        stacked=stacked,
        labels=[_bucket_label(b.start, window.bucket, span) for b in board.buckets],
        titles=[_bucket_title(b, window.bucket) for b in board.buckets],
        links=[bucket_link(b.start, b.end, **(link_filters or {})) for b in board.buckets],
        series=[(name, color, [pick(b) for b in board.buckets]) for name, color, pick in series],
    )


def dashboard_charts(board: Dashboard) -> list[dict[str, Any]]:
    window = board.window
    charts = [
        _over_time(
            board,
            "requests",
            "Requests",
            kind="bar",
            unit="count",
            stacked=True,
            series=[
                ("succeeded", "ok", lambda b: b.succeeded),
                ("errors", "bad", lambda b: b.errors),
                ("refused", "warn", lambda b: b.refused),
                ("cancelled", "muted", lambda b: b.cancelled),
            ],
        ),
        _over_time(
            board,
            "latency",
            "Latency (served requests)",
            kind="line",
            unit="ms",
            series=[
                ("p50", "chart-1", lambda b: b.p50_ms),
                ("p95", "chart-2", lambda b: b.p95_ms),
                ("p99", "chart-3", lambda b: b.p99_ms),
            ],
        ),
        _over_time(
            board,
            "ttft",
            "Time to first token (streamed)",
            kind="line",
            unit="ms",
            series=[
                ("p50", "chart-1", lambda b: b.ttft_p50_ms),
                ("p95", "chart-2", lambda b: b.ttft_p95_ms),
            ],
        ),
        _over_time(
            board,
            "spend",
            "Spend (USD)",
            kind="bar",
            unit="usd",
            series=[("spend", "accent", lambda b: b.spend)],
        ),
        _over_time(
            board,
            "tokens",
            "Tokens",
            kind="bar",
            unit="tokens",
            stacked=True,
            series=[
                ("prompt", "chart-1", lambda b: b.prompt_tokens),
                ("completion", "chart-4", lambda b: b.completion_tokens),
            ],
        ),
    ]
    errors = board.errors_by_type
    charts.append(
        chart(
            "errors",
            "Failures by type",
            kind="bar",
            unit="count",
            horizontal=True,
            labels=[f"{e['error_type'] or '(no type)'} · {e['status']}" for e in errors],
            titles=[f"{e['error_type'] or '(no type)'} · {e['status']}" for e in errors],
            links=[
                requests_link(window, status=e["status"], error_type=e["error_type"])
                for e in errors
            ],
            series=[("requests", "bad", [e["count"] for e in errors])],
        )
    )
    tenants = board.spend_by_tenant
    charts.append(
        chart(
            "by-tenant",
            "Spend by tenant (USD)",
            kind="bar",
            unit="usd",
            horizontal=True,
            labels=[t["name"] for t in tenants],
            titles=[f"{t['name']} ({t['slug']}) · {t['requests']:,} requests" for t in tenants],
            links=[requests_link(window, tenant=t["slug"]) for t in tenants],
            series=[("spend", "accent", [t["spend"] for t in tenants])],
        )
    )
    models = board.spend_by_model
    charts.append(
        chart(
            "by-model",
            "Spend by model (USD)",
            kind="bar",
            unit="usd",
            horizontal=True,
            labels=[m["model"] for m in models],
            titles=[f"{m['model']} · {m['requests']:,} requests" for m in models],
            links=[requests_link(window, model=m["model"]) for m in models],
            series=[("spend", "chart-2", [m["spend"] for m in models])],
        )
    )
    if board.providers:
        span = window.end - window.start
        colors = ["chart-1", "chart-2", "chart-3", "chart-4", "chart-5", "chart-6"]
        charts.append(
            chart(
                "health",
                "Provider health (share of checks passed)",
                kind="line",
                unit="percent",
                labels=[_bucket_label(b.start, window.bucket, span) for b in board.buckets],
                titles=[_bucket_title(b, window.bucket) for b in board.buckets],
                # a health point drills into that window's requests on that provider only
                # from the provider's own row in the table; a point spans every provider
                links=[bucket_link(b.start, b.end) for b in board.buckets],
                series=[
                    (p["name"], colors[index % len(colors)], board.health.get(p["pk"], []))
                    for index, p in enumerate(board.providers)
                ],
            )
        )
    return charts
