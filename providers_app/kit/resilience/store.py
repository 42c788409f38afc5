"""Where pool and breaker state lives: the store interface, and the in-process one.

Every piece of state -- a credential's health, a pool's round-robin counter,
a breaker's state -- lives in a ``ResilienceStore`` under namespaced keys with
TTLs, never in module-level dicts or on the objects themselves, so processes
sharing one store (Redis in production) agree on it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from ..ratelimit_store import MemoryRateLimitStore
from .transitions import (
    CredentialEventKind,
    breaker_allow_transition,
    breaker_record_transition,
    credential_transition,
    credential_ttl,
)

# The caller's clock: wall time (``time.time``), so that processes agree.
Clock = Callable[[], float]


class ResilienceStore(abc.ABC):
    """Shared pool and breaker state. Values are small flat JSON-able dicts.

    Every method is one atomic step across all processes sharing the store.
    ``now`` is the caller's clock (wall time, so processes agree); TTLs are
    relative seconds.
    """

    @abc.abstractmethod
    async def get(self, key: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored states of ``keys`` that exist."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    async def increment(self, key: str, *, ttl: float) -> int:
        """Add one to a counter (created at 0) and return the new value; refresh its TTL."""

    @abc.abstractmethod
    async def update_credential(
        self,
        key: str,
        *,
        event: CredentialEventKind,
        now: float,
        error_type: str = "",
        cooldown_seconds: float = 0.0,
        threshold: int,
        base_backoff: float,
        max_backoff: float,
        ttl: float,
        invalid_ttl: float,
    ) -> dict[str, Any] | None:
        """Atomically apply ``credential_transition`` and store it for ``credential_ttl``.

        Returns the state now stored.
        """

    @abc.abstractmethod
    async def breaker_allow(
        self, key: str, *, now: float, reset_timeout: float, ttl: float
    ) -> bool:
        """Atomically apply ``breaker_allow_transition``."""

    @abc.abstractmethod
    async def breaker_record(
        self,
        key: str,
        *,
        success: bool,
        now: float,
        threshold: int,
        reset_timeout: float,
        ttl: float,
    ) -> None:
        """Atomically apply ``breaker_record_transition`` (``None`` deletes the key)."""

    async def breaker_allow_and_get_many(
        self,
        breaker_key: str,
        *,
        now: float,
        reset_timeout: float,
        ttl: float,
        keys: Sequence[str],
    ) -> tuple[bool, dict[str, dict[str, Any]]]:
        """``breaker_allow`` and, when it allows, ``get_many(keys)`` (else nothing is
        read): a request's first two steps, which a shared store overrides to send in
        one round trip."""
        if not await self.breaker_allow(breaker_key, now=now, reset_timeout=reset_timeout, ttl=ttl):
            return False, {}
        return True, await self.get_many(keys)

    async def record_success(
        self,
        credential_key: str,
        *,
        breaker_key: str | None,
        now: float,
        threshold: int,
        base_backoff: float,
        max_backoff: float,
        ttl: float,
        invalid_ttl: float,
    ) -> None:
        """A request's success: ``update_credential(event="success")`` on the credential
        and, with ``breaker_key``, ``breaker_record(success=True)`` on the provider's
        breaker. Each is its own atomic step as ever; a shared store overrides this to
        send both in one round trip (the request path's last two steps)."""
        await self.update_credential(
            credential_key,
            event="success",
            now=now,
            threshold=threshold,
            base_backoff=base_backoff,
            max_backoff=max_backoff,
            ttl=ttl,
            invalid_ttl=invalid_ttl,
        )
        if breaker_key is not None:
            # a success closes the breaker (deletes its state) whatever its threshold,
            # reset timeout and TTL, so none of them is needed here
            await self.breaker_record(
                breaker_key, success=True, now=now, threshold=1, reset_timeout=0.0, ttl=1.0
            )


class MemoryStateStore(MemoryRateLimitStore, ResilienceStore):
    """One process's store for pools, breakers and rate limits (embedded mode, tests).

    Each method runs without awaiting inside the lock, so it is atomic for
    coroutines and threads of this process. Not shared between processes.
    """

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for key in keys:
            value = await self.get(key)
            if value is not None:
                result[key] = value
        return result

    async def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    async def increment(self, key: str, *, ttl: float) -> int:
        with self._lock:
            at = self._clock()
            value = int((self._live(key, at) or {}).get("value", 0)) + 1
            self._put(key, {"value": value}, ttl, at)
            return value

    async def update_credential(
        self,
        key: str,
        *,
        event: CredentialEventKind,
        now: float,
        error_type: str = "",
        cooldown_seconds: float = 0.0,
        threshold: int,
        base_backoff: float,
        max_backoff: float,
        ttl: float,
        invalid_ttl: float,
    ) -> dict[str, Any] | None:
        with self._lock:
            at = self._clock()
            current = self._live(key, at)
            new = credential_transition(
                current,
                event=event,
                now=now,
                error_type=error_type,
                cooldown_seconds=cooldown_seconds,
                threshold=threshold,
                base_backoff=base_backoff,
                max_backoff=max_backoff,
            )
            if new is None:
                return dict(current) if current else None
            self._put(key, new, credential_ttl(new, now=now, ttl=ttl, invalid_ttl=invalid_ttl), at)
            return dict(new)

    async def breaker_allow(
        self, key: str, *, now: float, reset_timeout: float, ttl: float
    ) -> bool:
        with self._lock:
            at = self._clock()
            allowed, new = breaker_allow_transition(
                self._live(key, at), now=now, reset_timeout=reset_timeout
            )
            if new is not None:
                self._put(key, new, ttl, at)
            return allowed

    async def breaker_record(
        self,
        key: str,
        *,
        success: bool,
        now: float,
        threshold: int,
        reset_timeout: float,
        ttl: float,
    ) -> None:
        with self._lock:
            at = self._clock()
            new = breaker_record_transition(
                self._live(key, at),
                success=success,
                now=now,
                threshold=threshold,
                reset_timeout=reset_timeout,
            )
            if new is None:
                self._data.pop(key, None)
            else:
                self._put(key, new, ttl, at)
