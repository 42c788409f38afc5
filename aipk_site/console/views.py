"""The dashboard: today's and this month's traffic, cost and provider health."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from aipk_site.console.dashboard import dashboard_for
from tenants_app.console.charts import bar_chart


@login_required
def dashboard(request):
    board = dashboard_for(request.user)
    hours = [h["label"] for h in board.hours]
    days = [d["label"] for d in board.days]
    charts = {
        "hourly": bar_chart(
            "Requests today by hour (UTC)",
            hours,
            {
                "succeeded": [h["success"] for h in board.hours],
                "failed or refused": [h["failed"] for h in board.hours],
            },
            stacked=True,
        ),
        "spend": bar_chart(
            "Spend per day this month (USD)",
            days,
            {"spend": [d["spend"] for d in board.days]},
            value_format="${:,.4f}",
        ),
        "tokens": bar_chart(
            "Tokens per day this month", days, {"tokens": [d["tokens"] for d in board.days]}
        ),
    }
    context = {"nav_section": "dashboard", "board": board, "charts": charts}
    return render(request, "console/dashboard.html", context)
