"""Health checks of providers and of each credential, with history and alerts.

A probe is the kit adapter's ``health_check()`` (a timed model-list fetch that
never raises). Each probe stores a HealthCheck row for its subject -- the
provider itself (probed with its first usable credential), one API key, or
one OAuth credential. When a subject's state differs from its previous check
a HealthAlert is stored and a warning is logged (ids, labels and the last four
characters only, never a secret). A subject's first check counts as a change
only when it is unhealthy: a credential that is broken from the start is
worth an alert, one that works is not news.

Probes do not change a credential's state: disabling keys is the key pool's
decision, on real traffic. ``acheck_*`` are for async code; the plain names
are for sync callers (Celery, shell, tests).

/health (``aservice_health``, served by aipk_site/operations_views.py) reads
what these checks and the circuit breakers (services/chat.py) already know --
it sends nothing to a provider, so a load balancer may call it every few
seconds. A provider counts against health when it is **enabled** and either
its latest provider-level check failed or its breaker is open; one that was
never checked is "unknown" and does not. A half-open breaker (reset time over,
one probe allowed through) does not either: traffic is already testing it.
It never returns an exception's text: names, states and times only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from providers_app.kit.types import HealthStatus
from providers_app.models import ApiKey, HealthAlert, HealthCheck, OAuthCredential, Provider
from providers_app.services.chat import resilience_for
from providers_app.services.discovery import provider_adapter, usable_credential

logger = logging.getLogger(__name__)

NO_CREDENTIALS = "no_credentials"
DEFAULT_RETENTION_DAYS = 30
BREAKER_TIMEOUT_SECONDS = 1.0

Credential = ApiKey | OAuthCredential


def _subject(credential: Credential | None) -> dict[str, Any]:
    return {
        "api_key": credential if isinstance(credential, ApiKey) else None,
        "oauth_credential": credential if isinstance(credential, OAuthCredential) else None,
    }


def _describe(provider: Provider, credential: Credential | None) -> tuple[str, str]:
    """(log id, human description) of a subject; never a secret."""
    if isinstance(credential, ApiKey):
        return (
            f"key:{credential.pk}",
            f"API key {credential.label!r} (…{credential.last4}) of {provider.name}",
        )
    if isinstance(credential, OAuthCredential):
        return (
            f"oauth:{credential.pk}",
            f"OAuth account {credential.account_label!r} (…{credential.last4}) of {provider.name}",
        )
    return f"provider:{provider.pk}", f"provider {provider.name}"


@transaction.atomic
def _record(provider: Provider, credential: Credential | None, status: HealthStatus) -> HealthCheck:
    # One probe of a provider's subjects at a time decides "changed": two
    # processes checking at once must not both raise the same alert.
    Provider.objects.select_for_update().filter(pk=provider.pk).first()
    subject = _subject(credential)
    previous = (
        HealthCheck.objects.filter(provider=provider, **subject)
        .order_by("-checked_at", "-id")
        .first()
    )
    check = HealthCheck.objects.create(
        provider=provider,
        healthy=status.healthy,
        latency_ms=round(status.latency_ms, 3),
        error_type=(status.error_type or "")[:64],
        detail=(status.detail or "")[:500],
        checked_at=timezone.now(),
        **subject,
    )
    was_healthy = previous.healthy if previous is not None else True
    if was_healthy != check.healthy:
        log_id, description = _describe(provider, credential)
        if check.healthy:
            message = f"{description} is healthy again"
        else:
            message = f"{description} became unhealthy: {check.error_type or 'unknown error'}"
        HealthAlert.objects.create(
            provider=provider,
            healthy=check.healthy,
            message=message[:500],
            created_at=check.checked_at,
            **subject,
        )
        logger.warning(
            "health state changed subject=%s provider=%s healthy=%s error_type=%s",
            log_id,
            provider.name,
            check.healthy,
            check.error_type or "-",
        )
    return check


async def _probe(
    provider: Provider, credential: Credential | None, *, own_client: bool
) -> HealthStatus:
    async with provider_adapter(provider, credential, own_client=own_client) as adapter:
        return await adapter.health_check()


async def acheck_provider_health(provider: Provider, *, own_client: bool = False) -> HealthCheck:
    """Probe the provider with its first usable credential."""
    credential = await sync_to_async(usable_credential)(provider)
    # A custom OpenAI-compatible endpoint (Ollama, vLLM) may need no key at all.
    if credential is None and provider.type != "openai-compatible":
        status = HealthStatus(
            healthy=False,
            latency_ms=0.0,
            error_type=NO_CREDENTIALS,
            detail="no usable API key or OAuth credential",
        )
    else:
        status = await _probe(provider, credential, own_client=own_client)
    return await sync_to_async(_record)(provider, None, status)


async def acheck_credential_health(
    credential: Credential, *, own_client: bool = False
) -> HealthCheck:
    """Probe the provider with exactly this credential."""
    provider = await sync_to_async(lambda: credential.provider)()
    status = await _probe(provider, credential, own_client=own_client)
    return await sync_to_async(_record)(provider, credential, status)


def check_provider_health(provider: Provider) -> HealthCheck:
    return async_to_sync(acheck_provider_health)(provider, own_client=True)


def check_credential_health(credential: Credential) -> HealthCheck:
    return async_to_sync(acheck_credential_health)(credential, own_client=True)


def probed_credentials(provider: Provider) -> list[Credential]:
    """Every credential worth probing: retired keys and revoked accounts are not."""
    keys = list(provider.api_keys.exclude(state=ApiKey.State.RETIRED))
    accounts = list(provider.oauth_credentials.exclude(state=OAuthCredential.State.REVOKED))
    return [*keys, *accounts]


async def acheck_all_health(
    *, providers: list[Provider] | None = None, own_client: bool = False
) -> list[HealthCheck]:
    """Probe every enabled provider and each of its credentials, concurrently.

    A probe that crashes (rather than reporting unhealthy) is logged and left
    out: the other subjects are still checked."""
    if providers is None:
        enabled = Provider.objects.filter(enabled=True)
        providers = await sync_to_async(lambda: list(enabled))()
    probes, subjects = [], []
    for provider in providers:
        probes.append(acheck_provider_health(provider, own_client=own_client))
        subjects.append(_describe(provider, None)[0])
        for credential in await sync_to_async(probed_credentials)(provider):
            credential.provider = provider  # already loaded: no query from async code
            probes.append(acheck_credential_health(credential, own_client=own_client))
            subjects.append(_describe(provider, credential)[0])
    checks = []
    results = await asyncio.gather(*probes, return_exceptions=True)
    for subject, result in zip(subjects, results, strict=True):
        if isinstance(result, BaseException):
            logger.error("health probe crashed subject=%s error=%s", subject, type(result).__name__)
        else:
            checks.append(result)
    return checks


def check_all_health(*, providers: list[Provider] | None = None) -> list[HealthCheck]:
    return async_to_sync(acheck_all_health)(providers=providers, own_client=True)


def prune_health_history(*, older_than_days: int | None = None) -> int:
    """Delete checks older than HEALTH_CHECK_RETENTION_DAYS (alerts are kept)."""
    days = (
        older_than_days
        if older_than_days is not None
        else int(getattr(settings, "HEALTH_CHECK_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))
    )
    deleted, _ = HealthCheck.objects.filter(
        checked_at__lt=timezone.now() - timedelta(days=days)
    ).delete()
    return deleted


# -- selectors ------------------------------------------------------------------------------


def latest_check(provider: Provider, credential: Credential | None = None) -> HealthCheck | None:
    return (
        HealthCheck.objects.filter(provider=provider, **_subject(credential))
        .order_by("-checked_at", "-id")
        .first()
    )


def latest_key_checks(keys: list[ApiKey]) -> dict[int, HealthCheck]:
    """Each key's latest check, by key id, in two queries whatever the number of keys
    (the history holds a row per check: never loaded whole)."""
    latest = HealthCheck.objects.filter(api_key=OuterRef("pk")).order_by("-checked_at", "-id")
    ids = dict(
        ApiKey.objects.filter(pk__in=[key.pk for key in keys])
        .annotate(check_id=Subquery(latest.values("pk")[:1]))
        .exclude(check_id=None)
        .values_list("pk", "check_id")
    )
    checks = HealthCheck.objects.in_bulk(list(ids.values()))
    return {key_id: checks[check_id] for key_id, check_id in ids.items()}


def health_history(
    provider: Provider, credential: Credential | None = None, *, limit: int = 100
) -> QuerySet[HealthCheck]:
    """One subject's checks, newest first: the provider itself, or one credential."""
    return HealthCheck.objects.filter(provider=provider, **_subject(credential)).order_by(
        "-checked_at", "-id"
    )[:limit]


