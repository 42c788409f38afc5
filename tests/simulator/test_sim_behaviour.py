"""The reply rules, provider-neutral (providers_app.simulator.behaviour)."""

from providers_app.simulator import behaviour
from providers_app.simulator.behaviour import Conversation, ToolSpec


def test_it_generates_arguments_from_a_json_schema():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "mode": {"type": "string", "enum": ["fast", "slow"]},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
            "maybe": {"type": ["string", "null"]},
            "either": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
        },
    }
    assert behaviour.arguments_for(schema) == {
        "name": "name-value",
        "mode": "fast",
        "count": 1,
        "ratio": 1.5,
        "flag": True,
        "tags": ["tags-value"],
        "where": {"lat": 1.5},
        "maybe": "maybe-value",
        "either": 1,
    }


def test_it_reads_gemini_upper_case_schema_types():
    schema = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}, "s": {"type": "STRING"}}}
    assert behaviour.arguments_for(schema) == {"n": 1, "s": "s-value"}


def test_it_gives_empty_arguments_to_a_tool_without_parameters():
    assert behaviour.arguments_for({}) == {}


def test_it_keeps_words_with_their_trailing_space():
    assert behaviour.words("a  b\nc") == ["a  ", "b\n", "c"]


def test_it_prefers_tool_results_over_calling_tools_again():
    conv = Conversation(tools=[ToolSpec("t", {})], tool_results=["x", "y"], last_is_user=True)
    reply = behaviour.decide(conv)
    assert reply.text == "Tool results: x | y" and not reply.tool_calls


def test_it_does_not_call_tools_after_an_assistant_message():
    conv = Conversation(last_user_text="use t", last_is_user=False, tools=[ToolSpec("t", {})])
    assert behaviour.decide(conv).text == "Simulated reply to: use t"


def test_it_splits_tool_arguments_into_at_least_two_fragments():
    [call] = behaviour.decide(Conversation(tools=[ToolSpec("t", {})])).tool_calls
    assert call.arguments_json == "{}"
    assert call.fragments() == ["{", "}"]
