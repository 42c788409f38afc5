"""The key pool: which credential serves a request, and how each one has been doing."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import (
    AllKeysExhaustedError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
)
from .breaker import CircuitBreaker, CircuitOpenError
from .store import Clock, ResilienceStore
from .transitions import (
    BACKOFF_UNTIL,
    COOLDOWN_UNTIL,
    FAILURES,
    INVALID,
    LAST_ERROR_TYPE,
    LAST_FAILURE_AT,
    CredentialEventKind,
    credential_transition,
)

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
        if not state:
            return _NEVER_FAILED  # the common case: nothing stored for the credential
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


@dataclass(frozen=True)
class Acquired:
    """What ``KeyPool.take`` chose, and what the same read of the store said besides.

    ``credential_unchanged``: a success on the credential would change nothing in its
    stored state (no failures, backoff or failure time to clear). ``closed_breaker``:
    the key of the breaker read in that round trip when it had no stored state at all
    (closed, no failures counted, no probe claimed), so that a success would change
    nothing there either; None otherwise. ``found``: the stored values of the keys the
    caller asked to read along (``also_read``) for this credential, those that exist.
    """

    credential: str
    credential_unchanged: bool = False
    closed_breaker: str | None = None
    found: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def success_changes_nothing(self, breaker: CircuitBreaker | None) -> bool:
        """Whether ``report_success`` may be skipped: nothing to reset on the credential
        and, with ``breaker``, nothing to close or clear on it (as of this read)."""
        return self.credential_unchanged and (breaker is None or breaker.key == self.closed_breaker)


# The health of a credential with no stored state (frozen: one instance serves all).
_NEVER_FAILED = CredentialHealth(
    consecutive_failures=0,
    unavailable_until=None,
    invalid=False,
    last_error_type=None,
    state="active",
    last_failure_at=None,
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
        keys, model_keys = self._health_keys(credential_ids, model)
        stored = await self.store.get_many([*keys.values(), *model_keys.values()])
        return self._healths_from(stored, keys, model_keys)

    def _health_keys(
        self, credential_ids: Sequence[str], model: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        keys = {c: self.credential_key(c) for c in credential_ids}
        model_keys = {c: self.model_key(c, model) for c in credential_ids} if model else {}
        return keys, model_keys

    def _healths_from(
        self, stored: dict[str, dict[str, Any]], keys: dict[str, str], model_keys: dict[str, str]
    ) -> dict[str, CredentialHealth]:
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

    async def _read(
        self,
        credential_ids: Sequence[str],
        model: str,
        breaker: CircuitBreaker | None,
        extra: Sequence[str],
    ) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, Any]], bool]:
        """The candidates' stored states and the ``extra`` keys, after ``breaker.allow()``
        (``CircuitOpenError`` when it refuses): one round trip for all of it when the
        breaker keeps its state in this pool's store. The last item says whether that
        breaker's own state was read too (it is, then, among the stored states)."""
        keys, model_keys = self._health_keys(credential_ids, model)
        wanted = [*keys.values(), *model_keys.values(), *extra]
        if breaker is None:
            return keys, model_keys, await self.store.get_many(wanted), False
        if breaker.store is not self.store:
            if not await breaker.allow():
                raise CircuitOpenError(f"circuit breaker {breaker.name!r} is open")
            return keys, model_keys, await self.store.get_many(wanted), False
        # The breaker's key is read back after its allow step: whether a success will
        # have anything to close or clear there (a half-open probe just claimed, failures
        # counted while closed) is known without another round trip.
        allowed, stored = await self.store.breaker_allow_and_get_many(
            breaker.key,
            now=breaker.clock(),
            reset_timeout=breaker.reset_timeout,
            ttl=breaker.ttl,
            keys=[breaker.key, *wanted],
        )
        if not allowed:
            raise CircuitOpenError(f"circuit breaker {breaker.name!r} is open")
        return keys, model_keys, stored, True

    async def health(self, credential_id: str) -> CredentialHealth:
        return (await self.healths([credential_id]))[credential_id]

    async def acquire(
        self, candidates: Sequence[str], *, model: str = "", breaker: CircuitBreaker | None = None
    ) -> str:
        """An available credential (for ``model``: not rate-limited on it);
        ``AllKeysExhaustedError`` when there is none.

        Its ``retry_after`` is the seconds until the earliest credential frees
        up, or None when every candidate is invalid (waiting will not help).

        With ``breaker``, the provider's breaker is asked first (``allow``, which
        may claim a half-open probe): ``CircuitOpenError`` when it refuses.
        """
        return (await self.take(candidates, model=model, breaker=breaker)).credential

    async def take(
        self,
        candidates: Sequence[str],
        *,
        model: str = "",
        breaker: CircuitBreaker | None = None,
        also_read: Callable[[str], Sequence[str]] | None = None,
    ) -> Acquired:
        """``acquire``, telling also what its read of the store saw (see ``Acquired``);
        ``also_read(credential)`` names more keys of the store to read in that same round
        trip for each candidate (e.g. the rate-limit tracker's), so the request needs no
        read of its own for them."""
        candidates = list(dict.fromkeys(candidates))
        extra = {c: list(also_read(c)) for c in candidates} if also_read is not None else {}
        keys, model_keys, stored, read_breaker = await self._read(
            candidates, model, breaker, [k for ks in extra.values() for k in ks]
        )
        healths = self._healths_from(stored, keys, model_keys)
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
            chosen = await self._rotate(available)
        else:
            rank = {
                c: (healths[c].consecutive_failures, healths[c].last_failure_at or 0.0)
                for c in available
            }
            best = min(rank.values())
            chosen = await self._rotate([c for c in available if rank[c] == best])
        return Acquired(
            credential=chosen,
            credential_unchanged=_success_changes_nothing(stored.get(keys[chosen])),
            closed_breaker=(
                breaker.key
                if breaker is not None and read_breaker and breaker.key not in stored
                else None
            ),
            found={k: stored[k] for k in extra.get(chosen, ()) if k in stored},
        )

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

    async def report_success(
        self,
        credential_id: str,
        *,
        breaker: CircuitBreaker | None = None,
        acquired: Acquired | None = None,
    ) -> None:
        """A success on the credential and, with ``breaker``, on the provider's breaker:
        one round trip to a shared store when the breaker keeps its state there too, and
        none at all when ``acquired`` (what ``take`` read for this request) says the
        success would change nothing: the common case, a healthy key on a closed
        breaker, then costs no write.

        That read was made when the request started: a failure recorded by another
        request since then is left for the next success to clear, as if this success
        had been recorded first."""
        if acquired is not None and acquired.success_changes_nothing(breaker):
            return
        if breaker is not None and breaker.store is not self.store:
            await self._update(credential_id, "success")
            await breaker.record_success()
            return
        await self.store.record_success(
            self.credential_key(credential_id),
            breaker_key=None if breaker is None else breaker.key,
            now=self.clock(),
            threshold=self.failure_threshold,
            base_backoff=self.base_backoff,
            max_backoff=self.max_backoff,
            ttl=self.state_ttl,
            invalid_ttl=self.invalid_ttl,
        )

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


def _success_changes_nothing(state: dict[str, Any] | None) -> bool:
    """Whether a success leaves this stored credential state as it is: the transition's
    own test, so the two cannot disagree (thresholds and backoffs play no part in it)."""
    return (
        credential_transition(
            state, event="success", now=0.0, threshold=1, base_backoff=0.0, max_backoff=0.0
        )
        is None
    )
