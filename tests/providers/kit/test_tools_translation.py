"""Tools and tool_choice translate to each provider's request fields and back."""

import copy
import dataclasses

import pytest

from providers_app.kit.tools import (
    ToolValidationError,
    tool_choice_from_anthropic,
    tool_choice_from_openai,
    tool_choice_to_anthropic,
    tool_choice_to_gemini,
    tool_choice_to_openai,
    tools_from_anthropic,
    tools_from_openai,
    tools_to_anthropic,
    tools_to_gemini,
    tools_to_openai,
)
from providers_app.kit.types import Tool, ToolChoice

WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
)
NOW = Tool(name="now")  # no description, no parameters
STRICT = Tool(
    name="lookup",
    description="Exact lookup",
    parameters={
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "required": ["id"],
        "additionalProperties": False,
    },
    strict=True,
)
TOOLS = [WEATHER, NOW, STRICT]

CHOICES = [
    ToolChoice("auto"),
    ToolChoice("none"),
    ToolChoice("required"),
    ToolChoice.function("get_weather"),
]
CHOICE_IDS = ["auto", "none", "required", "function"]


def _error(fn, *args) -> ToolValidationError:
    with pytest.raises(ToolValidationError) as caught:
        fn(*args)
    return caught.value


# -- OpenAI --------------------------------------------------------------------------------


def test_it_writes_openai_function_tools():
    assert tools_to_openai(TOOLS) == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": WEATHER.parameters,
            },
        },
        {
            "type": "function",
            "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
        },
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Exact lookup",
                "parameters": STRICT.parameters,
                "strict": True,
            },
        },
    ]


def test_openai_tools_round_trip():
    assert tools_from_openai(tools_to_openai(TOOLS)) == TOOLS


def test_it_reads_an_openai_function_without_parameters_as_taking_none():
    (tool,) = tools_from_openai([{"type": "function", "function": {"name": "now", "strict": None}}])
    assert tool == Tool(name="now", parameters={"type": "object", "properties": {}}, strict=False)


def test_the_openai_request_does_not_share_dicts_with_the_tool():
    (written,) = tools_to_openai([WEATHER])
    written["function"]["parameters"]["properties"]["city"]["type"] = "integer"

    assert WEATHER.parameters["properties"]["city"]["type"] == "string"


OPENAI_WIRE = [
    "auto",
    "none",
    "required",
    {"type": "function", "function": {"name": "get_weather"}},
]


@pytest.mark.parametrize(
    ("choice", "wire"), list(zip(CHOICES, OPENAI_WIRE, strict=True)), ids=CHOICE_IDS
)
def test_openai_tool_choice_round_trips(choice, wire):
    assert tool_choice_to_openai(choice) == wire
    assert tool_choice_from_openai(wire) == choice


def test_no_openai_tool_choice_means_provider_default():
    assert tool_choice_to_openai(None) is None
    assert tool_choice_from_openai(None) is None