def health_alerts(*, provider: Provider | None = None, limit: int = 100) -> QuerySet[HealthAlert]:
    alerts = HealthAlert.objects.select_related("provider", "api_key", "oauth_credential")
    if provider is not None:
        alerts = alerts.filter(provider=provider)
    return alerts.order_by("-created_at", "-id")[:limit]


@dataclass
class ProviderHealth:
    provider: Provider
    check: HealthCheck | None
    credentials: list[tuple[Credential, HealthCheck | None]] = field(default_factory=list)

    @property
    def healthy(self) -> bool | None:
        """The provider's last known state; None before its first check."""
        return None if self.check is None else self.check.healthy


def current_health(provider: Provider) -> ProviderHealth:
    """The provider's latest check and the latest check of each of its credentials."""
    return ProviderHealth(
        provider=provider,
        check=latest_check(provider),
        credentials=[(c, latest_check(provider, c)) for c in probed_credentials(provider)],
    )


# -- what /health reports -----------------------------------------------------------------


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


# -- degraded / recovered announcements (alerting listens) --------------------------------

STATUS_CACHE_KEY = "aipk:provider-status:{pk}"
DEGRADED, OK = "degraded", "ok"


async def _provider_states() -> list[tuple[Provider, str, str]]:
    """(provider, "degraded" | "ok", reason) for each enabled provider. Unlike /health, a
    half-open breaker still counts as degraded here: "recovered" is announced only once a
    probe has gone through and closed it, not merely because the wait is over."""
    rows = await sync_to_async(latest_provider_checks)()
    breakers = await asyncio.gather(
        *(_breaker_state(Provider(pk=pk, name=name)) for name, pk, _, _ in rows)
    )
    states = []
    for (name, pk, healthy, _), breaker in zip(rows, breakers, strict=True):
        if breaker in ("open", "half_open"):
            states.append((Provider(pk=pk, name=name), DEGRADED, f"circuit breaker {breaker}"))
        elif healthy is False:
            states.append((Provider(pk=pk, name=name), DEGRADED, "latest health check failed"))
        else:
            states.append((Provider(pk=pk, name=name), OK, "serving again"))
    return states


def provider_status_watch() -> dict[str, str]:
    """Compare each enabled provider's state with the one last announced (kept in the
    cache, shared by every process) and announce the changes through
    ``provider_status_changed``; returns {provider name: state}. Run by a periodic task
    and after each health-check run, never on the request path: the breaker's
    transitions happen inside one Redis script per request, and a minute's delay is
    worth keeping the hot path free of it. A provider seen for the first time is news
    only when it is already degraded."""
    from providers_app.announcements import provider_status_changed

    summary = {}
    for provider, state, reason in async_to_sync(_provider_states)():
        summary[provider.name] = state
        key = STATUS_CACHE_KEY.format(pk=provider.pk)
        previous = cache.get(key)
        if previous == state:
            continue
        cache.set(key, state, timeout=None)
        if previous is None and state == OK:
            continue
        logger.warning("provider status changed provider=%s state=%s", provider.name, state)
        provider_status_changed.send(
            sender=Provider, provider=provider, degraded=state == DEGRADED, reason=reason
        )
    return summary
