"""The official anthropic SDK, unchanged, against aipk's /v1/messages — every provider behind it."""

from __future__ import annotations

import anthropic
import pytest

from tests.gateway.support import ALL_TYPES

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {
        "name": "get_time",
        "description": "Local time in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
]


def client_for(world, gateway_server, **kwargs) -> anthropic.Anthropic:
    # the SDK appends /v1/messages to the base URL
    return anthropic.Anthropic(
        api_key=kwargs.pop("api_key", world.secret),
        base_url=gateway_server.url,
        max_retries=0,
        **kwargs,
    )


@pytest.mark.parametrize("provider_type", ALL_TYPES)
def test_it_answers_a_message(world, gateway_server, provider_type):
    client = client_for(world, gateway_server)
    message = client.messages.create(
        model=world.model(provider_type),
        max_tokens=200,
        messages=[{"role": "user", "content": "Hello there"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Simulated reply to: Hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


@pytest.mark.parametrize("provider_type", ALL_TYPES)
def test_it_streams_a_message(world, gateway_server, provider_type):
    client = client_for(world, gateway_server)
    with client.messages.stream(
        model=world.model(provider_type),
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Tell me about streams"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Simulated reply to: Tell me about streams"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("provider_type", ALL_TYPES)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_runs_a_two_turn_tool_conversation(world, gateway_server, provider_type, stream):
    client = client_for(world, gateway_server)
    model = world.model(provider_type)
    messages = [{"role": "user", "content": "Use get_weather and get_time for Paris"}]
    if stream:
        with client.messages.stream(
            model=model, max_tokens=300, messages=messages, tools=TOOLS
        ) as events:
            first = events.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=300, messages=messages, tools=TOOLS)
    uses = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use"
    assert [u.name for u in uses] == ["get_weather", "get_time"]
    assert all(isinstance(u.input, dict) for u in uses)
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny"},
                {"type": "tool_result", "tool_use_id": uses[1].id, "content": "noon"},
            ],
        },
    ]
    second = client.messages.create(model=model, max_tokens=300, messages=messages, tools=TOOLS)
    if provider_type == "gemini":
        assert second.content[0].text == 'Tool results: {"result":"sunny"} | {"result":"noon"}'
    else:
        assert second.content[0].text == "Tool results: sunny | noon"


def test_it_forces_a_named_tool(world, gateway_server):
    client = client_for(world, gateway_server)
    message = client.messages.create(
        model=world.model("openai"),
        max_tokens=100,
        messages=[{"role": "user", "content": "Use get_weather and get_time"}],
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_time"},
    )
    assert [b.name for b in message.content if b.type == "tool_use"] == ["get_time"]


def test_it_refuses_a_bad_key(world, gateway_server):
    client = client_for(world, gateway_server, api_key="aipk-wrong")
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(
            model=world.model("openai"), max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_it_names_a_missing_max_tokens(world, gateway_server):
    client = client_for(world, gateway_server)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post(
            "/v1/messages",
            body={"model": world.model("openai"), "messages": [{"role": "user", "content": "x"}]},
            cast_to=object,
        )
    assert "max_tokens" in caught.value.message


def test_it_answers_an_unknown_model_with_404(world, gateway_server):
    client = client_for(world, gateway_server)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(
            model="no-such-alias", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_it_maps_an_overloaded_provider_to_503(world, gateway_server):
    client = client_for(world, gateway_server)
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(
            model="anthropic/claude-fail-overloaded",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        )
    assert caught.value.status_code == 503
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_it_lists_models_in_anthropic_shape(world, gateway_server):
    client = client_for(world, gateway_server)
    ids = [m.id for m in client.models.list()]
    assert set(ids) == {world.model(t) for t in ALL_TYPES}
