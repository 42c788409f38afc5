"""/metrics (Prometheus text) and /metrics.json (the same figures with average and p95).

Mounted in aipk_site/urls.py with ``include("providers_app.metrics_views")``.
With ``METRICS_TOKEN`` set, both answer only ``Authorization: Bearer <token>``
(compared in constant time) and give anything else a 401 in the API's error
shape; unset, they are open, and ``manage.py check --deploy`` says so
(docs/MONITORING.md, "Scraping /metrics").
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from aipk_site.infra.metrics import known_labels, metrics_authorized
from aipk_site.infra.metrics_export import metrics_summary, prometheus_text


def _token_required(view: Callable[[HttpRequest], HttpResponse]) -> Callable[..., HttpResponse]:
    def guarded(request: HttpRequest) -> HttpResponse:
        if metrics_authorized(request.headers.get("Authorization")):
            return view(request)
        given = "Authorization" in request.headers
        response = JsonResponse(
            {
                "error": {
                    "type": "authentication_error",
                    "code": "invalid_metrics_token" if given else "metrics_token_required",
                    "message": "The metrics token is wrong."
                    if given
                    else "The metrics need a token: send 'Authorization: Bearer <METRICS_TOKEN>'.",
                }
            },
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response

    guarded.__name__ = view.__name__
    guarded.__doc__ = view.__doc__
    return guarded


@never_cache
@require_GET
@_token_required
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    # a sync view may query: a scrape (re)loads a stale label snapshot before the next request
    known_labels()
    return HttpResponse(prometheus_text(), content_type=CONTENT_TYPE_LATEST)


@never_cache
@require_GET
@_token_required
def metrics_json(request: HttpRequest) -> HttpResponse:
    return JsonResponse(metrics_summary())


urlpatterns = [
    path("metrics", prometheus_metrics, name="metrics"),
    path("metrics.json", metrics_json, name="metrics-json"),
]
