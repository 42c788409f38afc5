"""Anthropic: the Messages wire and ``anthropic-ratelimit-*`` headers. Its error
bodies carry no code for "context too long", so that is a plain invalid request
to the kit (messages are never parsed)."""

from __future__ import annotations

from ..adapters.anthropic import AnthropicAdapter
from .profile import OAuthDefaults, ProviderProfile

PROFILE = ProviderProfile(
    provider_type="anthropic",
    label="Anthropic",
    adapter=AnthropicAdapter,
    max_output_tokens=64_000,  # Claude 4.x
    oauth=OAuthDefaults(
        authorize_url="https://claude.ai/oauth/authorize",
        token_url="https://console.anthropic.com/v1/oauth/token",
        scopes="org:create_api_key user:profile user:inference",
    ),
    context_length_coded=False,
)
