"""The official openai SDK, unchanged, against aipk's /v1 — with every provider type behind it."""

from __future__ import annotations

import json

import openai
import pytest

from tests.gateway.support import ALL_TYPES, WEATHER_TOOLS

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(world, gateway_server, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=kwargs.pop("api_key", world.secret),
        base_url=gateway_server.openai_base_url,
        max_retries=0,
        **kwargs,
    )


@pytest.mark.parametrize("provider_type", ALL_TYPES)
def test_it_answers_a_chat_completion(world, gateway_server, provider_type):
    client = client_for(world, gateway_server)
    raw = client.chat.completions.with_raw_response.create(
        model=world.model(provider_type), messages=[{"role": "user", "content": "Hello there"}]
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "Simulated reply to: Hello there"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == world.model(provider_type)
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert raw.headers["x-aipk-provider"] == world.providers[provider_type].name
    assert raw.headers["x-request-id"] == reply.id


@pytest.mark.parametrize("provider_type", ALL_TYPES)
def test_it_streams_a_chat_completion_with_usage(world, gateway_server, provider_type):
    client = client_for(world, gateway_server)
    stream = client.chat.completions.create(
        model=world.model(provider_type),
        messages=[{"role": "user", "content": "Tell me a story about streams"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Simulated reply to: Tell me a story about streams"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("provider_type", ALL_TYPES)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_runs_a_two_turn_parallel_tool_conversation(
    world, gateway_server, provider_type, stream
):
    client = client_for(world, gateway_server)
    messages = [{"role": "user", "content": "Use get_weather and get_time for Paris"}]
    model = world.model(provider_type)
    if stream:
        calls: dict[int, dict] = {}
        finish = None
        for chunk in client.chat.completions.create(
            model=model, messages=messages, tools=WEATHER_TOOLS, stream=True
        ):
            if not chunk.choices:
                continue
            for delta in chunk.choices[0].delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] = (delta.function.name if delta.function else None) or call["name"]
                call["arguments"] += (delta.function.arguments if delta.function else "") or ""
            finish = chunk.choices[0].finish_reason or finish
        tool_calls = [calls[i] for i in sorted(calls)]
    else:
        reply = client.chat.completions.create(model=model, messages=messages, tools=WEATHER_TOOLS)
        finish = reply.choices[0].finish_reason
        tool_calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in reply.choices[0].message.tool_calls
        ]
    assert finish == "tool_calls"
    assert [c["name"] for c in tool_calls] == ["get_weather", "get_time"]
    assert all(isinstance(json.loads(c["arguments"]), dict) for c in tool_calls)
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in tool_calls
            ],
        }
    )
    messages += [
        {"role": "tool", "tool_call_id": tool_calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": tool_calls[1]["id"], "content": "noon"},
    ]
    second = client.chat.completions.create(model=model, messages=messages, tools=WEATHER_TOOLS)
    text = second.choices[0].message.content
    if provider_type == "gemini":  # Gemini's functionResponse is JSON
        assert text == 'Tool results: {"result":"sunny"} | {"result":"noon"}'
    else:
        assert text == "Tool results: sunny | noon"


def test_it_honours_a_forced_tool_choice(world, gateway_server):
    client = client_for(world, gateway_server)
    reply = client.chat.completions.create(
        model=world.model("anthropic"),
        messages=[{"role": "user", "content": "Use get_weather and get_time"}],
        tools=WEATHER_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert [c.function.name for c in reply.choices[0].message.tool_calls] == ["get_time"]


def test_it_refuses_a_bad_key_with_401(world, gateway_server):
    client = client_for(world, gateway_server, api_key="aipk-not-a-real-key")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(
            model=world.model("openai"), messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401
    assert "aipk-not-a-real-key" not in str(caught.value)


def test_it_names_an_unknown_model_with_404(world, gateway_server):
    client = client_for(world, gateway_server)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="nope/some-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "model_not_found"
    assert "nope/some-model" in caught.value.message


def test_it_names_the_bad_field_with_400(world, gateway_server):
    client = client_for(world, gateway_server)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=world.model("openai"), messages=[{"role": "wizard", "content": "hi"}]
        )
    assert caught.value.body["param"] == "messages[0].role"


@pytest.mark.parametrize(
    ("mode", "status", "error_class"),
    [
        ("server", 502, openai.InternalServerError),
        ("overloaded", 503, openai.InternalServerError),
        ("bad_request", 400, openai.BadRequestError),
    ],
)
def test_it_maps_provider_failures_to_statuses(world, gateway_server, mode, status, error_class):
    client = client_for(world, gateway_server)
    with pytest.raises(error_class) as caught:
        client.chat.completions.create(
            model=f"openai/gpt-fail-{mode}", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == status


def test_it_reports_a_mid_stream_provider_error_in_the_stream(world, gateway_server):
    client = client_for(world, gateway_server)
    stream = client.chat.completions.create(
        model="openai/gpt-fail-midstream_error",
        messages=[{"role": "user", "content": "a long answer please"}],
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received)  # text arrived before the failure


def test_it_lists_the_models_the_key_may_use(world, gateway_server):
    client = client_for(world, gateway_server)
    ids = {m.id for m in client.models.list()}
    assert ids == {world.model(t) for t in ALL_TYPES}
