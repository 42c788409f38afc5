"""Circuit breaker: closed → open → half-open single probe → closed / open again."""

from __future__ import annotations

import asyncio

import pytest

from providers_app.kit.resilience import CircuitBreaker, MemoryStateStore


class FakeClock:
    def __init__(self, start: float = 1_772_049_700.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock) -> CircuitBreaker:
    store = MemoryStateStore()
    return CircuitBreaker(store, "openai-1", failure_threshold=5, reset_timeout=30, clock=clock)


async def open_it(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        await breaker.record_failure()


async def test_it_stays_closed_below_the_failure_threshold(breaker):
    for _ in range(4):
        await breaker.record_failure()

    assert await breaker.state() == "closed"
    assert await breaker.allow()


async def test_it_opens_after_n_consecutive_failures(breaker):
    await open_it(breaker)

    assert await breaker.state() == "open"
    assert not await breaker.allow()
    assert await breaker.retry_after() == pytest.approx(30)


async def test_it_counts_only_consecutive_failures(breaker):
    for _ in range(4):
        await breaker.record_failure()
    await breaker.record_success()
    for _ in range(4):
        await breaker.record_failure()

    assert await breaker.state() == "closed"


async def test_it_lets_exactly_one_probe_through_when_half_open(breaker, clock):
    await open_it(breaker)
    clock.advance(30)
    assert await breaker.state() == "half_open"

    allowed = await asyncio.gather(*(breaker.allow() for _ in range(20)))

    assert allowed.count(True) == 1


async def test_it_closes_when_the_probe_succeeds(breaker, clock):
    await open_it(breaker)
    clock.advance(30)
    assert await breaker.allow()

    await breaker.record_success()

    assert await breaker.state() == "closed"
    assert all(await asyncio.gather(*(breaker.allow() for _ in range(5))))


async def test_it_reopens_when_the_probe_fails(breaker, clock):
    await open_it(breaker)
    clock.advance(30)
    assert await breaker.allow()

    await breaker.record_failure()

    assert await breaker.state() == "open"
    assert not await breaker.allow()
    clock.advance(29)
    assert not await breaker.allow()
    clock.advance(1)
    assert await breaker.allow()


async def test_it_offers_a_new_probe_when_one_never_reports(breaker, clock):
    await open_it(breaker)
    clock.advance(30)
    assert await breaker.allow()

    clock.advance(29)
    assert not await breaker.allow()
    clock.advance(1)
    assert await breaker.allow()


async def test_it_shares_state_between_breakers_on_one_store(clock):
    store = MemoryStateStore()
    here = CircuitBreaker(store, "anthropic", failure_threshold=2, clock=clock)
    there = CircuitBreaker(store, "anthropic", failure_threshold=2, clock=clock)
    other = CircuitBreaker(store, "gemini", failure_threshold=2, clock=clock)

    await here.record_failure()
    await there.record_failure()

    assert await here.state() == "open"
    assert await other.state() == "closed"
