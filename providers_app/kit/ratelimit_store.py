"""Where rate-limit state lives: a tiny async store interface plus an in-process implementation.

Rate-limit state must be shared by every process that talks to a provider
(several daphne workers, Celery workers), so the kit never keeps it in a
module-level dict. It goes through a ``RateLimitStore``; the in-memory one
below serves the embedded mode and the tests, and a Redis-backed one (over
Django's cache, with a Lua script) implements the same three methods.

Why the token-bucket arithmetic is a store method and not tracker code:
a bucket take is read-refill-compare-write. Done as ``get`` + ``set`` from
two processes at once, both read "1 token left" and both spend it. Only the
store can make that one indivisible step -- a lock here, one Lua script in
Redis -- so the arithmetic is defined once, in ``take_from_bucket``, and every
store must apply exactly it atomically.
"""

from __future__ import annotations

import abc
import copy
import math
import threading
import time
from collections.abc import Callable
from typing import Any

# Bucket state as stored under the bucket's key (and as ``get`` returns it).
BUCKET_TOKENS = "tokens"
BUCKET_UPDATED_AT = "updated_at"

# Slack so that "wait exactly the returned seconds, then take" is admitted: unix
# timestamps near 1.8e9 carry only ~0.24 us of precision, so a shortfall worth
# less than a microsecond of refill counts as none.
_SLACK_SECONDS = 1e-6
_SLACK_TOKENS = 1e-9


def take_from_bucket(
    state: dict[str, Any] | None,
    *,
    capacity: float,
    refill_per_second: float,
    amount: float,
    now: float,
) -> tuple[bool, float, dict[str, float]]:
    """The token-bucket step every store applies atomically.

    Returns ``(allowed, seconds_to_wait_if_refused, new_state)``. A missing
    state is a full bucket. A negative ``amount`` gives tokens back (capped at
    ``capacity``): callers holding several buckets use it to undo a take when a
    later bucket refuses. If the clocks of two processes disagree, time never
    runs backwards for a bucket (no double refill).

    A Redis implementation mirrors these lines in its Lua script.
    """
    if state:
        tokens = float(state.get(BUCKET_TOKENS, capacity))
        updated_at = float(state.get(BUCKET_UPDATED_AT, now))
    else:
        tokens, updated_at = float(capacity), now
    elapsed = max(0.0, now - updated_at)
    tokens = min(float(capacity), tokens + elapsed * refill_per_second)
    stamp = max(updated_at, now)

    if amount <= tokens + max(_SLACK_TOKENS, refill_per_second * _SLACK_SECONDS):
        tokens = max(0.0, min(float(capacity), tokens - amount))
        return True, 0.0, {BUCKET_TOKENS: tokens, BUCKET_UPDATED_AT: stamp}

    if amount > capacity or refill_per_second <= 0:
        wait = math.inf
    else:
        wait = (amount - tokens) / refill_per_second
    return False, wait, {BUCKET_TOKENS: tokens, BUCKET_UPDATED_AT: stamp}


def bucket_ttl(capacity: float, refill_per_second: float) -> float:
    """How long bucket state is worth keeping: after this it is full again, i.e. the default."""
    if refill_per_second <= 0:
        return 86400.0
    return capacity / refill_per_second + 1.0


class RateLimitStore(abc.ABC):
    """Shared rate-limit state. Values are small JSON-able dicts.

    ``get``/``set`` hold snapshots where the last writer may win (what a
    provider's headers said). ``take_tokens`` is the one read-modify-write and
    must be atomic across every process sharing the store; see the module
    docstring. Its state lives under ``key`` as
    ``{"tokens": float, "updated_at": float}`` and ``get(key)`` returns it.
    """

    @abc.abstractmethod
    async def get(self, key: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None: ...

    @abc.abstractmethod
    async def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        amount: float,
        now: float,
    ) -> tuple[bool, float]:
        """Atomically apply ``take_from_bucket``: ``(allowed, seconds_to_wait_if_refused)``."""


class MemoryRateLimitStore(RateLimitStore):
    """In-process store for the embedded mode and tests.

    Each operation runs without awaiting inside its critical section, so it is
    atomic with respect to other coroutines; the lock also makes it safe when
    sync code in other threads (``async_to_sync``) shares the instance. State
    is per process: production uses the Redis store instead.

    Expiry uses ``clock`` (monotonic by default), independent of the ``now``
    callers pass for bucket arithmetic, so tests may inject their own time.
    """

    _SWEEP_EVERY = 1024

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._writes = 0

    def _live(self, key: str, at: float) -> dict[str, Any] | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= at:
            del self._data[key]
            return None
        return value

    def _put(self, key: str, value: dict[str, Any], ttl: float, at: float) -> None:
        if ttl <= 0:
            self._data.pop(key, None)
            return
        self._data[key] = (at + ttl, value)
        self._writes += 1
        if self._writes % self._SWEEP_EVERY == 0:
            for stale in [k for k, (exp, _) in self._data.items() if exp <= at]:
                del self._data[stale]

    async def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            value = self._live(key, self._clock())
            return copy.deepcopy(value) if value is not None else None

    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        with self._lock:
            self._put(key, copy.deepcopy(value), ttl, self._clock())

    async def take_tokens(
        self,
        key: str,
        *,
        capacity: float,
        refill_per_second: float,
        amount: float,
        now: float,
    ) -> tuple[bool, float]:
        with self._lock:
            at = self._clock()
            allowed, wait, state = take_from_bucket(
                self._live(key, at),
                capacity=capacity,
                refill_per_second=refill_per_second,
                amount=amount,
                now=now,
            )
            self._put(key, state, bucket_ttl(capacity, refill_per_second), at)
            return allowed, wait

    def __len__(self) -> int:
        return len(self._data)
