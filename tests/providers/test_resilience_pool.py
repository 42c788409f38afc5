"""Key pool: choosing a credential and keeping score, on the in-process store with a fake clock."""

from __future__ import annotations

from collections import Counter

import pytest

from providers_app.kit.errors import (
    AllKeysExhaustedError,
    AuthenticationError,
    ContextLengthError,
    InvalidRequestError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from providers_app.kit.resilience import KeyPool, MemoryStateStore

KEYS = ["key:1", "key:2", "key:3"]


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
def store() -> MemoryStateStore:
    return MemoryStateStore()


@pytest.fixture
def pool(store, clock) -> KeyPool:
    return KeyPool(store, "openai-1", clock=clock)


async def test_it_prefers_the_credential_with_fewest_consecutive_failures(pool):
    await pool.report_failure("key:1", ServerError())
    await pool.report_failure("key:1", ServerError())
    await pool.report_failure("key:2", ServerError())

    assert [await pool.acquire(KEYS) for _ in range(4)] == ["key:3"] * 4


async def test_it_prefers_the_least_recently_failed_among_equals(pool, clock):
    await pool.report_failure("key:2", ServerError())
    clock.advance(5)
    await pool.report_failure("key:1", ServerError())

    assert await pool.acquire(["key:1", "key:2"]) == "key:2"


async def test_it_spreads_load_over_equally_healthy_credentials(pool):
    picks = Counter([await pool.acquire(KEYS) for _ in range(30)])

    assert picks == {"key:1": 10, "key:2": 10, "key:3": 10}


async def test_it_rotates_round_robin_over_the_available_credentials(store, clock):
    pool = KeyPool(store, "rr", strategy="round_robin", clock=clock)

    assert [await pool.acquire(KEYS) for _ in range(6)] == KEYS + KEYS

    await pool.report_failure("key:2", AuthenticationError())
    picks = Counter([await pool.acquire(KEYS) for _ in range(10)])
    assert picks == {"key:1": 5, "key:3": 5}


async def test_it_backs_off_1_2_4_seconds_after_three_failures_capped_at_60(pool, clock):
    for _ in range(2):
        await pool.report_failure("key:1", ServerError())
    assert (await pool.health("key:1")).state == "active"

    expected = [1, 2, 4, 8, 16, 32, 60, 60]
    for seconds in expected:
        await pool.report_failure("key:1", ServerError())
        health = await pool.health("key:1")
        assert health.state == "backoff"
        assert health.unavailable_until == pytest.approx(clock.now + seconds)
        with pytest.raises(AllKeysExhaustedError):
            await pool.acquire(["key:1"])
        clock.advance(seconds)
        assert await pool.acquire(["key:1"]) == "key:1"
    assert (await pool.health("key:1")).consecutive_failures == 10


async def test_it_resets_failures_and_backoff_on_success(pool, clock):
    for _ in range(4):
        await pool.report_failure("key:1", ServerError())
    assert (await pool.health("key:1")).state == "backoff"

    await pool.report_success("key:1")

    health = await pool.health("key:1")
    assert health.consecutive_failures == 0
    assert (health.state, health.unavailable_until) == ("active", None)
    assert await pool.acquire(["key:1"]) == "key:1"


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError(),
        # an account-level 403 (the body says so): key-level evidence
        PermissionDeniedError(permanent=True, scope="credential"),
    ],
)
async def test_it_marks_a_credential_invalid_until_it_is_reset(pool, clock, error):
    await pool.report_failure("key:1", error)

    clock.advance(365 * 86400)
    health = await pool.health("key:1")
    assert (health.state, health.invalid, health.last_error_type) == ("invalid", True, error.type)
    assert [await pool.acquire(["key:1", "key:2"]) for _ in range(5)] == ["key:2"] * 5
    await pool.report_success("key:1")  # a late success elsewhere does not revive it
    assert (await pool.health("key:1")).invalid

    await pool.reset("key:1")

    assert (await pool.health("key:1")).state == "active"
    assert await pool.acquire(["key:1"]) == "key:1"


