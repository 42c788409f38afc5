"""Google Gemini: generateContent (or Code Assist with OAuth and a project), no
rate-limit headers -- so client-side buckets by usage tier -- and google.rpc
error bodies whose RetryInfo says how long to wait."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..adapters.gemini import GeminiAdapter, gemini_quota_is_daily, retry_after_from_gemini_error
from ..ratelimit import BucketLimits, RateLimitKey, RateLimitStore, TokenBucket
from ..ratelimit.tracker import Clock
from .profile import OAuthDefaults, ProviderProfile

__all__ = [
    "GEMINI_DAILY_LIMITS",
    "GEMINI_TIERS",
    "PROFILE",
    "gemini_bucket",
    "gemini_limits",
    "gemini_quota_is_daily",
    "retry_after_from_gemini_error",
]

# Gemini API requests per minute by usage tier, for Gemini 2.0 Flash. Google's
# rate-limits page (ai.google.dev/gemini-api/docs/rate-limits) listed free 15 RPM /
# 1,500 RPD and Tier 1 2,000 RPM; the Tier 2 (10,000) and Tier 3 (30,000) values
# come from secondary copies of that table. Limits differ per model and change
# often (Google now shows them per project in AI Studio), so gemini_limits()
# takes overrides; these are defaults, not truths.
GEMINI_TIERS: dict[str, int] = {
    "free": 15,
    "tier1": 2000,
    "tier2": 10000,
    "tier3": 30000,
}
# Requests per day; None where the table gives no daily cap.
GEMINI_DAILY_LIMITS: dict[str, int | None] = {
    "free": 1500,
    "tier1": None,
    "tier2": None,
    "tier3": None,
}


def gemini_limits(
    tier: str = "free", *, per_minute: float | None = None, per_day: float | None = None
) -> BucketLimits:
    """Gemini's published tier limits; ``per_minute``/``per_day`` override them per model."""
    if tier not in GEMINI_TIERS:
        raise ValueError(f"unknown Gemini tier {tier!r}; expected one of {sorted(GEMINI_TIERS)}")
    return BucketLimits(
        per_minute=per_minute if per_minute is not None else GEMINI_TIERS[tier],
        per_day=per_day if per_day is not None else GEMINI_DAILY_LIMITS.get(tier),
    )


def gemini_bucket(
    store: RateLimitStore,
    key: RateLimitKey,
    tier: str = "free",
    *,
    per_minute: float | None = None,
    per_day: float | None = None,
    clock: Clock = time.time,
) -> TokenBucket:
    """A bucket holding ``gemini_limits(tier, ...)``."""
    limits = gemini_limits(tier, per_minute=per_minute, per_day=per_day)
    return TokenBucket(
        store, key, per_minute=limits.per_minute, per_day=limits.per_day, clock=clock
    )


def _client_limits(settings: Mapping[str, Any]) -> BucketLimits:
    return gemini_limits(settings.get("rate_limit_tier", "free"))


PROFILE = ProviderProfile(
    provider_type="gemini",
    label="Google Gemini",
    adapter=GeminiAdapter,
    max_output_tokens=65_536,  # Gemini 2.5
    oauth=OAuthDefaults(
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",
        scopes=(
            "https://www.googleapis.com/auth/cloud-platform "
            "https://www.googleapis.com/auth/userinfo.email "
            "https://www.googleapis.com/auth/userinfo.profile"
        ),
        # Google returns a refresh token only for offline access, and again only with consent.
        authorize_params=(("access_type", "offline"), ("prompt", "consent")),
    ),
    client_limits=_client_limits,
    context_length_coded=False,
    # a per-day quota is a RESOURCE_EXHAUSTED like any other: it frees up at the reset
    quota_is_rate_limit=True,
    retry_after_from_error=retry_after_from_gemini_error,
)
