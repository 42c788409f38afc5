"""Tool definitions and tool-call arguments are checked, and every error names the field."""

import copy
import json
from pathlib import Path

import pytest

from providers_app.kit.errors import InvalidRequestError
from providers_app.kit.tools import (
    ToolValidationError,
    validate_tool,
    validate_tool_arguments,
    validate_tool_choice,
    validate_tools,
)
from providers_app.kit.types import Tool, ToolChoice

WIRE = Path(__file__).parents[2] / "fixtures" / "wire"

WEATHER = Tool(
    name="get_current_weather",
    description="Get the current weather in a given location",
    parameters={
        "type": "object",
        "properties": {
            "location": {
                "type": "string",
                "description": "The city and state, e.g. San Francisco, CA",
            },
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
)

ORDER = Tool(
    name="place_order",
    parameters={
        "type": "object",
        "properties": {
            "customer": {"$ref": "#/$defs/Customer"},
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string"},
                        "qty": {"type": "integer", "minimum": 1},
                    },
                    "required": ["sku", "qty"],
                },
            },
        },
        "required": ["customer", "lines"],
        "$defs": {
            "Customer": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "address": {
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
                    },
                },
                "required": ["name"],
            }
        },
    },
)

GOOD_ORDER = {
    "customer": {"name": "Ada", "address": {"street": "1 Loop Rd", "zip": "12345"}},
    "lines": [{"sku": "A-1", "qty": 2}],
}


def _error(fn, *args, **kwargs) -> ToolValidationError:
    with pytest.raises(ToolValidationError) as caught:
        fn(*args, **kwargs)
    return caught.value


# -- definitions -----------------------------------------------------------------------


def test_it_accepts_a_well_formed_tool():
    validate_tool(WEATHER)
    validate_tool(ORDER)
    validate_tools([WEATHER, ORDER])


@pytest.mark.parametrize(
    "name", ["get weather", "", "x" * 65, "wetter.heute", "héllo", "trailing_newline\n"]
)
def test_it_rejects_a_name_providers_would_refuse(name):
    err = _error(validate_tool, Tool(name=name))
    assert err.param == "name"
    assert repr(name) in err.message
    assert "1 to 64 letters, digits, underscores or dashes" in err.message


def test_it_accepts_names_of_exactly_64_allowed_characters():
    validate_tool(Tool(name="a-Z_9" + "x" * 59))


def test_it_rejects_a_definition_that_is_not_a_valid_json_schema():
    tool = Tool(name="typo", parameters={"type": "object", "properties": {"a": {"type": "strnig"}}})

    err = _error(validate_tool, tool)

    assert err.param == "parameters.properties.a.type"
    assert err.message.startswith(
        "tool 'typo': parameters.properties.a.type: 'strnig' is not a JSON Schema type"
    )


def test_it_names_the_keyword_with_a_bad_value():
    tool = Tool(
        name="t",
        parameters={"type": "object", "properties": {"code": {"type": "string", "minLength": -1}}},
    )

    err = _error(validate_tool, tool)

    assert err.param == "parameters.properties.code.minLength"
    assert "-1" in err.message


def test_it_does_not_mistake_a_property_called_type_for_the_keyword():
    tool = Tool(name="t", parameters={"type": "object", "properties": {"type": {"type": "string"}}})
    validate_tool(tool)

    broken = Tool(name="t", parameters={"type": "object", "properties": {"type": "string"}})
    err = _error(validate_tool, broken)
    assert err.param == "parameters.properties.type"
    assert "is not a JSON Schema type" not in err.message


@pytest.mark.parametrize(
    "parameters", [{"type": "string"}, {"properties": {}}, {"type": ["object", "null"]}]
)
def test_it_requires_an_object_at_the_top_level(parameters):
    err = _error(validate_tool, Tool(name="t", parameters=parameters))

    assert err.param == "parameters.type"
    assert "tool arguments are always a JSON object" in err.message


def test_it_rejects_parameters_that_are_not_a_dict():
    err = _error(validate_tool, Tool(name="t", parameters=["type", "object"]))
    assert err.param == "parameters"
    assert "got array" in err.message


