"""``RateLimitTracker``: what providers said about their limits, remembered per key.

Snapshots live in a ``RateLimitStore`` (Redis in production) so every process
answers "may I send now / how long to wait" the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..ratelimit_store import RateLimitStore
from .headers import RateLimitInfo

__all__ = [
    "DEFAULT_SNAPSHOT_TTL",
    "MAX_SNAPSHOT_TTL",
    "RateLimitKey",
    "RateLimitTracker",
    "key_text",
]

Clock = Callable[[], float]
RateLimitKey = str | tuple[Any, ...]

# How long a snapshot is kept when it names no reset time at all.
DEFAULT_SNAPSHOT_TTL = 60.0
# Longest we keep any snapshot (Cerebras' day window resets within 24 h).
MAX_SNAPSHOT_TTL = 2 * 86400.0


def key_text(key: RateLimitKey) -> str:
    if isinstance(key, tuple):
        return ":".join(str(part) for part in key)
    return str(key)


class RateLimitTracker:
    """Remembers what providers said about their limits, per (provider, model) key.

    Two store entries per key, both plain writes (no read-modify-write, so no
    cross-process race): the latest header snapshot, replaced whole by each
    response that carries limits, and a "retry-until" time set by 429s. A 429
    without limit headers therefore does not wipe what earlier responses
    told us. Last writer wins: a response that arrives slightly out of order
    is corrected by the next one.

    A window whose reset time has passed counts as replenished.
    """

    def __init__(
        self, store: RateLimitStore, *, clock: Clock = time.time, prefix: str = "ratelimit"
    ) -> None:
        self._store = store
        self._clock = clock
        self._prefix = prefix

    def _snapshot_key(self, key: RateLimitKey) -> str:
        return f"{self._prefix}:{key_text(key)}"

    def _retry_key(self, key: RateLimitKey) -> str:
        return f"{self._prefix}:{key_text(key)}:retry"

    def read_keys(self, key: RateLimitKey) -> tuple[str, str]:
        """The store keys ``check`` reads for ``key``: a caller that reads the store anyway
        reads these along (``check_found``) instead of a round trip of their own."""
        return self._snapshot_key(key), self._retry_key(key)

    async def _read(self, key: RateLimitKey) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The key's snapshot and retry-until: one read (MGET) when the store has ``get_many``
        (the shared stores do; it is not part of ``RateLimitStore``), else two."""
        snapshot_key, retry_key = self._snapshot_key(key), self._retry_key(key)
        get_many = getattr(self._store, "get_many", None)
        if get_many is None:
            return await self._store.get(snapshot_key), await self._store.get(retry_key)
        found = await get_many([snapshot_key, retry_key])
        return found.get(snapshot_key), found.get(retry_key)

    async def update(self, key: RateLimitKey, info: RateLimitInfo | None) -> None:
        if info is None:
            return
        now = self._clock()
        if info.has_limits:
            resets = [r for _, _, _, r in info.windows() if r is not None]
            ttl = max(resets) - now if resets else DEFAULT_SNAPSHOT_TTL
            ttl = min(max(ttl, 1.0), MAX_SNAPSHOT_TTL)
            data = info.to_dict()
            data.pop("retry_after", None)
            data["expires_at"] = now + ttl
            await self._store.set(self._snapshot_key(key), data, ttl)
        if info.retry_after is not None:
            observed = info.observed_at if info.observed_at is not None else now
            await self._set_retry_until(key, observed + info.retry_after, now)

    async def record_retry_after(self, key: RateLimitKey, seconds: float | None) -> None:
        """Remember a 429's retry-after: no request for this key until it has passed."""
        if seconds is None or not math.isfinite(seconds) or seconds <= 0:
            return
        now = self._clock()
        await self._set_retry_until(key, now + seconds, now)

    async def _set_retry_until(self, key: RateLimitKey, until: float, now: float) -> None:
        if until > now:
            await self._store.set(self._retry_key(key), {"until": until}, until - now)

    @staticmethod
    def _blocking_waits(
        info: RateLimitInfo | None, expires_at: float | None, tokens: int, now: float
    ) -> list[float]:
        """Seconds until each exhausted window reopens; empty when nothing blocks."""
        if info is None:
            return []
        need_tokens = max(int(tokens), 1)  # any request spends at least one token
        needs = {
            "requests": 1,
            "requests_day": 1,
            "tokens": need_tokens,
            "input_tokens": need_tokens,
            "output_tokens": 1,
            "tokens_minute": need_tokens,
        }
        waits = []
        for name, _limit, remaining, reset_at in info.windows():
            if remaining is None or remaining >= needs[name]:
                continue
            reopen = reset_at if reset_at is not None else expires_at
            if reopen is None:
                reopen = now + DEFAULT_SNAPSHOT_TTL
            if reopen > now:
                waits.append(reopen - now)
        return waits

    async def can_make_request(self, key: RateLimitKey, tokens: int = 0) -> bool:
        return await self.wait_time(key, tokens) == 0.0

    async def wait_time(self, key: RateLimitKey, tokens: int = 0) -> float:
        """Seconds until a request of ``tokens`` may go (0 if now): the latest blocking window."""
        snapshot, retry = await self._read(key)
        return self._wait(snapshot, retry, tokens, self._clock())

    async def should_throttle(self, key: RateLimitKey, fraction: float = 0.9) -> bool:
        """True when any known window is ``fraction`` used, or a 429's retry-after is in force.

        A softer signal than can_make_request: callers prefer another key or
        provider before the hard limit is reached.
        """
        snapshot, retry = await self._read(key)
        return self._throttle(snapshot, retry, fraction, self._clock())

    async def check(
        self, key: RateLimitKey, tokens: int = 0, fraction: float = 0.9
    ) -> tuple[float, bool]:
        """``(wait_time, should_throttle)`` from one read of the store: what a request
        asks before it goes, in one round trip instead of one per question."""
        snapshot, retry = await self._read(key)
        return self._check(snapshot, retry, tokens, fraction)

    def check_found(
        self,
        key: RateLimitKey,
        found: Mapping[str, dict[str, Any]],
        tokens: int = 0,
        fraction: float = 0.9,
    ) -> tuple[float, bool]:
        """``check`` from values already read from the store (under ``read_keys(key)``;
        a key that is absent from ``found`` holds nothing)."""
        snapshot_key, retry_key = self.read_keys(key)
        return self._check(found.get(snapshot_key), found.get(retry_key), tokens, fraction)

    def _check(
        self,
        snapshot: dict[str, Any] | None,
        retry: dict[str, Any] | None,
        tokens: int,
        fraction: float,
    ) -> tuple[float, bool]:
        if snapshot is None and retry is None:
            return 0.0, False  # nothing known about this key: nothing blocks or paces it
        now = self._clock()
        return (
            self._wait(snapshot, retry, tokens, now),
            self._throttle(snapshot, retry, fraction, now),
        )

    def _wait(
        self,
        snapshot: dict[str, Any] | None,
        retry: dict[str, Any] | None,
        tokens: int,
        now: float,
    ) -> float:
        info, expires_at = self._live_snapshot(snapshot, now)
        waits = self._blocking_waits(info, expires_at, tokens, now)
        retry_until = retry.get("until") if retry else None
        if retry_until is not None and retry_until > now:
            waits.append(retry_until - now)
        return max(waits) if waits else 0.0

    def _throttle(
        self,
        snapshot: dict[str, Any] | None,
        retry: dict[str, Any] | None,
        fraction: float,
        now: float,
    ) -> bool:
        if retry and retry.get("until", 0) > now:
            return True
        info, _ = self._live_snapshot(snapshot, now)
        if info is None:
            return False
        for _name, limit, remaining, reset_at in info.windows():
            if not limit or remaining is None:
                continue
            if reset_at is not None and reset_at <= now:
                continue
            if (limit - remaining) / limit >= fraction:
                return True
        return False

    async def get(self, key: RateLimitKey) -> RateLimitInfo | None:
        """The stored snapshot, for dashboards and health pages."""
        snapshot = await self._store.get(self._snapshot_key(key))
        info, _ = self._live_snapshot(snapshot, self._clock())
        return info

    @staticmethod
    def _live_snapshot(
        snapshot: dict[str, Any] | None, now: float
    ) -> tuple[RateLimitInfo | None, float | None]:
        if not snapshot:
            return None, None
        expires_at = snapshot.get("expires_at")
        if expires_at is not None and expires_at <= now:
            return None, None
        return RateLimitInfo.from_dict(snapshot), expires_at
