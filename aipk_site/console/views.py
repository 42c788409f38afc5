"""The dashboard: traffic, latency, cost and provider health over a time range."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone

from aipk_site.console.dashboard import RangeError, dashboard_for, parse_window, requests_link
from aipk_site.console.dashboard_charts import dashboard_charts
from aipk_site.infra.time_ranges import RANGE_LABELS
from tenants_app.console.charts import chart_data


@login_required
def dashboard(request):
    range_error = ""
    try:
        window = parse_window(request.GET)
    except RangeError as error:
        # the figures of the default range, with what was wrong said above them
        range_error = str(error)
        window = parse_window({})
    board = dashboard_for(request.user, window)
    charts = dashboard_charts(board)
    context = {
        "nav_section": "dashboard",
        "board": board,
        "window": window,
        "range_error": range_error,
        "range_choices": [(n, label) for n, label in RANGE_LABELS.items() if n != "custom"],
        "since_value": request.GET.get("since", ""),
        "until_value": request.GET.get("until", ""),
        "charts": charts,
        "chart_data": chart_data(charts),
        "links": {
            "requests": requests_link(window),
            "errors": requests_link(window, status="error"),
            "refused": requests_link(window, status="refused"),
            "cancelled": requests_link(window, status="cancelled"),
            "success": requests_link(window, status="success"),
        },
        "now": timezone.now(),
    }
    return render(request, "console/dashboard.html", context)
