"""Which stop sequence matched: /v1/messages returns ``stop_sequence`` (in the message and
in the stream's ``message_delta``) from every provider that says which; where the
provider does not say (OpenAI, Gemini) it is null and ``stop_reason`` is ``end_turn``."""

from __future__ import annotations

import anthropic
import pytest

from providers_app.kit.adapters.config import ProviderConfig
from providers_app.kit.providers import create_adapter
from providers_app.kit.types import ChatRequest, Message

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi there"}]


def client(world, gateway_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=world.secret, base_url=gateway_server.url, max_retries=0)


def test_it_returns_the_matched_stop_sequence_from_anthropic(world, gateway_server):
    message = client(world, gateway_server).messages.create(
        model=world.model("anthropic"),
        max_tokens=100,
        messages=HI,  # type: ignore[arg-type]
        stop_sequences=["zzz", "to:"],
    )
    assert message.content[0].text == "Simulated reply "  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "to:")


def test_it_streams_the_matched_stop_sequence_in_message_delta(world, gateway_server):
    with client(world, gateway_server).messages.stream(
        model=world.model("anthropic"),
        max_tokens=100,
        messages=HI,  # type: ignore[arg-type]
        stop_sequences=["reply"],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    delta = next(e for e in events if e.type == "message_delta")
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == ("stop_sequence", "reply")
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "reply")


@pytest.mark.parametrize("provider_type", ["openai", "gemini"])
def test_it_says_null_where_the_provider_does_not_say_which(world, gateway_server, provider_type):
    message = client(world, gateway_server).messages.create(
        model=world.model(provider_type),
        max_tokens=100,
        messages=HI,  # type: ignore[arg-type]
        stop_sequences=["to:"],
    )
    assert message.content[0].text == "Simulated reply "  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


def test_it_reads_the_stop_string_a_vllm_style_server_reports():
    adapter = create_adapter(
        "openai-compatible", ProviderConfig(name="vllm", base_url="http://x", api_key="k")
    )
    request = ChatRequest(model="m", messages=[Message(role="user", content="hi")], stop=["##"])

    def body(stop_reason):
        choice = {"index": 0, "message": {"role": "assistant", "content": "a"}}
        return {
            "id": "c",
            "choices": [{**choice, "finish_reason": "stop", "stop_reason": stop_reason}],
        }

    assert adapter.parse_chat(body("##"), request).stop_sequence == "##"
    # an end-of-sequence token id is not a stop sequence
    assert adapter.parse_chat(body(128001), request).stop_sequence is None
