"""Using credentials well: retry policy, circuit breaker, key pool, failover.

Framework-free (no Django imports). Every piece of state -- a credential's
health, a pool's round-robin counter, a breaker's state -- lives in a
``ResilienceStore`` under namespaced keys with TTLs, so several processes
sharing one store (Redis in production) agree on it. Nothing is kept in
module-level dicts or on the objects themselves.

As with the token buckets (``ratelimit_store.take_from_bucket``), each
read-modify-write is defined once here as a pure function --
``credential_transition``, ``breaker_allow_transition``,
``breaker_record_transition`` -- and every store must apply it as one
indivisible step (a lock in process, one Lua script in Redis).

Streams: failover is only safe before the first chunk has reached the
client. Wrap "open the stream and read its first chunk" as the
``operation`` of ``call_with_failover`` and forward the rest outside it;
an error after that point is the client's error, not a reason to switch keys.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from .errors import (
    AllKeysExhaustedError,
    LocalCongestionError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
)
from .errors import TimeoutError as ProviderTimeoutError
from .ratelimit_store import MemoryRateLimitStore

Clock = Callable[[], float]
T = TypeVar("T")

# --- credential health: the pure transition every store applies atomically ---

# Fields of a credential's stored state.
FAILURES = "failures"
LAST_FAILURE_AT = "last_failure_at"
BACKOFF_UNTIL = "backoff_until"
COOLDOWN_UNTIL = "cooldown_until"
INVALID = "invalid"
LAST_ERROR_TYPE = "last_error_type"

CredentialEventKind = Literal["success", "failure", "cooldown", "invalid"]


def credential_transition(
    state: dict[str, Any] | None,
    *,
    event: CredentialEventKind,
    now: float,
    error_type: str = "",
    cooldown_seconds: float = 0.0,
    threshold: int,
    base_backoff: float,
    max_backoff: float,
) -> dict[str, Any] | None:
    """One credential event applied to its state; ``None`` means "nothing to store".

    - success: consecutive failures and backoff are cleared (a cooldown set by a
      429 and an invalid mark stay: another request may have set them since).
    - failure: one more consecutive failure; from ``threshold`` on, a backoff of
      ``base * 2**(failures - threshold)`` capped at ``max_backoff``, counted from now.
    - cooldown: unavailable until ``now + cooldown_seconds`` (never shortened).
    - invalid: unusable until the state is deleted (an admin re-enables it).

    The Redis store mirrors these lines in Lua.
    """
    if not state and event == "success":
        return None
    s: dict[str, Any] = {
        FAILURES: int((state or {}).get(FAILURES, 0)),
        LAST_FAILURE_AT: float((state or {}).get(LAST_FAILURE_AT, 0.0)),
        BACKOFF_UNTIL: float((state or {}).get(BACKOFF_UNTIL, 0.0)),
        COOLDOWN_UNTIL: float((state or {}).get(COOLDOWN_UNTIL, 0.0)),
        INVALID: int((state or {}).get(INVALID, 0)),
        LAST_ERROR_TYPE: str((state or {}).get(LAST_ERROR_TYPE, "")),
    }
    if event == "success":
        if s[FAILURES] == 0 and s[BACKOFF_UNTIL] == 0.0 and s[LAST_FAILURE_AT] == 0.0:
            return None
        s[FAILURES] = 0
        s[LAST_FAILURE_AT] = 0.0
        s[BACKOFF_UNTIL] = 0.0
    elif event == "failure":
        s[FAILURES] += 1
        s[LAST_FAILURE_AT] = now
        s[LAST_ERROR_TYPE] = error_type
        if s[FAILURES] >= threshold:
            s[BACKOFF_UNTIL] = now + min(max_backoff, base_backoff * 2 ** (s[FAILURES] - threshold))
    elif event == "cooldown":
        s[COOLDOWN_UNTIL] = max(s[COOLDOWN_UNTIL], now + cooldown_seconds)
        s[LAST_ERROR_TYPE] = error_type
    elif event == "invalid":
        s[INVALID] = 1
        s[LAST_ERROR_TYPE] = error_type
    else:
        raise ValueError(f"unknown credential event {event!r}")
    return s


def credential_ttl(state: dict[str, Any], *, now: float, ttl: float, invalid_ttl: float) -> float:
    """How long to keep a credential's state: at least until it frees up."""
    if int(state.get(INVALID, 0)):
        return invalid_ttl
    until = max(float(state.get(BACKOFF_UNTIL, 0.0)), float(state.get(COOLDOWN_UNTIL, 0.0)))
    return max(ttl, until - now + 1.0)


