"""A tenant's usage tab: charts per day and tables per model, provider and key, for
whole UTC days (this month so far by default), with the API's CSV export."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from tenants_app import selectors
from tenants_app.console import charts
from tenants_app.console.access import console_tenant, console_view
from tenants_app.console.pages import INVALID, tab_page
from tenants_app.console_forms import UsageRangeForm


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def _usage_charts(by_day: list[dict[str, Any]], start: dt.date, end: dt.date) -> dict[str, str]:
    """One bar per day of the range, days without usage at zero."""
    rows = {row["group"]: row for row in by_day}
    days = _days(start, end)
    # "Nov 1", "2", "3"…: the month only where it starts, so 31 labels fit under the bars
    labels = [
        f"{day:%b} {day.day}" if day.day == 1 or day == start else str(day.day) for day in days
    ]
    empty = {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0}
    per_day = [rows.get(day.isoformat(), empty) for day in days]
    return {
        "requests": charts.bar_chart(
            "Requests per day",
            labels,
            {
                "ok": [r["requests"] - r["errors"] for r in per_day],
                "error": [r["errors"] for r in per_day],
            },
            stacked=True,
        ),
        "tokens": charts.bar_chart(
            "Tokens per day",
            labels,
            {
                "prompt": [r["prompt_tokens"] for r in per_day],
                "completion": [r["completion_tokens"] for r in per_day],
            },
            stacked=True,
        ),
        "spend": charts.bar_chart(
            "Spend per day (USD)",
            labels,
            {"spend": [r["cost_usd"] for r in per_day]},
            value_format="${:,.4f}",
        ),
    }


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
            "charts": _usage_charts(summary("day"), start, end),
            "by_model": summary("model"),
            "by_provider": summary("provider"),
            "by_key": summary("key"),
            "csv_url": f"{csv_url}?from={start}&to={end}",
        },
    )
