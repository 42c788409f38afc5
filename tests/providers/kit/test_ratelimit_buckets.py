"""Client-side token buckets and the store they live in."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from providers_app.kit.errors import RateLimitError
from providers_app.kit.providers.gemini import GEMINI_TIERS, gemini_bucket
from providers_app.kit.providers.qwen import QWEN_LIMITS, qwen_bucket
from providers_app.kit.ratelimit import MemoryRateLimitStore, TokenBucket
from providers_app.kit.ratelimit_store import take_from_bucket


class FakeClock:
    def __init__(self, start: float = 1_772_049_700.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryRateLimitStore:
    return MemoryRateLimitStore()


async def test_it_admits_the_gemini_free_tier_then_refuses(store, clock):
    bucket = gemini_bucket(store, ("gemini", "gemini-2.0-flash", "key-1"), clock=clock)

    admitted = [await bucket.try_acquire() for _ in range(16)]

    assert admitted == [True] * 15 + [False]
    assert await bucket.wait_time() == pytest.approx(4.0)  # 15 per minute = one every 4 s


async def test_it_refills_at_the_per_minute_rate(store, clock):
    bucket = gemini_bucket(store, "gemini:flash", clock=clock)
    for _ in range(15):
        assert await bucket.try_acquire()

    clock.advance(3.9)
    assert await bucket.try_acquire() is False
    clock.advance(0.1)
    assert await bucket.try_acquire() is True
    assert await bucket.try_acquire() is False

    clock.advance(60)
    assert [await bucket.try_acquire() for _ in range(16)] == [True] * 15 + [False]


async def test_it_takes_several_tokens_at_once(store, clock):
    bucket = TokenBucket(store, "k", per_minute=10, clock=clock)

    assert await bucket.try_acquire(7)
    assert await bucket.try_acquire(4) is False
    assert await bucket.wait_time(4) == pytest.approx(6.0)  # 1 token short at 1/6 per s
    assert await bucket.try_acquire(3)


async def test_it_does_not_consume_when_asked_for_the_wait(store, clock):
    bucket = TokenBucket(store, "k", per_minute=2, clock=clock)

    for _ in range(5):
        assert await bucket.wait_time() == 0.0
    assert await bucket.try_acquire() and await bucket.try_acquire()
    assert await bucket.try_acquire() is False


async def test_it_caps_qwen_per_day(store, clock):
    bucket = qwen_bucket(store, ("qwen", "account-1"), clock=clock)
    assert (bucket.per_minute, bucket.per_day) == (60, 2000)

    # one request a second never empties the 60/min bucket; the day bucket runs out
    admitted = 0
    while await bucket.try_acquire():
        admitted += 1
        clock.advance(1.0)
        assert admitted < 3000

    day_refill = 2000 / 86400
    assert 2000 <= admitted <= 2000 + math.ceil(admitted * day_refill)
    wait = await bucket.wait_time()
    assert 0 < wait <= 1 / day_refill  # up to 43.2 s for the next daily token
    # the refused take handed its minute token back
    minute = await store.get("bucket:qwen:account-1:minute")
    assert minute["tokens"] == pytest.approx(60.0)

    clock.advance(wait)
    assert await bucket.try_acquire() is True


async def test_it_refunds_the_minute_bucket_when_the_day_bucket_refuses(store, clock):
    bucket = TokenBucket(store, "k", per_minute=10, per_day=3, clock=clock)

    assert [await bucket.try_acquire() for _ in range(5)] == [True, True, True, False, False]
    minute = await store.get("bucket:k:minute")
    assert minute["tokens"] == pytest.approx(7.0)
    assert await bucket.wait_time() == pytest.approx(86400 / 3)


async def test_it_admits_exactly_capacity_under_concurrency(store, clock):
    bucket = TokenBucket(store, "burst", per_minute=10, clock=clock)

    results = await asyncio.gather(*(bucket.try_acquire() for _ in range(50)))

    assert results.count(True) == 10


def test_it_stays_atomic_across_threads():
    store = MemoryRateLimitStore()

    async def hammer(results: list[bool]) -> None:
        for _ in range(50):
            allowed, _ = await store.take_tokens(
                "shared", capacity=100, refill_per_second=0.0, amount=1, now=1000.0
            )
            results.append(allowed)

    per_thread: list[list[bool]] = [[] for _ in range(8)]
    threads = [threading.Thread(target=asyncio.run, args=(hammer(r),)) for r in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(r.count(True) for r in per_thread) == 100


async def test_it_acquires_after_sleeping(store, clock):
    bucket = TokenBucket(store, "k", per_minute=60, clock=clock, sleep=clock.sleep)
    for _ in range(60):
        await bucket.acquire(max_wait=0)

    await bucket.acquire(max_wait=5)

    assert clock.slept == [pytest.approx(1.0)]


async def test_it_refuses_to_wait_longer_than_max_wait(store, clock):
    bucket = gemini_bucket(store, "k", clock=clock)
    for _ in range(15):
        await bucket.acquire(max_wait=0)

    with pytest.raises(RateLimitError) as caught:
        await bucket.acquire(max_wait=3.9)

    assert caught.value.retry_after == pytest.approx(4.0)
    assert caught.value.retryable is True
    assert caught.value.code == "client_rate_limited"


async def test_it_refuses_requests_bigger_than_the_bucket(store, clock):
    bucket = TokenBucket(store, "k", per_minute=5, clock=clock, sleep=clock.sleep)

    assert await bucket.wait_time(6) == math.inf
    assert await bucket.try_acquire(6) is False
    with pytest.raises(RateLimitError):
        await bucket.acquire(6, max_wait=3600)
    assert clock.slept == []


async def test_it_sleeps_for_real_by_default(store):
    bucket = TokenBucket(store, "real", per_minute=1200)  # one token every 50 ms
    while await bucket.try_acquire():
        pass
    assert await bucket.wait_time() > 0

    started = time.monotonic()
    await bucket.acquire(max_wait=1)

    assert time.monotonic() - started < 0.5


def test_it_has_documented_presets():
    assert GEMINI_TIERS["free"] == 15
    assert set(GEMINI_TIERS) == {"free", "tier1", "tier2", "tier3"}
    assert QWEN_LIMITS.per_minute == 60 and QWEN_LIMITS.per_day == 2000


def test_it_picks_gemini_tiers_and_overrides(store):
    assert gemini_bucket(store, "k").per_minute == 15
    assert gemini_bucket(store, "k", tier="tier1").per_minute == GEMINI_TIERS["tier1"]
    assert gemini_bucket(store, "k", tier="tier1").per_day is None
    custom = gemini_bucket(store, "k", per_minute=10, per_day=250)
    assert (custom.per_minute, custom.per_day) == (10, 250)
    with pytest.raises(ValueError):
        gemini_bucket(store, "k", tier="platinum")


def test_it_rejects_nonsense_limits(store):
    with pytest.raises(ValueError):
        TokenBucket(store, "k", per_minute=0)
    with pytest.raises(ValueError):
        TokenBucket(store, "k", per_minute=5, per_day=-1)


# ---------------------------------------------------------------- the bucket step and the store


def test_it_starts_a_missing_bucket_full():
    allowed, wait, state = take_from_bucket(
        None, capacity=5, refill_per_second=1, amount=5, now=100.0
    )

    assert (allowed, wait, state) == (True, 0.0, {"tokens": 0.0, "updated_at": 100.0})


def test_it_gives_tokens_back_up_to_capacity():
    state = {"tokens": 4.0, "updated_at": 100.0}

    allowed, _, state = take_from_bucket(
        state, capacity=5, refill_per_second=1, amount=-3, now=100.0
    )

    assert allowed and state["tokens"] == 5.0


def test_it_never_refills_twice_when_clocks_disagree():
    state = {"tokens": 0.0, "updated_at": 100.0}

    _, _, state = take_from_bucket(state, capacity=10, refill_per_second=1, amount=0, now=90.0)
    assert state == {"tokens": 0.0, "updated_at": 100.0}
    _, _, state = take_from_bucket(state, capacity=10, refill_per_second=1, amount=0, now=102.0)
    assert state["tokens"] == 2.0


async def test_it_expires_stored_values():
    store_clock = FakeClock(0.0)
    store = MemoryRateLimitStore(clock=store_clock)
    value = {"a": [1]}

    await store.set("k", value, ttl=10)
    value["a"].append(2)  # the store keeps its own copy
    assert await store.get("k") == {"a": [1]}

    store_clock.advance(10)
    assert await store.get("k") is None
    await store.set("k", {"a": 1}, ttl=0)
    assert await store.get("k") is None


async def test_it_reads_bucket_state_through_get(store):
    await store.take_tokens("b", capacity=3, refill_per_second=1, amount=1, now=50.0)

    assert await store.get("b") == {"tokens": 2.0, "updated_at": 50.0}
