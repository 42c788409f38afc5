"""The embedded mode's default cache: Django's LocMemCache without memcached's key check.

``BaseCache.validate_key`` walks every character of every key to warn about keys
memcached would refuse (longer than 250 characters, spaces, control characters).
This cache never reaches memcached, and the gateway reads and writes several
state keys per request (admission counters, key pool, breaker, rate-limit
tracker): the walk was ~4 % of a request's CPU (docs/BENCHMARKS.md "Data plane").
Everything else -- expiry, culling, pickled copies, one process only -- is
LocMemCache's own. In production the cache is Redis.
"""

from __future__ import annotations

from django.core.cache.backends.locmem import LocMemCache


class FastLocMemCache(LocMemCache):  # type: ignore[misc]  # Django ships no types
    def validate_key(self, key: str) -> None:
        """Every key is valid for a dict in this process."""
