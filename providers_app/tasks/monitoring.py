"""Celery tasks for model discovery and health checks.

Thin on purpose: they take ids, call a service, and return a small JSON-able
summary. The periodic ones are scheduled by django-celery-beat rows created in
the ``beat_schedules`` migration (editable in the admin): health every 5
minutes, discovery every 24 hours.
"""

from __future__ import annotations

from celery import shared_task

from providers_app.models import ApiKey, OAuthCredential, Provider
from providers_app.services import discovery, health


@shared_task(name="providers.discover_models")
def discover_provider_models(provider_id: int) -> int:
    """Refresh one provider's model list; the number of models stored (0: no such provider)."""
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        return 0
    return len(discovery.discover_models(provider, refresh=True))


@shared_task(name="providers.discover_all_models")
def discover_all_models() -> dict[str, int]:
    """Periodic: every enabled provider's model list."""
    return discovery.discover_all_models(refresh=True)


@shared_task(name="providers.check_provider_health")
def check_provider_health(provider_id: int) -> dict[str, bool]:
    """On demand: the provider and each of its credentials; {subject: healthy}."""
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        return {}
    return _summary(health.check_all_health(providers=[provider]))


@shared_task(name="providers.check_credential_health")
def check_credential_health(kind: str, credential_id: int) -> bool | None:
    """On demand, one credential: kind "key" or "oauth". None when it no longer exists."""
    model = {"key": ApiKey, "oauth": OAuthCredential}[kind]
    credential = model.objects.select_related("provider").filter(pk=credential_id).first()
    if credential is None:
        return None
    return health.check_credential_health(credential).healthy


@shared_task(name="providers.run_health_checks")
def run_health_checks() -> dict[str, bool]:
    """Periodic: every enabled provider and credential; then old history is pruned."""
    checks = health.check_all_health()
    health.prune_health_history()
    health.provider_status_watch()
    return _summary(checks)


@shared_task(name="providers.watch_provider_status")
def watch_provider_status() -> dict[str, str]:
    """Periodic (every minute): announce providers that became degraded or recovered."""
    return health.provider_status_watch()


def _summary(checks: list) -> dict[str, bool]:
    summary = {}
    for check in checks:
        if check.api_key_id:
            subject = f"key:{check.api_key_id}"
        elif check.oauth_credential_id:
            subject = f"oauth:{check.oauth_credential_id}"
        else:
            subject = f"provider:{check.provider_id}"
        summary[subject] = check.healthy
    return summary
