"""An API key as both routers show it: by label and last four characters, never the
secret."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from ninja import Field, Schema


class ApiKeyOut(Schema):
    id: int
    label: str
    last4: str
    state: str
    failure_count: int
    last_error_type: str
    created_at: datetime
    rotated_at: datetime | None
    retire_at: datetime | None
    retired_at: datetime | None


class LimitWindowOut(Schema):
    name: str = Field(
        description="requests, tokens, input_tokens, output_tokens, requests_day or tokens_minute"
    )
    limit: int | None
    remaining: int | None
    resets_at: datetime | None


class ModelLimitsOut(Schema):
    """What the provider's last answer on this credential and model said of its limits."""

    model: str
    observed_at: datetime | None
    windows: list[LimitWindowOut]
    retry_after_until: datetime | None = Field(
        description="a 429's retry-after: no request goes to this model on this key before"
    )


class ApiKeyLimitsOut(ApiKeyOut):
    """A key with its last known upstream limits, per model (empty: nothing known now)."""

    provider: str
    tenant: str | None = Field(description="the slug of the tenant owning it; null: shared")
    upstream_limits: list[ModelLimitsOut]


class KeyCreditsOut(Schema):
    """An OpenRouter key's credit (USD) as OpenRouter's GET /api/v1/key reports it."""

    limit: float | None = Field(description="the key's spending limit; null: unlimited")
    limit_remaining: float | None = Field(description="what is left of the limit")
    limit_reset: str | None = Field(description="daily, weekly, monthly or null (never)")
    usage: float = Field(description="credit used by the key")
    is_free_tier: bool
    checked_at: datetime = Field(description="when OpenRouter was asked")
    cached: bool = Field(description="true: an answer of the last minute, reused")


def api_key_limits_out(key: Any, limits: list[Any]) -> dict[str, Any]:
    """``ApiKeyLimitsOut``'s fields from a key (its provider and tenant loaded) and its
    ``ModelLimits``."""
    return {
        **{name: getattr(key, name) for name in ApiKeyOut.model_fields},
        "provider": key.provider.name,
        "tenant": key.tenant.slug if key.tenant_id else None,
        "upstream_limits": [dataclasses.asdict(entry) for entry in limits],
    }
