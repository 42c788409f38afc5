"""The official SDKs' own request types accept every tool field the kit writes, unchanged.

The SDKs' models are the vendors' machine-readable statement of the wire
format: google-genai's pydantic models forbid unknown fields; the OpenAI and
Anthropic TypedDicts drop unknown keys, so "validates to itself" means no key
is unknown and every value has the documented type.
"""

import pytest

from providers_app.kit.tools import (
    tool_choice_to_anthropic,
    tool_choice_to_gemini,
    tool_choice_to_openai,
    tools_to_anthropic,
    tools_to_gemini,
    tools_to_openai,
)
from providers_app.kit.types import Tool, ToolChoice
from tests.providers.kit.test_tools_gemini_schema import RICH

pydantic = pytest.importorskip("pydantic")

TOOLS = [
    Tool(name="book_trip", description="Book a trip", parameters=RICH),
    Tool(name="now"),
    Tool(
        name="lookup",
        parameters={
            "type": "object",
            "properties": {"id": {"type": "string"}},
            "required": ["id"],
            "additionalProperties": False,
        },
        strict=True,
    ),
]
CHOICES = [
    ToolChoice("auto"),
    ToolChoice("none"),
    ToolChoice("required"),
    ToolChoice.function("now"),
]
CHOICE_IDS = ["auto", "none", "required", "function"]


def _round_trips(sdk_type, value) -> bool:
    return pydantic.TypeAdapter(sdk_type).validate_python(value) == value


def test_the_openai_sdk_accepts_the_tools_as_written():
    chat = pytest.importorskip("openai.types.chat")
    for tool in tools_to_openai(TOOLS):
        assert _round_trips(chat.ChatCompletionToolParam, tool)


@pytest.mark.parametrize("choice", CHOICES, ids=CHOICE_IDS)
def test_the_openai_sdk_accepts_every_tool_choice(choice):
    chat = pytest.importorskip("openai.types.chat")
    assert _round_trips(chat.ChatCompletionToolChoiceOptionParam, tool_choice_to_openai(choice))


def test_the_anthropic_sdk_accepts_the_tools_as_written():
    anthropic_types = pytest.importorskip("anthropic.types")
    for tool in tools_to_anthropic(TOOLS):
        assert _round_trips(anthropic_types.ToolParam, tool)


@pytest.mark.parametrize("choice", CHOICES, ids=CHOICE_IDS)
@pytest.mark.parametrize("parallel", [None, True, False])
def test_the_anthropic_sdk_accepts_every_tool_choice(choice, parallel):
    anthropic_types = pytest.importorskip("anthropic.types")
    assert _round_trips(anthropic_types.ToolChoiceParam, tool_choice_to_anthropic(choice, parallel))


def _genai_types():
    return pytest.importorskip("google.genai.types")


def test_the_gemini_sdk_accepts_the_converted_schema_and_writes_the_same_json():
    types = _genai_types()
    (written,) = tools_to_gemini(TOOLS)

    parsed = types.Tool.model_validate(written)  # extra="forbid": an unknown field fails here

    assert parsed.model_dump(by_alias=True, exclude_none=True, mode="json") == written


@pytest.mark.parametrize("choice", CHOICES, ids=CHOICE_IDS)
def test_the_gemini_sdk_accepts_every_tool_config(choice):
    types = _genai_types()
    written = tool_choice_to_gemini(choice)

    parsed = types.ToolConfig.model_validate(written)

    assert parsed.model_dump(by_alias=True, exclude_none=True, mode="json") == written
