"""RateLimitTracker decisions over time, with an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers_app.kit.ratelimit import (
    MemoryRateLimitStore,
    RateLimitInfo,
    RateLimitTracker,
    parse_anthropic_headers,
    parse_cerebras_headers,
    parse_openai_headers,
)

WIRE = Path(__file__).parents[2] / "fixtures" / "wire"
KEY = ("openai", "gpt-4o-mini")


class FakeClock:
    def __init__(self, start: float = 1_772_049_700.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def header_lines(name: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in (WIRE / name).read_text().splitlines():
        if not line.strip():
            break
        if not line.startswith("HTTP/"):
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
    return headers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(clock: FakeClock) -> RateLimitTracker:
    return RateLimitTracker(MemoryRateLimitStore(), clock=clock)


async def test_it_allows_keys_it_knows_nothing_about(tracker):
    assert await tracker.can_make_request(KEY, tokens=10_000)
    assert await tracker.wait_time(KEY) == 0.0
    assert await tracker.should_throttle(KEY) is False
    assert await tracker.get(KEY) is None


async def test_it_allows_requests_after_the_openai_sample(tracker, clock):
    info = parse_openai_headers(header_lines("openai_ratelimit_headers_docs.txt"), now=clock())
    await tracker.update(KEY, info)

    assert await tracker.can_make_request(KEY, tokens=1000)
    assert await tracker.should_throttle(KEY) is False
    assert (await tracker.get(KEY)).tokens_remaining == 149984


async def test_it_blocks_exhausted_requests_until_the_reset(tracker, clock):
    await tracker.update(
        KEY, RateLimitInfo(requests_limit=60, requests_remaining=0, requests_reset_at=clock() + 1.5)
    )

    assert await tracker.can_make_request(KEY) is False
    assert await tracker.wait_time(KEY) == pytest.approx(1.5)

    clock.advance(1.5)
    assert await tracker.can_make_request(KEY) is True
    assert await tracker.wait_time(KEY) == 0.0


async def test_it_blocks_requests_larger_than_the_remaining_tokens(tracker, clock):
    await tracker.update(
        KEY, RateLimitInfo(tokens_limit=1000, tokens_remaining=200, tokens_reset_at=clock() + 6)
    )

    assert await tracker.can_make_request(KEY, tokens=200) is True
    assert await tracker.can_make_request(KEY, tokens=201) is False
    assert await tracker.wait_time(KEY, tokens=201) == pytest.approx(6)
    assert await tracker.wait_time(KEY, tokens=50) == 0.0

    clock.advance(6)
    assert await tracker.can_make_request(KEY, tokens=201) is True


async def test_it_blocks_an_unsized_request_when_no_tokens_remain(tracker, clock):
    await tracker.update(
        KEY, RateLimitInfo(tokens_limit=1000, tokens_remaining=0, tokens_reset_at=clock() + 2)
    )

    assert await tracker.can_make_request(KEY) is False


async def test_it_blocks_on_anthropic_input_and_output_windows(tracker, clock):
    headers = header_lines("anthropic_ratelimit_headers.txt")
    headers["anthropic-ratelimit-output-tokens-remaining"] = "0"
    await tracker.update(KEY, parse_anthropic_headers(headers, now=clock()))

    # output window resets at 20:02:36Z, 56 s after the clock's 20:01:40Z
    assert await tracker.can_make_request(KEY) is False
    assert await tracker.wait_time(KEY) == pytest.approx(56)
    clock.advance(56)
    assert await tracker.can_make_request(KEY) is True
    # the input window (28,000 left, resets 20:02:37Z) still limits big requests
    assert await tracker.can_make_request(KEY, tokens=28_001) is False
    assert await tracker.wait_time(KEY, tokens=28_001) == pytest.approx(1)


async def test_it_blocks_when_the_cerebras_day_limit_is_spent(tracker, clock):
    headers = header_lines("cerebras_ratelimit_headers.txt")
    headers["x-ratelimit-remaining-requests-day"] = "0"
    await tracker.update(("cerebras", "llama3.1-8b"), parse_cerebras_headers(headers, now=clock()))

    assert await tracker.can_make_request(("cerebras", "llama3.1-8b")) is False
    assert await tracker.wait_time(("cerebras", "llama3.1-8b")) == pytest.approx(33011.382867097855)
    assert await tracker.should_throttle(("cerebras", "llama3.1-8b")) is True

    clock.advance(33011.4)
    assert await tracker.can_make_request(("cerebras", "llama3.1-8b")) is True


async def test_it_waits_for_the_latest_blocking_window(tracker, clock):
    await tracker.update(
        KEY,
        RateLimitInfo(
            requests_limit=10,
            requests_remaining=0,
            requests_reset_at=clock() + 5,
            tokens_limit=100,
            tokens_remaining=0,
            tokens_reset_at=clock() + 20,
        ),
    )

    assert await tracker.wait_time(KEY) == pytest.approx(20)
    clock.advance(5)
    assert await tracker.wait_time(KEY) == pytest.approx(15)


async def test_it_honours_a_429_retry_after(tracker, clock):
    await tracker.record_retry_after(KEY, 30)

    assert await tracker.can_make_request(KEY) is False
    assert await tracker.should_throttle(KEY) is True
    assert await tracker.wait_time(KEY) == pytest.approx(30)

    clock.advance(29.9)
    assert await tracker.can_make_request(KEY) is False
    clock.advance(0.1)
    assert await tracker.can_make_request(KEY) is True
    assert await tracker.should_throttle(KEY) is False


async def test_it_ignores_meaningless_retry_afters(tracker):
    for seconds in (None, 0, -5, float("inf"), float("nan")):
        await tracker.record_retry_after(KEY, seconds)
    assert await tracker.can_make_request(KEY) is True


async def test_it_takes_retry_after_from_parsed_headers(tracker, clock):
    info = parse_openai_headers({"retry-after-ms": "2500"}, now=clock())
    await tracker.update(KEY, info)

    assert await tracker.wait_time(KEY) == pytest.approx(2.5)


async def test_it_keeps_known_limits_when_a_429_has_no_limit_headers(tracker, clock):
    await tracker.update(
        KEY, RateLimitInfo(requests_limit=60, requests_remaining=59, requests_reset_at=clock() + 60)
    )
    await tracker.update(KEY, RateLimitInfo(retry_after=3, observed_at=clock()))

    snapshot = await tracker.get(KEY)
    assert snapshot.requests_remaining == 59
    assert await tracker.wait_time(KEY) == pytest.approx(3)


async def test_it_replaces_the_snapshot_with_the_latest_response(tracker, clock):
    await tracker.update(
        KEY, RateLimitInfo(requests_limit=60, requests_remaining=0, requests_reset_at=clock() + 60)
    )
    await tracker.update(
        KEY, RateLimitInfo(requests_limit=60, requests_remaining=5, requests_reset_at=clock() + 30)
    )

    assert await tracker.can_make_request(KEY) is True


async def test_it_forgets_an_exhausted_window_without_reset_after_a_minute(tracker, clock):
    await tracker.update(KEY, RateLimitInfo(requests_limit=60, requests_remaining=0))

    assert await tracker.wait_time(KEY) == pytest.approx(60)
    clock.advance(60)
    assert await tracker.can_make_request(KEY) is True
    assert await tracker.get(KEY) is None


async def test_it_throttles_at_the_used_fraction(tracker, clock):
    reset = clock() + 60
    await tracker.update(
        KEY, RateLimitInfo(requests_limit=100, requests_remaining=11, requests_reset_at=reset)
    )
    assert await tracker.should_throttle(KEY) is False  # 89 % used
    assert await tracker.should_throttle(KEY, fraction=0.5) is True

    await tracker.update(
        KEY, RateLimitInfo(requests_limit=100, requests_remaining=10, requests_reset_at=reset)
    )
    assert await tracker.should_throttle(KEY) is True  # 90 % used
    assert await tracker.can_make_request(KEY) is True  # throttle is a hint, not a refusal

    clock.advance(60)
    assert await tracker.should_throttle(KEY) is False  # the window has reset


async def test_it_throttles_on_any_window(tracker, clock):
    await tracker.update(
        KEY,
        RateLimitInfo(
            requests_limit=100,
            requests_remaining=99,
            tokens_limit=10_000,
            tokens_remaining=500,
            tokens_reset_at=clock() + 10,
        ),
    )
    assert await tracker.should_throttle(KEY) is True


async def test_it_treats_tuple_and_string_keys_alike(tracker, clock):
    await tracker.record_retry_after(("anthropic", "claude-sonnet-4-5"), 10)

    assert await tracker.can_make_request("anthropic:claude-sonnet-4-5") is False
    assert await tracker.can_make_request(("anthropic", "claude-haiku-4-5")) is True


async def test_it_ignores_an_empty_update(tracker):
    await tracker.update(KEY, None)
    await tracker.update(KEY, RateLimitInfo())

    assert await tracker.get(KEY) is None


async def test_it_shares_state_through_the_store(clock):
    store = MemoryRateLimitStore()
    writer = RateLimitTracker(store, clock=clock)
    reader = RateLimitTracker(store, clock=clock)

    await writer.update(
        KEY, RateLimitInfo(requests_limit=5, requests_remaining=0, requests_reset_at=clock() + 9)
    )

    assert await reader.wait_time(KEY) == pytest.approx(9)
