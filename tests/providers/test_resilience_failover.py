"""Failover over a key pool, and the retry policy's backoff."""

from __future__ import annotations

import pytest

from providers_app.kit.errors import (
    AllKeysExhaustedError,
    AuthenticationError,
    ContentFilterError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from providers_app.kit.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    KeyPool,
    MemoryStateStore,
    RetryPolicy,
    call_with_failover,
)

KEYS = ["key:1", "key:2", "key:3"]


class FakeClock:
    def __init__(self, start: float = 1_772_049_700.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Upstream:
    """An operation whose outcome per credential is scripted: an error to raise, or a reply."""

    def __init__(self, **errors_by_key) -> None:
        self.errors = {key.replace("_", ":"): error for key, error in errors_by_key.items()}
        self.calls: list[str] = []

    async def __call__(self, credential: str) -> str:
        self.calls.append(credential)
        error = self.errors.get(credential)
        if isinstance(error, list):
            error = error.pop(0) if error else None
        if error is not None:
            raise error
        return f"served by {credential}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryStateStore:
    return MemoryStateStore()


@pytest.fixture
def pool(store, clock) -> KeyPool:
    return KeyPool(store, "openai-1", strategy="round_robin", clock=clock)


async def failover(pool, clock, operation, candidates=KEYS, **kw):
    return await call_with_failover(
        pool=pool, candidates=candidates, operation=operation, sleep=clock.sleep, **kw
    )


async def test_it_serves_from_key_2_when_key_1_is_rate_limited(pool, clock):
    upstream = Upstream(key_1=RateLimitError(retry_after=20))

    assert await failover(pool, clock, upstream, candidates=["key:1", "key:2"]) == "served by key:2"

    assert upstream.calls == ["key:1", "key:2"]
    assert (await pool.health("key:1")).state == "cooling_down"
    assert clock.slept == []  # moved on at once: key 2 is not limited, and key 1 not waited out


async def test_it_never_tries_a_revoked_key_again(pool, clock):
    upstream = Upstream(key_1=AuthenticationError())

    results = [
        await failover(pool, clock, upstream, candidates=["key:1", "key:2"]) for _ in range(5)
    ]

    assert results == ["served by key:2"] * 5
    assert upstream.calls.count("key:1") == 1
    assert (await pool.health("key:1")).state == "invalid"
    assert clock.slept == []  # a dead key is no reason to wait


@pytest.mark.parametrize(
    "error", [InvalidRequestError(), ContentFilterError(), NotFoundError()], ids=lambda e: e.type
)
async def test_it_does_not_retry_request_errors(pool, clock, error):
    upstream = Upstream(key_1=error)

    with pytest.raises(type(error)):
        await failover(pool, clock, upstream)

    assert upstream.calls == ["key:1"]
    assert (await pool.health("key:1")).consecutive_failures == 0


async def test_it_raises_the_last_error_when_attempts_run_out(pool, clock):
    upstream = Upstream(
        key_1=ServerError("one"), key_2=ServerError("two"), key_3=ServerError("three")
    )

    with pytest.raises(ServerError) as caught:
        await failover(pool, clock, upstream, max_attempts=2)

    assert len(upstream.calls) == 2 and len(set(upstream.calls)) == 2
    assert caught.value is upstream.errors[upstream.calls[-1]]
    assert len(clock.slept) == 1


async def test_it_backs_off_exponentially_between_attempts(pool, clock):
    upstream = Upstream(key_1=ServerError(), key_2=ServerError(), key_3=ServerError())
    retry = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=0.0)

    with pytest.raises(ServerError):
        await failover(pool, clock, upstream, retry=retry, max_attempts=3)

    assert clock.slept == [1.0, 2.0]


async def test_it_waits_for_a_cooling_key_within_the_retry_cap(pool, clock):
    upstream = Upstream(key_1=[RateLimitError(retry_after=3)])

    assert await failover(pool, clock, upstream, candidates=["key:1"]) == "served by key:1"

    assert upstream.calls == ["key:1", "key:1"]
    assert sum(clock.slept) == pytest.approx(3)


async def test_it_raises_the_providers_rate_limit_rather_than_waiting_past_the_cap(pool, clock):
    upstream = Upstream(key_1=RateLimitError(retry_after=120), key_2=RateLimitError(retry_after=90))

    # the provider's own 429, not "no credential": calls were made and this is what they said
    with pytest.raises(RateLimitError) as caught:
        await failover(pool, clock, upstream, candidates=["key:1", "key:2"])

    assert upstream.calls == ["key:1", "key:2"]
    assert caught.value.retry_after == pytest.approx(90, abs=1)  # when the earliest key frees up


async def test_it_raises_all_keys_exhausted_only_when_no_call_was_made(pool, clock):
    await pool.report_failure("key:1", RateLimitError(retry_after=120))
    upstream = Upstream()

    with pytest.raises(AllKeysExhaustedError) as caught:
        await failover(pool, clock, upstream, candidates=["key:1"])

    assert upstream.calls == []
    assert caught.value.retry_after == pytest.approx(120, abs=1)


async def test_it_refuses_while_the_breaker_is_open_and_probes_after(store, pool, clock):
    breaker = CircuitBreaker(store, "openai-1", failure_threshold=2, reset_timeout=30, clock=clock)
    upstream = Upstream(key_1=ServerError(), key_2=ServerError())

    with pytest.raises(ServerError):
        await failover(
            pool, clock, upstream, candidates=["key:1", "key:2"], breaker=breaker, max_attempts=2
        )
    assert await breaker.state() == "open"

    with pytest.raises(CircuitOpenError):
        await failover(pool, clock, Upstream(), breaker=breaker)

    clock.now += 30
    served = await failover(pool, clock, Upstream(), candidates=["key:3"], breaker=breaker)
    assert served == "served by key:3"
    assert await breaker.state() == "closed"


def test_it_caps_the_backoff_and_honours_retry_after():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=0.0)

    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert policy.delay(1, retry_after=5) == 5
    assert policy.delay(1, retry_after=50) == 8


def test_it_jitters_the_backoff_downwards():
    policy = RetryPolicy(base_delay=4.0, max_delay=60.0, jitter=0.5)

    assert policy.delay(1, rng=lambda: 0.0) == 4.0
    assert policy.delay(1, rng=lambda: 1.0) == 2.0
    assert policy.delay(1, retry_after=3.5, rng=lambda: 1.0) == 3.5


async def test_it_fails_a_stream_over_only_until_its_first_chunk(pool, clock):
    """The caller wraps "open the stream and read the first chunk" as the operation."""

    async def stream(credential):
        if credential == "key:1":
            raise NetworkError("connection reset before the first chunk")
        yield f"{credential}: Hel"
        raise NetworkError("connection reset mid-stream")

    async def first_chunk(credential):
        chunks = stream(credential)
        return chunks, await anext(chunks)

    chunks, first = await failover(pool, clock, first_chunk, candidates=["key:1", "key:2"])

    assert first == "key:2: Hel"
    with pytest.raises(NetworkError, match="mid-stream"):  # after delivery: the caller's error
        await anext(chunks)
