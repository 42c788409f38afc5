"""OpenAI: the Chat Completions wire and OpenAI's ``x-ratelimit-*`` headers."""

from __future__ import annotations

from ..adapters.openai import OpenAIAdapter
from .profile import OAuthDefaults, ProviderProfile

PROFILE = ProviderProfile(
    provider_type="openai",
    label="OpenAI",
    adapter=OpenAIAdapter,
    max_output_tokens=128_000,  # gpt-5
    oauth=OAuthDefaults(
        authorize_url="https://auth.openai.com/oauth/authorize",
        token_url="https://auth.openai.com/oauth/token",
        scopes="openid profile email offline_access",
    ),
)
