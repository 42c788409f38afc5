"""Universal tools and tool choices → OpenAI, Anthropic and Gemini request fields."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ..types import Tool, ToolChoice
from .errors import fail, join_path
from .gemini_schema import to_gemini_schema
from .schema import SchemaReferenceError


def tools_to_openai(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """OpenAI chat-completions ``tools``. The schema goes as is; ``strict`` only when asked for.

    With ``strict`` OpenAI enforces its own schema rules (every object closed,
    every property required) and answers 400 when they are not met.
    """
    out = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = copy.deepcopy(tool.parameters)
        if tool.strict:
            function["strict"] = True
        out.append({"type": "function", "function": function})
    return out


def tool_choice_to_openai(choice: ToolChoice | None) -> str | dict[str, Any] | None:
    if choice is None:
        return None
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode  # "auto" | "none" | "required"


def tools_to_anthropic(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """Anthropic Messages ``tools`` (custom tools).

    ``strict`` is not sent: Anthropic's strict tool use needs a beta header
    the adapter does not send, and the gateway checks arguments itself.
    """
    out = []
    for tool in tools:
        entry: dict[str, Any] = {"name": tool.name}
        if tool.description:
            entry["description"] = tool.description
        entry["input_schema"] = copy.deepcopy(tool.parameters)
        if tool.cache_control:
            entry["cache_control"] = tool.cache_control
        out.append(entry)
    return out


_ANTHROPIC_CHOICE = {"auto": "auto", "required": "any", "function": "tool", "none": "none"}


def tool_choice_to_anthropic(
    choice: ToolChoice | None, parallel_tool_calls: bool | None = None
) -> dict[str, Any] | None:
    """Anthropic ``tool_choice``; ``parallel_tool_calls`` becomes ``disable_parallel_tool_use``.

    Anthropic has no request-level switch for parallel calls, so it rides on
    the choice: with no choice but parallel calls off, the choice is ``auto``.
    ``{"type": "none"}`` takes no other field.
    """
    if choice is None:
        if parallel_tool_calls is None:
            return None
        choice = ToolChoice("auto")
    out: dict[str, Any] = {"type": _ANTHROPIC_CHOICE[choice.mode]}
    if choice.mode == "none":
        return out
    if choice.mode == "function":
        out["name"] = choice.name
    if parallel_tool_calls is not None:
        out["disable_parallel_tool_use"] = not parallel_tool_calls
    return out


def tools_to_gemini(tools: Sequence[Tool], *, json_schema: bool = False) -> list[dict[str, Any]]:
    """Gemini ``tools``: one entry holding every function declaration.

    ``parameters`` is Gemini's OpenAPI-subset Schema, converted by
    ``gemini_schema.to_gemini_schema``; it is left out for a tool without
    parameters, because Gemini refuses an ``OBJECT`` with no properties.
    ``json_schema=True`` sends the untouched JSON Schema as
    ``parametersJsonSchema`` instead, for models that accept it.
    """
    if not tools:
        return []
    declarations = []
    for tool in tools:
        declaration: dict[str, Any] = {"name": tool.name}
        if tool.description:
            declaration["description"] = tool.description
        if json_schema:
            declaration["parametersJsonSchema"] = copy.deepcopy(tool.parameters)
        else:
            try:
                schema = to_gemini_schema(tool.parameters)
            except SchemaReferenceError as exc:
                raise fail(
                    str(exc), param=join_path("parameters", *exc.path), tool=tool.name
                ) from None
            if schema.get("properties") or schema.get("anyOf"):
                declaration["parameters"] = schema
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


_GEMINI_MODE = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def tool_choice_to_gemini(choice: ToolChoice | None) -> dict[str, Any] | None:
    """Gemini ``toolConfig``. Forcing one function is ``ANY`` limited to that name."""
    if choice is None:
        return None
    if choice.mode == "function":
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice.name]}}
    return {"functionCallingConfig": {"mode": _GEMINI_MODE[choice.mode]}}
