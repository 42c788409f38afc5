"""The Django shared-state store: the kit's pool, breaker and bucket steps stay atomic
on LocMemCache (a lock) and on Redis (one Lua script each).

Each test gets a cache nobody else uses: a private LocMemCache, or Redis under a
private key prefix (only when ``REDIS_URL`` is set -- ``CI=true .ci/run`` sets it),
whose keys are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings

from aipk_site.infra.state import (
    LockedCacheStateStore,
    RedisStateStore,
    shared_store_for,
    state_store,
)
from providers_app.kit.errors import AuthenticationError, RateLimitError, ServerError
from providers_app.kit.ratelimit import RateLimitInfo, RateLimitTracker, TokenBucket
from providers_app.kit.ratelimit_store import MemoryRateLimitStore
from providers_app.kit.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    KeyPool,
    credential_transition,
)
from providers_app.services.shared_state import (
    LockedProviderStateStore,
    ProviderStateStore,
    RedisProviderStateStore,
    provider_state_store,
    provider_store_for,
)

KEYS = ["key:1", "key:2", "key:3"]
REDIS_URL = os.environ.get("REDIS_URL", "")
NEEDS_REDIS = pytest.mark.skipif(
    not REDIS_URL, reason="needs Redis: set REDIS_URL (CI=true .ci/run does) to run it"
)
BACKENDS = ["locmem", pytest.param("redis", marks=NEEDS_REDIS)]


class FakeClock:
    def __init__(self, start: float = 1_772_049_700.123456) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_store(backend: str) -> tuple[ProviderStateStore, Callable[[], None]]:
    """(store, cleanup) on a cache nobody else uses."""
    name = f"aipk-test-{uuid.uuid4().hex}"
    if backend == "locmem":
        cache = LocMemCache(name, {})
        return provider_store_for(shared_store_for(cache)), cache.clear
    cache = RedisCache(REDIS_URL, {"KEY_PREFIX": name})

    def cleanup() -> None:
        client = cache._cache.get_client(None, write=True)
        for key in client.scan_iter(match=f"{name}:*"):
            client.delete(key)
        for pool in cache._cache._pools.values():
            pool.disconnect()

    return provider_store_for(shared_store_for(cache)), cleanup


def redis_keys(store: ProviderStateStore) -> dict[bytes, int]:
    """Every key under the store's prefix with its remaining TTL in ms (-1: none)."""
    client = store.cache._cache.get_client(None, write=True)
    prefix = store.cache.key_prefix
    return {key: client.pttl(key) for key in client.scan_iter(match=f"{prefix}:*")}