# --- circuit breaker: the pure transitions ----------------------------------

BREAKER_OPEN = "open"
BREAKER_FAILURES = "failures"
BREAKER_OPENED_AT = "opened_at"
BREAKER_PROBE_UNTIL = "probe_until"


def breaker_allow_transition(
    state: dict[str, Any] | None, *, now: float, reset_timeout: float
) -> tuple[bool, dict[str, Any] | None]:
    """``(allowed, state_to_store_or_None)``.

    Closed: allowed. Open within ``reset_timeout``: refused. Open after it
    (half-open): the first caller claims the probe for ``reset_timeout``
    seconds and is allowed; everyone else is refused until the probe reports
    (or its claim lapses, so a probe that never reports does not wedge the
    breaker open).
    """
    if not state or not int(state.get(BREAKER_OPEN, 0)):
        return True, None
    if now < float(state[BREAKER_OPENED_AT]) + reset_timeout:
        return False, None
    if float(state.get(BREAKER_PROBE_UNTIL, 0.0)) > now:
        return False, None
    new = dict(state)
    new[BREAKER_PROBE_UNTIL] = now + reset_timeout
    return True, new


def breaker_record_transition(
    state: dict[str, Any] | None,
    *,
    success: bool,
    now: float,
    threshold: int,
    reset_timeout: float,
) -> dict[str, Any] | None:
    """The state after an outcome; ``None`` means closed with no failures (delete it).

    A success closes the breaker. A failure counts while closed and opens it at
    ``threshold``; a failure while half-open (the probe's) re-opens it from now;
    a late failure while plainly open changes nothing.
    """
    if success:
        return None
    s = {
        BREAKER_OPEN: int((state or {}).get(BREAKER_OPEN, 0)),
        BREAKER_FAILURES: int((state or {}).get(BREAKER_FAILURES, 0)),
        BREAKER_OPENED_AT: float((state or {}).get(BREAKER_OPENED_AT, 0.0)),
        BREAKER_PROBE_UNTIL: float((state or {}).get(BREAKER_PROBE_UNTIL, 0.0)),
    }
    if s[BREAKER_OPEN]:
        if now >= s[BREAKER_OPENED_AT] + reset_timeout:
            s[BREAKER_OPENED_AT] = now
            s[BREAKER_PROBE_UNTIL] = 0.0
        return s
    s[BREAKER_FAILURES] += 1
    if s[BREAKER_FAILURES] >= threshold:
        s[BREAKER_OPEN] = 1
        s[BREAKER_OPENED_AT] = now
        s[BREAKER_PROBE_UNTIL] = 0.0
    return s


# --- the store ---------------------------------------------------------------


class ResilienceStore(abc.ABC):
    """Shared pool and breaker state. Values are small flat JSON-able dicts.

    Every method is one atomic step across all processes sharing the store.
    ``now`` is the caller's clock (wall time, so processes agree); TTLs are
    relative seconds.
    """

    @abc.abstractmethod
    async def get(self, key: str) -> dict | None: ...

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
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
    ) -> dict | None:
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


class MemoryStateStore(MemoryRateLimitStore, ResilienceStore):
    """One process's store for pools, breakers and rate limits (embedded mode, tests).

    Each method runs without awaiting inside the lock, so it is atomic for
    coroutines and threads of this process. Not shared between processes.
    """

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        result = {}
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
    ) -> dict | None:
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


