"""The model's reasoning through /v1/responses: the official openai SDK sees ``reasoning``
output items (summary text, and the signed blocks in ``encrypted_content`` when it asks
for them), streamed with OpenAI's event sequence; sent back -- by
``previous_response_id`` or in the full input list -- they give Anthropic its signed
thinking blocks again. The simulator checks them as Anthropic does, so a tool round
trip that lost or changed them would be refused."""

from __future__ import annotations

import base64
import json

import openai
import pytest
from openai.types.responses import Response, ResponseReasoningItem

from aipk_site.gateway.formats.responses_format import (
    ResponsesStreamEncoder,
    decode_thinking,
    encode_thinking,
    messages_from_items,
)
from aipk_site.gateway.response_store import responses_flush, responses_forget_recent
from providers_app.kit.types import ChatChunk, ThinkingDelta, ThinkingPart, ToolCallDelta, Usage
from providers_app.simulator import thinking
from tests.gateway.test_responses_format import LIMITS, events_of, frame, through_the_sdk

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
ASK = "Use get_weather for Paris"
ENCRYPTED = ["reasoning.encrypted_content"]


def client_for(world, gateway_server) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


def create(client, stream: bool, **kwargs) -> Response:
    if stream:
        with client.responses.stream(**kwargs) as events:
            return events.get_final_response()
    return client.responses.create(**kwargs)


def anthropic_call(world, **extra):
    return dict(
        model=world.model("anthropic"),
        reasoning={"effort": "low"},
        tools=TOOLS,
        max_output_tokens=4000,
        **extra,
    )


def outputs_for(response: Response) -> list[dict]:
    return [
        {"type": "function_call_output", "call_id": item.call_id, "output": "sunny"}
        for item in response.output
        if item.type == "function_call"
    ]


def encrypted_blocks(item: ResponseReasoningItem) -> list[dict]:
    """aipk's encrypted_content opened (a test may look inside; a client need not)."""
    assert item.encrypted_content and item.encrypted_content.startswith("aipk1_")
    encoded = item.encrypted_content.removeprefix("aipk1_")
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


def reencrypted(blocks: list[dict]) -> str:
    raw = json.dumps(blocks).encode()
    return "aipk1_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- output items ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_starts_the_output_with_a_reasoning_item_carrying_the_thinking_as_summary(
    world, gateway_server, stream
):
    response = create(
        client_for(world, gateway_server),
        stream,
        model=world.model("anthropic"),
        input="ponder this",
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=4000,
    )
    reasoning, message = response.output
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.id.startswith("rs_") and reasoning.status == "completed"
    assert [s.text for s in reasoning.summary] == ["Let me think about: ponder this"]
    # not asked for in include: the signed blocks stay with aipk
    assert reasoning.encrypted_content is None
    assert message.type == "message"
    assert response.output_text == "Simulated reply to: ponder this"
    assert response.reasoning.summary == "auto"
    Response.model_validate(response.model_dump())


def test_it_gives_the_signed_blocks_in_encrypted_content_when_include_asks(world, gateway_server):
    response = client_for(world, gateway_server).responses.create(
        **anthropic_call(world, input=ASK, include=ENCRYPTED)
    )
    reasoning = response.output[0]
    assert isinstance(reasoning, ResponseReasoningItem)
    [block] = encrypted_blocks(reasoning)
    # Anthropic's signature, byte for byte
    assert block["text"] == reasoning.summary[0].text
    assert thinking.verify(block["text"], block["signature"])


def test_it_streams_the_reasoning_item_with_openais_event_sequence(world, gateway_server):
    client = client_for(world, gateway_server)
    with client.responses.stream(
        model=world.model("anthropic"),
        input="ponder this",
        reasoning={"effort": "low"},
        include=ENCRYPTED,
        max_output_tokens=4000,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    first_delta = kinds.index("response.reasoning_summary_text.delta")
    assert kinds[:first_delta] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
    ]
    message_added = kinds.index("response.output_item.added", first_delta)
    assert kinds[first_delta:message_added][-3:] == [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    deltas = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert "".join(deltas) == "Let me think about: ponder this"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[message_added - 1]
    assert done.type == "response.output_item.done" and done.output_index == 0
    # the item is whole when done: its encrypted_content is the one to send back
    assert done.item.model_dump() == final.output[0].model_dump()
    assert encrypted_blocks(final.output[0])[0]["signature"]
    assert final.output_text == "Simulated reply to: ponder this"


def test_it_shows_gemini_thought_summaries_as_a_reasoning_item(world, gateway_server):
    model = world.model("gemini").replace("gemini-2.0-flash", "gemini-2.5-flash")
    response = client_for(world, gateway_server).responses.create(
        model=model, input="ponder this", reasoning={"effort": "low"}
    )
    reasoning = response.output[0]
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary] == ["Let me think about: ponder this"]
    assert response.output_text == "Simulated reply to: ponder this"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_adds_no_reasoning_item_where_the_provider_returned_no_thinking(
    world, gateway_server, stream
):
    response = create(
        client_for(world, gateway_server), stream, model=world.model("openai"), input="hello"
    )
    assert [item.type for item in response.output] == ["message"]


