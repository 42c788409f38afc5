"""Per-request knobs: which failure to simulate, how long to wait between chunks.

A failure is chosen by the ``x-sim-fail: <mode>`` request header, by a model
id containing ``fail-<mode>`` (``gpt-4o-fail-rate_limit``), or by a credential
containing ``fail-<mode>`` (``sk-sim-fail-rate_limit-0001``), so it can be
triggered both by tests talking to the simulator directly and through the
gateway, which forwards the model id and the credential but not arbitrary
headers. The credential form makes one key of a pool fail while the others
serve, which is how key failover is exercised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from multidict import CIMultiDictProxy

FAIL_HEADER = "x-sim-fail"
DELAY_HEADER = "x-sim-delay-ms"
RETRY_AFTER_HEADER = "x-sim-retry-after"
DEFAULT_RETRY_AFTER = 2

# Answered with an HTTP error status before any body byte.
STATUS_MODES = (
    "auth",
    "permission",
    "not_found",
    "bad_request",
    "context_length",
    "rate_limit",
    "quota",
    "server",
    "overloaded",
)
# Answered with HTTP 200 and a reply that ends in a provider-specific way.
FINISH_MODES = ("content_filter", "malformed_function_call", "prompt_blocked")
# Transport-level misbehaviour.
TRANSPORT_MODES = ("hang", "disconnect", "malformed", "midstream_error")

MODES = STATUS_MODES + FINISH_MODES + TRANSPORT_MODES

_MODEL_FAIL_RE = re.compile(
    r"fail-(" + "|".join(sorted(MODES, key=len, reverse=True)) + r")(?![a-z_])"
)


# ``delay-<n>ms`` in a model id: the per-chunk delay for clients that cannot send headers
# to the simulator (e.g. the gateway, which calls it through a provider adapter).
_MODEL_DELAY_RE = re.compile(r"delay-(\d{1,5})ms")

_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")


def _fail_named_in(text: str) -> str | None:
    if not text or "fail-" not in text:
        return None
    match = _MODEL_FAIL_RE.search(text)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class RequestKnobs:
    """What the request asked of the simulator beyond the provider API itself."""

    fail: str | None
    unknown_fail: str | None  # an x-sim-fail value that is not a mode -> 400
    delay_s: float
    retry_after: int


def read_knobs(headers: CIMultiDictProxy[str], model: str, default_delay_s: float) -> RequestKnobs:
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
        fail = _fail_named_in(model) or next(
            (mode for name in _CREDENTIAL_HEADERS if (mode := _fail_named_in(headers.get(name, "")))), None
        )
    delay_s = default_delay_s
    if (named_delay := _MODEL_DELAY_RE.search(model or "")) is not None:
        delay_s = int(named_delay.group(1)) / 1000.0
    raw_delay = headers.get(DELAY_HEADER)
    if raw_delay:
        try:
            delay_s = max(0.0, float(raw_delay) / 1000.0)
        except ValueError:
            pass
    retry_after = DEFAULT_RETRY_AFTER
    raw_retry = headers.get(RETRY_AFTER_HEADER)
    if raw_retry:
        try:
            retry_after = max(0, int(float(raw_retry)))
        except ValueError:
            pass
    return RequestKnobs(fail=fail, unknown_fail=unknown, delay_s=delay_s, retry_after=retry_after)


def unknown_mode_message(value: str) -> str:
    return f"Unknown {FAIL_HEADER} mode {value!r}; known modes: {', '.join(MODES)}."
