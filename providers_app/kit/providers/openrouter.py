"""OpenRouter: OpenAI-compatible; its OAuth is a PKCE variant that buys a
permanent API key (no registered client needed), served at ``{base}/auth/keys``."""

from __future__ import annotations

from .. import oauth as wire
from ..adapters.openrouter import OpenRouterAdapter
from .profile import OAuthDefaults, ProviderProfile


def key_exchange_url(base_url: str) -> str:
    """{base}/api/v1 + /auth/keys: a self-hosted or simulated OpenRouter's exchange."""
    return base_url.rstrip("/") + "/auth/keys"


PROFILE = ProviderProfile(
    provider_type="openrouter",
    label="OpenRouter",
    adapter=OpenRouterAdapter,
    oauth=OAuthDefaults(
        authorize_url=wire.OPENROUTER_AUTH_URL,
        token_url=wire.OPENROUTER_KEY_EXCHANGE_URL,
        code_flow="openrouter_pkce",
        token_url_from_base_url=key_exchange_url,
    ),
    # X-RateLimit-* headers come on refusals only (openrouter.ai/docs/api-reference/limits)
    rate_limit_headers_on_success=False,
    # OpenRouter says "context too long" only in words, which the kit never parses
    context_length_coded=False,
)
