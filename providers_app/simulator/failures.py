"""Per-request knobs: which failure to simulate, and how the simulated model behaves.

A failure is chosen by the ``x-sim-fail: <mode>`` request header, by a model
id containing ``fail-<mode>`` (``gpt-4o-fail-rate_limit``), or by a credential
containing ``fail-<mode>`` (``sk-sim-fail-rate_limit-0001``), so it can be
triggered both by tests talking to the simulator directly and through the
gateway, which forwards the model id and the credential but not arbitrary
headers. The credential form makes one key of a pool fail while the others
serve, which is how key failover is exercised.

The other knobs (timing, retry delay, reply length, token density) follow the
same three sources with the same precedence -- header, then model id, then
credential -- each knob on its own, so ``gpt-4o-ttft-500ms-tps-20-words-200-dense``
and a key ``sk-sim-fail-rate_limit-retry-90s-0001`` combine as expected.
Tokens are matched only at a word boundary (not after a letter or digit), so
``imagen-3`` is not a ``gen-`` token and ``condensed`` is not ``dense``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from multidict import CIMultiDictProxy

FAIL_HEADER = "x-sim-fail"
DELAY_HEADER = "x-sim-delay-ms"
RETRY_AFTER_HEADER = "x-sim-retry-after"
TTFT_HEADER = "x-sim-ttft-ms"
TPS_HEADER = "x-sim-tps"
GEN_HEADER = "x-sim-gen-seconds"
WORDS_HEADER = "x-sim-words"
DENSE_HEADER = "x-sim-dense"
OVERRUN_HEADER = "x-sim-overrun"

DEFAULT_RETRY_AFTER = 2
# A per-day quota resets in hours; providers that say when (in a header) say so.
DEFAULT_DAILY_RETRY_AFTER = 3600
MAX_RETRY_AFTER = 7 * 24 * 3600
MAX_WAIT_S = 24 * 3600.0  # no knob may ask for more than a day of waiting
MAX_WORDS = 200_000  # bounds the reply the simulator builds in memory

# Answered with an HTTP error status before any body byte.
STATUS_MODES = (
    "auth",
    "permission",
    "model_permission",
    "not_found",
    "bad_request",
    "context_length",
    "rate_limit",
    "daily_quota",
    "quota",
    "server",
    "overloaded",
)
# Answered with HTTP 200 and a reply that ends in a provider-specific way.
FINISH_MODES = ("content_filter", "malformed_function_call", "prompt_blocked")
# Transport-level misbehaviour.
TRANSPORT_MODES = (
    "hang",
    "stall",
    "stall_midstream",
    "disconnect",
    "malformed",
    "midstream_error",
)

MODES = STATUS_MODES + FINISH_MODES + TRANSPORT_MODES

# A token starts at the beginning or after a character that is not a letter or digit.
_B = r"(?<![A-Za-z0-9])"
_MODEL_FAIL_RE = re.compile(
    r"fail-(" + "|".join(sorted(MODES, key=len, reverse=True)) + r")(?![a-z_])"
)
# ``delay-<n>ms`` in a model id: the per-chunk delay for clients that cannot send headers
# to the simulator (e.g. the gateway, which calls it through a provider adapter).
_MODEL_DELAY_RE = re.compile(r"delay-(\d{1,5})ms")
_TTFT_RE = re.compile(_B + r"ttft-(\d{1,8})ms(?![A-Za-z0-9])")
_TPS_RE = re.compile(_B + r"tps-(\d{1,6}(?:\.\d{1,3})?)(?![A-Za-z0-9.])")
_GEN_RE = re.compile(_B + r"gen-(\d{1,6}(?:\.\d{1,3})?)s(?![A-Za-z0-9])")
_RETRY_RE = re.compile(_B + r"retry-(\d{1,7})([smh])(?![A-Za-z0-9])")
_WORDS_RE = re.compile(_B + r"words-(\d{1,7})(?![A-Za-z0-9])")
_DENSE_RE = re.compile(_B + r"dense(?![A-Za-z0-9])")
_OVERRUN_RE = re.compile(_B + r"overrun(?![A-Za-z0-9])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}

_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")


def _fail_named_in(text: str) -> str | None:
    if not text or "fail-" not in text:
        return None
    match = _MODEL_FAIL_RE.search(text)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class RequestKnobs:
    """What the request asked of the simulator beyond the provider API itself.

    ``retry_after`` is None when nobody asked for a value, so each failure
    mode can pick its own realistic default (seconds for a per-minute limit,
    an hour for a daily quota).
    """

    fail: str | None
    unknown_fail: str | None  # an x-sim-fail value that is not a mode -> 400
    delay_s: float
    retry_after: int | None = None
    ttft_s: float | None = None
    tps: float | None = None
    gen_s: float | None = None
    words: int | None = None
    dense: bool = False
    overrun: bool = False

    @property
    def timed(self) -> bool:
        """True when a generation-time knob (ttft, tps, gen) replaces the plain delay."""
        return self.ttft_s is not None or self.tps is not None or self.gen_s is not None

    def retry_after_or(self, default: int) -> int:
        return default if self.retry_after is None else self.retry_after

    def content_waits(self, count: int) -> list[float]:
        """The wait before each of ``count`` content chunks, in seconds.

        Without ttft/tps/gen every chunk waits the plain delay (the historic
        behaviour). ``ttft`` sets the first wait; ``tps`` the later ones
        (1/tps each); ``gen`` spreads the whole generation evenly over its
        seconds (after the ttft, when both are given).
        """
        if count <= 0:
            return []
        if self.gen_s is not None:
            if self.ttft_s is None:
                return [self.gen_s / count] * count
            rest = max(0.0, self.gen_s - self.ttft_s) / (count - 1) if count > 1 else 0.0
            return [self.ttft_s] + [rest] * (count - 1)
        first = self.ttft_s if self.ttft_s is not None else self.delay_s
        later = 1.0 / self.tps if self.tps else self.delay_s
        return [first] + [later] * (count - 1)

    def plain_wait(self, count: int) -> float:
        """How long a non-stream response takes before its headers: the whole generation.

        A real non-stream completion answers only when the last token is
        generated, so with timing knobs it waits the sum of the stream's
        waits; without them it waits the plain delay once, as it always did.
        """
        if not self.timed:
            return self.delay_s
        if count <= 0:
            return self.gen_s if self.gen_s is not None else (self.ttft_s or 0.0)
        return sum(self.content_waits(count))


def _number(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:  # ignored like any unreadable knob
        return None
    return number


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


def _first(pattern: re.Pattern[str], texts: Iterable[str]) -> re.Match[str] | None:
    for text in texts:
        if text and (match := pattern.search(text)) is not None:
            return match
    return None


def read_knobs(
    headers: CIMultiDictProxy[str],
    model: str,
    default_delay_s: float,
    extra_credentials: Iterable[str] = (),
) -> RequestKnobs:
    """Read every knob from the header, the model id, then the credentials.

    ``extra_credentials`` holds credentials that do not ride in a header
    (Gemini's ``?key=``).
    """
    credentials = [headers.get(name, "") for name in _CREDENTIAL_HEADERS]
    credentials.extend(extra_credentials)
    named = [model or "", *credentials]  # model id first: it wins over the credential

    fail = None
    unknown = None
    header = headers.get(FAIL_HEADER)
    if header:
        header = header.strip()
        if header in MODES:
            fail = header
        else:
            unknown = header
    else:
        fail = next((mode for text in named if (mode := _fail_named_in(text))), None)

    delay_s = default_delay_s
    if (named_delay := _MODEL_DELAY_RE.search(model or "")) is not None:
        delay_s = int(named_delay.group(1)) / 1000.0
    if (raw_delay := _number(headers.get(DELAY_HEADER))) is not None:
        delay_s = min(raw_delay / 1000.0, MAX_WAIT_S)

    retry_after: int | None = None
    if (raw_retry := _number(headers.get(RETRY_AFTER_HEADER))) is not None:
        retry_after = int(min(raw_retry, MAX_RETRY_AFTER))
    elif (match := _first(_RETRY_RE, named)) is not None:
        retry_after = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if retry_after is not None:
        retry_after = min(retry_after, MAX_RETRY_AFTER)

    ttft_s = _number(headers.get(TTFT_HEADER))
    if ttft_s is not None:
        ttft_s /= 1000.0
    elif (match := _first(_TTFT_RE, named)) is not None:
        ttft_s = int(match.group(1)) / 1000.0

    tps = _number(headers.get(TPS_HEADER))
    if tps is None and (match := _first(_TPS_RE, named)) is not None:
        tps = float(match.group(1))
    if not tps:  # 0 tokens per second would never finish: ignored
        tps = None

    gen_s = _number(headers.get(GEN_HEADER))
    if gen_s is None and (match := _first(_GEN_RE, named)) is not None:
        gen_s = float(match.group(1))

    words = _number(headers.get(WORDS_HEADER))
    if words is None and (match := _first(_WORDS_RE, named)) is not None:
        words = float(match.group(1))

    dense = _flag(headers.get(DENSE_HEADER))
    if dense is None:
        dense = _first(_DENSE_RE, named) is not None
    overrun = _flag(headers.get(OVERRUN_HEADER))
    if overrun is None:
        overrun = _first(_OVERRUN_RE, named) is not None

    return RequestKnobs(
        fail=fail,
        unknown_fail=unknown,
        delay_s=delay_s,
        retry_after=retry_after,
        ttft_s=None if ttft_s is None else min(ttft_s, MAX_WAIT_S),
        tps=tps,
        gen_s=None if gen_s is None else min(gen_s, MAX_WAIT_S),
        words=None if words is None else int(min(words, MAX_WORDS)),
        dense=dense,
        overrun=overrun,
    )


def unknown_mode_message(value: str) -> str:
    return f"Unknown {FAIL_HEADER} mode {value!r}; known modes: {', '.join(MODES)}."


def go_duration(seconds: float) -> str:
    """OpenAI's reset format (Go durations): ``2s``, ``1m30s``, ``1h0m0s``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