# --- retry policy ------------------------------------------------------------


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


# --- circuit breaker ---------------------------------------------------------


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


# --- key pool ----------------------------------------------------------------

CredentialState = Literal["active", "cooling_down", "backoff", "invalid"]


@dataclass(frozen=True)
class CredentialHealth:
    """A credential's health as the pool sees it, for display and for syncing to the DB."""

    consecutive_failures: int
    unavailable_until: float | None
    invalid: bool
    last_error_type: str | None
    state: CredentialState
    last_failure_at: float | None = None

    @property
    def available(self) -> bool:
        return self.state == "active"

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, *, now: float) -> CredentialHealth:
        state = state or {}
        invalid = bool(int(state.get(INVALID, 0)))
        cooldown = float(state.get(COOLDOWN_UNTIL, 0.0))
        backoff = float(state.get(BACKOFF_UNTIL, 0.0))
        until = max(cooldown, backoff)
        if invalid:
            status: CredentialState = "invalid"
        elif cooldown > now:
            status = "cooling_down"
        elif backoff > now:
            status = "backoff"
        else:
            status = "active"
        return cls(
            consecutive_failures=int(state.get(FAILURES, 0)),
            unavailable_until=until if until > now else None,
            invalid=invalid,
            last_error_type=state.get(LAST_ERROR_TYPE) or None,
            state=status,
            last_failure_at=float(state.get(LAST_FAILURE_AT, 0.0)) or None,
        )