# -- tool round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_continues_a_tool_round_trip_by_previous_response_id_with_the_signed_thinking(
    world, gateway_server, stream
):
    """No include: the client never saw the signed blocks; the stored conversation has
    them, so Anthropic gets its thinking block back."""
    client = client_for(world, gateway_server)
    first = create(client, stream, **anthropic_call(world, input=ASK))
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    assert first.output[0].encrypted_content is None
    second = create(
        client,
        stream,
        **anthropic_call(world, previous_response_id=first.id, input=outputs_for(first)),
    )
    assert second.output_text == "Tool results: sunny"
    assert second.output[0].type == "reasoning"


def test_it_continues_by_id_from_the_database_with_the_signed_thinking(world, gateway_server):
    client = client_for(world, gateway_server)
    first = client.responses.create(**anthropic_call(world, input=ASK))
    responses_flush()
    responses_forget_recent()  # the continuation reads the stored row
    second = client.responses.create(
        **anthropic_call(world, previous_response_id=first.id, input=outputs_for(first))
    )
    assert second.output_text == "Tool results: sunny"
    # what GET answers is what the client was sent: no encrypted_content
    assert client.responses.retrieve(first.id).output[0].encrypted_content is None


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_runs_a_tool_round_trip_with_the_reasoning_item_in_the_full_input_list(
    world, gateway_server, stream
):
    client = client_for(world, gateway_server)
    question = [{"role": "user", "content": ASK}]
    first = create(
        client, stream, **anthropic_call(world, input=question, include=ENCRYPTED, store=False)
    )
    items = [
        *question,
        *[item.model_dump(exclude_none=True) for item in first.output],
        *outputs_for(first),
    ]
    assert items[1]["type"] == "reasoning" and items[1]["encrypted_content"]
    second = create(client, stream, **anthropic_call(world, input=items, store=False))
    assert second.output_text == "Tool results: sunny"


def test_it_carries_redacted_thinking_through_the_full_input_list(world, gateway_server):
    client = client_for(world, gateway_server)
    question = [{"role": "user", "content": f"get_weather {thinking.REDACTED_TRIGGER}"}]
    first = client.responses.create(
        **anthropic_call(world, input=question, include=ENCRYPTED, store=False)
    )
    reasoning = first.output[0]
    assert reasoning.summary == []  # a redacted block has no readable text
    assert list(encrypted_blocks(reasoning)[0]) == ["data"]
    items = [*question, *[i.model_dump(exclude_none=True) for i in first.output]]
    second = client.responses.create(
        **anthropic_call(world, input=[*items, *outputs_for(first)], store=False)
    )
    assert second.output_text == "Tool results: sunny"


def test_it_leaves_a_reasoning_item_without_encrypted_content_out_for_anthropic(
    world, gateway_server
):
    """Only its summary came back: no signature, so nothing Anthropic would take. The
    continuation is Anthropic's to refuse, as it refuses a turn without its thinking."""
    client = client_for(world, gateway_server)
    question = [{"role": "user", "content": ASK}]
    first = client.responses.create(**anthropic_call(world, input=question, store=False))
    items = [*question, *[i.model_dump(exclude_none=True) for i in first.output]]
    assert "encrypted_content" not in items[1]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            **anthropic_call(world, input=[*items, *outputs_for(first)], store=False)
        )
    assert "Expected `thinking` or `redacted_thinking`" in caught.value.body["message"]


# -- refusals -------------------------------------------------------------------------------


def test_it_passes_the_providers_400_for_a_tampered_signature_in_openai_shape(
    world, gateway_server
):
    client = client_for(world, gateway_server)
    question = [{"role": "user", "content": ASK}]
    first = client.responses.create(
        **anthropic_call(world, input=question, include=ENCRYPTED, store=False)
    )
    reasoning = first.output[0].model_dump(exclude_none=True)
    [block] = encrypted_blocks(first.output[0])
    reasoning["encrypted_content"] = reencrypted(
        [{**block, "signature": thinking.sign("something else")}]
    )
    items = [*question, reasoning, first.output[1].model_dump(), *outputs_for(first)]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**anthropic_call(world, input=items, store=False))
    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "invalid_request_error"
    assert "Invalid `signature` in `thinking` block" in caught.value.body["message"]