@pytest.mark.parametrize(
    ("tools", "param", "fragment"),
    [
        ("get_weather", "tools", "must be an array, got string"),
        ([{"type": "function", "function": {"name": "a"}}, "b"], "tools[1]", "must be an object"),
        ([{"function": {"name": "a"}}], "tools[0].type", "is required"),
        (
            [{"type": "custom", "custom": {"name": "a"}}],
            "tools[0].type",
            "'custom' is not supported",
        ),
        ([{"type": "function"}], "tools[0].function", "must be an object, got null"),
        (
            [
                {"type": "function", "function": {"name": "a"}},
                {"type": "function", "function": {"name": "b"}},
                {"type": "function", "function": {"description": "no name"}},
            ],
            "tools[2].function.name",
            "is required",
        ),
        (
            [{"type": "function", "function": {"name": "get weather"}}],
            "tools[0].function.name",
            "not a valid tool name",
        ),
        (
            [{"type": "function", "function": {"name": "a", "description": 7}}],
            "tools[0].function.description",
            "must be a string, got number",
        ),
        (
            [{"type": "function", "function": {"name": "a", "strict": "yes"}}],
            "tools[0].function.strict",
            "must be a boolean",
        ),
        (
            [
                {
                    "type": "function",
                    "function": {
                        "name": "a",
                        "parameters": {"type": "object", "properties": {"a": {"type": "strnig"}}},
                    },
                }
            ],
            "tools[0].function.parameters.properties.a.type",
            "'strnig' is not a JSON Schema type",
        ),
        (
            [
                {"type": "function", "function": {"name": "a"}},
                {"type": "function", "function": {"name": "a"}},
            ],
            "tools[1].function.name",
            "duplicate tool name 'a' (already used by tools[0])",
        ),
    ],
    ids=[
        "not a list",
        "not an object",
        "no type",
        "custom tool",
        "no function",
        "no name",
        "bad name",
        "bad description",
        "bad strict",
        "bad schema",
        "duplicate",
    ],
)
def test_malformed_openai_tools_are_rejected_naming_the_field(tools, param, fragment):
    err = _error(tools_from_openai, tools)

    assert err.param == param
    assert fragment in err.message
    assert param in err.message


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ("sometimes", "tool_choice"),
        (3, "tool_choice"),
        (
            {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
            "tool_choice.type",
        ),
        ({"type": "function"}, "tool_choice.function"),
        ({"type": "function", "function": {}}, "tool_choice.function.name"),
    ],
)
def test_malformed_openai_tool_choice_is_rejected_naming_the_field(value, param):
    err = _error(tool_choice_from_openai, value)

    assert err.param == param
    assert err.code == "invalid_tool_choice"


# -- Anthropic ------------------------------------------------------------------------------


def test_it_writes_anthropic_custom_tools():
    assert tools_to_anthropic(TOOLS) == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER.parameters,
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        {"name": "lookup", "description": "Exact lookup", "input_schema": STRICT.parameters},
    ]


def test_anthropic_tools_round_trip():
    plain = [WEATHER, NOW]
    assert tools_from_anthropic(tools_to_anthropic(plain)) == plain


def test_it_reads_anthropic_strict_and_keeps_cache_control():
    (tool,) = tools_from_anthropic(
        [
            {
                "type": "custom",
                "name": "lookup",
                "description": "Exact lookup",
                "input_schema": STRICT.parameters,
                "strict": True,
                "cache_control": {"type": "ephemeral"},
            }
        ]
    )
    assert tool == dataclasses.replace(STRICT, cache_control={"type": "ephemeral"})
    # and it goes back to Anthropic on the same tool
    assert tools_to_anthropic([tool])[0]["cache_control"] == {"type": "ephemeral"}


def test_it_refuses_a_tool_cache_control_anthropic_would_reject():
    with pytest.raises(ToolValidationError) as caught:
        tools_from_anthropic(
            [
                {
                    "name": "lookup",
                    "input_schema": {"type": "object"},
                    "cache_control": {"type": "ephemeral", "ttl": "2h"},
                }
            ]
        )
    assert caught.value.param == "tools[0].cache_control"


@pytest.mark.parametrize(
    ("tools", "param", "fragment"),
    [
        (
            [{"type": "web_search_20250305", "name": "web_search"}],
            "tools[0].type",
            "only custom tools",
        ),
        (
            [{"name": "a", "input_schema": {"type": "object"}}, {"name": "b"}],
            "tools[1].input_schema",
            "is required",
        ),
        ([{"input_schema": {"type": "object"}}], "tools[0].name", "is required"),
        (
            [
                {
                    "name": "a",
                    "input_schema": {"type": "object", "properties": {"x": {"type": "strnig"}}},
                }
            ],
            "tools[0].input_schema.properties.x.type",
            "'strnig' is not a JSON Schema type",
        ),
        (
            [{"name": "a", "input_schema": {"type": "array"}}],
            "tools[0].input_schema.type",
            'must be "object"',
        ),
        (
            [
                {"name": "a", "input_schema": {"type": "object"}},
                {"name": "a", "input_schema": {"type": "object"}},
            ],
            "tools[1].name",
            "duplicate tool name",
        ),
    ],
    ids=[
        "server tool",
        "no input_schema",
        "no name",
        "bad schema",
        "not an object schema",
        "duplicate",
    ],
)
def test_malformed_anthropic_tools_are_rejected_naming_the_field(tools, param, fragment):
    err = _error(tools_from_anthropic, tools)

    assert err.param == param
    assert fragment in err.message


