"""The Responses wire format on its own: what the stream encoder writes for the kit's
chunks, checked by the openai SDK's own stream accumulator, and the body parser's rules."""

from __future__ import annotations

import json

import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from aipk_site.gateway.formats.common import InputLimits
from aipk_site.gateway.formats.responses_format import (
    ResponseFrame,
    ResponsesStreamEncoder,
    parse_responses,
)
from aipk_site.infra.errors import InvalidRequest, UpstreamError
from providers_app.kit.types import ChatChunk, ToolCallDelta, Usage

LIMITS = InputLimits(max_messages=50, max_message_chars=10_000, max_tools=8)
EVENTS = TypeAdapter(ResponseStreamEvent)


def frame(**body) -> ResponseFrame:
    parsed = parse_responses({"model": "m", "input": "hi", **body}, LIMITS)
    return ResponseFrame("resp_1", "m", 1700000000, parsed)


def events_of(data: bytes) -> list[dict]:
    events = []
    for block in data.decode().split("\n\n"):
        if block:
            kind, payload = block.split("\n")
            assert kind.startswith("event: ")
            event = json.loads(payload.removeprefix("data: "))
            assert event["type"] == kind.removeprefix("event: ")
            events.append(event)
    return events


def through_the_sdk(events: list[dict]):
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))
    return state


def test_it_streams_text_then_parallel_tool_calls_as_the_sdk_accumulates_them():
    completed = []
    encoder = ResponsesStreamEncoder(frame(), completed.append)
    data = b"".join(
        [
            encoder.chunk(ChatChunk(text="Let me ")),
            encoder.chunk(ChatChunk(text="check.")),
            encoder.chunk(
                ChatChunk(tool_calls=[ToolCallDelta(0, "call_a", "get_weather", '{"ci')])
            ),
            encoder.chunk(ChatChunk(tool_calls=[ToolCallDelta(0, arguments='ty":"Paris"}')])),
            encoder.chunk(ChatChunk(tool_calls=[ToolCallDelta(1, "call_b", "get_time", "{}")])),
            encoder.chunk(ChatChunk(finish_reason="tool_calls")),
            encoder.finish(Usage(prompt_tokens=5, completion_tokens=7, reasoning_tokens=2)),
        ]
    )
    events = events_of(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    through_the_sdk(events)  # raises on a grammar the SDK does not accept
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed" and final["status"] == "completed"
    message, weather, time_call = final["output"]
    assert message["content"][0]["text"] == "Let me check."
    assert (weather["call_id"], weather["name"], weather["arguments"]) == (
        "call_a",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert (time_call["call_id"], time_call["arguments"]) == ("call_b", "{}")
    assert final["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 12,
    }
    assert completed == [final]  # handed over once, for storing


def test_it_ends_a_reply_cut_at_max_tokens_with_response_incomplete():
    encoder = ResponsesStreamEncoder(frame(max_output_tokens=3))
    data = encoder.chunk(ChatChunk(text="one two three", finish_reason="length")) + encoder.finish()
    events = events_of(data)
    through_the_sdk(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_it_ends_a_failed_stream_with_response_failed_and_nothing_after():
    completed = []
    encoder = ResponsesStreamEncoder(frame(), completed.append)
    data = encoder.chunk(ChatChunk(text="partial")) + encoder.error(
        UpstreamError("the provider failed", code="upstream_error")
    )
    assert encoder.finish() == b"" and encoder.chunk(ChatChunk(text="more")) == b""
    events = events_of(data)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {
        "code": "upstream_error",
        "message": "the provider failed",
    }
    assert completed == []  # a failed response is not stored


def test_it_renders_an_empty_reply_as_an_empty_message():
    encoder = ResponsesStreamEncoder(frame())
    events = events_of(encoder.finish())
    through_the_sdk(events)
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == ""


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "assistant", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": 3}]},
            "tools[0].parameters",
        ),
        ({"input": "hi", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        ({"input": "hi", "previous_response_id": ""}, "previous_response_id"),
        ({"input": "hi", "store": "yes"}, "store"),
        ({"input": "hi", "text": {"verbosity": "high"}}, "text.verbosity"),
        ({"input": "hi", "conversation": "conv_1"}, "conversation"),
        ({"input": "hi", "prompt": {"id": "pmpt_1"}}, "prompt"),
    ],
)
def test_it_refuses_what_it_cannot_translate_naming_the_field(body, param):
    with pytest.raises(InvalidRequest) as caught:
        parse_responses({"model": "m", **body}, LIMITS)
    assert caught.value.param == param


def test_it_joins_consecutive_function_calls_to_the_assistant_turn_before_them():
    parsed = parse_responses(
        {
            "model": "m",
            "instructions": "Be brief",
            "input": [
                {"role": "user", "content": "weather and time?"},
                {"role": "assistant", "content": "Checking."},
                {"type": "function_call", "call_id": "a", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call", "call_id": "b", "name": "get_time", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "a", "output": "sunny"},
                {
                    "type": "function_call_output",
                    "call_id": "b",
                    "output": [{"type": "input_text", "text": "noon"}],
                },
            ],
        },
        LIMITS,
    )
    messages = parsed.parsed.request.messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert [c.name for c in messages[2].tool_calls] == ["get_weather", "get_time"]
    assert messages[2].content == "Checking."
    assert [(m.tool_call_id, m.name, m.content) for m in messages[3:]] == [
        ("a", "get_weather", "sunny"),
        ("b", "get_time", "noon"),
    ]
