"""Rate limits: what providers say in headers, what we remember, buckets for the silent ones.

Three layers, all framework-free:

- Parsers turn response headers (OpenAI, Anthropic, Cerebras styles, plus the
  generic ``retry-after``) into a ``RateLimitInfo``. Reset times are stored as
  ABSOLUTE unix times so a snapshot stays meaningful after it is written to a
  shared cache and read by another process later. Malformed values are
  skipped field by field: a provider changing one header's format must not
  break a request.
- ``RateLimitTracker`` keeps the latest snapshot per (provider, model) in a
  ``RateLimitStore`` and answers "may I send now / how long to wait".
- ``TokenBucket`` throttles client-side for providers that send no headers
  (Gemini, Qwen), using the store's atomic ``take_tokens``.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from .errors import RateLimitError
from .ratelimit_store import (
    MemoryRateLimitStore,
    RateLimitStore,
    take_from_bucket,
)

__all__ = [
    "GEMINI_TIERS",
    "GEMINI_DAILY_LIMITS",
    "QWEN_LIMITS",
    "BucketLimits",
    "MemoryRateLimitStore",
    "RateLimitInfo",
    "RateLimitStore",
    "RateLimitTracker",
    "TokenBucket",
    "gemini_bucket",
    "gemini_quota_is_daily",
    "parse_anthropic_headers",
    "parse_cerebras_headers",
    "parse_duration",
    "parse_openai_headers",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "qwen_bucket",
    "retry_after_from_gemini_error",
]

Clock = Callable[[], float]
RateLimitKey = str | tuple[Any, ...]

# --------------------------------------------------------------------------- durations

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign, what Go prints
    "μs": 1e-6,  # U+03BC greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def _finite_number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_duration(value: str) -> float | None:
    """Seconds in a Go duration ("1s", "6m0s", "114ms", "23m16.298s", "1h2m3s") or a plain number.

    OpenAI formats its reset headers with Go's ``time.Duration.String``;
    Cerebras sends plain float seconds. Negative, empty or otherwise
    unparseable input gives None, never an exception.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    number = _finite_number(text)
    if number is not None:
        return number if number >= 0 else None
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        return None
    return total


# --------------------------------------------------------------------------- header access


