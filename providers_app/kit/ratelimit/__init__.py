"""Rate limits: what providers say in headers, what we remember, buckets for the silent ones.

Three layers, all framework-free: ``headers`` (one parser per header style),
``tracker`` (the latest snapshot per provider and model, in a shared store)
and ``buckets`` (client-side limits for providers that send no headers). What
one provider sends and what its published limits are live in its profile
(``kit/providers/<name>.py``).
"""

from __future__ import annotations

from ..ratelimit_store import MemoryRateLimitStore, RateLimitStore
from .buckets import BucketLimits, TokenBucket
from .headers import (
    HEADER_STYLES,
    RateLimitInfo,
    header_parser,
    parse_anthropic_headers,
    parse_cerebras_headers,
    parse_duration,
    parse_openai_headers,
    parse_rate_limit_headers,
    parse_retry_after,
)
from .tracker import RateLimitKey, RateLimitTracker

__all__ = [
    "HEADER_STYLES",
    "BucketLimits",
    "MemoryRateLimitStore",
    "RateLimitInfo",
    "RateLimitKey",
    "RateLimitStore",
    "RateLimitTracker",
    "TokenBucket",
    "header_parser",
    "parse_anthropic_headers",
    "parse_cerebras_headers",
    "parse_duration",
    "parse_openai_headers",
    "parse_rate_limit_headers",
    "parse_retry_after",
]
