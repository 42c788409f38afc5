"""The label values /metrics may carry, from both apps (``settings.METRICS_KNOWN_LABELS``).

providers_app knows providers and their models but nothing of tenants, so the
project joins the two here: providers_app's own known values, plus every route
alias, every route candidate and every priced model. Anything else a client
sends is counted under "other" (aipk_site/infra/metrics.py says why).

The receivers below drop this process's snapshot when one of those tables
changes, so a new route or model gets its own label at once here; other
processes see it within ``METRICS_LABELS_REFRESH_SECONDS``. They are connected
when this module is imported, which is the first time the snapshot loads: before
that there is no snapshot to drop. Discovery stores models with ``bulk_create``,
which sends no signal: those arrive with the periodic reload.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from aipk_site.infra.metrics import KnownLabels, metric_labels_forget
from providers_app.models import DiscoveredModel, Provider
from providers_app.services.provider_metrics import provider_known_labels
from tenants_app.models import ModelRoute, Pricing


def known_labels() -> KnownLabels:
    """providers_app's known values, plus route aliases, route candidates and priced models."""
    base = provider_known_labels()
    by_type: dict[str, list[str]] = {}
    for name, provider_type in Provider.objects.values_list("name", "type"):
        by_type.setdefault(provider_type, []).append(name)

    models = set(base.models)
    aliases: set[str] = set()
    for alias, candidates in ModelRoute.objects.values_list("alias", "candidates"):
        aliases.add(alias)
        for entry in candidates if isinstance(candidates, list) else []:
            if isinstance(entry, dict):
                provider, model = entry.get("provider"), entry.get("model")
                if isinstance(provider, str) and isinstance(model, str):
                    models.add((provider, model))
    prices = Pricing.objects.values_list("provider__name", "provider_type", "model")
    for provider_name, provider_type, model in prices:
        # a provider's own price names it; a provider type's price applies to all of that type
        for name in [provider_name] if provider_name else by_type.get(provider_type, []):
            models.add((name, model))
    return KnownLabels(
        providers=base.providers, models=frozenset(models), aliases=frozenset(aliases)
    )


def _forget(sender: Any, **kwargs: Any) -> None:
    metric_labels_forget()


for _model in (Provider, DiscoveredModel, ModelRoute, Pricing):
    post_save.connect(_forget, sender=_model, dispatch_uid=f"metric-labels-{_model.__name__}")
    post_delete.connect(_forget, sender=_model, dispatch_uid=f"metric-labels-{_model.__name__}")
