"""An OpenRouter key's credit: its spending limit, what is left of it and what it used.

Asked of OpenRouter's ``GET /api/v1/key`` through the kit's OpenRouter adapter
(``OpenRouterAdapter.credits``), the endpoint any API key may call. The account-wide
``GET /api/v1/credits`` needs a management key, which aipk does not hold. Answers are
cached for ``CREDITS_CACHE_SECONDS`` per key, so a dashboard polling the API costs
OpenRouter one request a minute per key, not one per page view.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from aipk_site.infra.errors import InvalidRequest, UpstreamError
from providers_app.kit.adapters.openrouter import OpenRouterAdapter
from providers_app.kit.errors import ProviderError
from providers_app.models import ApiKey, Provider
from providers_app.services.providers import build_adapter

CREDITS_CACHE_SECONDS = 60


def _cache_key(key: ApiKey) -> str:
    # last4 and rotation time are in the key: a secret replaced in place is asked again
    rotated = key.rotated_at.timestamp() if key.rotated_at else 0
    return f"providers:credits:{key.pk}:{key.last4}:{rotated}"


async def aapi_key_credits(*, key: ApiKey, provider: Provider) -> dict[str, Any]:
    """The key's credit as OpenRouter reports it, plus when it was asked (``checked_at``,
    unix time) and whether this answer is a cached one."""
    if provider.type != "openrouter":
        raise InvalidRequest(
            f"provider {provider.name!r} is of type {provider.type}: only OpenRouter "
            "reports a credit balance",
            param="provider",
            code="credits_not_supported",
        )
    cache_key = _cache_key(key)
    cached = await cache.aget(cache_key)
    if cached is not None:
        return {**cached, "cached": True}
    adapter = build_adapter(provider, key)
    assert isinstance(adapter, OpenRouterAdapter)
    try:
        credits = await adapter.credits()
    except ProviderError as error:
        # the kit's message is scrubbed of secrets; the provider's words stay out anyway
        raise UpstreamError(
            f"OpenRouter did not report the credit of key …{key.last4}: {error.type}"
            + (f" (HTTP {error.status_code})" if error.status_code else ""),
            code="upstream_error",
        ) from None

    answer = {**dataclasses.asdict(credits), "checked_at": timezone.now().isoformat()}
    # OpenRouter's label is the key's own masked form ("sk-or-v1-abc...xyz"): aipk shows
    # its own label and last four characters instead, never a provider's rendering
    answer.pop("label", None)
    await cache.aset(cache_key, answer, CREDITS_CACHE_SECONDS)
    return {**answer, "cached": False}
