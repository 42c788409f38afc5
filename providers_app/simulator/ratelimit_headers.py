"""Rate-limit headers sent on successful responses, in each provider's format.

Values are constants (cheap, and stable for parser tests); only Anthropic's
reset needs a timestamp, cached per second. Formats, from the captured wire
samples: OpenAI Go durations (``1s``, ``6m0s``), Anthropic RFC 3339 times,
Cerebras float seconds with ``-day``/``-minute`` suffixes. Qwen and Gemini
send none.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

OPENAI = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-tokens": "6m0s",
}

CEREBRAS = {
    "x-ratelimit-limit-requests-day": "14400",
    "x-ratelimit-remaining-requests-day": "14399",
    "x-ratelimit-reset-requests-day": "33011.382867097855",
    "x-ratelimit-limit-tokens-minute": "60000",
    "x-ratelimit-remaining-tokens-minute": "59000",
    "x-ratelimit-reset-tokens-minute": "11.382867097854614",
}

ANTHROPIC_LIMITS = {
    "requests": ("50", "49"),
    "tokens": ("38000", "36000"),
    "input-tokens": ("30000", "28000"),
    "output-tokens": ("8000", "8000"),
}
ANTHROPIC_RESET_SECONDS = 60

_anthropic_cache: tuple[int, dict[str, str]] = (0, {})


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic() -> dict[str, str]:
    """Anthropic's headers; resets a minute ahead, recomputed at most once a second."""
    global _anthropic_cache
    second = int(time.time())
    cached_second, headers = _anthropic_cache
    if cached_second != second:
        reset = rfc3339(second + ANTHROPIC_RESET_SECONDS)
        headers = {}
        for kind, (limit, remaining) in ANTHROPIC_LIMITS.items():
            headers[f"anthropic-ratelimit-{kind}-limit"] = limit
            headers[f"anthropic-ratelimit-{kind}-remaining"] = remaining
            headers[f"anthropic-ratelimit-{kind}-reset"] = reset
        _anthropic_cache = (second, headers)
    return headers


def anthropic_exhausted(retry_after: int) -> dict[str, str]:
    """Headers of an Anthropic 429: nothing left, reset when retry-after says."""
    reset = rfc3339(time.time() + retry_after)
    return {
        "anthropic-ratelimit-requests-limit": ANTHROPIC_LIMITS["requests"][0],
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
    }