ANTHROPIC_WIRE = [
    {"type": "auto"},
    {"type": "none"},
    {"type": "any"},
    {"type": "tool", "name": "get_weather"},
]


@pytest.mark.parametrize(
    ("choice", "wire"), list(zip(CHOICES, ANTHROPIC_WIRE, strict=True)), ids=CHOICE_IDS
)
def test_anthropic_tool_choice_round_trips(choice, wire):
    assert tool_choice_to_anthropic(choice, None) == wire
    assert tool_choice_from_anthropic(wire) == (choice, None)


@pytest.mark.parametrize(
    ("choice", "wire"), list(zip(CHOICES, ANTHROPIC_WIRE, strict=True)), ids=CHOICE_IDS
)
@pytest.mark.parametrize("parallel", [True, False])
def test_anthropic_carries_parallel_tool_calls_on_the_choice(choice, wire, parallel):
    written = tool_choice_to_anthropic(choice, parallel)

    if choice.mode == "none":
        assert written == {"type": "none"}  # Anthropic's "none" takes no other field
        return
    assert written == {**wire, "disable_parallel_tool_use": not parallel}
    assert tool_choice_from_anthropic(written) == (choice, parallel)


def test_anthropic_turns_off_parallel_calls_even_without_a_choice():
    assert tool_choice_to_anthropic(None, False) == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert tool_choice_to_anthropic(None, None) is None
    assert tool_choice_from_anthropic(None) == (None, None)


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ("auto", "tool_choice"),
        ({}, "tool_choice.type"),
        ({"type": "required"}, "tool_choice.type"),
        ({"type": "tool"}, "tool_choice.name"),
        (
            {"type": "auto", "disable_parallel_tool_use": "yes"},
            "tool_choice.disable_parallel_tool_use",
        ),
    ],
)
def test_malformed_anthropic_tool_choice_is_rejected_naming_the_field(value, param):
    err = _error(tool_choice_from_anthropic, value)
    assert err.param == param


# -- Gemini -------------------------------------------------------------------------------------


def test_it_writes_gemini_function_declarations_in_one_tool():
    assert tools_to_gemini(TOOLS) == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "city": {"type": "STRING"},
                            "unit": {"type": "STRING", "enum": ["c", "f"]},
                        },
                        "required": ["city"],
                    },
                },
                {
                    "name": "now"
                },  # Gemini refuses an OBJECT without properties: a no-argument tool sends none
                {
                    "name": "lookup",
                    "description": "Exact lookup",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"id": {"type": "STRING"}},
                        "required": ["id"],
                    },
                },
            ]
        }
    ]


def test_it_can_send_gemini_the_json_schema_untouched():
    (tool,) = tools_to_gemini([STRICT], json_schema=True)
    assert tool["functionDeclarations"][0]["parametersJsonSchema"] == STRICT.parameters
    assert "parameters" not in tool["functionDeclarations"][0]


def test_no_tools_means_no_gemini_tools():
    assert tools_to_gemini([]) == []


GEMINI_CONFIG = [
    {"mode": "AUTO"},
    {"mode": "NONE"},
    {"mode": "ANY"},
    {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
]


@pytest.mark.parametrize(
    ("choice", "config"), list(zip(CHOICES, GEMINI_CONFIG, strict=True)), ids=CHOICE_IDS
)
def test_gemini_tool_choice_for_every_mode(choice, config):
    assert tool_choice_to_gemini(choice) == {"functionCallingConfig": config}


def test_no_gemini_tool_choice_means_provider_default():
    assert tool_choice_to_gemini(None) is None


# -- across providers --------------------------------------------------------------------------


def test_an_openai_request_translates_to_anthropic_and_back_unchanged():
    openai_tools = tools_to_openai([WEATHER, NOW])
    via_anthropic = tools_from_anthropic(tools_to_anthropic(tools_from_openai(openai_tools)))
    assert tools_to_openai(via_anthropic) == openai_tools


def test_translation_never_mutates_the_callers_request():
    openai_tools = tools_to_openai(TOOLS)
    before = copy.deepcopy(openai_tools)

    for tool in tools_from_openai(openai_tools):
        tools_to_gemini([tool])
        tools_to_anthropic([tool])

    assert openai_tools == before