def _lower_headers(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """One case-folded copy, so plain dicts behave like httpx.Headers."""
    if not headers:
        return {}
    out: dict[str, str] = {}
    try:
        items = headers.items()
    except AttributeError:
        return {}
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(name, str) and isinstance(value, str):
            out[name.lower()] = value.strip()
    return out


def _int_value(text: str | None) -> int | None:
    if text is None:
        return None
    number = _finite_number(text)
    if number is None or number < 0:
        return None
    return int(number)


def _rfc3339_timestamp(text: str | None) -> float | None:
    if not text:
        return None
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _retry_after_from(lowered: Mapping[str, str], now: float) -> float | None:
    millis_text = lowered.get("retry-after-ms")
    millis = _finite_number(millis_text) if millis_text else None
    if millis is not None and millis >= 0:
        return millis / 1000.0
    text = lowered.get("retry-after")
    if not text:
        return None
    seconds = _finite_number(text)
    if seconds is not None:
        return seconds if seconds >= 0 else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait: ``retry-after-ms`` (OpenAI's SDK reads it first), else ``retry-after``.

    ``retry-after`` may be seconds (integer or float) or an HTTP-date; a date in
    the past means "now" (0). Never negative, never raises.
    """
    return _retry_after_from(_lower_headers(headers), time.time() if now is None else now)


# --------------------------------------------------------------------------- RateLimitInfo

# Windows a snapshot can describe; each has <name>_limit, _remaining and _reset_at fields.
WINDOWS: tuple[str, ...] = (
    "requests",
    "tokens",
    "input_tokens",
    "output_tokens",
    "requests_day",
    "tokens_minute",
)


@dataclass(slots=True)
class RateLimitInfo:
    """One response's view of the provider's limits. Every field is optional.

    ``*_reset_at`` and ``observed_at`` are unix times; ``retry_after`` is
    seconds counted from ``observed_at``.
    """

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset_at: float | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset_at: float | None = None
    # Anthropic splits tokens into input and output windows
    input_tokens_limit: int | None = None
    input_tokens_remaining: int | None = None
    input_tokens_reset_at: float | None = None
    output_tokens_limit: int | None = None
    output_tokens_remaining: int | None = None
    output_tokens_reset_at: float | None = None
    # Cerebras: requests per day and tokens per minute
    requests_day_limit: int | None = None
    requests_day_remaining: int | None = None
    requests_day_reset_at: float | None = None
    tokens_minute_limit: int | None = None
    tokens_minute_remaining: int | None = None
    tokens_minute_reset_at: float | None = None
    retry_after: float | None = None
    observed_at: float | None = None

    def windows(self) -> Iterator[tuple[str, int | None, int | None, float | None]]:
        """(name, limit, remaining, reset_at) for every window with any value."""
        for name in WINDOWS:
            limit = getattr(self, f"{name}_limit")
            remaining = getattr(self, f"{name}_remaining")
            reset_at = getattr(self, f"{name}_reset_at")
            if limit is not None or remaining is not None or reset_at is not None:
                yield name, limit, remaining, reset_at

    @property
    def has_limits(self) -> bool:
        return next(self.windows(), None) is not None

    @property
    def is_empty(self) -> bool:
        return not self.has_limits and self.retry_after is None

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RateLimitInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------- header parsers


def _fill_window(
    info: RateLimitInfo,
    window: str,
    lowered: Mapping[str, str],
    *,
    limit: str,
    remaining: str,
    reset: str,
    reset_at: Callable[[str], float | None],
) -> None:
    value = _int_value(lowered.get(limit))
    if value is not None:
        setattr(info, f"{window}_limit", value)
    value = _int_value(lowered.get(remaining))
    if value is not None:
        setattr(info, f"{window}_remaining", value)
    raw_reset = lowered.get(reset)
    if raw_reset:
        when = reset_at(raw_reset)
        if when is not None:
            setattr(info, f"{window}_reset_at", when)


def _relative_reset(now: float) -> Callable[[str], float | None]:
    def reset_at(text: str) -> float | None:
        seconds = parse_duration(text)
        return None if seconds is None else now + seconds

    return reset_at


def _finish(info: RateLimitInfo, lowered: Mapping[str, str], now: float) -> RateLimitInfo | None:
    info.retry_after = _retry_after_from(lowered, now)
    info.observed_at = now
    return None if info.is_empty else info


def _fill_openai(info: RateLimitInfo, lowered: Mapping[str, str], now: float) -> None:
    reset_at = _relative_reset(now)
    for window in ("requests", "tokens"):
        _fill_window(
            info,
            window,
            lowered,
            limit=f"x-ratelimit-limit-{window}",
            remaining=f"x-ratelimit-remaining-{window}",
            reset=f"x-ratelimit-reset-{window}",
            reset_at=reset_at,
        )


def parse_openai_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo | None:
    """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; resets are Go durations."""
    now = time.time() if now is None else now
    lowered = _lower_headers(headers)
    info = RateLimitInfo()
    _fill_openai(info, lowered, now)
    return _finish(info, lowered, now)


def parse_anthropic_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo | None:
    """``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``.

    Resets are RFC 3339 times ("2026-02-25T20:02:37Z"), already absolute.
    """
    now = time.time() if now is None else now
    lowered = _lower_headers(headers)
    info = RateLimitInfo()
    for window in ("requests", "tokens", "input_tokens", "output_tokens"):
        name = window.replace("_", "-")
        _fill_window(
            info,
            window,
            lowered,
            limit=f"anthropic-ratelimit-{name}-limit",
            remaining=f"anthropic-ratelimit-{name}-remaining",
            reset=f"anthropic-ratelimit-{name}-reset",
            reset_at=_rfc3339_timestamp,
        )
    return _finish(info, lowered, now)


def parse_cerebras_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo | None:
    """``x-ratelimit-{limit,remaining,reset}-{requests-day,tokens-minute}`` + OpenAI-style ones.

    Cerebras resets are float seconds ("33011.382867097855"); parse_duration
    reads those as Go durations, so the OpenAI-style fields work either way.
    """
    now = time.time() if now is None else now
    lowered = _lower_headers(headers)
    info = RateLimitInfo()
    _fill_openai(info, lowered, now)
    reset_at = _relative_reset(now)
    for window, suffix in (("requests_day", "requests-day"), ("tokens_minute", "tokens-minute")):
        _fill_window(
            info,
            window,
            lowered,
            limit=f"x-ratelimit-limit-{suffix}",
            remaining=f"x-ratelimit-remaining-{suffix}",
            reset=f"x-ratelimit-reset-{suffix}",
            reset_at=reset_at,
        )
    return _finish(info, lowered, now)


def _parse_retry_only(
    headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo | None:
    now = time.time() if now is None else now
    lowered = _lower_headers(headers)
    return _finish(RateLimitInfo(), lowered, now)


_PARSERS: dict[str, Callable[..., RateLimitInfo | None]] = {
    "openai": parse_openai_headers,
    "anthropic": parse_anthropic_headers,
    "cerebras": parse_cerebras_headers,
    "none": _parse_retry_only,
}

HEADER_STYLES = frozenset(_PARSERS)


def parse_rate_limit_headers(
    style: str, headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo | None:
    """Dispatch on the adapter's header style. "none" still reads ``retry-after``.

    An unknown style is a configuration bug and raises ValueError rather than
    silently disabling rate-limit tracking.
    """
    try:
        parser = _PARSERS[style]
    except KeyError:
        raise ValueError(
            f"unknown rate-limit header style {style!r}; expected one of {sorted(_PARSERS)}"
        ) from None
    return parser(headers, now=now)


# --------------------------------------------------------------------------- tracker

# How long a snapshot is kept when it names no reset time at all.
DEFAULT_SNAPSHOT_TTL = 60.0
# Longest we keep any snapshot (Cerebras' day window resets within 24 h).
MAX_SNAPSHOT_TTL = 2 * 86400.0


def _key_text(key: RateLimitKey) -> str:
    if isinstance(key, tuple):
        return ":".join(str(part) for part in key)
    return str(key)


class RateLimitTracker:
    """Remembers what providers said about their limits, per (provider, model) key.

    Two store entries per key, both plain writes (no read-modify-write, so no
    cross-process race): the latest header snapshot, replaced whole by each
    response that carries limits, and a "retry-until" time set by 429s. A 429
    without limit headers therefore does not wipe what earlier responses
    told us. Last writer wins: a response that arrives slightly out of order
    is corrected by the next one.

    A window whose reset time has passed counts as replenished.
    """

    def __init__(
        self, store: RateLimitStore, *, clock: Clock = time.time, prefix: str = "ratelimit"
    ) -> None:
        self._store = store
        self._clock = clock
        self._prefix = prefix

    def _snapshot_key(self, key: RateLimitKey) -> str:
        return f"{self._prefix}:{_key_text(key)}"

    def _retry_key(self, key: RateLimitKey) -> str:
        return f"{self._prefix}:{_key_text(key)}:retry"

    async def update(self, key: RateLimitKey, info: RateLimitInfo | None) -> None:
        if info is None:
            return
        now = self._clock()
        if info.has_limits:
            resets = [r for _, _, _, r in info.windows() if r is not None]
            ttl = max(resets) - now if resets else DEFAULT_SNAPSHOT_TTL
            ttl = min(max(ttl, 1.0), MAX_SNAPSHOT_TTL)
            data = info.to_dict()
            data.pop("retry_after", None)
            data["expires_at"] = now + ttl
            await self._store.set(self._snapshot_key(key), data, ttl)
        if info.retry_after is not None:
            observed = info.observed_at if info.observed_at is not None else now
            await self._set_retry_until(key, observed + info.retry_after, now)

    async def record_retry_after(self, key: RateLimitKey, seconds: float | None) -> None:
        """Remember a 429's retry-after: no request for this key until it has passed."""
        if seconds is None or not math.isfinite(seconds) or seconds <= 0:
            return
        now = self._clock()
        await self._set_retry_until(key, now + seconds, now)

    async def _set_retry_until(self, key: RateLimitKey, until: float, now: float) -> None:
        if until > now:
            await self._store.set(self._retry_key(key), {"until": until}, until - now)

    @staticmethod
    def _blocking_waits(
        info: RateLimitInfo | None, expires_at: float | None, tokens: int, now: float
    ) -> list[float]:
        """Seconds until each exhausted window reopens; empty when nothing blocks."""
        if info is None:
            return []
        need_tokens = max(int(tokens), 1)  # any request spends at least one token
        needs = {
            "requests": 1,
            "requests_day": 1,
            "tokens": need_tokens,
            "input_tokens": need_tokens,
            "output_tokens": 1,
            "tokens_minute": need_tokens,
        }
        waits = []
        for name, _limit, remaining, reset_at in info.windows():
            if remaining is None or remaining >= needs[name]:
                continue
            reopen = reset_at if reset_at is not None else expires_at
            if reopen is None:
                reopen = now + DEFAULT_SNAPSHOT_TTL
            if reopen > now:
                waits.append(reopen - now)
        return waits

    async def can_make_request(self, key: RateLimitKey, tokens: int = 0) -> bool:
        return await self.wait_time(key, tokens) == 0.0

    async def wait_time(self, key: RateLimitKey, tokens: int = 0) -> float:
        """Seconds until a request of ``tokens`` may go (0 if now): the latest blocking window."""
        snapshot = await self._store.get(self._snapshot_key(key))
        retry = await self._store.get(self._retry_key(key))
        now = self._clock()
        info, expires_at = self._live_snapshot(snapshot, now)
        waits = self._blocking_waits(info, expires_at, tokens, now)
        retry_until = retry.get("until") if retry else None
        if retry_until is not None and retry_until > now:
            waits.append(retry_until - now)
        return max(waits) if waits else 0.0

    async def should_throttle(self, key: RateLimitKey, fraction: float = 0.9) -> bool:
        """True when any known window is ``fraction`` used, or a 429's retry-after is in force.

        A softer signal than can_make_request: callers prefer another key or
        provider before the hard limit is reached.
        """
        snapshot = await self._store.get(self._snapshot_key(key))
        retry = await self._store.get(self._retry_key(key))
        now = self._clock()
        if retry and retry.get("until", 0) > now:
            return True
        info, _ = self._live_snapshot(snapshot, now)
        if info is None:
            return False
        for _name, limit, remaining, reset_at in info.windows():
            if not limit or remaining is None:
                continue
            if reset_at is not None and reset_at <= now:
                continue
            if (limit - remaining) / limit >= fraction:
                return True
        return False

    async def get(self, key: RateLimitKey) -> RateLimitInfo | None:
        """The stored snapshot, for dashboards and health pages."""
        snapshot = await self._store.get(self._snapshot_key(key))
        info, _ = self._live_snapshot(snapshot, self._clock())
        return info

    @staticmethod
    def _live_snapshot(
        snapshot: dict | None, now: float
    ) -> tuple[RateLimitInfo | None, float | None]:
        if not snapshot:
            return None, None
        expires_at = snapshot.get("expires_at")
        if expires_at is not None and expires_at <= now:
            return None, None
        return RateLimitInfo.from_dict(snapshot), expires_at


# --------------------------------------------------------------------------- client-side buckets


class BucketLimits(NamedTuple):
    per_minute: float
    per_day: float | None = None


# Gemini API requests per minute by usage tier, for Gemini 2.0 Flash. Google's
# rate-limits page (ai.google.dev/gemini-api/docs/rate-limits) listed free 15 RPM /
# 1,500 RPD and Tier 1 2,000 RPM; the Tier 2 (10,000) and Tier 3 (30,000) values
# come from secondary copies of that table. Limits differ per model and change
# often (Google now shows them per project in AI Studio), so gemini_bucket()
# takes overrides; these are defaults, not truths.
GEMINI_TIERS: dict[str, int] = {
    "free": 15,
    "tier1": 2000,
    "tier2": 10000,
    "tier3": 30000,
}
# Requests per day; None where the table gives no daily cap.
GEMINI_DAILY_LIMITS: dict[str, int | None] = {
    "free": 1500,
    "tier1": None,
    "tier2": None,
    "tier3": None,
}
# Qwen OAuth free tier (qwen-code): 60 requests per minute, 2,000 per day.
QWEN_LIMITS = BucketLimits(per_minute=60, per_day=2000)


class TokenBucket:
    """Client-side limiter for providers that publish limits but send no headers.

    A per-minute bucket (capacity = per_minute, refilling continuously) and an
    optional per-day bucket, both in the shared store so every process draws
    from the same allowance. When the day bucket refuses after the minute
    bucket granted, the minute tokens are handed back (negative take).
    """

    def __init__(
        self,
        store: RateLimitStore,
        key: RateLimitKey,
        *,
        per_minute: float,
        per_day: float | None = None,
        clock: Clock = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        if per_day is not None and per_day <= 0:
            raise ValueError("per_day must be positive or None")
        self.store = store
        self.key = _key_text(key)
        self.per_minute = float(per_minute)
        self.per_day = float(per_day) if per_day is not None else None
        self._clock = clock
        self._sleep = sleep

    def _buckets(self) -> list[tuple[str, float, float]]:
        """(store key, capacity, refill per second) for each bucket, minute first."""
        buckets = [(f"bucket:{self.key}:minute", self.per_minute, self.per_minute / 60.0)]
        if self.per_day is not None:
            buckets.append((f"bucket:{self.key}:day", self.per_day, self.per_day / 86400.0))
        return buckets

    async def _take(self, n: float) -> tuple[bool, float]:
        now = self._clock()
        taken: list[tuple[str, float, float]] = []
        for bucket_key, capacity, refill in self._buckets():
            allowed, wait = await self.store.take_tokens(
                bucket_key, capacity=capacity, refill_per_second=refill, amount=n, now=now
            )
            if not allowed:
                for undo_key, undo_capacity, undo_refill in taken:
                    await self.store.take_tokens(
                        undo_key,
                        capacity=undo_capacity,
                        refill_per_second=undo_refill,
                        amount=-n,
                        now=now,
                    )
                return False, wait
            taken.append((bucket_key, capacity, refill))
        return True, 0.0

    async def try_acquire(self, n: float = 1) -> bool:
        allowed, _ = await self._take(n)
        return allowed

    async def wait_time(self, n: float = 1) -> float:
        """Seconds until ``n`` could be taken, taking nothing (inf if ``n`` exceeds a capacity)."""
        now = self._clock()
        longest = 0.0
        for bucket_key, capacity, refill in self._buckets():
            state = await self.store.get(bucket_key)
            allowed, wait, _ = take_from_bucket(
                state, capacity=capacity, refill_per_second=refill, amount=n, now=now
            )
            if not allowed:
                longest = max(longest, wait)
        return longest

    async def acquire(self, n: float = 1, *, max_wait: float) -> None:
        """Take ``n``, sleeping while needed; RateLimitError if that would exceed ``max_wait`` s."""
        deadline = self._clock() + max_wait
        while True:
            allowed, wait = await self._take(n)
            if allowed:
                return
            now = self._clock()
            if not math.isfinite(wait):
                raise RateLimitError(
                    f"request of {n:g} exceeds the client-side limit", code="client_rate_limited"
                )
            if now + wait > deadline:
                raise RateLimitError(
                    f"client-side rate limit: next slot in {wait:.2f}s (max_wait {max_wait:g}s)",
                    code="client_rate_limited",
                    retry_after=wait,
                )
            await self._sleep(wait)


def gemini_bucket(
    store: RateLimitStore,
    key: RateLimitKey,
    tier: str = "free",
    *,
    per_minute: float | None = None,
    per_day: float | None = None,
    clock: Clock = time.time,
) -> TokenBucket:
    """Gemini's published tier limits; ``per_minute``/``per_day`` override them per model."""
    if tier not in GEMINI_TIERS:
        raise ValueError(f"unknown Gemini tier {tier!r}; expected one of {sorted(GEMINI_TIERS)}")
    return TokenBucket(
        store,
        key,
        per_minute=per_minute if per_minute is not None else GEMINI_TIERS[tier],
        per_day=per_day if per_day is not None else GEMINI_DAILY_LIMITS.get(tier),
        clock=clock,
    )


def qwen_bucket(
    store: RateLimitStore, key: RateLimitKey, *, clock: Clock = time.time
) -> TokenBucket:
    return TokenBucket(
        store, key, per_minute=QWEN_LIMITS.per_minute, per_day=QWEN_LIMITS.per_day, clock=clock
    )


# --------------------------------------------------------------------------- Gemini error bodies

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


def _gemini_details(body: Any) -> list[dict]:
    """error.details from a google.rpc error body; streaming errors may arrive wrapped in a list."""
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict):
        return []
    error = body.get("error", body)
    if not isinstance(error, dict):
        return []
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def retry_after_from_gemini_error(body: Any) -> float | None:
    """Seconds from the RetryInfo detail's ``retryDelay`` ("40s", "1.5s"): the structured hint.

    The message's "Please retry in 40.02s." is prose and deliberately not read.
    """
    for detail in _gemini_details(body):
        if detail.get("@type") != _RETRY_INFO:
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str):
            return parse_duration(delay)
        if isinstance(delay, dict):  # proto Duration as an object
            seconds = _finite_number(str(delay.get("seconds", 0)))
            nanos = _finite_number(str(delay.get("nanos", 0)))
            if seconds is not None and nanos is not None and seconds >= 0:
                return seconds + nanos / 1e9
    return None


def gemini_quota_is_daily(body: Any) -> bool:
    """True when a QuotaFailure violation's quotaId names a per-day quota (e.g. ...PerDay...).

    A per-day quota will not come back in seconds, so callers move on to
    another credential instead of waiting out the retry delay.
    """
    for detail in _gemini_details(body):
        if detail.get("@type") != _QUOTA_FAILURE:
            continue
        for violation in detail.get("violations") or []:
            quota_id = violation.get("quotaId") if isinstance(violation, dict) else None
            if isinstance(quota_id, str) and "PerDay" in quota_id:
                return True
    return False
