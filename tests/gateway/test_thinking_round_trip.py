"""Extended thinking through the gateway: the anthropic SDK gets Anthropic's own
thinking blocks (with their signatures) from /v1/messages, plain and streamed, and
sends them back in a tool round trip; the simulator checks the signature as the real
API does, so a block the gateway lost or changed would fail the second turn. The
openai SDK sees the thinking text as ``reasoning_content``."""

from __future__ import annotations

import anthropic
import openai
import pytest

from providers_app.simulator import thinking

pytestmark = pytest.mark.django_db(transaction=True)

THINKING = {"type": "enabled", "budget_tokens": 1024}
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
ASK = [{"role": "user", "content": "Use get_weather for Paris"}]


def client_for(world, gateway_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=world.secret, base_url=gateway_server.url, max_retries=0)


def create(client, stream: bool, **kwargs):
    if stream:
        with client.messages.stream(**kwargs) as events:
            return events.get_final_message()
    return client.messages.create(**kwargs)


def round_trip(first, assistant_content):
    call = next(b for b in first.content if b.type == "tool_use")
    return [
        *ASK,
        {"role": "assistant", "content": assistant_content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
        },
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_carries_signed_thinking_through_a_tool_round_trip(world, gateway_server, stream):
    client = client_for(world, gateway_server)
    model = world.model("anthropic")
    common = {"model": model, "max_tokens": 2048, "thinking": THINKING, "tools": TOOLS}
    first = create(client, stream, messages=ASK, **common)
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    block = first.content[0]
    assert isinstance(block, anthropic.types.ThinkingBlock)
    # the provider's signature, byte for byte
    assert thinking.verify(block.thinking, block.signature)
    assert first.stop_reason == "tool_use"

    sent_back = [b.model_dump(exclude_none=True) for b in first.content]
    second = create(client, stream, messages=round_trip(first, sent_back), **common)
    assert second.content[0].type == "thinking"
    assert second.content[-1].text == "Tool results: sunny"


def test_it_streams_thinking_like_anthropic(world, gateway_server):
    client = client_for(world, gateway_server)
    with client.messages.stream(
        model=world.model("anthropic"),
        max_tokens=2048,
        thinking=THINKING,
        messages=[{"role": "user", "content": "think it over"}],
    ) as stream:
        events = list(stream)
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "text"]
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert deltas[0] == "thinking_delta"
    assert deltas.count("signature_delta") == 1
    assert deltas.index("signature_delta") < deltas.index("text_delta")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_passes_the_providers_400_for_a_tampered_signature_in_anthropic_shape(
    world, gateway_server, stream
):
    client = client_for(world, gateway_server)
    common = {
        "model": world.model("anthropic"),
        "max_tokens": 2048,
        "thinking": THINKING,
        "tools": TOOLS,
    }
    first = client.messages.create(messages=ASK, **common)
    sent_back = [b.model_dump(exclude_none=True) for b in first.content]
    sent_back[0]["signature"] = thinking.sign("something else")
    with pytest.raises(anthropic.BadRequestError) as caught:
        create(client, stream, messages=round_trip(first, sent_back), **common)
    error = caught.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert "Invalid `signature` in `thinking` block" in error["message"]


def test_it_passes_the_providers_400_when_the_thinking_was_left_out(world, gateway_server):
    client = client_for(world, gateway_server)
    common = {
        "model": world.model("anthropic"),
        "max_tokens": 2048,
        "thinking": THINKING,
        "tools": TOOLS,
    }
    first = client.messages.create(messages=ASK, **common)
    without = [b.model_dump(exclude_none=True) for b in first.content if b.type != "thinking"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(messages=round_trip(first, without), **common)
    assert "Expected `thinking` or `redacted_thinking`" in caught.value.body["error"]["message"]


def test_it_carries_redacted_thinking_back_unchanged(world, gateway_server):
    client = client_for(world, gateway_server)
    common = {
        "model": world.model("anthropic"),
        "max_tokens": 2048,
        "thinking": THINKING,
        "tools": TOOLS,
    }
    ask = [{"role": "user", "content": f"get_weather {thinking.REDACTED_TRIGGER}"}]
    first = client.messages.create(messages=ask, **common)
    assert isinstance(first.content[0], anthropic.types.RedactedThinkingBlock)
    call = first.content[1]
    second = client.messages.create(
        messages=[
            *ask,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "rain"}],
            },
        ],
        **common,
    )
    assert second.content[-1].text == "Tool results: rain"


def test_it_leaves_signed_thinking_out_for_a_provider_that_did_not_sign_it(world, gateway_server):
    """The conversation moved to an OpenAI route: Anthropic's signed blocks mean nothing
    there (docs/SUPPORT_MATRIX.md), the rest of the turn goes on."""
    client = client_for(world, gateway_server)
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
        },
    ]
    reply = client.messages.create(
        model=world.model("openai"), max_tokens=200, messages=messages, tools=TOOLS
    )
    assert reply.content[-1].text == "Tool results: sunny"


# -- the openai SDK: reasoning_content ------------------------------------------


def openai_client(world, gateway_server) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


@pytest.mark.parametrize("provider_type", ["anthropic", "gemini"])
def test_it_shows_the_thinking_as_reasoning_content_to_an_openai_client(
    world, gateway_server, provider_type
):
    model = world.model(provider_type).replace("gemini-2.0-flash", "gemini-2.5-flash")
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=model,
        reasoning_effort="low",
        messages=[{"role": "user", "content": "ponder this"}],
    )
    message = reply.choices[0].message
    assert message.content == "Simulated reply to: ponder this"
    assert message.model_extra["reasoning_content"] == "Let me think about: ponder this"


@pytest.mark.parametrize("provider_type", ["anthropic", "gemini"])
def test_it_streams_the_thinking_as_reasoning_content_deltas(world, gateway_server, provider_type):
    model = world.model(provider_type).replace("gemini-2.0-flash", "gemini-2.5-flash")
    chunks = list(
        openai_client(world, gateway_server).chat.completions.create(
            model=model,
            reasoning_effort="low",
            messages=[{"role": "user", "content": "ponder this"}],
            stream=True,
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    text = "".join(d.content or "" for d in deltas)
    assert reasoning == "Let me think about: ponder this"
    assert text == "Simulated reply to: ponder this"
    # the reasoning comes before the answer, as DeepSeek streams it
    first_reasoning = next(
        i for i, d in enumerate(deltas) if (d.model_extra or {}).get("reasoning_content")
    )
    first_text = next(i for i, d in enumerate(deltas) if d.content)
    assert first_reasoning < first_text


def test_it_adds_no_reasoning_content_where_the_provider_returned_none(world, gateway_server):
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model("openai"), messages=[{"role": "user", "content": "hello"}]
    )
    assert "reasoning_content" not in (reply.choices[0].message.model_extra or {})


def test_it_replays_thinking_from_the_response_cache_with_its_signature(
    world, gateway_server, make_key
):
    _, secret = make_key(world.tenant, name="cached", cache_enabled=True, cache_ttl_seconds=60)
    client = anthropic.Anthropic(api_key=secret, base_url=gateway_server.url, max_retries=0)
    common = {
        "model": world.model("anthropic"),
        "max_tokens": 2048,
        "thinking": THINKING,
        "tools": TOOLS,
        "messages": ASK,
    }
    first = client.messages.create(**common)
    with client.messages.stream(**common) as events:
        assert events.response.headers["x-aipk-cache"] == "hit"
        replayed = events.get_final_message()
    assert replayed.content[0].model_dump() == first.content[0].model_dump()
    assert thinking.verify(replayed.content[0].thinking, replayed.content[0].signature)
