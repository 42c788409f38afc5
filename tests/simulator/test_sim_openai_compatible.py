"""Cerebras, Qwen and OpenRouter: the OpenAI wire with their own headers, models and errors."""

import httpx
import openai
import pytest

from tests.simulator.sim_helpers import OPENAI_TOOLS, openai_client

USER = [{"role": "user", "content": "hello there"}]


@pytest.mark.parametrize(
    ("provider", "model"),
    [("cerebras", "llama-3.3-70b"), ("qwen", "qwen3-coder-plus"), ("openrouter", "openai/gpt-4o")],
)
async def test_it_speaks_the_openai_wire(simulator, provider, model):
    client = openai_client(simulator.base_url(provider))
    result = await client.chat.completions.create(model=model, messages=USER)
    assert result.choices[0].message.content == "Simulated reply to: hello there"
    stream = await client.chat.completions.create(
        model=model, messages=USER, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        text += "".join(c.delta.content or "" for c in chunk.choices)
        usage = chunk.usage or usage
    assert text == "Simulated reply to: hello there"
    assert usage.completion_tokens == 5
    tools = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "get_weather"}], tools=OPENAI_TOOLS
    )
    assert tools.choices[0].message.tool_calls[0].function.name == "get_weather"
    models = [m.id async for m in client.models.list()]
    assert models


async def test_it_sends_cerebras_rate_limit_headers(simulator):
    async with httpx.AsyncClient() as http:
        response = await http.post(
            simulator.base_url("cerebras") + "/chat/completions",
            headers={"Authorization": "Bearer csk-1234"},
            json={"model": "llama-3.3-70b", "messages": USER},
        )
    assert response.status_code == 200
    for name in (
        "x-ratelimit-limit-requests-day",
        "x-ratelimit-remaining-requests-day",
        "x-ratelimit-limit-tokens-minute",
        "x-ratelimit-remaining-tokens-minute",
    ):
        assert response.headers[name].isdigit()
    for name in ("x-ratelimit-reset-requests-day", "x-ratelimit-reset-tokens-minute"):
        assert float(response.headers[name]) > 0
    assert "x-ratelimit-limit-requests" not in response.headers


async def test_it_sends_no_rate_limit_headers_for_qwen(simulator):
    async with httpx.AsyncClient() as http:
        response = await http.post(
            simulator.base_url("qwen") + "/chat/completions",
            headers={"Authorization": "Bearer qwen-token-1234"},
            json={"model": "qwen3-coder-plus", "messages": USER},
        )
    assert response.status_code == 200
    assert not [h for h in response.headers if "ratelimit" in h.lower()]


async def test_it_lists_openrouter_models_with_pricing(simulator):
    async with httpx.AsyncClient() as http:
        response = await http.get(
            simulator.base_url("openrouter") + "/models",
            headers={"Authorization": "Bearer sk-or-1234"},
        )
    models = response.json()["data"]
    gpt = next(m for m in models if m["id"] == "openai/gpt-4o")
    assert isinstance(gpt["pricing"]["prompt"], str) and float(gpt["pricing"]["prompt"]) > 0
    assert gpt["context_length"] == gpt["top_provider"]["context_length"] == 128000
    assert "tools" in gpt["supported_parameters"]


async def test_it_answers_openrouter_key_and_credits(simulator):
    headers = {"Authorization": "Bearer sk-or-v1-secret-abcd"}
    async with httpx.AsyncClient(base_url=simulator.base_url("openrouter")) as http:
        key = (await http.get("/key", headers=headers)).json()["data"]
        credits = (await http.get("/credits", headers=headers)).json()["data"]
        denied = await http.get("/key", headers={"Authorization": "Bearer invalid-1"})
    assert key["limit"] == 100 and key["limit_remaining"] == 74.5 and key["usage"] == 25.5
    assert key["label"].endswith("abcd") and "secret" not in key["label"]
    assert credits == {"total_credits": 100, "total_usage": 25.5}
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == 401


@pytest.mark.parametrize(
    ("mode", "status", "error_type"),
    [
        ("rate_limit", 429, "rate_limit_exceeded"),
        ("quota", 402, "insufficient_credits"),
        ("overloaded", 503, "provider_overloaded"),
    ],
)
async def test_it_uses_openrouter_error_envelopes(simulator, mode, status, error_type):
    async with httpx.AsyncClient() as http:
        response = await http.post(
            simulator.base_url("openrouter") + "/chat/completions",
            headers={"Authorization": "Bearer sk-or-1234", "x-sim-fail": mode},
            json={"model": "openai/gpt-4o", "messages": USER},
        )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status
    assert error["metadata"]["error_type"] == error_type
    if mode == "rate_limit":
        assert response.headers["retry-after"] == "2"


async def test_it_maps_openrouter_errors_to_openai_sdk_exceptions(simulator):
    client = openai_client(simulator.base_url("openrouter"))
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="openai/gpt-4o-fail-rate_limit", messages=USER)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="openai/gpt-4o-fail-quota", messages=USER)
    assert caught.value.status_code == 402


async def test_it_streams_openrouter_midstream_errors_as_a_chunk(simulator):
    async with httpx.AsyncClient() as http:
        async with http.stream(
            "POST",
            simulator.base_url("openrouter") + "/chat/completions",
            headers={"Authorization": "Bearer sk-or-1234", "x-sim-fail": "midstream_error"},
            json={"model": "openai/gpt-4o", "messages": USER, "stream": True},
        ) as response:
            body = (await response.aread()).decode()
    assert body.startswith(": OPENROUTER PROCESSING\n\n")
    last = body.strip().splitlines()[-1]
    assert '"error":{"code":"server_error"' in last
    assert '"finish_reason":"error"' in last
    assert "[DONE]" not in body
