"""Stop sequences on every wire: the reply ends before the first sequence it would
contain, and the wires that say which sequence matched (Anthropic) say it; OpenAI and
Gemini only finish with their plain stop. Judged by the official SDKs."""

import pytest
from google.genai import types

from tests.simulator.sim_helpers import anthropic_client, gemini_client, openai_client

# The google-genai SDK's own aiohttp session subclass warns on every client; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

HI = [{"role": "user", "content": "hi there"}]


async def test_it_stops_an_anthropic_reply_and_names_the_sequence(simulator):
    message = await anthropic_client(simulator).messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=HI, stop_sequences=["zzz", "to:"]
    )
    assert message.content[0].text == "Simulated reply "  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "to:")
    assert message.usage.output_tokens == 2


async def test_it_names_the_sequence_in_the_streams_message_delta(simulator):
    async with anthropic_client(simulator).messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, messages=HI, stop_sequences=["reply"]
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_message()
    delta = next(e for e in events if e.type == "message_delta")
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == ("stop_sequence", "reply")
    assert final.content[0].text == "Simulated "  # type: ignore[union-attr]


async def test_it_reports_no_sequence_when_none_matched(simulator):
    message = await anthropic_client(simulator).messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=HI, stop_sequences=["zzz"]
    )
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


async def test_it_prefers_max_tokens_when_the_limit_comes_first(simulator):
    message = await anthropic_client(simulator).messages.create(
        model="claude-sonnet-4-6", max_tokens=1, messages=HI, stop_sequences=["there"]
    )
    assert (message.stop_reason, message.stop_sequence) == ("max_tokens", None)


@pytest.mark.parametrize("stop", ["reply", ["zzz", "reply"]])
async def test_it_stops_an_openai_reply_with_a_plain_stop(simulator, stop):
    reply = await openai_client(simulator.base_url("openai")).chat.completions.create(
        model="gpt-4o-mini",
        messages=HI,
        stop=stop,  # type: ignore[arg-type]
    )
    assert reply.choices[0].message.content == "Simulated "
    assert reply.choices[0].finish_reason == "stop"


async def test_it_stops_a_gemini_reply_with_a_plain_stop(simulator):
    client = gemini_client(simulator)  # held: a collected client closes its session
    response = await client.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents="hi there",
        config=types.GenerateContentConfig(stop_sequences=["to:"]),
    )
    assert response.text == "Simulated reply "
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
