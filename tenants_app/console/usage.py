"""A tenant's usage tab: charts per day and tables per model, provider and key, for
whole UTC days (this month so far by default), with the API's CSV export."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from tenants_app import selectors
from tenants_app.console import charts
from tenants_app.console.access import console_tenant, console_view
from tenants_app.console.pages import INVALID, tab_page
from tenants_app.console_forms import UsageRangeForm


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


# the requests page (aipk_site/console, docs/CONSOLE.md): a day's bar opens that day's
# requests of this tenant
REQUESTS_PAGE = "/console/requests/"


def _usage_charts(
    slug: str, by_day: list[dict[str, Any]], start: dt.date, end: dt.date
) -> list[dict[str, Any]]:
    """One bar per day of the range, days without usage at zero."""
    rows = {row["group"]: row for row in by_day}
    days = _days(start, end)
    # "Nov 1", "2", "3"…: the month only where it starts, so 31 labels fit under the bars
    labels = [
        f"{day:%b} {day.day}" if day.day == 1 or day == start else str(day.day) for day in days
    ]
    titles = [f"{day:%Y-%m-%d} (UTC)" for day in days]
    links = [
        f"{REQUESTS_PAGE}?{urlencode({'range': 'custom', 'since': d, 'until': d, 'tenant': slug})}"
        for d in days
    ]
    empty = {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0}
    per_day = [rows.get(day.isoformat(), empty) for day in days]
    common: dict[str, Any] = {"kind": "bar", "labels": labels, "titles": titles, "links": links}
    return [
        charts.chart(
            "usage-requests",
            "Requests per day",
            unit="count",
            stacked=True,
            series=[
                ("ok", "ok", [r["requests"] - r["errors"] for r in per_day]),
                ("error", "bad", [r["errors"] for r in per_day]),
            ],
            **common,
        ),
        charts.chart(
            "usage-tokens",
            "Tokens per day",
            unit="tokens",
            stacked=True,
            series=[
                ("prompt", "chart-1", [r["prompt_tokens"] for r in per_day]),
                ("completion", "chart-4", [r["completion_tokens"] for r in per_day]),
            ],
            **common,
        ),
        charts.chart(
            "usage-spend",
            "Spend per day (USD)",
            unit="usd",
            series=[("spend", "accent", [r["cost_usd"] for r in per_day])],
            **common,
        ),
    ]


@console_view
def tenant_usage(request: HttpRequest, slug: str) -> HttpResponse:
    """Charts and tables for whole UTC days from..to (default: this month so far)."""
    access = console_tenant(request, slug)
    form = UsageRangeForm(request.GET)
    if not form.is_valid():
        return tab_page(request, access, "usage", {"form": form}, status=INVALID)
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    tenant = access.tenant

    def summary(group_by: selectors.UsageGroup) -> list[dict[str, Any]]:
        return selectors.usage_summary(tenant=tenant, group_by=group_by, start=start, end=end)

    csv_url = reverse("api-1:usage_csv", kwargs={"slug": tenant.slug})
    usage_charts = _usage_charts(tenant.slug, summary("day"), start, end)
    return tab_page(
        request,
        access,
        "usage",
        {
            # the picker shows the days in effect, defaults included
            "form": UsageRangeForm(initial={"from": start, "to": end}),
            "start": start,
            "end": end,
            # the usage tables' links to the requests page: the same whole days
            "start_text": start.isoformat(),
            "end_text": end.isoformat(),
            "totals": selectors.usage_totals(tenant=tenant, start=start, end=end),
            "charts": usage_charts,
            "chart_data": charts.chart_data(usage_charts),
            "by_model": summary("model"),
            "by_provider": summary("provider"),
            "by_key": summary("key"),
            "csv_url": f"{csv_url}?from={start}&to={end}",
        },
    )
