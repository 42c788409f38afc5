"""Extended thinking on the simulated Anthropic wire, judged by the official anthropic SDK:
signed thinking blocks (plain and streamed) and the real API's refusals of a tool
round trip that lost or changed them."""

import anthropic
import pytest
from google.genai import types

from providers_app.simulator import thinking
from tests.simulator.sim_helpers import ANTHROPIC_TOOLS, anthropic_client, gemini_client

MODEL = "claude-sonnet-4-6"
THINKING = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
def client(simulator):
    return anthropic_client(simulator)


def ask_weather():
    return [{"role": "user", "content": "get_weather for Paris"}]


def continuation(first, content=None):
    """The tool round trip: the first reply's assistant turn sent back, then a result."""
    call = next(b for b in first.content if b.type == "tool_use")
    assistant = content if content is not None else [b.model_dump() for b in first.content]
    return [
        *ask_weather(),
        {"role": "assistant", "content": assistant},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
        },
    ]


async def test_it_starts_a_thinking_reply_with_a_signed_thinking_block(client):
    message = await client.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking=THINKING,
        messages=ask_weather(),
        tools=ANTHROPIC_TOOLS,
    )
    assert [b.type for b in message.content] == ["thinking", "tool_use"]
    block = message.content[0]
    assert isinstance(block, anthropic.types.ThinkingBlock)
    assert thinking.verify(block.thinking, block.signature)
    # thinking is billed as output: more than the call alone
    assert message.usage.output_tokens > 2


async def test_it_streams_thinking_deltas_then_the_signature(client):
    async with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking=THINKING,
        messages=[{"role": "user", "content": "think it over"}],
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_message()
    kinds = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert kinds[0] == "thinking_delta"
    assert kinds.count("signature_delta") == 1
    assert kinds.index("signature_delta") < kinds.index("text_delta")
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert thinking.verify(final.content[0].thinking, final.content[0].signature)
    assert final.content[1].text == "Simulated reply to: think it over"


async def test_it_takes_the_tool_round_trip_with_the_thinking_sent_back(client):
    first = await client.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking=THINKING,
        messages=ask_weather(),
        tools=ANTHROPIC_TOOLS,
    )
    second = await client.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking=THINKING,
        messages=continuation(first),
        tools=ANTHROPIC_TOOLS,
    )
    assert second.content[-1].text == "Tool results: sunny"


async def test_it_refuses_a_tool_round_trip_whose_assistant_turn_lost_its_thinking(client):
    first = await client.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking=THINKING,
        messages=ask_weather(),
        tools=ANTHROPIC_TOOLS,
    )
    without = [b.model_dump() for b in first.content if b.type != "thinking"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(
            model=MODEL,
            max_tokens=2048,
            thinking=THINKING,
            messages=continuation(first, without),
            tools=ANTHROPIC_TOOLS,
        )
    message = caught.value.body["error"]["message"]
    assert message.startswith(
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        "`tool_use`."
    )
    assert caught.value.body["error"]["type"] == "invalid_request_error"


async def test_it_refuses_a_thinking_block_whose_signature_was_tampered_with(client):
    first = await client.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking=THINKING,
        messages=ask_weather(),
        tools=ANTHROPIC_TOOLS,
    )
    content = [b.model_dump() for b in first.content]
    content[0]["thinking"] += " (edited)"
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(
            model=MODEL,
            max_tokens=2048,
            thinking=THINKING,
            messages=continuation(first, content),
            tools=ANTHROPIC_TOOLS,
        )
    assert caught.value.body["error"]["message"] == (
        "messages.1.content.0: Invalid `signature` in `thinking` block"
    )


async def test_it_redacts_thinking_for_the_documented_trigger_and_takes_it_back(client):
    ask = [{"role": "user", "content": f"get_weather {thinking.REDACTED_TRIGGER}"}]
    first = await client.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking=THINKING,
        messages=ask,
        tools=ANTHROPIC_TOOLS,
    )
    assert isinstance(first.content[0], anthropic.types.RedactedThinkingBlock)
    call = first.content[1]
    second = await client.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking=THINKING,
        tools=ANTHROPIC_TOOLS,
        messages=[
            *ask,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "rain"}],
            },
        ],
    )
    assert second.content[-1].text == "Tool results: rain"


async def test_it_sends_no_thinking_block_without_thinking(client):
    message = await client.messages.create(model=MODEL, max_tokens=100, messages=ask_weather())
    assert [b.type for b in message.content] == ["text"]


# -- Gemini: thought summaries with includeThoughts -----------------------------


@pytest.fixture
def gemini(simulator):
    return gemini_client(simulator)


@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_it_sends_gemini_thought_parts_first_with_include_thoughts(gemini, stream):
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True)
    )
    kwargs = {"model": "gemini-2.5-flash", "contents": "ponder this", "config": config}
    if stream:
        chunks = [c async for c in await gemini.aio.models.generate_content_stream(**kwargs)]
        parts = [p for c in chunks for p in c.candidates[0].content.parts]
    else:
        response = await gemini.aio.models.generate_content(**kwargs)
        parts = response.candidates[0].content.parts
    assert parts[0].thought is True
    assert parts[0].text == "Let me think about: ponder this"
    assert "".join(p.text for p in parts[1:] if not p.thought) == "Simulated reply to: ponder this"


@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_it_sends_no_gemini_thought_parts_without_include_thoughts(gemini):
    response = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents="ponder this",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_budget=1024)
        ),
    )
    assert not any(p.thought for p in response.candidates[0].content.parts)
