"""Model search, for staff: the discovered catalogue filtered by capability, provider,
context window and a text match (docs/API.md, "Models")."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from aipk_site.infra.access import require_staff
from providers_app.services.model_search import CAPABILITIES, models_search

router = Router(tags=["models"])

_CAPABILITY_HELP = "; ".join(f"{name}: {meaning}" for name, (meaning, _) in CAPABILITIES.items())


class ModelQuery(Schema):
    capability: list[str] = Field(
        default_factory=list,
        description=f"repeatable; every one must hold. {_CAPABILITY_HELP}",
        max_length=len(CAPABILITIES),
    )
    provider: str | None = Field(default=None, max_length=64, description="a provider's name")
    q: str | None = Field(
        default=None, max_length=200, description="part of the model's id or name, any case"
    )
    min_context: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="context window of at least"
    )


class ModelOut(Schema):
    id: str = Field(description="'<provider>/<model id>', as the gateway takes it")
    provider: str
    model: str
    name: str
    context_window: int | None
    max_output_tokens: int | None
    capabilities: list[str]
    input_price_per_million: Decimal | None
    output_price_per_million: Decimal | None
    source: str = Field(description="fetched from the provider, or static (its catalogue)")


@router.get("/", response=list[ModelOut])
def search_models(request: HttpRequest, query: Query[ModelQuery]) -> list[dict[str, Any]]:
    """Discovered models of enabled providers with every capability asked for, cheapest
    first. An unknown capability is a 400 naming it."""
    require_staff(request.auth)
    found = models_search(
        capabilities=query.capability,
        provider=query.provider,
        q=query.q,
        min_context=query.min_context,
    )
    return [
        {
            "id": f"{facts.model.provider.name}/{facts.model.model_id}",
            "provider": facts.model.provider.name,
            "model": facts.model.model_id,
            "name": facts.model.name,
            "context_window": facts.model.context_window,
            "max_output_tokens": facts.model.max_output_tokens,
            "capabilities": facts.capabilities,
            "input_price_per_million": facts.model.input_price_per_million,
            "output_price_per_million": facts.model.output_price_per_million,
            "source": facts.model.source,
        }
        for facts in found
    ]
