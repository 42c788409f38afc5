"""What providers say about their limits in response headers, as a ``RateLimitInfo``.

One parser per header style (OpenAI, Anthropic, Cerebras, plus the generic
``retry-after`` every style reads); a provider's profile names its style.
Reset times are stored as ABSOLUTE unix times so a snapshot stays meaningful
after it is written to a shared cache and read by another process later.
Malformed values are skipped field by field: a provider changing one header's
format must not break a request.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "HEADER_STYLES",
    "RateLimitInfo",
    "header_parser",
    "parse_anthropic_headers",
    "parse_cerebras_headers",
    "finite_number",
    "parse_duration",
    "parse_openai_headers",
    "parse_rate_limit_headers",
    "parse_retry_after",
]

HeaderParser = Callable[..., "RateLimitInfo | None"]

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


def finite_number(text: str) -> float | None:
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
    number = finite_number(text)
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
    number = finite_number(text)
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
    millis = finite_number(millis_text) if millis_text else None
    if millis is not None and millis >= 0:
        return millis / 1000.0
    text = lowered.get("retry-after")
    if not text:
        return None
    seconds = finite_number(text)
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
    reads those as well as Go durations, so the OpenAI-style fields work either way.
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


_PARSERS: dict[str, HeaderParser] = {
    "openai": parse_openai_headers,
    "anthropic": parse_anthropic_headers,
    "cerebras": parse_cerebras_headers,
    "none": _parse_retry_only,
}

HEADER_STYLES = frozenset(_PARSERS)


def header_parser(style: str) -> HeaderParser:
    """The parser for a header style. "none" still reads ``retry-after``.

    An unknown style is a configuration bug and raises ValueError rather than
    silently disabling rate-limit tracking.
    """
    try:
        return _PARSERS[style]
    except KeyError:
        raise ValueError(
            f"unknown rate-limit header style {style!r}; expected one of {sorted(_PARSERS)}"
        ) from None


def parse_rate_limit_headers(
    style: str, headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo | None:
    """Dispatch on the adapter's header style (see ``header_parser``).

    Most replies carry none of the style's headers (a provider that sends no limits,
    a reply without retry-after): then no parser runs and the answer is None at once."""
    parser = header_parser(style)
    if not _names_any(headers, _NAME_PREFIXES[style]):
        return None
    return parser(headers, now=now)


# What every header name a style's parser reads starts with (case-folded): a reply with
# none of them has nothing for that parser. Keep in step with the parsers above.
_RETRY_PREFIX = "retry-after"  # retry-after and retry-after-ms, read by every style
_NAME_PREFIXES: dict[str, tuple[str, ...]] = {
    "openai": ("x-ratelimit-", _RETRY_PREFIX),
    "anthropic": ("anthropic-ratelimit-", _RETRY_PREFIX),
    "cerebras": ("x-ratelimit-", _RETRY_PREFIX),
    "none": (_RETRY_PREFIX,),
}


def _names_any(headers: Mapping[str, str] | Any, prefixes: tuple[str, ...]) -> bool:
    """Whether any header name starts with one of ``prefixes`` (names of any case, str or
    bytes, as ``_lower_headers`` takes them)."""
    if not headers:
        return False
    try:
        names = headers.keys()
    except AttributeError:
        return False
    for name in names:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(name, str) and name.lower().startswith(prefixes):
            return True
    return False
