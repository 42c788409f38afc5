"""Rate-limit header parsing: every provider style, read from real wire samples."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from providers_app.kit.providers.gemini import gemini_quota_is_daily, retry_after_from_gemini_error
from providers_app.kit.ratelimit import (
    RateLimitInfo,
    parse_anthropic_headers,
    parse_cerebras_headers,
    parse_duration,
    parse_openai_headers,
    parse_rate_limit_headers,
    parse_retry_after,
)

WIRE = Path(__file__).parents[2] / "fixtures" / "wire"
NOW = 1_772_049_700.0  # 2026-02-25T20:01:40Z, shortly before the Anthropic sample's resets


def header_lines(name: str) -> dict[str, str]:
    """Header lines of a fixture (skipping an HTTP status line, stopping at the body)."""
    headers: dict[str, str] = {}
    for line in (WIRE / name).read_text().splitlines():
        if not line.strip():
            break
        if line.startswith("HTTP/"):
            continue
        key, _, value = line.partition(":")
        headers[key.strip()] = value.strip()
    return headers


def wire_json(name: str) -> dict:
    return json.loads((WIRE / name).read_text())


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("6ms", 0.006),
        ("114ms", 0.114),
        ("23m16.298s", 1396.298),
        ("1h2m3s", 3723.0),
        ("1h", 3600.0),
        ("0s", 0.0),
        ("500us", 0.0005),
        ("2µs", 0.000002),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("0", 0.0),
        ("1.5", 1.5),
        ("33011.382867097855", 33011.382867097855),
        (" 6m0s ", 360.0),
    ],
)
def test_it_parses_go_durations_and_plain_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "1x",
        "s",
        "1s2",
        "1h 2m",
        "-1s",
        "-3",
        "nan",
        "inf",
        "1e999",
        "1..2s",
        "ms5",
        None,
        5,
    ],
)
def test_it_returns_none_for_garbage_durations(text):
    assert parse_duration(text) is None


# ---------------------------------------------------------------- retry-after


def test_it_reads_retry_after_seconds():
    assert parse_retry_after({"retry-after": "30"}, now=NOW) == 30.0
    assert parse_retry_after({"retry-after": "2.5"}, now=NOW) == 2.5
    assert parse_retry_after({"retry-after": "0"}, now=NOW) == 0.0


def test_it_prefers_retry_after_ms():
    headers = {"retry-after-ms": "1500", "retry-after": "30"}
    assert parse_retry_after(headers, now=NOW) == 1.5


def test_it_falls_back_to_retry_after_when_ms_is_garbage():
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "3"}, now=NOW) == 3.0


def test_it_reads_retry_after_http_dates():
    # NOW is 20:01:40 GMT
    assert parse_retry_after({"retry-after": "Wed, 25 Feb 2026 20:01:50 GMT"}, now=NOW) == 10.0
    assert parse_retry_after({"retry-after": "Wed, 25 Feb 2026 20:00:00 GMT"}, now=NOW) == 0.0


@pytest.mark.parametrize("value", ["", "soon", "-5", "Someday, 99 Foo 2026", "nan"])
def test_it_never_returns_garbage_retry_after(value):
    assert parse_retry_after({"retry-after": value}, now=NOW) is None


def test_it_looks_up_retry_after_case_insensitively():
    assert parse_retry_after({"Retry-After": "7"}, now=NOW) == 7.0
    assert parse_retry_after({"RETRY-AFTER-MS": "250"}, now=NOW) == 0.25
    assert parse_retry_after(httpx.Headers({"Retry-After": "9"}), now=NOW) == 9.0
    assert parse_retry_after({}, now=NOW) is None


# ---------------------------------------------------------------- provider styles


def test_it_parses_the_openai_docs_sample():
    info = parse_openai_headers(header_lines("openai_ratelimit_headers_docs.txt"), now=NOW)

    assert info == RateLimitInfo(
        requests_limit=60,
        requests_remaining=59,
        requests_reset_at=NOW + 1,
        tokens_limit=150000,
        tokens_remaining=149984,
        tokens_reset_at=NOW + 360,
        observed_at=NOW,
    )


def test_it_parses_the_anthropic_sample():
    info = parse_anthropic_headers(header_lines("anthropic_ratelimit_headers.txt"), now=NOW)

    assert info == RateLimitInfo(
        requests_limit=50,
        requests_remaining=49,
        requests_reset_at=1772049752.0,  # 2026-02-25T20:02:32Z
        tokens_limit=38000,
        tokens_remaining=36000,
        tokens_reset_at=1772049756.0,  # 20:02:36Z
        input_tokens_limit=30000,
        input_tokens_remaining=28000,
        input_tokens_reset_at=1772049757.0,  # 20:02:37Z
        output_tokens_limit=8000,
        output_tokens_remaining=8000,
        output_tokens_reset_at=1772049756.0,
        observed_at=NOW,
    )


def test_it_parses_the_cerebras_sample():
    info = parse_cerebras_headers(header_lines("cerebras_ratelimit_headers.txt"), now=NOW)

    assert info is not None
    assert info.requests_day_limit == 1000000000
    assert info.requests_day_remaining == 999997455
    assert info.requests_day_reset_at == pytest.approx(NOW + 33011.382867097855)
    assert info.tokens_minute_limit == 1000000000
    assert info.tokens_minute_remaining == 999998298
    assert info.tokens_minute_reset_at == pytest.approx(NOW + 11.382867097854614)
    assert info.requests_limit is None and info.tokens_limit is None
    assert info.retry_after is None
    assert info.observed_at == NOW


def test_it_merges_openai_style_headers_into_cerebras():
    headers = header_lines("cerebras_ratelimit_headers.txt") | {
        "x-ratelimit-limit-requests": "30",
        "x-ratelimit-remaining-requests": "29",
        "x-ratelimit-reset-requests": "59.5",
        "retry-after": "2",
    }
    info = parse_cerebras_headers(headers, now=NOW)

    assert (info.requests_limit, info.requests_remaining, info.requests_reset_at) == (
        30,
        29,
        NOW + 59.5,
    )
    assert info.requests_day_remaining == 999997455
    assert info.retry_after == 2.0


def test_it_accepts_httpx_headers_in_any_case():
    raw = header_lines("anthropic_ratelimit_headers.txt")
    headers = httpx.Headers({k.upper(): v for k, v in raw.items()})

    info = parse_anthropic_headers(headers, now=NOW)

    assert info.requests_remaining == 49
    assert info.input_tokens_reset_at == 1772049757.0


def test_it_finds_nothing_in_the_anthropic_429_capture():
    # The recorded 429 kept only x-should-retry: no retry-after, no anthropic-ratelimit-*.
    headers = header_lines("anthropic_error_429_rate_limit.http")
    assert headers["x-should-retry"] == "true"

    assert parse_anthropic_headers(headers, now=NOW) is None


def test_it_fills_retry_after_in_every_style():
    headers = {"retry-after": "12", "anthropic-ratelimit-requests-remaining": "0"}

    for style in ("openai", "anthropic", "cerebras", "none"):
        info = parse_rate_limit_headers(style, headers, now=NOW)
        assert info is not None and info.retry_after == 12.0, style
    assert parse_rate_limit_headers("anthropic", headers, now=NOW).requests_remaining == 0


def test_it_ignores_malformed_values_field_by_field():
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "lots",
        "x-ratelimit-reset-requests": "soon",
        "x-ratelimit-limit-tokens": "-5",
        "x-ratelimit-remaining-tokens": "100.0",
        "x-ratelimit-reset-tokens": "2m",
    }
    info = parse_openai_headers(headers, now=NOW)

    assert info.requests_limit == 60
    assert info.requests_remaining is None and info.requests_reset_at is None
    assert info.tokens_limit is None
    assert info.tokens_remaining == 100
    assert info.tokens_reset_at == NOW + 120


def test_it_ignores_a_malformed_anthropic_reset():
    info = parse_anthropic_headers(
        {
            "anthropic-ratelimit-requests-remaining": "3",
            "anthropic-ratelimit-requests-reset": "tomorrow",
        },
        now=NOW,
    )
    assert info.requests_remaining == 3 and info.requests_reset_at is None


def test_it_returns_none_without_relevant_headers():
    unrelated = {"content-type": "application/json", "x-should-retry": "true"}

    assert parse_openai_headers(unrelated, now=NOW) is None
    assert parse_anthropic_headers(unrelated, now=NOW) is None
    assert parse_cerebras_headers(unrelated, now=NOW) is None
    assert parse_rate_limit_headers("none", unrelated, now=NOW) is None
    assert parse_openai_headers({}, now=NOW) is None


def test_it_dispatches_by_style():
    headers = header_lines("openai_ratelimit_headers_docs.txt")

    assert parse_rate_limit_headers("openai", headers, now=NOW) == parse_openai_headers(
        headers, now=NOW
    )
    # the anthropic parser does not read OpenAI-style names
    assert parse_rate_limit_headers("anthropic", headers, now=NOW) is None
    # "none" reads only retry-after
    assert parse_rate_limit_headers(
        "none", headers | {"retry-after": "1"}, now=NOW
    ) == RateLimitInfo(retry_after=1.0, observed_at=NOW)


def test_it_rejects_an_unknown_style():
    with pytest.raises(ValueError, match="gemini"):
        parse_rate_limit_headers("gemini", {})


def test_it_round_trips_info_through_a_dict():
    info = parse_anthropic_headers(header_lines("anthropic_ratelimit_headers.txt"), now=NOW)

    data = info.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert RateLimitInfo.from_dict(data | {"unknown": 1}) == info


# ---------------------------------------------------------------- Gemini error bodies


def test_it_reads_retry_delay_from_the_gemini_429():
    body = wire_json("gemini_error_429_resource_exhausted.json")

    assert retry_after_from_gemini_error(body) == 40.0
    assert gemini_quota_is_daily(body) is False  # ...PerModelPerMinute


def test_it_tells_a_daily_gemini_quota():
    body = wire_json("gemini_error_429_resource_exhausted.json")
    for detail in body["error"]["details"]:
        for violation in detail.get("violations", []):
            violation["quotaId"] = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"

    assert gemini_quota_is_daily(body) is True


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [("1.5s", 1.5), ("0.040025771s", 0.040025771), ({"seconds": 3, "nanos": 500000000}, 3.5)],
)
def test_it_reads_other_retry_delay_forms(delay, seconds):
    body = {
        "error": {
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
        }
    }
    assert retry_after_from_gemini_error(body) == pytest.approx(seconds)
    # streaming errors may arrive wrapped in a list
    assert retry_after_from_gemini_error([body]) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "body",
    [
        {},
        None,
        "oops",
        [],
        {"error": "string"},
        {"error": {"details": "nope"}},
        {
            "error": {
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"}
                ]
            }
        },
        {
            "error": {
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [1, None],
                    }
                ]
            }
        },
    ],
)
def test_it_survives_odd_gemini_bodies(body):
    assert retry_after_from_gemini_error(body) is None
    assert gemini_quota_is_daily(body) is False


def test_it_finds_no_gemini_hints_in_an_openrouter_429():
    # OpenRouter's 429 carries its wait in headers, not in the body.
    body = wire_json("openrouter_error_429.json")

    assert body["error"]["metadata"]["error_type"] == "rate_limit_exceeded"
    assert retry_after_from_gemini_error(body) is None
    assert gemini_quota_is_daily(body) is False
    assert parse_rate_limit_headers("none", {"Retry-After": "5"}, now=NOW).retry_after == 5.0


@pytest.mark.parametrize("style", ["openai", "anthropic", "cerebras", "none"])
def test_it_answers_none_for_a_reply_without_any_limit_header(style):
    headers = httpx.Headers({"content-type": "application/json", "x-request-id": "req_1"})
    assert parse_rate_limit_headers(style, headers, now=NOW) is None


def test_it_still_reads_limit_headers_named_in_any_case_or_as_bytes():
    info = parse_rate_limit_headers("openai", {b"X-RateLimit-Remaining-Requests": b"7"}, now=NOW)
    assert info is not None and info.requests_remaining == 7
    info = parse_rate_limit_headers("anthropic", {"Retry-After": "2"}, now=NOW)
    assert info is not None and info.retry_after == 2.0


def test_it_still_refuses_an_unknown_header_style_whatever_the_headers():
    with pytest.raises(ValueError, match="unknown rate-limit header style"):
        parse_rate_limit_headers("nope", {}, now=NOW)
