"""Qwen: OpenAI-compatible, either the Qwen portal (OAuth bearer from the device
flow, with a per-account API host) or Alibaba's DashScope compatible-mode
endpoint (API key). It sends no rate-limit headers, so a client-side bucket
enforces its published free-tier limits."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..adapters.qwen import QwenAdapter
from ..oauth import qwen_base_url
from ..ratelimit import BucketLimits, RateLimitKey, RateLimitStore, TokenBucket
from ..ratelimit.tracker import Clock
from .profile import OAuthDefaults, ProviderProfile

__all__ = ["PROFILE", "QWEN_LIMITS", "qwen_bucket"]

# Qwen OAuth free tier (qwen-code): 60 requests per minute, 2,000 per day. The
# provider's settings (requests_per_minute / requests_per_day) may change them.
QWEN_LIMITS = BucketLimits(per_minute=60, per_day=2000)


def qwen_bucket(
    store: RateLimitStore, key: RateLimitKey, *, clock: Clock = time.time
) -> TokenBucket:
    """A bucket holding the free tier's limits."""
    return TokenBucket(
        store, key, per_minute=QWEN_LIMITS.per_minute, per_day=QWEN_LIMITS.per_day, clock=clock
    )


def _client_limits(settings: Mapping[str, Any]) -> BucketLimits:
    return BucketLimits(
        per_minute=settings.get("requests_per_minute", QWEN_LIMITS.per_minute),
        per_day=settings.get("requests_per_day", QWEN_LIMITS.per_day),
    )


PROFILE = ProviderProfile(
    provider_type="qwen",
    label="Qwen",
    adapter=QwenAdapter,
    max_output_tokens=65_536,  # Qwen3 coder
    oauth=OAuthDefaults(
        device_url="https://chat.qwen.ai/api/v1/oauth2/device/code",
        token_url="https://chat.qwen.ai/api/v1/oauth2/token",
        scopes="openid profile email model.completion",
        code_flow=None,  # the device flow only
        # Qwen's device reply carries no interval; its own client polls every 2 s.
        device_poll_interval=2.0,
    ),
    client_limits=_client_limits,
    base_url_for_account=qwen_base_url,
    primary_credential="oauth",
)