class KeyPool:
    """Chooses a credential for each request and keeps score of how each one does.

    Credentials are opaque string ids (the caller uses e.g. ``"key:12"``,
    ``"oauth:3"``); the caller passes the candidates each time, so adding or
    retiring a credential needs no call here.

    Strategies: ``round_robin`` rotates over the available candidates with a
    shared counter; ``health_aware`` picks the healthiest (fewest consecutive
    failures, then least recently failed) and rotates among equally healthy
    ones so load still spreads.

    Every key has a TTL. An invalid mark is kept for ``invalid_ttl`` (30 days
    by default) rather than forever; the durable record is the credential's
    database row, which the caller syncs from ``health()`` and which keeps the
    credential out of ``candidates`` until an admin re-enables it (and calls
    ``reset``).
    """

    def __init__(
        self,
        store: ResilienceStore,
        pool_id: str,
        *,
        strategy: Literal["health_aware", "round_robin"] = "health_aware",
        failure_threshold: int = 3,
        base_backoff: float = 1.0,
        max_backoff: float = 60.0,
        default_cooldown: float = 30.0,
        quota_cooldown: float = 3600.0,
        permission_window: float = 600.0,
        clock: Clock = time.time,
        prefix: str = "pool",
        state_ttl: float = 86400.0,
        invalid_ttl: float = 30 * 86400.0,
    ) -> None:
        if strategy not in ("health_aware", "round_robin"):
            raise ValueError(f"unknown key-pool strategy {strategy!r}")
        self.store = store
        self.pool_id = pool_id
        self.strategy = strategy
        self.failure_threshold = failure_threshold
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.default_cooldown = default_cooldown
        self.quota_cooldown = quota_cooldown
        self.permission_window = permission_window
        self.clock = clock
        self._prefix = f"{prefix}:{pool_id}"
        self.state_ttl = state_ttl
        self.invalid_ttl = invalid_ttl

    def credential_key(self, credential_id: str) -> str:
        return f"{self._prefix}:cred:{credential_id}"

    @property
    def counter_key(self) -> str:
        return f"{self._prefix}:rr"

    async def _rotate(self, choices: Sequence[str]) -> str:
        if len(choices) == 1:
            return choices[0]
        n = await self.store.increment(self.counter_key, ttl=self.state_ttl)
        return choices[(n - 1) % len(choices)]

    def model_key(self, credential_id: str, model: str) -> str:
        """Where a rate limit of one model on one credential is kept."""
        return f"{self.credential_key(credential_id)}:model:{model}"

    async def healths(
        self, credential_ids: Sequence[str], *, model: str = ""
    ) -> dict[str, CredentialHealth]:
        """Each credential's health; with ``model``, a rate limit of that model on it
        counts too (one read of the store for both)."""
        keys = {c: self.credential_key(c) for c in credential_ids}
        model_keys = {c: self.model_key(c, model) for c in credential_ids} if model else {}
        stored = await self.store.get_many([*keys.values(), *model_keys.values()])
        now = self.clock()
        result = {}
        for c, k in keys.items():
            health = CredentialHealth.from_state(stored.get(k), now=now)
            if c in model_keys and health.state == "active":
                limited = CredentialHealth.from_state(stored.get(model_keys[c]), now=now)
                if limited.state == "cooling_down":
                    health = dataclasses.replace(
                        health,
                        state="cooling_down",
                        unavailable_until=limited.unavailable_until,
                        last_error_type=limited.last_error_type,
                    )
            result[c] = health
        return result

    async def health(self, credential_id: str) -> CredentialHealth:
        return (await self.healths([credential_id]))[credential_id]

    async def acquire(self, candidates: Sequence[str], *, model: str = "") -> str:
        """An available credential (for ``model``: not rate-limited on it);
        ``AllKeysExhaustedError`` when there is none.

        Its ``retry_after`` is the seconds until the earliest credential frees
        up, or None when every candidate is invalid (waiting will not help).
        """
        candidates = list(dict.fromkeys(candidates))
        healths = await self.healths(candidates, model=model)
        available = [c for c in candidates if healths[c].available]
        if not available:
            now = self.clock()
            frees = [
                h.unavailable_until
                for h in healths.values()
                if not h.invalid and h.unavailable_until is not None
            ]
            retry_after = max(0.0, min(frees) - now) if frees else None
            raise AllKeysExhaustedError(
                f"no credential available in pool {self.pool_id!r}", retry_after=retry_after
            )
        if self.strategy == "round_robin":
            return await self._rotate(available)
        rank = {
            c: (healths[c].consecutive_failures, healths[c].last_failure_at or 0.0)
            for c in available
        }
        best = min(rank.values())
        return await self._rotate([c for c in available if rank[c] == best])

    async def _update(
        self, credential_id: str, event: CredentialEventKind, *, key: str = "", **kw: Any
    ) -> None:
        await self.store.update_credential(
            key or self.credential_key(credential_id),
            event=event,
            now=self.clock(),
            threshold=self.failure_threshold,
            base_backoff=self.base_backoff,
            max_backoff=self.max_backoff,
            ttl=self.state_ttl,
            invalid_ttl=self.invalid_ttl,
            **kw,
        )

    async def report_success(self, credential_id: str) -> None:
        await self._update(credential_id, "success")

    async def report_failure(
        self, credential_id: str, error: ProviderError, *, model: str = ""
    ) -> bool:
        """Score a failed request against the credential -- only on key-level evidence,
        since the credential is shared by every tenant. Returns True when this made it
        invalid (the caller persists that).

        - permanent errors (invalid key, an account-level 403) make it invalid until ``reset``;
        - a rate limit (per-minute or per-day, which providers count per model) cools
          down the credential *for ``model``* for ``retry_after`` (or
          ``default_cooldown``) -- the whole credential when no model is given; an
          account's quota or credit (``QuotaExceededError``) cools the whole credential
          until its reset (``retry_after``, or ``quota_cooldown``): quotas come back;
        - a 403 for one model is that model's problem; the same 403 (same code) on
          two different models of the credential within ``permission_window`` is the
          key's, and makes it invalid -- unless the provider named the model as the
          one refused (``model_specific``);
        - provider faults (5xx, network, connection timeouts) count as a consecutive
          failure (a short backoff after ``failure_threshold``, cleared by a success);
        - request errors (invalid request, context length, content filter, not found,
          a slow generation past its deadline) say nothing about the key: nothing changes.
        """
        if error.permanent:
            await self._update(credential_id, "invalid", error_type=error.type)
            return True
        if isinstance(error, QuotaExceededError):
            seconds = error.retry_after if error.retry_after else self.quota_cooldown
            await self._update(
                credential_id, "cooldown", error_type=error.type, cooldown_seconds=seconds
            )
        elif isinstance(error, RateLimitError):
            # limits are per model (OpenAI, Anthropic, Gemini all count them so): one
            # model's spent limit must not take the key away for the others
            seconds = error.retry_after if error.retry_after else self.default_cooldown
            await self._update(
                credential_id,
                "cooldown",
                key=self.model_key(credential_id, model) if model else "",
                error_type=error.type,
                cooldown_seconds=seconds,
            )
        elif isinstance(error, PermissionDeniedError) and error.scope == "model":
            if not error.model_specific and await self._denied_on_other_models(
                credential_id, error, model
            ):
                await self._update(credential_id, "invalid", error_type=error.type)
                return True
        elif error.scope == "provider" and error.retryable:
            await self._update(credential_id, "failure", error_type=error.type)
        return False

    async def _denied_on_other_models(
        self, credential_id: str, error: PermissionDeniedError, model: str
    ) -> bool:
        """Count distinct models refused with this 403 code in the window: a first refusal
        of a model (per-model counter at 1) adds one to the credential's count. Two
        atomic increments, no script: several processes agree through the store."""
        code = error.code or error.type
        base = f"{self.credential_key(credential_id)}:denied:{code}"
        ttl = self.permission_window
        if await self.store.increment(f"{base}:{model}", ttl=ttl) != 1:
            return False
        return await self.store.increment(base, ttl=ttl) >= 2

    async def reset(self, credential_id: str) -> None:
        """Forget everything about the credential (an admin re-enabled it)."""
        await self.store.delete(self.credential_key(credential_id))


