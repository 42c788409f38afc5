"""Tool calls from replies: Gemini's functionCall parts, and arguments as objects."""

import json
from pathlib import Path

import pytest

from providers_app.kit.errors import ProtocolError
from providers_app.kit.tools import ToolValidationError, arguments_to_object, tool_call_from_gemini
from providers_app.kit.types import ToolCall

WIRE = Path(__file__).parents[2] / "fixtures" / "wire"


def _wire(name: str) -> dict:
    return json.loads((WIRE / name).read_text())


def test_it_reads_a_real_gemini_function_call_and_makes_up_a_stable_id():
    parts = _wire("gemini_generate_function_call.json")["candidates"][0]["content"]["parts"]
    part = next(p for p in parts if "functionCall" in p)

    call = tool_call_from_gemini(part, 0)

    assert call == ToolCall(id="call_0_now", name="now", arguments="{}")
    assert tool_call_from_gemini(part, 0) == call  # parsing the reply again gives the same id


def test_it_keeps_the_id_gemini_sends():
    part = {"functionCall": {"id": "fc-123", "name": "get_weather", "args": {"city": "Paris"}}}

    call = tool_call_from_gemini(part, 3)

    assert call.id == "fc-123"
    assert json.loads(call.arguments) == {"city": "Paris"}


def test_ids_are_unique_within_a_reply_even_for_the_same_function():
    parts = [
        {"functionCall": {"name": "get_weather", "args": {"city": c}}} for c in ("Paris", "Rome")
    ]

    ids = [tool_call_from_gemini(part, i).id for i, part in enumerate(parts)]

    assert ids == ["call_0_get_weather", "call_1_get_weather"]


def test_a_scope_makes_ids_unique_across_replies():
    part = {"functionCall": {"name": "now", "args": {}}}
    assert tool_call_from_gemini(part, 0, scope="38CHaLjM").id == "call_38CHaLjM_0_now"


def test_it_accepts_the_function_call_object_itself_and_missing_args():
    assert tool_call_from_gemini({"name": "now"}, 1) == ToolCall(
        id="call_1_now", name="now", arguments="{}"
    )


def test_it_keeps_non_ascii_arguments_readable():
    call = tool_call_from_gemini({"functionCall": {"name": "greet", "args": {"name": "Zoë"}}}, 0)
    assert call.arguments == '{"name":"Zoë"}'


@pytest.mark.parametrize(
    "part",
    [
        {"functionCall": {"args": {}}},
        {"functionCall": {"name": "", "args": {}}},
        {"functionCall": {"name": "now", "args": ["x"]}},
    ],
)
def test_a_malformed_function_call_is_a_protocol_error(part):
    with pytest.raises(ProtocolError):
        tool_call_from_gemini(part, 0)


def test_it_turns_the_arguments_of_a_real_openai_reply_into_an_object():
    reply = _wire("openai_chat_completion_tool_calls.json")
    arguments = reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]

    assert arguments_to_object(arguments) == {"location": "Boston, MA"}


def test_a_real_anthropic_tool_input_survives_the_round_trip_through_json_text():
    block = _wire("anthropic_messages_tool_use.json")["content"][0]
    call = ToolCall(id=block["id"], name=block["name"], arguments=json.dumps(block["input"]))

    assert arguments_to_object(call.arguments) == {"location": "San Francisco, CA", "units": "f"}


def test_empty_arguments_are_an_empty_object():
    assert arguments_to_object("") == {}
    assert arguments_to_object("  ") == {}


def test_an_object_is_passed_through():
    args = {"a": 1}
    assert arguments_to_object(args) is args


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ('{"location": ', "not valid JSON (Expecting value at line 1 column 14)"),
        ("[1, 2]", "must be a JSON object, got array"),
        ('"Boston"', "must be a JSON object, got string"),
        (None, "must be a JSON string or object"),
    ],
)
def test_arguments_that_are_not_a_json_object_are_rejected(arguments, fragment):
    with pytest.raises(ToolValidationError) as caught:
        arguments_to_object(arguments)

    assert caught.value.param == "arguments"
    assert caught.value.code == "invalid_tool_arguments"
    assert fragment in caught.value.message