@pytest.mark.parametrize(
    "encrypted",
    ["gAAAAABpF-not-ours", "aipk1_%%%", "aipk1_" + base64.urlsafe_b64encode(b'{"a":1}').decode()],
    ids=["another-service", "not-base64", "not-blocks"],
)
def test_it_refuses_encrypted_content_it_did_not_issue_naming_the_field(
    world, gateway_server, encrypted
):
    items = [
        {"role": "user", "content": ASK},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encrypted},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "and now?"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(world, gateway_server).responses.create(
            **anthropic_call(world, input=items, store=False)
        )
    assert caught.value.body["param"] == "input[1].encrypted_content"
    assert "input[1].encrypted_content" in caught.value.body["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"include": "reasoning.encrypted_content"}, "include"),
        ({"reasoning": {"effort": "low", "summary": "everything"}}, "reasoning.summary"),
        (
            {"input": [{"type": "reasoning", "summary": [{"type": "x", "text": "hm"}]}]},
            "input[0].summary[0]",
        ),
    ],
)
def test_it_refuses_a_bad_reasoning_field_naming_it(world, gateway_server, body, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(world, gateway_server).responses.create(
            **{"model": world.model("anthropic"), "input": "hi", **body}
        )
    assert caught.value.body["param"] == param


# -- the format on its own ------------------------------------------------------------------


def test_it_streams_several_thinking_blocks_as_summary_parts_the_sdk_accumulates():
    completed: list[dict] = []
    encoder = ResponsesStreamEncoder(frame(include=ENCRYPTED), completed.append)
    data = b"".join(
        [
            encoder.chunk(ChatChunk(thinking=ThinkingDelta(0, text="First "))),
            encoder.chunk(ChatChunk(thinking=ThinkingDelta(0, text="thought."))),
            encoder.chunk(ChatChunk(thinking=ThinkingDelta(0, signature="sig-0"))),
            encoder.chunk(ChatChunk(thinking=ThinkingDelta(1, data="opaque"))),
            encoder.chunk(ChatChunk(thinking=ThinkingDelta(2, text="Second.", signature="s2"))),
            encoder.chunk(ChatChunk(tool_calls=[ToolCallDelta(0, "call_a", "get_weather", "{}")])),
            encoder.chunk(ChatChunk(finish_reason="tool_calls")),
            encoder.finish(Usage(prompt_tokens=3, completion_tokens=5)),
        ]
    )
    events = events_of(data)
    summary_events = [
        (e["type"].removeprefix("response.reasoning_summary_"), e["summary_index"])
        for e in events
        if e["type"].startswith("response.reasoning_summary_")
    ]
    assert summary_events == [
        ("part.added", 0),
        ("text.delta", 0),
        ("text.delta", 0),
        ("text.done", 0),
        ("part.done", 0),
        ("part.added", 1),
        ("text.delta", 1),
        ("text.done", 1),
        ("part.done", 1),
    ]
    final = through_the_sdk(events)._completed_response
    assert final is not None
    reasoning, call = final.output
    assert [s.text for s in reasoning.summary] == ["First thought.", "Second."]
    assert call.type == "function_call"
    parts = decode_thinking(reasoning.encrypted_content, "x")
    assert parts == [
        ThinkingPart(text="First thought.", signature="sig-0"),
        ThinkingPart(data="opaque"),
        ThinkingPart(text="Second.", signature="s2"),
    ]
    # what is kept is the same item
    assert completed[0]["output"][0]["encrypted_content"] == reasoning.encrypted_content


def test_it_hides_encrypted_content_from_a_stream_that_did_not_include_it_but_keeps_it():
    completed: list[dict] = []
    encoder = ResponsesStreamEncoder(frame(), completed.append)
    data = encoder.chunk(
        ChatChunk(thinking=ThinkingDelta(0, text="hm", signature="sig"))
    ) + encoder.finish(Usage())
    final = through_the_sdk(events_of(data))._completed_response
    assert final is not None
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].encrypted_content is None
    kept = decode_thinking(completed[0]["output"][0]["encrypted_content"], "x")
    assert kept == [ThinkingPart(text="hm", signature="sig")]


def test_it_gives_a_reasoning_items_blocks_to_the_assistant_turn_that_follows_it():
    signed = [ThinkingPart(text="hm", signature="sig")]
    items = [
        {"role": "user", "content": "q"},
        {"type": "reasoning", "summary": [], "encrypted_content": encode_thinking(signed)},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "r"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plain"}]},
        {"role": "assistant", "content": "done"},
        # no assistant turn right after it: nothing to carry it, not even the next one
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "cut short"}]},
        {"role": "user", "content": "next"},
        {"role": "assistant", "content": "sure"},
    ]
    messages = messages_from_items(items, LIMITS)
    assert [(m.role, m.thinking) for m in messages] == [
        ("user", []),
        ("assistant", signed),
        ("tool", []),
        ("assistant", [ThinkingPart(text="plain")]),
        ("user", []),
        ("assistant", []),
    ]