# --- failover ------------------------------------------------------------------


def _another_credential_may_succeed(error: ProviderError) -> bool:
    """The credential or the provider's answer on it was at fault: another key may
    succeed (a key of another project may use a model this one may not). A request
    error -- or a generation slower than its deadline -- would fail the same anywhere."""
    if error.scope in ("credential", "model"):
        return True
    return error.scope == "provider" and error.retryable


def _budget_left(deadline: float | None, monotonic: Clock) -> float:
    return float("inf") if deadline is None else deadline - monotonic()


async def _acquire_preferring(
    pool: KeyPool, candidates: list[str], tried: list[str], model: str
) -> str:
    untried = [c for c in candidates if c not in tried]
    if untried and tried:
        try:
            return await pool.acquire(untried, model=model)
        except AllKeysExhaustedError:
            pass
    return await pool.acquire(candidates, model=model)


async def call_with_failover(
    *,
    pool: KeyPool,
    candidates: Sequence[str],
    operation: Callable[[str], Awaitable[T]],
    breaker: CircuitBreaker | None = None,
    max_attempts: int = 3,
    retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, shared safely
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    deadline: float | None = None,
    monotonic: Clock = time.monotonic,
    model: str = "",
    on_invalid: Callable[[str, ProviderError], Awaitable[Any]] | None = None,
) -> T:
    """Run ``operation(credential_id)`` on pool credentials until one succeeds.

    Each attempt acquires a credential (untried ones first), runs the
    operation and reports the outcome to the pool (and breaker). A retryable
    error moves on after a jittered backoff; a credential-level permanent
    error (bad key, no quota) moves on at once; a request error (invalid
    request, context length, content filter, not found) is raised at once,
    since no other credential would do better. When every credential is
    cooling down and the earliest frees up within ``retry.max_delay``, it waits
    for it (honouring the provider's retry-after); otherwise
    ``AllKeysExhaustedError`` is raised. After ``max_attempts`` the last error
    is raised.

    Streams: call this only for work done before the first chunk reaches the
    client (open the stream and read the first chunk inside ``operation``).

    Exceptions that are not ``ProviderError`` (a bug, a cancelled request)
    propagate untouched and are reported to nobody.

    ``deadline`` (``monotonic()`` clock) is the request's one budget: no attempt
    starts and no backoff sleeps past it, so retries cannot multiply it. When the
    pool runs out after an upstream call was made, the upstream's own error is
    raised (a 429 stays a rate limit, with the earliest time a key frees up as
    its ``retry_after``); ``AllKeysExhaustedError`` means no call was made.

    ``model`` lets the pool tell a 403 on one model from the same 403 on several;
    ``on_invalid(credential, error)`` runs when the pool has just made a
    credential invalid (the caller persists it).

    The breaker, when given, refuses with ``CircuitOpenError`` while open; it
    counts provider faults only (``scope == "provider"``: 5xx, overloaded,
    network, connection and first-byte timeouts) as failures -- never a 4xx, a
    rate limit (per credential, the pool's) or a slow generation that hit its
    deadline -- and any other answer from the provider as a success. A rate
    limit, a slow generation or an exhausted pool during a half-open probe says
    nothing about the provider: the probe's claim then simply lapses after
    ``reset_timeout``.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    candidates = list(dict.fromkeys(candidates))
    tried: list[str] = []
    last_error: ProviderError | None = None
    upstream_error: ProviderError | None = None  # the last error a provider answered with
    for attempt in range(1, max_attempts + 1):
        if _budget_left(deadline, monotonic) <= 0:
            raise upstream_error or ProviderTimeoutError(
                "the request's deadline passed before a credential answered", phase="total"
            )
        if breaker is not None and not await breaker.allow():
            raise CircuitOpenError(
                f"circuit breaker {breaker.name!r} is open", retry_after=await breaker.retry_after()
            ) from last_error
        try:
            credential = await _acquire_preferring(pool, candidates, tried, model)
        except AllKeysExhaustedError as exhausted:
            wait = exhausted.retry_after
            if (
                attempt == max_attempts
                or wait is None
                or wait > retry.max_delay
                or wait >= _budget_left(deadline, monotonic)
            ):
                if upstream_error is not None:
                    raise _as_final(upstream_error, exhausted) from exhausted
                raise
            await sleep(retry.delay(attempt, retry_after=wait))
            last_error = exhausted
            continue
        tried.append(credential)
        try:
            result = await operation(credential)
        except LocalCongestionError:
            raise  # aipk's own pool was full: nothing to hold against the credential or provider
        except ProviderError as error:
            last_error = upstream_error = error
            if await pool.report_failure(credential, error, model=model) and on_invalid:
                await on_invalid(credential, error)
            if breaker is not None:
                if error.scope == "provider":
                    await breaker.record_failure()
                elif not (error.retryable or isinstance(error, ProviderTimeoutError)):
                    await breaker.record_success()  # the provider answered
            if not _another_credential_may_succeed(error) or attempt == max_attempts:
                raise
            if not error.retryable and set(candidates) <= set(tried):
                raise  # the same answer again from a credential already asked
            if error.retryable and error.scope == "provider":
                delay = retry.delay(attempt)
                if delay >= _budget_left(deadline, monotonic):
                    raise
                await sleep(delay)
            continue
        await pool.report_success(credential)
        if breaker is not None:
            await breaker.record_success()
        return result
    assert last_error is not None  # the loop always either returns or records an error
    raise last_error


def _as_final(error: ProviderError, exhausted: AllKeysExhaustedError) -> ProviderError:
    """The upstream's error, telling when the earliest credential frees up."""
    if exhausted.retry_after is not None and isinstance(
        error, (RateLimitError, QuotaExceededError)
    ):
        error.retry_after = exhausted.retry_after
    return error
