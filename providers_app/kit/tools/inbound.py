"""Provider-shaped tool fields → universal: OpenAI- and Anthropic-shaped requests, Gemini calls."""

from __future__ import annotations

import json
from typing import Any

from ..errors import ProtocolError
from ..types import Tool, ToolCall, ToolChoice, ToolChoiceMode, cache_control_problem
from .errors import fail, join_path, json_type
from .validation import check_tool, check_unique


def tools_from_openai(value: Any) -> list[Tool]:
    """Read an OpenAI chat-completions ``tools`` array. Only ``function`` tools exist in the kit."""
    items = _list_of_objects(value, "tools")
    tools: list[Tool] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        base = f"tools[{i}]"
        kind = item.get("type")
        if kind != "function":
            problem = (
                "is required"
                if kind is None
                else f"{kind!r} is not supported: only 'function' tools are"
            )
            raise fail(problem, param=join_path(base, "type"))
        function = item.get("function")
        if not isinstance(function, dict):
            raise fail(
                f"must be an object, got {json_type(function)}", param=join_path(base, "function")
            )
        tool = Tool(
            name=_required_string(function, "name", join_path(base, "function")),
            description=_optional(function, "description", ""),
            # no parameters: OpenAI's spelling of "takes no arguments"
            parameters=_optional(function, "parameters", {"type": "object", "properties": {}}),
            strict=_optional(function, "strict", False),
        )
        check_tool(
            tool,
            base=base,
            name_field=("function", "name"),
            description_field=("function", "description"),
            parameters_field=("function", "parameters"),
            strict_field=("function", "strict"),
        )
        check_unique(tool.name, i, seen, param=join_path(base, "function", "name"))
        tools.append(tool)
    return tools


_FROM_OPENAI_CHOICE: dict[str, ToolChoiceMode] = {
    "auto": "auto",
    "none": "none",
    "required": "required",
}


def tool_choice_from_openai(value: Any) -> ToolChoice | None:
    """Read an OpenAI ``tool_choice``: "auto", "none", "required" or a named function."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in _FROM_OPENAI_CHOICE:
            return ToolChoice(_FROM_OPENAI_CHOICE[value])
        raise fail(
            f"{value!r} is not one of 'auto', 'none', 'required'",
            param="tool_choice",
            code="invalid_tool_choice",
        )
    if not isinstance(value, dict):
        raise fail(
            f"must be a string or an object, got {json_type(value)}",
            param="tool_choice",
            code="invalid_tool_choice",
        )
    kind = value.get("type")
    if kind != "function":
        problem = (
            "is required" if kind is None else f"{kind!r} is not supported: only 'function' is"
        )
        raise fail(problem, param="tool_choice.type", code="invalid_tool_choice")
    function = value.get("function")
    if not isinstance(function, dict):
        raise fail(
            f"must be an object, got {json_type(function)}",
            param="tool_choice.function",
            code="invalid_tool_choice",
        )
    return ToolChoice.function(
        _required_string(function, "name", "tool_choice.function", code="invalid_tool_choice")
    )


def tools_from_anthropic(value: Any) -> list[Tool]:
    """Read an Anthropic Messages ``tools`` array (custom tools; server tools are refused)."""
    items = _list_of_objects(value, "tools")
    tools: list[Tool] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        base = f"tools[{i}]"
        kind = item.get("type")
        if kind not in (None, "custom"):
            raise fail(
                f"{kind!r} is not supported: only custom tools (with an input_schema) are",
                param=join_path(base, "type"),
            )
        if "input_schema" not in item:
            raise fail("is required", param=join_path(base, "input_schema"))
        schema = item["input_schema"]
        cache_control = item.get("cache_control")
        if cache_control is not None:
            problem = cache_control_problem(cache_control)
            if problem:
                raise fail(problem, param=join_path(base, "cache_control"))
        tool = Tool(
            name=_required_string(item, "name", base),
            description=_optional(item, "description", ""),
            parameters=schema,
            strict=_optional(item, "strict", False),
            cache_control=cache_control,
        )
        check_tool(tool, base=base, parameters_field=("input_schema",))
        check_unique(tool.name, i, seen, param=join_path(base, "name"))
        tools.append(tool)
    return tools


_FROM_ANTHROPIC_CHOICE: dict[str, ToolChoiceMode] = {
    "auto": "auto",
    "any": "required",
    "none": "none",
}


def tool_choice_from_anthropic(value: Any) -> tuple[ToolChoice | None, bool | None]:
    """Read an Anthropic ``tool_choice`` into ``(choice, parallel_tool_calls)``."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise fail(
            f"must be an object, got {json_type(value)}",
            param="tool_choice",
            code="invalid_tool_choice",
        )
    kind = value.get("type")
    if kind == "tool":
        choice = ToolChoice.function(
            _required_string(value, "name", "tool_choice", code="invalid_tool_choice")
        )
    elif isinstance(kind, str) and kind in _FROM_ANTHROPIC_CHOICE:
        choice = ToolChoice(_FROM_ANTHROPIC_CHOICE[kind])
    else:
        problem = (
            "is required"
            if kind is None
            else f"{kind!r} is not one of 'auto', 'any', 'tool', 'none'"
        )
        raise fail(problem, param="tool_choice.type", code="invalid_tool_choice")
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise fail(
            f"must be a boolean, got {json_type(disable)}",
            param="tool_choice.disable_parallel_tool_use",
            code="invalid_tool_choice",
        )
    return choice, None if disable is None else not disable


def _list_of_objects(value: Any, param: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(f"must be an array, got {json_type(value)}", param=param)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise fail(f"must be an object, got {json_type(item)}", param=f"{param}[{i}]")
    return value


def _required_string(
    obj: dict[str, Any], key: str, base: str, *, code: str = "invalid_tool"
) -> str:
    value = obj.get(key)
    if value is None:
        raise fail("is required", param=join_path(base, key), code=code)
    if not isinstance(value, str):
        raise fail(
            f"must be a string, got {json_type(value)}", param=join_path(base, key), code=code
        )
    return value


def _optional(obj: dict[str, Any], key: str, default: Any) -> Any:
    """The value, or ``default`` when absent or null; type checks happen in ``_check_tool``."""
    value = obj.get(key)
    return default if value is None else value


# -- tool calls in replies -----------------------------------------------------------------


def tool_call_from_gemini(part: dict[str, Any], index: int, *, scope: str = "") -> ToolCall:
    """A ``ToolCall`` from a Gemini ``functionCall`` part (or the ``functionCall`` object itself).

    Gemini usually sends no call id, and matches results back by name, so
    one is made up: ``call_<index>_<name>`` (``call_<scope>_<index>_<name>``
    when the adapter passes a scope such as the response id). ``index``
    counts calls within one reply, so ids are unique in a reply and the same
    every time the reply is parsed.
    """
    call = part.get("functionCall", part) if isinstance(part, dict) else None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
        raise ProtocolError("gemini: functionCall without a name", provider="gemini")
    args = call.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError(
            f"gemini: functionCall.args is {json_type(args)}, not an object", provider="gemini"
        )
    name = call["name"]
    call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
    if call_id is None:
        call_id = f"call_{scope}_{index}_{name}" if scope else f"call_{index}_{name}"
    return ToolCall(
        id=call_id, name=name, arguments=json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    )
