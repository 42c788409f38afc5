"""/metrics (Prometheus text) and /metrics.json (the same figures with average and p95).

Mounted in aipk_site/urls.py with ``include("providers_app.metrics_views")``.
Both are open for now; authentication for them arrives with the operations
endpoints (docs/MONITORING.md).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from providers_app.services.metrics import metrics_summary, prometheus_text


@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(prometheus_text(), content_type=CONTENT_TYPE_LATEST)


@require_GET
def metrics_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(metrics_summary())


urlpatterns = [
    path("metrics", prometheus_metrics, name="metrics"),
    path("metrics.json", metrics_json, name="metrics-json"),
]
