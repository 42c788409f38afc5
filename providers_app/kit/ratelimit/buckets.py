"""Client-side token buckets for providers that publish limits but send no headers.

The numbers (Qwen's 60 a minute and 2,000 a day, Gemini's tiers) belong to
each provider's profile (``kit/providers``); this module only enforces them,
with the store's atomic ``take_tokens`` so every process draws from one
allowance.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ..errors import RateLimitError
from ..ratelimit_store import RateLimitStore, take_from_bucket
from .tracker import Clock, RateLimitKey, key_text

__all__ = ["BucketLimits", "TokenBucket"]


class BucketLimits(NamedTuple):
    per_minute: float
    per_day: float | None = None


class TokenBucket:
    """Client-side limiter for providers that publish limits but send no headers.

    A per-minute bucket (capacity = per_minute, refilling continuously) and an
    optional per-day bucket, both in the shared store so every process draws
    from the same allowance. When the day bucket refuses after the minute
    bucket granted, the minute tokens are handed back (negative take).
    """

    def __init__(
        self,
        store: RateLimitStore,
        key: RateLimitKey,
        *,
        per_minute: float,
        per_day: float | None = None,
        clock: Clock = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        if per_day is not None and per_day <= 0:
            raise ValueError("per_day must be positive or None")
        self.store = store
        self.key = key_text(key)
        self.per_minute = float(per_minute)
        self.per_day = float(per_day) if per_day is not None else None
        self._clock = clock
        self._sleep = sleep

    def _buckets(self) -> list[tuple[str, float, float]]:
        """(store key, capacity, refill per second) for each bucket, minute first."""
        buckets = [(f"bucket:{self.key}:minute", self.per_minute, self.per_minute / 60.0)]
        if self.per_day is not None:
            buckets.append((f"bucket:{self.key}:day", self.per_day, self.per_day / 86400.0))
        return buckets

    async def _take(self, n: float) -> tuple[bool, float]:
        now = self._clock()
        taken: list[tuple[str, float, float]] = []
        for bucket_key, capacity, refill in self._buckets():
            allowed, wait = await self.store.take_tokens(
                bucket_key, capacity=capacity, refill_per_second=refill, amount=n, now=now
            )
            if not allowed:
                for undo_key, undo_capacity, undo_refill in taken:
                    await self.store.take_tokens(
                        undo_key,
                        capacity=undo_capacity,
                        refill_per_second=undo_refill,
                        amount=-n,
                        now=now,
                    )
                return False, wait
            taken.append((bucket_key, capacity, refill))
        return True, 0.0

    async def try_acquire(self, n: float = 1) -> bool:
        allowed, _ = await self._take(n)
        return allowed

    async def wait_time(self, n: float = 1) -> float:
        """Seconds until ``n`` could be taken, taking nothing (inf if ``n`` exceeds a capacity)."""
        now = self._clock()
        longest = 0.0
        for bucket_key, capacity, refill in self._buckets():
            state = await self.store.get(bucket_key)
            allowed, wait, _ = take_from_bucket(
                state, capacity=capacity, refill_per_second=refill, amount=n, now=now
            )
            if not allowed:
                longest = max(longest, wait)
        return longest

    async def acquire(self, n: float = 1, *, max_wait: float) -> None:
        """Take ``n``, sleeping while needed; RateLimitError if that would exceed ``max_wait`` s."""
        deadline = self._clock() + max_wait
        while True:
            allowed, wait = await self._take(n)
            if allowed:
                return
            now = self._clock()
            if not math.isfinite(wait):
                raise RateLimitError(
                    f"request of {n:g} exceeds the client-side limit", code="client_rate_limited"
                )
            if now + wait > deadline:
                raise RateLimitError(
                    f"client-side rate limit: next slot in {wait:.2f}s (max_wait {max_wait:g}s)",
                    code="client_rate_limited",
                    retry_after=wait,
                )
            await self._sleep(wait)
