"""/health and /ready: open (no auth), cheap, JSON, 503 when not fine.

/health -- the providers as the health checks and circuit breakers see them;
/ready -- whether this process can reach its database and cache. Load
balancers should route on /ready; alerting can watch /health. What "degraded"
means is in providers_app/services/health.py and docs/MONITORING.md; what
"unavailable" means in aipk_site/infra/readiness.py.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from aipk_site.infra.readiness import areadiness
from providers_app.services.health import aservice_health


@never_cache
@require_safe
async def health(request: HttpRequest) -> JsonResponse:
    report = await aservice_health()
    return JsonResponse(report.as_dict(), status=200 if report.ok else 503)


@never_cache
@require_safe
async def ready(request: HttpRequest) -> JsonResponse:
    report = await areadiness()
    return JsonResponse(report, status=200 if report["status"] == "ready" else 503)
