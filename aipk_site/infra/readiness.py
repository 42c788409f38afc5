"""What /health and /ready answer: the providers' state, and whether aipk's own backing
services respond. Both are cheap enough for a load balancer to call every few seconds.

/health reads what the periodic health checks (services/health.py) and the
circuit breakers (services/chat.py) already know -- it sends nothing to a
provider. A provider counts against health when it is **enabled** and either
its latest provider-level check failed or its breaker is open; one that was
never checked is "unknown" and does not. A half-open breaker (reset time over,
one probe allowed through) does not either: traffic is already testing it.

/ready asks whether this process can serve at all: a trivial query on the
database and a set/get round trip on the cache, each with a short timeout.

Neither returns an exception's text: names, states and times only.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import OuterRef, Subquery

from providers_app.models import HealthCheck, Provider
from providers_app.services.chat import resilience_for

logger = logging.getLogger(__name__)

DEFAULT_READY_TIMEOUT_SECONDS = 2.0
BREAKER_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class ServiceHealth:
    status: str  # "ok" | "degraded"
    providers: dict[str, dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "providers": self.providers}


def latest_provider_checks() -> list[tuple[str, int, bool | None, Any]]:
    """(name, pk, healthy, checked_at) of each enabled provider, in one query."""
    latest = HealthCheck.objects.filter(
        provider=OuterRef("pk"), api_key__isnull=True, oauth_credential__isnull=True
    ).order_by("-checked_at", "-id")
    rows = (
        Provider.objects.filter(enabled=True)
        .annotate(
            last_healthy=Subquery(latest.values("healthy")[:1]),
            last_checked=Subquery(latest.values("checked_at")[:1]),
        )
        .order_by("name")
        .values_list("name", "pk", "last_healthy", "last_checked")
    )
    return list(rows)


async def _breaker_state(provider: Provider) -> str:
    try:
        return await asyncio.wait_for(
            resilience_for(provider).breaker.state(), BREAKER_TIMEOUT_SECONDS
        )
    except Exception as error:  # the cache is down or slow: say so, /ready names it
        logger.warning(
            "health: breaker state of %s unknown (%s)", provider.name, type(error).__name__
        )
        return "unknown"


async def aservice_health() -> ServiceHealth:
    """Every enabled provider's latest check and breaker state; degraded if any is failing."""
    rows = await sync_to_async(latest_provider_checks)()
    breakers = await asyncio.gather(
        *(_breaker_state(Provider(pk=pk, name=name)) for name, pk, _, _ in rows)
    )
    providers: dict[str, dict[str, Any]] = {}
    degraded = False
    for (name, _, healthy, checked_at), breaker in zip(rows, breakers, strict=True):
        failing = healthy is False or breaker == "open"
        degraded = degraded or failing
        providers[name] = {
            "status": "degraded" if failing else ("unknown" if healthy is None else "ok"),
            "checked_at": checked_at.isoformat() if checked_at else None,
            "breaker": breaker,
        }
    return ServiceHealth(status="degraded" if degraded else "ok", providers=providers)


# -- readiness ----------------------------------------------------------------------------


def _database_ok() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # a worker thread, not a request: nothing else would close this connection
        connection.close()


def _cache_ok() -> None:
    key, value = f"ready:{uuid.uuid4().hex}", uuid.uuid4().hex
    cache.set(key, value, timeout=10)
    if cache.get(key) != value:
        raise RuntimeError("the cache did not return what was just stored")
    cache.delete(key)


async def _probe(name: str, check, seconds: float) -> tuple[str, bool]:
    # Not thread-sensitive: a hanging backend ties up one pool thread, never the
    # process's shared sync thread that every other request's ORM calls need.
    try:
        await asyncio.wait_for(sync_to_async(check, thread_sensitive=False)(), seconds)
    except Exception as error:
        logger.warning("ready: %s is down (%s)", name, type(error).__name__)
        return name, False
    return name, True


async def areadiness() -> dict[str, Any]:
    """{"status": "ready"|"unavailable", "checks": {name: "ok"|"down"}, "down": [...]}."""
    timeout = float(getattr(settings, "READY_TIMEOUT_SECONDS", DEFAULT_READY_TIMEOUT_SECONDS))
    results = await asyncio.gather(
        _probe("database", _database_ok, timeout), _probe("cache", _cache_ok, timeout)
    )
    down = [name for name, ok in results if not ok]
    report: dict[str, Any] = {
        "status": "unavailable" if down else "ready",
        "checks": {name: "ok" if ok else "down" for name, ok in results},
    }
    if down:
        report["down"] = down
    return report