async def test_it_cools_a_rate_limited_credential_down_for_its_retry_after(pool, clock):
    await pool.report_failure("key:1", RateLimitError(retry_after=12))

    health = await pool.health("key:1")
    assert health.state == "cooling_down"
    assert health.unavailable_until == pytest.approx(clock.now + 12)
    assert health.consecutive_failures == 0
    assert await pool.acquire(["key:1", "key:2"]) == "key:2"

    clock.advance(12)

    assert (await pool.health("key:1")).state == "active"
    assert await pool.acquire(["key:1"]) == "key:1"


async def test_it_cools_down_for_30_seconds_when_no_retry_after_is_given(pool, clock):
    await pool.report_failure("key:1", RateLimitError())

    assert (await pool.health("key:1")).unavailable_until == pytest.approx(clock.now + 30)


@pytest.mark.parametrize("error", [InvalidRequestError(), ContextLengthError()])
async def test_it_does_not_count_request_errors_against_the_credential(pool, error):
    for _ in range(5):
        await pool.report_failure("key:1", error)

    health = await pool.health("key:1")
    assert (health.consecutive_failures, health.state) == (0, "active")


async def test_it_raises_all_keys_exhausted_with_the_earliest_free_time(pool, clock):
    await pool.report_failure("key:1", RateLimitError(retry_after=20))
    await pool.report_failure("key:2", RateLimitError(retry_after=7))
    await pool.report_failure("key:3", AuthenticationError())

    with pytest.raises(AllKeysExhaustedError) as caught:
        await pool.acquire(KEYS)

    assert caught.value.retry_after == pytest.approx(7)
    assert caught.value.type == "all_keys_exhausted"


async def test_it_gives_no_retry_time_when_every_credential_is_invalid(pool):
    for key in KEYS:
        await pool.report_failure(key, AuthenticationError())

    with pytest.raises(AllKeysExhaustedError) as caught:
        await pool.acquire(KEYS)

    assert caught.value.retry_after is None


async def test_it_keeps_each_pools_state_apart(store, clock):
    one = KeyPool(store, "one", clock=clock)
    two = KeyPool(store, "two", clock=clock)

    await one.report_failure("key:1", AuthenticationError())

    assert (await two.health("key:1")).state == "active"
    assert "pool:one:cred:key:1" in store._data


async def test_it_cools_down_a_rate_limited_model_not_the_whole_credential(pool, clock):
    await pool.report_failure("key:1", RateLimitError(retry_after=60), model="gpt-4o")

    assert (await pool.health("key:1")).state == "active"
    assert await pool.acquire(["key:1"], model="gpt-4o-mini") == "key:1"
    with pytest.raises(AllKeysExhaustedError) as caught:
        await pool.acquire(["key:1"], model="gpt-4o")
    assert caught.value.retry_after == pytest.approx(60)
    clock.advance(61)
    assert await pool.acquire(["key:1"], model="gpt-4o") == "key:1"


async def test_it_cools_down_the_whole_credential_on_an_account_quota(pool, clock):
    await pool.report_failure("key:1", QuotaExceededError(), model="gpt-4o")

    health = await pool.health("key:1")
    assert (health.state, health.invalid) == ("cooling_down", False)
    assert health.unavailable_until == pytest.approx(clock() + 3600)


async def test_it_disables_a_key_only_on_the_same_403_for_a_second_model(pool, clock):
    for _ in range(3):
        assert not await pool.report_failure("key:1", PermissionDeniedError(), model="gpt-4o")
    assert (await pool.health("key:1")).state == "active"
    assert await pool.report_failure("key:1", PermissionDeniedError(), model="o1")
    assert (await pool.health("key:1")).state == "invalid"


async def test_it_never_disables_a_key_for_403s_that_name_their_model(pool, clock):
    for model in ("gpt-4o", "o1", "o3"):
        denied = PermissionDeniedError(code="model_not_found", model_specific=True)
        assert not await pool.report_failure("key:1", denied, model=model)
    assert (await pool.health("key:1")).state == "active"
