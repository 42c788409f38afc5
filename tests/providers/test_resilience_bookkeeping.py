"""What a request costs the shared store around its provider call: one read (breaker, pool
and any keys the caller adds) and no write when its success changes nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from providers_app.kit.errors import ServerError
from providers_app.kit.ratelimit import RateLimitInfo, RateLimitTracker
from providers_app.kit.resilience import (
    CircuitBreaker,
    KeyPool,
    MemoryStateStore,
    RetryPolicy,
    call_with_failover,
)


class FakeClock:
    def __init__(self, start: float = 1_772_049_700.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class CountingStore(MemoryStateStore):
    """The in-process store, counting what the pool and breaker ask of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def breaker_allow_and_get_many(self, *args: Any, **kwargs: Any) -> Any:
        self.calls["read"] += 1
        return await super().breaker_allow_and_get_many(*args, **kwargs)

    async def record_success(self, *args: Any, **kwargs: Any) -> None:
        self.calls["record_success"] += 1
        await super().record_success(*args, **kwargs)

    async def update_credential(self, *args: Any, **kwargs: Any) -> Any:
        self.calls["update_credential"] += 1
        return await super().update_credential(*args, **kwargs)

    async def breaker_record(self, *args: Any, **kwargs: Any) -> None:
        self.calls["breaker_record"] += 1
        await super().breaker_record(*args, **kwargs)

    def writes(self) -> int:
        return (
            self.calls["record_success"]
            + self.calls["update_credential"]
            + self.calls["breaker_record"]
        )


class TrackerReads:
    """The caller's side of ``reads``: the tracker's keys, and what was found under them."""

    def __init__(self, tracker: RateLimitTracker) -> None:
        self.tracker = tracker
        self.seen: dict[str, Mapping[str, dict[str, Any]]] = {}

    def keys_for(self, credential_id: str) -> Sequence[str]:
        return self.tracker.read_keys(("p", credential_id))

    def found(self, credential_id: str, values: Mapping[str, dict[str, Any]]) -> None:
        self.seen[credential_id] = values


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def pool(store, clock) -> KeyPool:
    return KeyPool(store, "p", clock=clock)


@pytest.fixture
def breaker(store, clock) -> CircuitBreaker:
    return CircuitBreaker(store, "p", failure_threshold=3, reset_timeout=30, clock=clock)


async def serve(pool, breaker, clock, outcomes: list[Exception | None], **kw: Any) -> str:
    """One request over key:1 whose attempts end as ``outcomes`` say (None: a reply)."""

    async def operation(credential: str) -> str:
        error = outcomes.pop(0)
        if error is not None:
            raise error
        return credential

    return await call_with_failover(
        pool=pool,
        candidates=["key:1"],
        operation=operation,
        breaker=breaker,
        retry=RetryPolicy(max_delay=0.0),
        sleep=clock.sleep,
        **kw,
    )


async def test_it_writes_nothing_for_a_success_on_a_healthy_key_with_a_closed_breaker(
    pool, breaker, clock, store
):
    for _ in range(3):
        assert await serve(pool, breaker, clock, [None]) == "key:1"

    assert store.calls["read"] == 3  # one read per request
    assert store.writes() == 0


async def test_it_still_clears_the_failures_of_a_key_and_its_breaker_on_success(
    pool, breaker, clock, store
):
    await serve(pool, breaker, clock, [ServerError(), None], max_attempts=2)
    # the first attempt's failure was counted on both, and the success cleared both
    assert (await pool.health("key:1")).consecutive_failures == 0
    assert await store.get(breaker.key) is None
    assert store.calls["record_success"] == 1

    await serve(pool, breaker, clock, [None])

    assert store.calls["record_success"] == 1  # the next success had nothing to clear


async def test_it_records_the_success_of_a_half_open_probe_so_the_breaker_closes(
    pool, breaker, clock, store
):
    for _ in range(3):
        await breaker.record_failure()
    clock.now += 30

    await serve(pool, breaker, clock, [None])

    assert await breaker.state() == "closed"
    assert store.calls["record_success"] == 1


async def test_it_clears_failures_counted_by_a_breaker_that_is_still_closed(
    pool, breaker, clock, store
):
    await breaker.record_failure()

    await serve(pool, breaker, clock, [None])

    assert await store.get(breaker.key) is None


async def test_it_leaves_a_failure_recorded_during_the_request_to_the_next_success(
    pool, breaker, clock, store
):
    """The success counts as of the read that admitted it: another request's failure that
    lands in between is not undone by it, and the next success clears it."""
    outcomes: list[Exception | None] = [None]

    async def operation(credential: str) -> str:
        await pool.report_failure(credential, ServerError())  # another request, meanwhile
        assert outcomes.pop(0) is None
        return credential

    await call_with_failover(pool=pool, candidates=["key:1"], operation=operation, breaker=breaker)
    assert (await pool.health("key:1")).consecutive_failures == 1

    await serve(pool, breaker, clock, [None])

    assert (await pool.health("key:1")).consecutive_failures == 0


async def test_it_reads_the_callers_keys_with_the_pools_read(pool, breaker, clock, store):
    tracker = RateLimitTracker(store, clock=clock)
    await tracker.update(
        ("p", "key:1"),
        RateLimitInfo(requests_limit=100, requests_remaining=0, requests_reset_at=clock.now + 20),
    )
    reads = TrackerReads(tracker)

    await serve(pool, breaker, clock, [None], reads=reads)

    assert store.calls["read"] == 1
    snapshot_key, _ = tracker.read_keys(("p", "key:1"))
    assert set(reads.seen["key:1"]) == {snapshot_key}
    wait, throttle = tracker.check_found(("p", "key:1"), reads.seen["key:1"])
    assert (wait, throttle) == (await tracker.check(("p", "key:1")))
    assert wait == pytest.approx(20.0)
    assert throttle