def test_it_rejects_a_reference_to_a_url_without_fetching_it():
    tool = Tool(
        name="t",
        parameters={
            "type": "object",
            "properties": {"a": {"$ref": "http://127.0.0.1:9/evil.json"}},
        },
    )

    err = _error(validate_tool, tool)

    assert err.param == "parameters.properties.a.$ref"
    assert "only references inside the schema are supported" in err.message


def test_it_rejects_a_dangling_local_reference():
    tool = Tool(
        name="t", parameters={"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}
    )

    err = _error(validate_tool, tool)

    assert err.param == "parameters.properties.a.$ref"
    assert "'#/$defs/Missing'" in err.message


def test_it_checks_draft_7_schemas_against_their_own_metaschema():
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"when": {"$ref": "#/definitions/Date"}},
        "definitions": {"Date": {"type": "string"}},
    }
    validate_tool(Tool(name="t", parameters=draft7))


def test_validate_tools_names_the_position_of_the_bad_tool():
    err = _error(
        validate_tools, [WEATHER, Tool(name="bad", parameters={"type": "object", "required": "x"})]
    )

    assert err.param == "tools[1].parameters.required"
    assert err.tool == "bad"


def test_it_rejects_duplicate_tool_names():
    err = _error(validate_tools, [WEATHER, ORDER, Tool(name="get_current_weather")])

    assert err.param == "tools[2].name"
    assert "duplicate tool name 'get_current_weather' (already used by tools[0])" in err.message


def test_its_errors_are_invalid_request_errors_for_the_api_edge():
    err = _error(validate_tool, Tool(name="no spaces"))

    assert isinstance(err, InvalidRequestError)
    assert err.default_status == 400
    assert err.to_dict() == {
        "type": "invalid_request_error",
        "code": "invalid_tool",
        "message": err.message,
    }


def test_it_rejects_forcing_a_tool_that_was_not_declared():
    err = _error(validate_tool_choice, ToolChoice.function("get_forecast"), [WEATHER])

    assert err.param == "tool_choice"
    assert "'get_forecast'" in err.message


def test_it_rejects_requiring_a_tool_call_without_tools():
    err = _error(validate_tool_choice, ToolChoice("required"), [])
    assert err.param == "tool_choice"


def test_it_accepts_any_choice_that_can_be_honoured():
    for choice in (
        None,
        ToolChoice("auto"),
        ToolChoice("none"),
        ToolChoice("required"),
        ToolChoice.function("get_current_weather"),
    ):
        validate_tool_choice(choice, [WEATHER])


# -- arguments ------------------------------------------------------------------------------


def test_it_parses_and_returns_the_arguments_from_a_real_openai_reply():
    reply = json.loads((WIRE / "openai_chat_completion_tool_calls.json").read_text())
    call = reply["choices"][0]["message"]["tool_calls"][0]["function"]

    assert validate_tool_arguments(WEATHER, call["arguments"]) == {"location": "Boston, MA"}


def test_it_accepts_arguments_already_parsed():
    assert validate_tool_arguments(ORDER, GOOD_ORDER) == GOOD_ORDER


def test_it_reports_invalid_json_arguments_with_the_position():
    err = _error(validate_tool_arguments, WEATHER, '{"location": "Boston, MA"')

    assert err.code == "invalid_tool_arguments"
    assert err.param == "arguments"
    assert err.message.startswith("tool 'get_current_weather': arguments: not valid JSON (")
    assert "line 1 column" in err.message


def test_it_rejects_arguments_that_are_not_an_object():
    err = _error(validate_tool_arguments, WEATHER, '["Boston"]')
    assert err.message == "tool 'get_current_weather': arguments: must be a JSON object, got array"


def test_it_treats_empty_arguments_as_no_arguments():
    no_args = Tool(name="now")
    assert validate_tool_arguments(no_args, "") == {}
    assert validate_tool_arguments(no_args, "{}") == {}


def test_it_names_a_missing_required_field():
    err = _error(validate_tool_arguments, WEATHER, '{"unit": "celsius"}')

    assert err.param == "arguments"
    assert "'location' is a required property" in err.message