@pytest.fixture(params=BACKENDS)
def store(request):
    store, cleanup = make_store(request.param)
    yield store
    cleanup()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def in_threads(threads: int, work) -> list:
    """Run the coroutine function ``work`` in that many threads at once, each with its own loop."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: asyncio.run(work()), range(threads)))


def test_it_picks_the_backend_from_the_configured_cache():
    expected = RedisStateStore if REDIS_URL else LockedCacheStateStore
    assert isinstance(state_store(), expected)


async def test_it_hands_out_one_store_per_process_so_connections_are_reused():
    async def store_in_another_task():
        return state_store()

    assert await asyncio.create_task(store_in_another_task()) is state_store()
    assert await asyncio.to_thread(state_store) is state_store()


def test_it_builds_a_new_store_when_the_cache_settings_change():
    before = state_store()
    private = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    with override_settings(CACHES=private):
        assert isinstance(state_store(), LockedCacheStateStore)
        assert state_store() is not before

    assert state_store() is not before  # rebuilt on the restored settings
    assert isinstance(state_store(), type(before))


async def test_it_builds_the_kits_store_over_the_shared_one_and_follows_its_rebuilds():
    expected = RedisProviderStateStore if REDIS_URL else LockedProviderStateStore
    store = provider_state_store()
    assert isinstance(store, expected)
    assert store.shared is state_store()
    assert await asyncio.to_thread(provider_state_store) is store

    private = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=private):
        assert isinstance(provider_state_store(), LockedProviderStateStore)
        assert provider_state_store().shared is state_store()

    assert provider_state_store() is not store
    assert provider_state_store().shared is state_store()


async def test_it_counts_every_failure_reported_at_once(store, clock):
    pool = KeyPool(store, "p", failure_threshold=1000, clock=clock)

    async def report_25():
        await asyncio.gather(*(pool.report_failure("key:1", ServerError()) for _ in range(25)))

    await asyncio.to_thread(in_threads, 8, report_25)

    assert (await pool.health("key:1")).consecutive_failures == 200


async def test_it_lets_exactly_one_half_open_probe_through(store, clock):
    breaker = CircuitBreaker(store, "openai-1", failure_threshold=5, reset_timeout=30, clock=clock)
    for _ in range(5):
        await breaker.record_failure()
    assert not await breaker.allow()
    clock.advance(30)

    allowed = await asyncio.gather(*(breaker.allow() for _ in range(20)))

    assert allowed.count(True) == 1
    assert await breaker.state() == "half_open"


async def test_it_lets_one_probe_through_from_many_threads_and_closes_on_success(store, clock):
    breaker = CircuitBreaker(store, "openai-1", failure_threshold=2, reset_timeout=30, clock=clock)
    await breaker.record_failure()
    await breaker.record_failure()
    clock.advance(31)

    async def five_allows():
        return await asyncio.gather(*(breaker.allow() for _ in range(5)))

    results = await asyncio.to_thread(in_threads, 8, five_allows)

    assert sum(r.count(True) for r in results) == 1
    await breaker.record_success()
    assert await breaker.state() == "closed"


async def test_it_reopens_the_breaker_when_the_probe_fails(store, clock):
    breaker = CircuitBreaker(store, "openai-1", failure_threshold=2, reset_timeout=30, clock=clock)
    await breaker.record_failure()
    await breaker.record_failure()
    clock.advance(30)
    assert await breaker.allow()

    await breaker.record_failure()

    assert await breaker.state() == "open"
    assert not await breaker.allow()


async def test_it_spreads_round_robin_exactly_under_concurrency(store, clock):
    pool = KeyPool(store, "p", strategy="round_robin", clock=clock)

    picks = await asyncio.gather(*(pool.acquire(KEYS) for _ in range(30)))

    assert Counter(picks) == {"key:1": 10, "key:2": 10, "key:3": 10}


async def test_it_admits_exactly_10_of_50_concurrent_bucket_takes(store, clock):
    async def take():
        return await store.take_tokens(
            "bucket:k:minute", capacity=10, refill_per_second=10 / 60, amount=1, now=clock()
        )

    results = await asyncio.gather(*(take() for _ in range(50)))

    assert [allowed for allowed, _ in results].count(True) == 10
    assert all(wait > 0 for allowed, wait in results if not allowed)


async def test_it_admits_exactly_capacity_from_many_threads_through_the_kits_bucket(store, clock):
    key = ("qwen", "qwen3-coder-plus", "oauth:1")
    bucket = TokenBucket(store, key, per_minute=10, per_day=1000, clock=clock)

    async def ten_takes():
        return await asyncio.gather(*(bucket.try_acquire() for _ in range(10)))

    results = await asyncio.to_thread(in_threads, 5, ten_takes)

    assert sum(r.count(True) for r in results) == 10
    day = await store.get("bucket:qwen:qwen3-coder-plus:oauth:1:day")
    assert day["tokens"] == pytest.approx(990)  # refused minute takes gave nothing from the day


async def test_it_applies_the_kits_bucket_arithmetic_exactly(store, clock):
    reference = MemoryRateLimitStore()
    rng = random.Random(7)
    now = clock()
    for _ in range(200):
        now += rng.choice([0.0, 0.001, 0.37, 1.5, 6.0])
        amount = rng.choice([1, 1, 2, 5, -1, 20])
        kw = dict(capacity=15, refill_per_second=0.25, amount=amount, now=now)
        expected = await reference.take_tokens("bucket:x", **kw)
        assert await store.take_tokens("bucket:x", **kw) == expected
        assert await store.get("bucket:x") == await reference.get("bucket:x")


async def test_it_applies_the_kits_credential_steps_exactly(store, clock):
    rng = random.Random(11)
    expected = None
    now = clock()
    params = dict(threshold=3, base_backoff=1.0, max_backoff=60.0)
    for _ in range(100):
        now += rng.choice([0.0, 0.25, 1.1, 7.3])
        event = rng.choice(["failure", "failure", "failure", "success", "cooldown"])
        step = dict(event=event, now=now, error_type="server_error", cooldown_seconds=12.5)
        stored = await store.update_credential(
            "pool:p:cred:key:1", **step, **params, ttl=3600, invalid_ttl=86400
        )
        expected = credential_transition(expected, **step, **params) or expected
        assert stored == expected
    await store.update_credential(
        "pool:p:cred:key:1",
        event="invalid",
        now=now,
        error_type="authentication_error",
        **params,
        ttl=3600,
        invalid_ttl=86400,
    )
    assert (await store.get("pool:p:cred:key:1"))["invalid"] == 1


async def test_it_keeps_timestamps_to_the_microsecond(store, clock):
    pool = KeyPool(store, "p", clock=clock)

    await pool.report_failure("key:1", RateLimitError(retry_after=0.000001))

    assert (await pool.health("key:1")).unavailable_until == clock.now + 0.000001


async def test_it_holds_an_invalid_key_until_reset_and_a_cooldown_until_it_ends(store, clock):
    pool = KeyPool(store, "p", clock=clock)
    await pool.report_failure("key:1", AuthenticationError())
    await pool.report_failure("key:2", RateLimitError(retry_after=5))

    healths = await pool.healths(KEYS)
    assert [h.state for h in healths.values()] == ["invalid", "cooling_down", "active"]
    clock.advance(5)
    assert (await pool.health("key:2")).state == "active"

    await pool.reset("key:1")
    assert (await pool.health("key:1")).state == "active"


async def test_it_stores_rate_limit_snapshots_for_the_tracker(store, clock):
    tracker = RateLimitTracker(store, clock=clock)
    info = RateLimitInfo(requests_limit=100, requests_remaining=3, requests_reset_at=clock() + 20)

    await tracker.update(("openai", "gpt-4o"), info)

    stored = await tracker.get(("openai", "gpt-4o"))
    assert (stored.requests_limit, stored.requests_remaining) == (100, 3)
    assert await tracker.should_throttle(("openai", "gpt-4o"))


@NEEDS_REDIS
async def test_it_puts_a_ttl_on_every_redis_key(clock):
    store, cleanup = make_store("redis")
    try:
        pool = KeyPool(store, "p", strategy="round_robin", clock=clock)
        breaker = CircuitBreaker(store, "b", failure_threshold=1, clock=clock)
        await pool.acquire(KEYS)
        await pool.report_failure("key:1", ServerError())
        await pool.report_failure("key:2", AuthenticationError())
        await breaker.record_failure()
        await store.take_tokens("bucket:x", capacity=1, refill_per_second=1, amount=1, now=clock())
        await RateLimitTracker(store, clock=clock).record_retry_after("openai", 30)

        keys = redis_keys(store)

        prefix = store.cache.key_prefix
        assert {k.decode().split(":", 2)[2] for k in keys} == {
            "pool:p:rr",
            "pool:p:cred:key:1",
            "pool:p:cred:key:2",
            "breaker:b",
            "bucket:x",
            "ratelimit:openai:retry",
        }
        assert all(k.decode().startswith(f"{prefix}:1:") for k in keys)
        assert all(ttl > 0 for ttl in keys.values())
    finally:
        cleanup()


async def test_it_reads_breaker_pool_and_tracker_in_one_step_and_says_when_success_is_moot(
    store, clock
):
    pool = KeyPool(store, "p", clock=clock)
    breaker = CircuitBreaker(store, "p", failure_threshold=2, reset_timeout=30, clock=clock)
    tracker = RateLimitTracker(store, clock=clock)
    await tracker.record_retry_after("p:key:1:m", 10)

    acquired = await pool.take(
        ["key:1"], breaker=breaker, also_read=lambda c: tracker.read_keys(f"p:{c}:m")
    )

    # a healthy key on a closed breaker: its success would change nothing
    assert acquired.credential == "key:1" and acquired.success_changes_nothing(breaker)
    assert tracker.check_found("p:key:1:m", acquired.found)[0] == pytest.approx(10.0)

    # a failure counted on the closed breaker: the success clears it
    await breaker.record_failure()
    acquired = await pool.take(["key:1"], breaker=breaker)
    assert not acquired.success_changes_nothing(breaker)
    await pool.report_success("key:1", breaker=breaker, acquired=acquired)
    assert await store.get(breaker.key) is None

    # a failure counted on the key: the success resets it
    await pool.report_failure("key:1", ServerError())
    acquired = await pool.take(["key:1"], breaker=breaker)
    assert not acquired.success_changes_nothing(breaker)
    await pool.report_success("key:1", breaker=breaker, acquired=acquired)
    assert (await pool.health("key:1")).consecutive_failures == 0

    # open: refused with nothing written; half-open: the probe's success closes it
    await breaker.record_failure()
    await breaker.record_failure()
    with pytest.raises(CircuitOpenError):
        await pool.take(["key:1"], breaker=breaker)
    clock.advance(30)
    acquired = await pool.take(["key:1"], breaker=breaker)
    assert not acquired.success_changes_nothing(breaker)
    with pytest.raises(CircuitOpenError):
        await pool.take(["key:1"], breaker=breaker)  # the probe is claimed
    await pool.report_success("key:1", breaker=breaker, acquired=acquired)
    assert await breaker.state() == "closed"
