"""A 403 for one model while the same key serves others, and the key-level refusals
(401, 403, insufficient quota) chosen by the credential on every wire."""

import anthropic
import httpx
import openai
import pytest
from google.genai import errors

from tests.simulator.sim_helpers import (
    DEFAULT_MODELS,
    PROVIDERS,
    anthropic_client,
    gemini_client,
    openai_client,
    raw_chat,
)


def user(text="hi"):
    return [{"role": "user", "content": text}]


async def test_it_refuses_one_openai_model_while_the_key_serves_another(simulator):
    client = openai_client(simulator.base_url("openai"), key="sk-sim-shared-0001")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.chat.completions.create(model="gpt-4o-fail-model_permission", messages=user())
    assert caught.value.status_code == 403
    assert caught.value.body == {
        "message": "Project `proj_simulator` does not have access to model "
        "`gpt-4o-fail-model_permission`",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
    served = await client.chat.completions.create(model="gpt-4o", messages=user())
    assert served.choices[0].message.content == "Simulated reply to: hi"


async def test_it_refuses_one_anthropic_model_with_a_permission_error(simulator):
    client = anthropic_client(simulator)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        await client.messages.create(
            model="claude-opus-4-6-fail-model_permission", max_tokens=10, messages=user()
        )
    assert caught.value.body["error"]["type"] == "permission_error"
    assert "claude-opus-4-6-fail-model_permission" in caught.value.body["error"]["message"]
    served = await client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=user())
    assert served.stop_reason == "end_turn"


async def test_it_refuses_one_gemini_model_with_permission_denied(simulator):
    client = gemini_client(simulator)
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(
            model="gemini-2.5-pro-fail-model_permission", contents="hi"
        )
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")
    assert "models/gemini-2.5-pro-fail-model_permission" in caught.value.message


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_it_refuses_the_model_before_any_stream_byte_on_every_wire(
    simulator, provider, stream
):
    model = DEFAULT_MODELS[provider] + "-fail-model_permission"
    url, headers, body = raw_chat(simulator, provider, model=model, stream=stream)
    async with httpx.AsyncClient() as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/json")


# (provider, mode) -> status the credential token yields
KEY_LEVEL = {
    "auth": dict.fromkeys(PROVIDERS, 401),
    "permission": dict.fromkeys(PROVIDERS, 403),
    "quota": {
        **dict.fromkeys(("openai", "cerebras", "qwen", "gemini", "code_assist"), 429),
        "openrouter": 402,
        "anthropic": 402,
    },
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("mode", sorted(KEY_LEVEL))
async def test_it_refuses_a_key_chosen_by_its_credential_on_every_wire(simulator, provider, mode):
    key = f"sim-key-fail-{mode}-0001"
    url, headers, body = raw_chat(simulator, provider, key=key)
    async with httpx.AsyncClient() as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == KEY_LEVEL[mode][provider]
    assert key not in response.text  # at most the last 4 characters


async def test_it_says_insufficient_quota_to_the_openai_sdk(simulator):
    client = openai_client(simulator.base_url("openai"), key="sk-sim-fail-quota-0001")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=user())
    assert caught.value.body["code"] == "insufficient_quota"
    assert "retry-after" not in caught.value.response.headers