def test_it_names_the_nested_field_with_a_wrong_value():
    bad = copy.deepcopy(GOOD_ORDER)
    bad["lines"][0]["qty"] = 0

    err = _error(validate_tool_arguments, ORDER, bad)

    assert err.param == "arguments.lines[0].qty"
    assert "0 is less than the minimum of 1" in err.message


def test_it_follows_references_when_checking_arguments():
    bad = copy.deepcopy(GOOD_ORDER)
    bad["customer"]["address"]["zip"] = 12345

    err = _error(validate_tool_arguments, ORDER, bad)

    assert err.param == "arguments.customer.address.zip"
    assert "is not of type 'string'" in err.message


def test_it_accepts_unknown_fields_when_the_schema_allows_them():
    loose = copy.deepcopy(GOOD_ORDER)
    loose["note"] = "ring twice"
    loose["customer"]["address"]["floor"] = 3

    assert validate_tool_arguments(ORDER, loose) == loose


@pytest.mark.parametrize(
    ("where", "expected_param"),
    [
        (lambda args: args.update(note="x"), "arguments"),
        (lambda args: args["customer"].update(vip=True), "arguments.customer"),
        (lambda args: args["customer"]["address"].update(floor=3), "arguments.customer.address"),
        (lambda args: args["lines"][0].update(gift=True), "arguments.lines[0]"),
    ],
    ids=["top level", "object behind $ref", "object nested in that", "object in array items"],
)
def test_strict_mode_rejects_unknown_fields_at_every_level(where, expected_param):
    args = copy.deepcopy(GOOD_ORDER)
    where(args)

    err = _error(validate_tool_arguments, ORDER, args, strict=True)

    assert err.param == expected_param
    assert "was unexpected" in err.message
    assert err.code == "invalid_tool_arguments"


def test_strict_mode_accepts_arguments_that_use_only_declared_fields():
    assert validate_tool_arguments(ORDER, GOOD_ORDER, strict=True) == GOOD_ORDER


def test_a_strict_tool_is_always_checked_strictly():
    strict_weather = Tool(name=WEATHER.name, parameters=WEATHER.parameters, strict=True)

    err = _error(validate_tool_arguments, strict_weather, '{"location": "Boston", "when": "now"}')

    assert "'when' was unexpected" in err.message


def test_strict_mode_respects_a_schema_that_explicitly_allows_extra_fields():
    tags = Tool(
        name="tag",
        parameters={
            "type": "object",
            "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            },
        },
    )

    assert validate_tool_arguments(tags, {"labels": {"env": "prod", "team": "core"}}, strict=True)
    err = _error(validate_tool_arguments, tags, {"labels": {}, "other": 1}, strict=True)
    assert err.param == "arguments"


def test_strict_mode_keeps_composed_schemas_working():
    # allOf [Base, extension]: each branch alone does not know the other's fields
    composed = Tool(
        name="c",
        parameters={
            "type": "object",
            "allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"extra": {"type": "integer"}}}],
            "$defs": {"Base": {"type": "object", "properties": {"id": {"type": "string"}}}},
        },
    )

    assert validate_tool_arguments(composed, {"id": "a", "extra": 1}, strict=True) == {
        "id": "a",
        "extra": 1,
    }
    err = _error(validate_tool_arguments, composed, {"id": "a", "other": 1}, strict=True)
    assert "'other' was unexpected" in err.message


def test_strict_mode_works_on_draft_7_schemas_too():
    draft7 = Tool(
        name="d",
        parameters={
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"inner": {"type": "object", "properties": {"a": {"type": "string"}}}},
        },
    )

    assert validate_tool_arguments(draft7, {"inner": {"a": "x", "b": 1}}) == {
        "inner": {"a": "x", "b": 1}
    }
    err = _error(validate_tool_arguments, draft7, {"inner": {"a": "x", "b": 1}}, strict=True)
    assert err.param == "arguments.inner"


def test_checking_arguments_never_changes_the_tool_schema():
    before = copy.deepcopy(ORDER.parameters)

    validate_tool_arguments(ORDER, GOOD_ORDER, strict=True)

    assert ORDER.parameters == before
