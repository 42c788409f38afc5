"""A spent per-day quota, as each provider really answers it (docs/SIMULATOR.md)."""

import json
import re
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google.genai import errors

from tests.simulator.sim_helpers import anthropic_client, gemini_client, openai_client, raw_chat


def user(text="hi"):
    return [{"role": "user", "content": text}]


async def test_it_tells_openai_clients_the_requests_per_day_limit_with_a_long_wait(simulator):
    client = openai_client(simulator.base_url("openai"))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o-fail-daily_quota", messages=user())
    error = caught.value.body
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert "requests per day (RPD)" in error["message"]
    assert "Please try again in 1h0m0s." in error["message"]
    assert caught.value.response.headers["retry-after"] == "3600"
    assert caught.value.response.headers["x-ratelimit-reset-requests"] == "1h0m0s"


async def test_it_takes_a_daily_quota_s_wait_from_the_key(simulator):
    key = "sk-sim-fail-daily_quota-retry-6h-0001"
    client = openai_client(simulator.base_url("openai"), key=key)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=user())
    assert caught.value.response.headers["retry-after"] == str(6 * 3600)


async def test_it_gives_anthropic_a_rate_limit_error_with_a_long_retry_after(simulator):
    client = anthropic_client(simulator)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(
            model="claude-sonnet-4-6-fail-daily_quota", max_tokens=10, messages=user()
        )
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert "per day" in caught.value.body["error"]["message"]
    assert caught.value.response.headers["retry-after"] == "3600"


async def test_it_gives_gemini_the_per_day_quota_id_and_a_retry_info_of_seconds(simulator):
    client = gemini_client(simulator)
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash-fail-daily_quota", contents="hi"
        )
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in caught.value.details["error"]["details"]}
    violation = details["QuotaFailure"]["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert violation["quotaDimensions"]["model"] == "gemini-2.5-flash-fail-daily_quota"
    # What real Gemini sends: tens of seconds although the quota is per day.
    assert details["RetryInfo"]["retryDelay"] == "36s"


async def test_it_shapes_gemini_s_quota_details_like_the_captured_429(simulator):
    captured = json.loads(
        (
            Path(__file__).parents[1] / "fixtures/wire/gemini_error_429_resource_exhausted.json"
        ).read_text()
    )["error"]
    url, headers, body = raw_chat(simulator, "gemini", model="gemini-2.5-pro-fail-daily_quota")
    async with httpx.AsyncClient() as client:
        sent = (await client.post(url, headers=headers, json=body)).json()["error"]

    def by_type(error):
        return {d["@type"]: d for d in error["details"]}

    ours, theirs = by_type(sent), by_type(captured)
    assert set(ours) <= set(theirs)  # no detail type the real API does not send
    ours_violation = ours["type.googleapis.com/google.rpc.QuotaFailure"]["violations"][0]
    theirs_violation = theirs["type.googleapis.com/google.rpc.QuotaFailure"]["violations"][0]
    assert set(ours_violation) == set(theirs_violation)
    assert re.fullmatch(r"\d+s", ours["type.googleapis.com/google.rpc.RetryInfo"]["retryDelay"])
    assert re.search(r"Please retry in [\d.]+s\.$", sent["message"])


async def test_it_gives_cerebras_its_own_top_level_body_and_an_exhausted_day(simulator):
    url, headers, body = raw_chat(simulator, "cerebras", model="llama3.1-8b-fail-daily_quota")
    async with httpx.AsyncClient() as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 429
    assert response.json() == {
        "message": "Requests per day limit exceeded - too many requests sent.",
        "type": "too_many_requests_error",
        "param": "quota",
        "code": "request_quota_exceeded",
    }
    assert response.headers["x-ratelimit-remaining-requests-day"] == "0"
    assert response.headers["x-ratelimit-reset-requests-day"] == "3600.0"


async def test_it_gives_qwen_the_free_allocation_error(simulator):
    url, headers, body = raw_chat(simulator, "qwen", key="sk-qwen-fail-daily_quota-0001")
    async with httpx.AsyncClient() as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert response.json()["error"]["message"] == "Free allocated quota exceeded."


async def test_it_gives_openrouter_the_free_models_per_day_limit(simulator):
    url, headers, body = raw_chat(simulator, "openrouter", headers={"x-sim-fail": "daily_quota"})
    async with httpx.AsyncClient() as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == 429
    assert error["message"].startswith("Rate limit exceeded: free-models-per-day.")
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert error["metadata"]["headers"]["X-RateLimit-Remaining"] == "0"
    assert response.headers["retry-after"] == "3600"
