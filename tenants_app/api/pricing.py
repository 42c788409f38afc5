"""Token prices in USD per million, per provider type or per provider account (an
account's own row beats its type's). Everyone signed in reads them; staff set them."""

import datetime as dt
from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status

from aipk_site.infra.access import require_staff
from aipk_site.infra.errors import InvalidRequest
from providers_app.models import Provider, ProviderType
from tenants_app import selectors
from tenants_app.api.schemas import Strict
from tenants_app.models import Pricing
from tenants_app.services.pricing import pricing_delete, pricing_set

router = Router(tags=["pricing"])


class PricingOut(Schema):
    id: int
    provider_type: str
    provider: str | None
    model: str
    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = Field(
        description="reading from the provider's prompt cache; null: the input rate"
    )
    cache_write_per_million: Decimal | None = Field(
        description="writing to the prompt cache; null: the input rate"
    )
    source: str = Field(description="bundled: the built-in table; manual: set by an admin")
    updated_at: dt.datetime


class PricingIn(Strict):
    provider_type: ProviderType
    provider: str | None = Field(default=None, description="one provider account; null = type")
    model: str = Field(min_length=1, max_length=200)
    input_per_million: Decimal = Field(ge=0, lt=1_000_000, max_digits=12, decimal_places=6)
    output_per_million: Decimal = Field(ge=0, lt=1_000_000, max_digits=12, decimal_places=6)
    cached_input_per_million: Decimal | None = Field(
        default=None,
        ge=0,
        lt=1_000_000,
        max_digits=12,
        decimal_places=6,
        description="null: the input rate (no cache discount)",
    )
    cache_write_per_million: Decimal | None = Field(
        default=None,
        ge=0,
        lt=1_000_000,
        max_digits=12,
        decimal_places=6,
        description="null: the input rate",
    )


def pricing_out(price: Pricing) -> dict[str, Any]:
    return {
        **{f: getattr(price, f) for f in PricingOut.model_fields if f != "provider"},
        "provider": price.provider.name if price.provider_id else None,
    }


@router.get("/", response=list[PricingOut])
def list_pricing(request: HttpRequest) -> list[dict[str, Any]]:
    """USD per million tokens; a provider's own row beats its type's row."""
    return [pricing_out(p) for p in selectors.pricing_list()]


@router.post("/", response=PricingOut)
def set_pricing(request: HttpRequest, payload: PricingIn) -> dict[str, Any]:
    """Staff. Creates or replaces the price for (provider or provider_type, model)."""
    require_staff(request.auth)
    provider = None
    if payload.provider:
        provider = Provider.objects.filter(name=payload.provider).first()
        if provider is None:
            raise InvalidRequest(f"unknown provider {payload.provider!r}", param="provider")
    price = pricing_set(
        provider_type=payload.provider_type,
        provider=provider,
        model=payload.model,
        input_per_million=payload.input_per_million,
        output_per_million=payload.output_per_million,
        cached_input_per_million=payload.cached_input_per_million,
        cache_write_per_million=payload.cache_write_per_million,
        actor=request.auth,
    )
    return pricing_out(price)


@router.delete("/{pricing_id}", response={204: None})
def delete_pricing(request: HttpRequest, pricing_id: int) -> Status:
    require_staff(request.auth)
    pricing_delete(pricing=get_object_or_404(Pricing, pk=pricing_id), actor=request.auth)
    return Status(204, None)
