"""The provider registry: type name -> profile, and adapters built from it.

Each module here is one provider (``openai``, ``anthropic``, ``gemini``,
``cerebras``, ``qwen``, ``openrouter``, ``openai_compatible``) defining
``PROFILE``; adding a provider is one module, one entry in ``PROFILES``, and
the shared battery (tests/providers/test_every_provider.py) passing for it.
"""

from __future__ import annotations

import httpx

from ..adapters.base import BaseAdapter, ProviderConfig
from . import anthropic, cerebras, gemini, openai, openai_compatible, openrouter, qwen
from .profile import OAuthDefaults, ProviderProfile

PROFILES: dict[str, ProviderProfile] = {
    profile.provider_type: profile
    for profile in (
        openai.PROFILE,
        anthropic.PROFILE,
        gemini.PROFILE,
        cerebras.PROFILE,
        qwen.PROFILE,
        openrouter.PROFILE,
        openai_compatible.PROFILE,
    )
}

# provider type -> adapter class ("openai-compatible" is the OpenAI adapter at any base_url)
ADAPTERS: dict[str, type[BaseAdapter]] = {name: p.adapter for name, p in PROFILES.items()}


def provider_profile(provider_type: str) -> ProviderProfile:
    try:
        return PROFILES[provider_type]
    except KeyError:
        raise ValueError(
            f"unknown provider type {provider_type!r}; expected one of {sorted(PROFILES)}"
        ) from None


def create_adapter(
    provider_type: str,
    config: ProviderConfig,
    *,
    client: httpx.AsyncClient | None = None,
    limiter: object = None,
) -> BaseAdapter:
    profile = provider_profile(provider_type)
    if profile.requires_base_url and not config.base_url:
        raise ValueError(f"an {provider_type} provider needs a base_url")
    adapter = profile.adapter(config, client=client, limiter=limiter)
    # the field table's column (kit/fields.py): an OpenAI-compatible endpoint shares
    # OpenAI's adapter, not OpenAI's rules
    adapter._rules_type = profile.provider_type.replace("-", "_")
    return adapter


__all__ = [
    "ADAPTERS",
    "PROFILES",
    "OAuthDefaults",
    "ProviderProfile",
    "create_adapter",
    "provider_profile",
]
