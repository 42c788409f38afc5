"""Naming of a provider's key pool and its credentials in the shared store, in one place."""

from __future__ import annotations

from django.conf import settings

from providers_app.kit.resilience import KeyPool
from providers_app.models import ApiKey, OAuthCredential
from providers_app.services.provider_metrics import credential_label
from providers_app.services.shared_state import provider_state_store


def credential_id(credential: ApiKey | OAuthCredential) -> str:
    """ "key:12" / "oauth:3": the same id in the pool, the breaker and the metrics."""
    return credential_label(credential)


def provider_pool_name(provider_id: int) -> str:
    return f"provider:{provider_id}"


def key_pool(provider_id: int, strategy: str = "health_aware") -> KeyPool:
    return KeyPool(
        provider_state_store(),
        provider_pool_name(provider_id),
        strategy=strategy,  # type: ignore[arg-type]  # validated by the Provider model's choices
        quota_cooldown=settings.PROVIDER_QUOTA_COOLDOWN_SECONDS,
        permission_window=settings.PROVIDER_PERMISSION_WINDOW_SECONDS,
    )
