"""Type-specific provider settings, validated per provider type.

Each type accepts only its own fields (pydantic models with ``extra="forbid"``),
so a typo such as ``organisation`` is a clear error naming the field rather
than a setting silently ignored. Defaults that are facts about a provider
(Qwen's limits, Gemini's tiers) come from its profile in ``kit/providers``; a
registered type without a model of its own here takes the common settings.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from aipk_site.infra.errors import InvalidRequest
from providers_app.kit.providers import PROFILES
from providers_app.kit.providers.qwen import QWEN_LIMITS


class ProviderSettingsError(InvalidRequest):
    """Bad settings for a provider type; ``errors`` maps field → message (the first
    field is the error's ``param``)."""

    code = "invalid_settings"

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"{field}: {message}" for field, message in errors.items()),
            param=next(iter(errors), None),
        )


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# A day: no deadline beyond it makes sense, and a bound keeps a typo (seconds as ms) out.
MAX_DEADLINE_SECONDS = 86_400.0


class TimeoutSettings(_Settings):
    """Per-provider deadlines in seconds (any left out keeps its default, see
    providers_app.kit.adapters.Deadlines: connect 5, first_byte 600, idle 600, total
    1800). ``total`` is the whole request's budget, retries and failover included;
    ``Provider.timeout_seconds``, when set, is the same as ``total``."""

    connect: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_SECONDS)
    first_byte: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_SECONDS)
    idle: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_SECONDS)
    total: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_SECONDS)


class _ProviderSettings(_Settings):
    timeouts: TimeoutSettings | None = None
    # USD per million tokens for this provider's models that have no Pricing row, so
    # they can be served while a budget applies (docs/GATEWAY.md "Budgets"); both or
    # neither. Stored as text, like the Pricing columns (6 decimal places).
    fallback_input_per_million: Decimal | None = Field(
        default=None, ge=0, lt=1_000_000, decimal_places=6, allow_inf_nan=False
    )
    fallback_output_per_million: Decimal | None = Field(
        default=None,
        ge=0,
        lt=1_000_000,
        decimal_places=6,
        allow_inf_nan=False,
        validate_default=True,
    )

    @field_validator("fallback_output_per_million")
    @classmethod
    def _fallback_price_whole(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        # a half price would charge one direction of the traffic at $0
        if "fallback_input_per_million" not in info.data:
            return value  # the input figure was refused already, naming itself
        has_input = info.data["fallback_input_per_million"] is not None
        if has_input != (value is not None):
            raise ValueError(
                "fallback_input_per_million and fallback_output_per_million are set together"
            )
        return value


class OpenAISettings(_ProviderSettings):
    organization: str | None = Field(default=None, max_length=100)


class AnthropicSettings(_ProviderSettings):
    pass


# the tiers of the Gemini profile's GEMINI_TIERS, spelled out for pydantic (a test keeps them equal)
GeminiTier = Literal["free", "tier1", "tier2", "tier3"]


class GeminiSettings(_ProviderSettings):
    # with OAuth, a Google Cloud project routes requests through Code Assist
    project_id: str | None = Field(default=None, max_length=100)
    rate_limit_tier: GeminiTier = "free"


class CerebrasSettings(_ProviderSettings):
    pass


class QwenSettings(_ProviderSettings):
    # Qwen sends no rate-limit headers; a client-side bucket enforces these instead
    requests_per_minute: int = Field(default=int(QWEN_LIMITS.per_minute), ge=1, le=100_000)
    requests_per_day: int = Field(default=int(QWEN_LIMITS.per_day or 0), ge=1, le=10_000_000)


class OpenRouterSettings(_ProviderSettings):
    site_url: HttpUrl | None = None
    site_name: str | None = Field(default=None, max_length=100)


class OpenAICompatibleSettings(_ProviderSettings):
    organization: str | None = Field(default=None, max_length=100)


SETTINGS_MODELS: dict[str, type[_ProviderSettings]] = {
    "openai": OpenAISettings,
    "anthropic": AnthropicSettings,
    "gemini": GeminiSettings,
    "cerebras": CerebrasSettings,
    "qwen": QwenSettings,
    "openrouter": OpenRouterSettings,
    "openai-compatible": OpenAICompatibleSettings,
}


def validate_provider_settings(
    provider_type: str, settings: dict[str, Any] | None
) -> dict[str, Any]:
    """The settings as stored (defaults filled in), or ProviderSettingsError naming each bad
    field."""
    if provider_type not in PROFILES:
        raise ProviderSettingsError({"type": f"unknown provider type {provider_type!r}"})
    model = SETTINGS_MODELS.get(provider_type, _ProviderSettings)
    if settings is not None and not isinstance(settings, dict):
        raise ProviderSettingsError({"settings": "must be an object"})
    try:
        parsed = model.model_validate(settings or {})
    except ValidationError as exc:
        raise ProviderSettingsError(
            {
                ".".join(str(p) for p in error["loc"]) or "settings": error["msg"]
                for error in exc.errors()
            }
        ) from None
    return parsed.model_dump(mode="json", exclude_none=True)
