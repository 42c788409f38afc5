"""A message with an unknown role gets each real API's 400, always (not a fault mode)."""

import anthropic
import httpx
import openai
import pytest
from google.genai import errors

from tests.simulator.sim_helpers import (
    PROVIDERS,
    anthropic_client,
    gemini_client,
    openai_client,
    raw_chat,
)


async def test_it_names_the_role_and_the_supported_values_to_openai_clients(simulator):
    client = openai_client(simulator.base_url("openai"))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "foo", "content": "hi"}]
        )
    assert caught.value.body == {
        "message": "Invalid value: 'foo'. Supported values are: 'system', 'assistant', "
        "'user', 'function', 'tool', and 'developer'.",
        "type": "invalid_request_error",
        "param": "messages[0].role",
        "code": "invalid_value",
    }


async def test_it_points_at_the_offending_message_and_a_missing_role(simulator):
    client = openai_client(simulator.base_url("openai"))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}, {"content": "no role"}],
        )
    assert caught.value.body["param"] == "messages[1].role"
    assert caught.value.body["code"] == "missing_required_parameter"


async def test_it_refuses_developer_on_qwen_as_dashscope_does(simulator):
    url, headers, body = raw_chat(
        simulator, "qwen", messages=[{"role": "developer", "content": "be brief"}]
    )
    async with httpx.AsyncClient() as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "developer is not one of ['system', 'assistant', 'user', 'tool', 'function'] - "
        "'messages.['0].role'"
    )


async def test_it_tells_anthropic_clients_that_system_is_a_top_level_parameter(simulator):
    client = anthropic_client(simulator)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=10,
            messages=[{"role": "system", "content": "be brief"}],
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert caught.value.body["error"]["message"].startswith('messages: Unexpected role "system".')
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "foo", "content": "x"}]
        )
    assert caught.value.body["error"]["message"] == (
        "messages.0.role: Input should be 'user' or 'assistant'"
    )


async def test_it_asks_gemini_clients_for_user_or_model(simulator):
    client = gemini_client(simulator)
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash", contents=[{"role": "assistant", "parts": [{"text": "x"}]}]
        )
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message == "Please use a valid role: user, model."


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_it_answers_an_unknown_role_with_a_400_on_every_wire(simulator, provider):
    url, headers, body = raw_chat(
        simulator, provider, stream=True, messages=[{"role": "foo", "content": "hi"}]
    )
    async with httpx.AsyncClient() as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 400
    assert "role" in response.text or "'foo'" in response.text
