"""One request over a pool's credentials: retries, failover between keys, one deadline.

Streams: failover is only safe before the first chunk has reached the
client. Wrap "open the stream and read its first chunk" as the
``operation`` of ``call_with_failover`` and forward the rest outside it;
an error after that point is the client's error, not a reason to switch keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from ..errors import (
    AllKeysExhaustedError,
    LocalCongestionError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
)
from ..errors import TimeoutError as ProviderTimeoutError
from .breaker import CircuitBreaker, CircuitOpenError
from .keypool import Acquired, KeyPool
from .retry import RetryPolicy
from .store import Clock

T = TypeVar("T")


class PoolReads(Protocol):
    """Keys the caller reads with the pool's own read for each attempt (one round trip
    for both), and where it is told what they held for the credential chosen."""

    def keys_for(self, credential_id: str) -> Sequence[str]: ...

    def found(self, credential_id: str, values: Mapping[str, dict[str, Any]]) -> None: ...


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
    pool: KeyPool,
    candidates: list[str],
    tried: list[str],
    model: str,
    breaker: CircuitBreaker | None,
    reads: PoolReads | None,
) -> Acquired:
    # The breaker is asked once per attempt, with the first read of the pool (one
    # round trip): asking again could claim a half-open probe twice.
    also_read = None if reads is None else reads.keys_for
    untried = [c for c in candidates if c not in tried]
    if untried and tried:
        try:
            return await pool.take(untried, model=model, breaker=breaker, also_read=also_read)
        except AllKeysExhaustedError:
            breaker = None
    return await pool.take(candidates, model=model, breaker=breaker, also_read=also_read)


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
    reads: PoolReads | None = None,
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

    ``reads`` names more keys of the pool's store to read with each attempt's read of
    the pool (one round trip), and hears what they held before ``operation`` runs.

    A success that would change nothing (a healthy credential on a closed breaker,
    as read when the attempt acquired it) writes nothing to the store.

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
        try:
            acquired = await _acquire_preferring(pool, candidates, tried, model, breaker, reads)
        except CircuitOpenError:
            assert breaker is not None  # only a breaker refuses
            raise CircuitOpenError(
                f"circuit breaker {breaker.name!r} is open", retry_after=await breaker.retry_after()
            ) from last_error
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
        credential = acquired.credential
        if reads is not None:
            reads.found(credential, acquired.found)
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
        # one round trip for both, or none when the success changes nothing
        await pool.report_success(credential, breaker=breaker, acquired=acquired)
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
