"""Retry delays from seconds to minutes, named by header, model id or key, in each
provider's real form: a retry-after header (OpenAI, Anthropic, OpenRouter, Cerebras,
Qwen) or a RetryInfo in the body with no header (Gemini)."""

import anthropic
import httpx
import openai
import pytest
from google.genai import errors

from tests.simulator.sim_helpers import anthropic_client, gemini_client, openai_client, raw_chat


def user(text="hi"):
    return [{"role": "user", "content": text}]


def gemini_details(error: errors.APIError) -> dict:
    return {d["@type"].rsplit(".", 1)[-1]: d for d in error.details["error"]["details"]}


async def test_it_takes_the_retry_delay_from_the_model_id(simulator):
    client = openai_client(simulator.base_url("openai"))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="gpt-4o-fail-rate_limit-retry-40s", messages=user()
        )
    headers = caught.value.response.headers
    assert headers["retry-after"] == "40"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "40s"
    assert "Please try again in 40s." in caught.value.message


async def test_it_takes_the_retry_delay_from_the_key_in_minutes_too(simulator):
    client = openai_client(
        simulator.base_url("openai"), key="sk-sim-fail-rate_limit-retry-90s-0001"
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=user())
    assert caught.value.response.headers["retry-after"] == "90"
    assert caught.value.response.headers["x-ratelimit-reset-requests"] == "1m30s"

    client = openai_client(simulator.base_url("openai"), key="sk-sim-fail-rate_limit-retry-5m-0001")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=user())
    assert caught.value.response.headers["retry-after"] == "300"
    assert caught.value.response.headers["x-ratelimit-reset-requests"] == "5m0s"


async def test_it_lets_the_header_win_over_the_model_and_the_model_over_the_key(simulator):
    client = openai_client(
        simulator.base_url("openai"), key="sk-sim-fail-rate_limit-retry-90s-0001"
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o-retry-30s", messages=user())
    assert caught.value.response.headers["retry-after"] == "30"
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="gpt-4o-retry-30s", messages=user(), extra_headers={"x-sim-retry-after": "7"}
        )
    assert caught.value.response.headers["retry-after"] == "7"


async def test_it_sends_anthropic_a_retry_after_header_and_an_exhausted_reset(simulator):
    client = anthropic_client(simulator, key="sk-ant-sim-fail-rate_limit-retry-300s-0001")
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=user())
    headers = caught.value.response.headers
    assert headers["retry-after"] == "300"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["x-should-retry"] == "true"


async def test_it_puts_gemini_s_retry_delay_in_the_body_only(simulator):
    client = gemini_client(simulator)
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash-fail-rate_limit-retry-40s", contents="hi"
        )
    assert caught.value.code == 429
    details = gemini_details(caught.value)
    assert details["RetryInfo"]["retryDelay"] == "40s"
    assert "Please retry in 40s." in caught.value.message
    assert "retry-after" not in caught.value.response.headers


async def test_it_reads_gemini_s_retry_delay_from_a_key_in_the_query(simulator):
    url, _, body = raw_chat(simulator, "gemini", model="gemini-2.5-flash-fail-rate_limit")
    async with httpx.AsyncClient() as client:
        response = await client.post(url + "?key=AIza-sim-retry-2m-0001", json=body)
    assert response.status_code == 429
    delays = [d.get("retryDelay") for d in response.json()["error"]["details"]]
    assert "120s" in delays


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [
        ("openrouter", "retry-after", "45"),
        ("cerebras", "x-ratelimit-reset-requests-day", "45.0"),
        ("qwen", "retry-after", "45"),
        ("code_assist", None, None),
    ],
)
async def test_it_names_the_delay_in_every_other_wire(simulator, provider, header, value):
    url, headers, body = raw_chat(simulator, provider, model="m-fail-rate_limit-retry-45s")
    async with httpx.AsyncClient() as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 429
    if header is None:  # Gemini via Code Assist: the body's RetryInfo
        assert "retry-after" not in response.headers
        assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45s"} in (
            response.json()["error"]["details"]
        )
    else:
        assert response.headers[header] == value
