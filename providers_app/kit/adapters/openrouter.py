"""OpenRouter: OpenAI-compatible, identifies the calling app with HTTP-Referer and
X-Title, lists models with prices (USD per token, as strings) and reports the
key's credits at ``GET /key``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..types import ModelInfo
from .base import catalog_model
from .openai import OpenAIAdapter


@dataclass(slots=True)
class KeyCredits:
    label: str | None
    limit: float | None  # USD; None = unlimited
    limit_remaining: float | None
    limit_reset: str | None  # "monthly", "daily" ... or None
    usage: float
    is_free_tier: bool


def _per_million(value: Any) -> float | None:
    try:
        return round(float(value) * 1_000_000, 6)
    except (TypeError, ValueError):
        return None


class OpenRouterAdapter(OpenAIAdapter):
    provider_type = "openrouter"
    default_base_url = "https://openrouter.ai/api/v1"
    default_model_id = "openai/gpt-4o-mini"
    rate_limit_style = "openai"
    # OpenRouter passes cache_control on content parts to Anthropic (and Gemini) models
    sends_cache_control = True
    static_models = (
        catalog_model(
            "openrouter",
            "openai/gpt-4o-mini",
            "OpenAI: GPT-4o-mini",
            context=128_000,
            price_in=0.15,
            price_out=0.60,
        ),
        catalog_model(
            "openrouter",
            "anthropic/claude-sonnet-4",
            "Anthropic: Claude Sonnet 4",
            context=200_000,
            price_in=3.0,
            price_out=15.0,
        ),
    )

    def request_headers(self) -> dict[str, str]:
        headers = super().request_headers()
        if self.config.site_url:
            headers["HTTP-Referer"] = self.config.site_url
        if self.config.site_name:
            headers["X-Title"] = self.config.site_name
        return headers

    def parse_models(self, body: Any) -> list[ModelInfo]:
        models = []
        for entry in (body or {}).get("data") or []:
            if not entry.get("id"):
                continue
            pricing = entry.get("pricing") or {}
            params = entry.get("supported_parameters") or []
            top = entry.get("top_provider") or {}
            # OpenRouter says what each model takes (["text", "image", "file"]); other
            # lists do not, and model_from_listing asks the catalogue and family rules
            modalities = (entry.get("architecture") or {}).get("input_modalities")
            models.append(
                self.model_from_listing(
                    entry["id"],
                    name=entry.get("name"),
                    context_window=entry.get("context_length"),
                    max_output_tokens=top.get("max_completion_tokens"),
                    supports_tools="tools" in params if params else None,
                    supports_vision=_takes_media(modalities),
                    input_price_per_million=_per_million(pricing.get("prompt")),
                    output_price_per_million=_per_million(pricing.get("completion")),
                )
            )
        return models

    async def credits(self) -> KeyCredits:
        """The key's spending limit and usage, from OpenRouter's key endpoint."""
        response = await self._send("GET", f"{self.base_url}/key")
        return parse_credits(self._json(response))


def parse_credits(body: Any) -> KeyCredits:
    data = (body or {}).get("data") or {}
    return KeyCredits(
        label=data.get("label"),
        limit=data.get("limit"),
        limit_remaining=data.get("limit_remaining"),
        limit_reset=data.get("limit_reset"),
        usage=float(data.get("usage") or 0),
        is_free_tier=bool(data.get("is_free_tier")),
    )


def _takes_media(modalities: Any) -> bool | None:
    """From a model's ``input_modalities``: any of image, file or audio; None when the
    entry does not say."""
    if not isinstance(modalities, list) or not modalities:
        return None
    return any(m in ("image", "file", "audio") for m in modalities if isinstance(m, str))
