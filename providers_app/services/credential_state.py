"""Copying live credential state from the shared store (and the metrics) onto the rows.

The key pool keeps its state in the cache, where every process updates it
atomically on the request path; writing a database row per request would put
the database on the hot path. A periodic task copies it here instead, so the
admin and the API show failures, cool-downs and counters, and so a cache flush
loses nothing that matters (invalid and retired keys are rows already).
"""

from __future__ import annotations

from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from django.utils import timezone

from aipk_site.infra.metrics_export import metrics_summary
from providers_app.models import ApiKey, OAuthCredential, Provider
from providers_app.services.pools import credential_id, key_pool

# pool states that mean "temporarily unavailable"
RESTING = ("cooling_down", "backoff")


def _counters() -> dict[tuple[str, str], dict]:
    return {
        (entry["provider"], credential["credential"]): credential
        for entry in metrics_summary()["providers"]
        for credential in entry["credentials"]
    }


def credentials_sync_state() -> int:
    """Update every live credential row from the pool and the metrics; returns rows changed."""
    counters = _counters()
    changed = 0
    for provider in Provider.objects.all():
        keys = list(
            provider.api_keys.filter(state__in=[ApiKey.State.ACTIVE, ApiKey.State.COOLING_DOWN])
        )
        tokens = list(provider.oauth_credentials.filter(state=OAuthCredential.State.ACTIVE))
        credentials = [*keys, *tokens]
        if not credentials:
            continue
        healths = async_to_sync(key_pool(provider.pk).healths)(
            [credential_id(c) for c in credentials]
        )
        for credential in credentials:
            cid = credential_id(credential)
            health = healths[cid]
            fields = {
                "failure_count": health.consecutive_failures,
                "last_error_type": health.last_error_type or credential.last_error_type,
            }
            if health.last_failure_at:
                fields["last_failure_at"] = datetime.fromtimestamp(health.last_failure_at, UTC)
            figures = counters.get((provider.name, cid))
            if figures:
                fields["request_count"] = figures["requests"]
                fields["error_count"] = figures["errors"]
                # successes since the last copy: the last success was within this interval
                if figures["successes"] > credential.request_count - credential.error_count:
                    fields["last_success_at"] = timezone.now()
            if isinstance(credential, ApiKey):
                until = health.unavailable_until if health.state in RESTING else None
                fields["state"] = ApiKey.State.COOLING_DOWN if until else ApiKey.State.ACTIVE
                fields["cooling_down_until"] = datetime.fromtimestamp(until, UTC) if until else None
            if any(getattr(credential, name) != value for name, value in fields.items()):
                type(credential).objects.filter(pk=credential.pk).update(**fields)
                changed += 1
    return changed
