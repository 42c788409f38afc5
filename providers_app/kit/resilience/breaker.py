"""The circuit breaker: stop sending to a provider that keeps failing, probe it, recover."""

from __future__ import annotations

import time
from typing import Literal

from ..errors import ProviderError
from .store import Clock, ResilienceStore
from .transitions import BREAKER_OPEN, BREAKER_OPENED_AT, BREAKER_PROBE_UNTIL


class CircuitOpenError(ProviderError):
    """The provider's circuit breaker is open: no request is sent until its probe succeeds."""

    type = "circuit_open"
    retryable = True
    scope = "local"
    default_status = 503


class CircuitBreaker:
    """closed → open after ``failure_threshold`` consecutive failures → half-open after
    ``reset_timeout`` (exactly one probe goes through) → closed on its success,
    open again on its failure.

    Which outcomes count is the caller's decision: record a failure only for
    errors that say the provider is unwell (retryable ones: 5xx, timeouts,
    network); an invalid request or a bad key says nothing about the provider.
    ``call_with_failover`` does exactly that (and leaves 429s to the key pool,
    since they are per credential).
    """

    def __init__(
        self,
        store: ResilienceStore,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Clock = time.time,
        prefix: str = "breaker",
        ttl: float = 86400.0,
    ) -> None:
        self.store = store
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.clock = clock
        self.key = f"{prefix}:{name}"
        self.ttl = max(ttl, reset_timeout * 2)

    async def allow(self) -> bool:
        return await self.store.breaker_allow(
            self.key, now=self.clock(), reset_timeout=self.reset_timeout, ttl=self.ttl
        )

    async def record_success(self) -> None:
        await self._record(True)

    async def record_failure(self) -> None:
        await self._record(False)

    async def _record(self, success: bool) -> None:
        await self.store.breaker_record(
            self.key,
            success=success,
            now=self.clock(),
            threshold=self.failure_threshold,
            reset_timeout=self.reset_timeout,
            ttl=self.ttl,
        )

    async def state(self) -> Literal["closed", "open", "half_open"]:
        stored = await self.store.get(self.key)
        if not stored or not int(stored.get(BREAKER_OPEN, 0)):
            return "closed"
        if self.clock() >= float(stored[BREAKER_OPENED_AT]) + self.reset_timeout:
            return "half_open"
        return "open"

    async def retry_after(self) -> float | None:
        """Seconds until a probe may go through (None when closed)."""
        stored = await self.store.get(self.key)
        if not stored or not int(stored.get(BREAKER_OPEN, 0)):
            return None
        now = self.clock()
        free_at = max(
            float(stored[BREAKER_OPENED_AT]) + self.reset_timeout,
            float(stored.get(BREAKER_PROBE_UNTIL, 0.0)),
        )
        return max(0.0, free_at - now)
