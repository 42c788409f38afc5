"""The metrics registry's labels for providers_app's rows (aipk_site/infra/metrics.py).

The registry sits below both apps and knows only label strings; this module
turns a Provider, an ApiKey or an OAuthCredential into those strings and tells
the registry which providers and models are known (``provider_known_labels``,
which aipk_site/metric_labels.py extends with the tenants' routes and prices).
"""

from __future__ import annotations

from aipk_site.infra import metrics
from aipk_site.infra.metrics import KnownLabels
from providers_app.models import ApiKey, DiscoveredModel, OAuthCredential, Provider


def provider_known_labels() -> KnownLabels:
    """Providers, each one's default model and its discovered models (two queries)."""
    providers = list(Provider.objects.values_list("name", "default_model"))
    models = {(name, model) for name, model in providers if model}
    models.update(DiscoveredModel.objects.values_list("provider__name", "model_id"))
    return KnownLabels(providers=frozenset(name for name, _ in providers), models=frozenset(models))


def credential_label(credential: ApiKey | OAuthCredential | str | None) -> str:
    """A credential as "key:12" / "oauth:3": identifies it without revealing anything about it."""
    if isinstance(credential, ApiKey):
        return f"key:{credential.pk}"
    if isinstance(credential, OAuthCredential):
        return f"oauth:{credential.pk}"
    return metrics.credential_label(credential)


def _provider_name(provider: Provider | str) -> str:
    return provider.name if isinstance(provider, Provider) else str(provider)


def _credential_id(credential: ApiKey | OAuthCredential | str | None) -> str | None:
    # a string goes through as it is: the registry checks it, in its own order
    if isinstance(credential, ApiKey | OAuthCredential):
        return credential_label(credential)
    return credential


def record_request(
    *,
    provider: Provider | str,
    credential_id: ApiKey | OAuthCredential | str | None,
    model: str,
    status: str,
    latency_ms: float,
    error_type: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    """Count one upstream request. Cheap: in-process counters only."""
    metrics.record_request(
        provider=_provider_name(provider),
        credential_id=_credential_id(credential_id),
        model=model,
        status=status,
        latency_ms=latency_ms,
        error_type=error_type,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def record_refresh(
    *, provider: Provider | str, credential_id: OAuthCredential | str, ok: bool
) -> None:
    metrics.record_refresh(
        provider=_provider_name(provider), credential_id=_credential_id(credential_id), ok=ok
    )
