"""Reads behind the configuration pages (/console/routes/, /console/pricing/,
/console/models/): global routes with the tenant routes that shadow them, every price
with where it came from, the models with traffic but no price, and the catalogue of
discovered models with their capabilities, prices and the aliases that reach them.

Which price applies follows services/pricing.py exactly (the provider's own row, else
its type's row, else the provider's fallback price): a page that guessed differently
would show a cost the ledger does not charge."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from providers_app.kit.providers import ADAPTERS
from providers_app.models import DiscoveredModel, Provider
from tenants_app.models import ModelRoute, Pricing, Tenant, UsageRecord, UsageStatus
from tenants_app.selectors import tenants_visible_to
from tenants_app.services.pricing import SOURCE_BUNDLED, Price, fallback_price

# how far back "has traffic" looks on the pricing page
UNPRICED_TRAFFIC_DAYS = 30

SOURCE_LABELS = {
    SOURCE_BUNDLED: "built-in table",
    "manual": "set by an admin",
    "fallback": "provider fallback",
}


# --- global routes ---------------------------------------------------------------------


@dataclass
class GlobalRouteRow:
    route: ModelRoute
    # tenants the viewer may see whose own route of this alias replaces this one
    overridden_by: list[Tenant] = field(default_factory=list)


def global_routes_with_overrides(user: Any) -> list[GlobalRouteRow]:
    """The global routes; beside each, the tenants (of those ``user`` may see) that
    have a route of the same alias. The gateway overlays a tenant's routes on the
    global ones by alias (aipk_site/gateway/routing.py ``_visible_routes``): the
    tenant's route replaces the global one whole, candidates are not merged."""
    rows = [GlobalRouteRow(route) for route in ModelRoute.objects.filter(tenant__isnull=True)]
    aliases = {row.route.alias for row in rows}
    shadows: dict[str, list[Tenant]] = {}
    tenant_routes = (
        ModelRoute.objects.filter(alias__in=aliases, tenant__in=tenants_visible_to(user))
        .select_related("tenant")
        .order_by("tenant__name")
    )
    for route in tenant_routes:
        assert route.tenant is not None
        shadows.setdefault(route.alias, []).append(route.tenant)
    for row in rows:
        row.overridden_by = shadows.get(row.route.alias, [])
    return rows


# --- prices ------------------------------------------------------------------------------


def price_rows() -> QuerySet[Pricing]:
    return Pricing.objects.select_related("provider").order_by(
        "provider_type", "model", "provider__name"
    )


def price_row(pk: int) -> Pricing | None:
    return Pricing.objects.select_related("provider").filter(pk=pk).first()


@dataclass(frozen=True)
class AppliedPrice:
    price: Price
    source: str  # a SOURCE_LABELS key
    scope: str  # "provider", "type" or "fallback"


class PriceBook:
    """Every Pricing row read once, answering as ``services.pricing.price_for`` does
    (for a page listing many models: one query, not one per model)."""

    def __init__(self) -> None:
        self.by_provider: dict[tuple[int, str], Pricing] = {}
        self.by_type: dict[tuple[str, str], Pricing] = {}
        for row in Pricing.objects.all():
            if row.provider_id is not None:
                self.by_provider[(row.provider_id, row.model)] = row
            else:
                self.by_type[(row.provider_type, row.model)] = row

    def applied(self, provider: Provider, model: str) -> AppliedPrice | None:
        row = self.by_provider.get((provider.pk, model))
        scope = "provider"
        if row is None:
            row, scope = self.by_type.get((provider.type, model)), "type"
        if row is not None:
            price = Price(
                row.input_per_million,
                row.output_per_million,
                row.cached_input_per_million,
                row.cache_write_per_million,
            )
            return AppliedPrice(price, row.source, scope)
        fallback = fallback_price(provider)
        if fallback is not None:
            return AppliedPrice(fallback, "fallback", "fallback")
        return None


@dataclass(frozen=True)
class UnpricedTraffic:
    provider: Provider
    model: str
    requests: int
    last_seen: dt.datetime


def unpriced_traffic(user: Any, *, days: int = UNPRICED_TRAFFIC_DAYS) -> list[UnpricedTraffic]:
    """(provider, model) pairs answered in the last ``days`` days, in the tenants ``user``
    may see, for which no price applies: the ledger charged them nothing."""
    since = timezone.now() - dt.timedelta(days=days)
    used = (
        UsageRecord.objects.filter(
            created_at__gte=since,
            status=UsageStatus.SUCCESS,
            provider__isnull=False,
            tenant__in=tenants_visible_to(user),
        )
        .exclude(model="")
        .values("provider", "model")
        .annotate(requests=Count("id"), last_seen=Max("created_at"))
        .order_by("-requests", "model")
    )
    pairs = list(used)
    providers = Provider.objects.in_bulk({pair["provider"] for pair in pairs})
    book = PriceBook()
    gaps = []
    for pair in pairs:
        provider = providers.get(pair["provider"])
        if provider is not None and book.applied(provider, pair["model"]) is None:
            gaps.append(
                UnpricedTraffic(provider, pair["model"], pair["requests"], pair["last_seen"])
            )
    return gaps


# --- the model catalogue -----------------------------------------------------------------

CAPABILITIES = {
    "tools": "Tool calling",
    "streaming": "Streaming",
    "vision": "Images (vision)",
    "priced": "Has a price",
    "unpriced": "No price",
}


@dataclass
class CatalogueRow:
    model: DiscoveredModel
    # True / False from the adapter's catalogue; None when it does not say
    vision: bool | None
    price: AppliedPrice | None
    aliases: list[tuple[str, Tenant | None]]

    def has(self, capability: str) -> bool:
        return {
            "tools": self.model.supports_tools,
            "streaming": self.model.supports_streaming,
            "vision": self.vision is True,
            "priced": self.price is not None,
            "unpriced": self.price is None,
        }[capability]


def _static_vision(provider_type: str, model_id: str) -> bool | None:
    adapter = ADAPTERS.get(provider_type)
    for info in adapter.static_models if adapter is not None else ():
        if info.id == model_id:
            return info.supports_vision
    return None


def model_catalogue(
    *, query: str = "", provider: Provider | None = None, capability: str = ""
) -> list[CatalogueRow]:
    """Discovered models (staff: the catalogue names providers), with their applied
    price and every route alias (global or any tenant's) that lists them."""
    models = DiscoveredModel.objects.select_related("provider").order_by(
        "provider__name", "model_id"
    )
    if provider is not None:
        models = models.filter(provider=provider)
    if query:
        models = models.filter(Q(model_id__icontains=query) | Q(name__icontains=query))
    aliases: dict[tuple[str, str], list[tuple[str, Tenant | None]]] = {}
    for route in ModelRoute.objects.select_related("tenant").order_by("tenant__name", "alias"):
        for candidate in route.candidates if isinstance(route.candidates, list) else []:
            if isinstance(candidate, dict):
                key = (str(candidate.get("provider")), str(candidate.get("model")))
                aliases.setdefault(key, []).append((route.alias, route.tenant))
    book = PriceBook()
    rows = [
        CatalogueRow(
            model=model,
            vision=_static_vision(model.provider.type, model.model_id),
            price=book.applied(model.provider, model.model_id),
            aliases=aliases.get((model.provider.name, model.model_id), []),
        )
        for model in models
    ]
    if capability:
        rows = [row for row in rows if row.has(capability)]
    return rows


def catalogue_providers() -> QuerySet[Provider]:
    return Provider.objects.filter(models__isnull=False).distinct().order_by("name")
