"""How long to wait before trying again: exponential backoff with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped.

    Attempt ``n`` (1-based) waits ``base_delay * multiplier**(n-1)`` capped at
    ``max_delay``, then scaled by a random factor in ``[1 - jitter, 1]`` so
    that many clients failing together do not come back together. A provider's
    ``retry_after`` is a floor (never retry earlier than it asked), still capped
    at ``max_delay``: a request should not hang for minutes.
    """

    base_delay: float = 0.25
    max_delay: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float:
        backoff = min(self.max_delay, self.base_delay * self.multiplier ** max(0, attempt - 1))
        backoff *= 1.0 - self.jitter * rng()
        if retry_after is not None and retry_after > 0:
            backoff = max(backoff, retry_after)
        return max(0.0, min(self.max_delay, backoff))
