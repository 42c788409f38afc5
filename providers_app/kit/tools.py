"""The universal tool format: validation, and translation to and from each provider.

The kit describes a tool once (``types.Tool``: a name, a description and a
JSON-Schema for its arguments) and a tool choice once (``types.ToolChoice``);
this module turns them into OpenAI, Anthropic and Gemini request fields, reads
OpenAI- and Anthropic-shaped requests back into them, and checks definitions
and the arguments a model produced.

Every problem raises ``ToolValidationError`` (an ``InvalidRequestError``, so a
4xx at the API edge) whose message names the tool and the exact field, e.g.
``tool 'get_weather': tools[0].function.parameters.properties.unit.type: ...``.
Nothing here mutates the caller's dicts.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import jsonschema
import referencing.exceptions
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from jsonschema_specifications import REGISTRY as _METASCHEMAS

from .errors import InvalidRequestError, ProtocolError
from .tools_schema import (
    SchemaReferenceError,
    find_unresolvable_ref,
    forbid_unknown_properties,
    to_gemini_schema,
)
from .types import Tool, ToolCall, ToolChoice, ToolChoiceMode

__all__ = [
    "ToolValidationError",
    "validate_tool",
    "validate_tools",
    "validate_tool_choice",
    "validate_tool_arguments",
    "tools_to_openai",
    "tool_choice_to_openai",
    "tools_to_anthropic",
    "tool_choice_to_anthropic",
    "tools_to_gemini",
    "tool_choice_to_gemini",
    "tools_from_openai",
    "tool_choice_from_openai",
    "tools_from_anthropic",
    "tool_choice_from_anthropic",
    "tool_call_from_gemini",
    "arguments_to_object",
]

TOOL_NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_DEFAULT_VALIDATOR = jsonschema.Draft202012Validator
_MAX_PROBLEM_CHARS = 300


class ToolValidationError(InvalidRequestError):
    """A tool definition, tool choice or tool-call arguments that cannot be used.

    ``param`` is the path of the offending field (``tools[2].function.name``,
    ``arguments.address.zip``); ``tool`` the tool's name when known.
    """

    def __init__(
        self, message: str, *, param: str = "", tool: str | None = None, code: str = "invalid_tool"
    ) -> None:
        super().__init__(message, code=code)
        self.param = param
        self.tool = tool


def _fail(
    problem: str, *, param: str, tool: str | None = None, code: str = "invalid_tool"
) -> ToolValidationError:
    if len(problem) > _MAX_PROBLEM_CHARS:
        problem = problem[: _MAX_PROBLEM_CHARS - 3] + "..."
    prefix = f"tool {tool!r}: " if tool else ""
    where = f"{param}: " if param else ""
    return ToolValidationError(f"{prefix}{where}{problem}", param=param, tool=tool, code=code)


def _join(base: str, *parts: str | int) -> str:
    """``_join("tools[0]", "function", "name")`` → ``tools[0].function.name``."""
    path = base
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$-]*", part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
    return path


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# -- validation ----------------------------------------------------------------------


def validate_tool(tool: Tool) -> None:
    """Reject a tool the providers would refuse, with the field that is wrong."""
    _check_tool(tool, base="")


def validate_tools(tools: Sequence[Tool]) -> None:
    """Validate every tool, and reject two tools with the same name (providers do)."""
    if not isinstance(tools, (list, tuple)):
        raise _fail(f"must be an array of tools, got {_json_type(tools)}", param="tools")
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        if not isinstance(tool, Tool):
            raise _fail(f"must be a Tool, got {type(tool).__name__}", param=f"tools[{i}]")
        _check_tool(tool, base=f"tools[{i}]")
        _check_unique(tool.name, i, seen, param=_join(f"tools[{i}]", "name"))


def validate_tool_choice(choice: ToolChoice | None, tools: Sequence[Tool]) -> None:
    """Reject a choice that cannot be honoured: forcing a tool nobody declared."""
    if choice is None or choice.mode in ("auto", "none"):
        return
    if choice.mode not in ("required", "function"):
        raise _fail(
            f"unknown mode {choice.mode!r}", param="tool_choice", code="invalid_tool_choice"
        )
    if not tools:
        raise _fail(
            f"{choice.mode!r} needs at least one tool, and no tools were given",
            param="tool_choice",
            code="invalid_tool_choice",
        )
    if choice.mode == "function" and choice.name not in {tool.name for tool in tools}:
        raise _fail(
            f"names the function {choice.name!r}, but no tool has that name",
            param="tool_choice",
            code="invalid_tool_choice",
        )


def _check_unique(name: str, index: int, seen: dict[str, int], *, param: str) -> None:
    if name in seen:
        raise _fail(
            f"duplicate tool name {name!r} (already used by tools[{seen[name]}])",
            param=param,
            tool=name,
        )
    seen[name] = index


def _check_tool(
    tool: Tool,
    *,
    base: str,
    name_field: Sequence[str] = ("name",),
    description_field: Sequence[str] = ("description",),
    parameters_field: Sequence[str] = ("parameters",),
    strict_field: Sequence[str] = ("strict",),
) -> None:
    name = tool.name
    if not isinstance(name, str) or not TOOL_NAME_PATTERN.fullmatch(name):
        raise _fail(
            f"{name!r} is not a valid tool name: "
            "use 1 to 64 letters, digits, underscores or dashes",
            param=_join(base, *name_field),
        )
    if not isinstance(tool.description, str):
        raise _fail(
            f"must be a string, got {_json_type(tool.description)}",
            param=_join(base, *description_field),
            tool=name,
        )
    if not isinstance(tool.strict, bool):
        raise _fail(
            f"must be a boolean, got {_json_type(tool.strict)}",
            param=_join(base, *strict_field),
            tool=name,
        )
    params_param = _join(base, *parameters_field)
    if not isinstance(tool.parameters, dict):
        raise _fail(
            f"must be a JSON Schema object, got {_json_type(tool.parameters)}",
            param=params_param,
            tool=name,
        )
    try:
        key = _canonical(tool.parameters)
    except (TypeError, ValueError) as exc:
        raise _fail(f"is not JSON ({exc})", param=params_param, tool=name) from None
    problem = _schema_problem(key)
    if problem is not None:
        path, message = problem
        raise _fail(message, param=_join(params_param, *path), tool=name)


# keywords whose values map a *name* (not a keyword) to a schema
_NAME_MAPS = (
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
)


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, ensure_ascii=False, allow_nan=False)


@lru_cache(maxsize=512)
def _schema_problem(canonical: str) -> tuple[tuple[str | int, ...], str] | None:
    """What is wrong with a parameters schema, if anything.

    Cached: the gateway sees the same tools on every request.
    """
    schema = json.loads(canonical)
    cls = validator_for(schema, default=_DEFAULT_VALIDATOR)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = tuple(exc.absolute_path)
        if path and path[-1] == "type" and (len(path) == 1 or path[-2] not in _NAME_MAPS):
            return path, (
                f"{exc.instance!r} is not a JSON Schema type (use array, boolean, integer, "
                "null, number, object or string)"
            )
        return path, exc.message
    if schema.get("type") != "object":
        return ("type",), (
            f'must be "object", got {json.dumps(schema.get("type"))}: '
            "tool arguments are always a JSON object"
        )
    unresolvable = find_unresolvable_ref(schema)
    if unresolvable is not None:
        path, ref = unresolvable
        return path, f"cannot resolve {ref!r}: only references inside the schema are supported"
    return None


def validate_tool_arguments(tool: Tool, arguments: str | dict, *, strict: bool = False) -> dict:
    """Parse and check the arguments a model produced for ``tool``; return them as a dict.

    ``strict`` (or ``tool.strict``) also rejects fields the schema does not
    name, at every nesting level, even where the schema leaves
    ``additionalProperties`` open. ``format`` is an annotation here, as JSON
    Schema 2020-12 defines it by default, not an assertion.
    """
    parsed = _parse_arguments(arguments, tool=tool.name)
    try:
        key = _canonical(tool.parameters)
    except (TypeError, ValueError) as exc:
        raise _fail(f"is not JSON ({exc})", param="parameters", tool=tool.name) from None
    validator = _argument_validator(key, bool(strict or tool.strict))
    try:
        error = best_match(validator.iter_errors(parsed))
    except (
        referencing.exceptions.Unresolvable
    ) as exc:  # a tool that never went through validate_tool
        raise _fail(f"cannot resolve a $ref ({exc})", param="parameters", tool=tool.name) from None
    if error is not None:
        raise _fail(
            error.message,
            param=_join("arguments", *error.absolute_path),
            tool=tool.name,
            code="invalid_tool_arguments",
        )
    return parsed


@lru_cache(maxsize=512)
def _argument_validator(canonical: str, strict: bool) -> Any:
    schema = json.loads(canonical)
    cls = validator_for(schema, default=_DEFAULT_VALIDATOR)
    if strict:
        schema = forbid_unknown_properties(
            schema, use_unevaluated="unevaluatedProperties" in cls.VALIDATORS
        )
    # the metaschema registry only: a $ref to a URL is never fetched
    return cls(schema, registry=_METASCHEMAS)


def arguments_to_object(arguments: str | dict) -> dict:
    """Tool-call arguments as a dict.

    For providers that want an object: Anthropic ``tool_use.input``, Gemini ``functionCall.args``.
    """
    return _parse_arguments(arguments, tool=None)


def _parse_arguments(arguments: Any, *, tool: str | None) -> dict:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise _fail(
            f"must be a JSON string or object, got {type(arguments).__name__}",
            param="arguments",
            tool=tool,
            code="invalid_tool_arguments",
        )
    if not arguments.strip():
        return {}  # a call without arguments; some providers stream nothing for it
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            param="arguments",
            tool=tool,
            code="invalid_tool_arguments",
        ) from None
    if not isinstance(parsed, dict):
        raise _fail(
            f"must be a JSON object, got {_json_type(parsed)}",
            param="arguments",
            tool=tool,
            code="invalid_tool_arguments",
        )
    return parsed


# -- outbound: universal → provider request fields ---------------------------------------


def tools_to_openai(tools: Sequence[Tool]) -> list[dict]:
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


def tool_choice_to_openai(choice: ToolChoice | None) -> str | dict | None:
    if choice is None:
        return None
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode  # "auto" | "none" | "required"


def tools_to_anthropic(tools: Sequence[Tool]) -> list[dict]:
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
        out.append(entry)
    return out


_ANTHROPIC_CHOICE = {"auto": "auto", "required": "any", "function": "tool", "none": "none"}


def tool_choice_to_anthropic(
    choice: ToolChoice | None, parallel_tool_calls: bool | None = None
) -> dict | None:
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


def tools_to_gemini(tools: Sequence[Tool], *, json_schema: bool = False) -> list[dict]:
    """Gemini ``tools``: one entry holding every function declaration.

    ``parameters`` is Gemini's OpenAPI-subset Schema, converted by
    ``tools_schema.to_gemini_schema``; it is left out for a tool without
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
                raise _fail(
                    str(exc), param=_join("parameters", *exc.path), tool=tool.name
                ) from None
            if schema.get("properties") or schema.get("anyOf"):
                declaration["parameters"] = schema
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


_GEMINI_MODE = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def tool_choice_to_gemini(choice: ToolChoice | None) -> dict | None:
    """Gemini ``toolConfig``. Forcing one function is ``ANY`` limited to that name."""
    if choice is None:
        return None
    if choice.mode == "function":
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice.name]}}
    return {"functionCallingConfig": {"mode": _GEMINI_MODE[choice.mode]}}


# -- inbound: provider request fields → universal ---------------------------------------


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
            raise _fail(problem, param=_join(base, "type"))
        function = item.get("function")
        if not isinstance(function, dict):
            raise _fail(
                f"must be an object, got {_json_type(function)}", param=_join(base, "function")
            )
        tool = Tool(
            name=_required_string(function, "name", _join(base, "function")),
            description=_optional(function, "description", ""),
            # no parameters: OpenAI's spelling of "takes no arguments"
            parameters=_optional(function, "parameters", {"type": "object", "properties": {}}),
            strict=_optional(function, "strict", False),
        )
        _check_tool(
            tool,
            base=base,
            name_field=("function", "name"),
            description_field=("function", "description"),
            parameters_field=("function", "parameters"),
            strict_field=("function", "strict"),
        )
        _check_unique(tool.name, i, seen, param=_join(base, "function", "name"))
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
        raise _fail(
            f"{value!r} is not one of 'auto', 'none', 'required'",
            param="tool_choice",
            code="invalid_tool_choice",
        )
    if not isinstance(value, dict):
        raise _fail(
            f"must be a string or an object, got {_json_type(value)}",
            param="tool_choice",
            code="invalid_tool_choice",
        )
    kind = value.get("type")
    if kind != "function":
        problem = (
            "is required" if kind is None else f"{kind!r} is not supported: only 'function' is"
        )
        raise _fail(problem, param="tool_choice.type", code="invalid_tool_choice")
    function = value.get("function")
    if not isinstance(function, dict):
        raise _fail(
            f"must be an object, got {_json_type(function)}",
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
            raise _fail(
                f"{kind!r} is not supported: only custom tools (with an input_schema) are",
                param=_join(base, "type"),
            )
        if "input_schema" not in item:
            raise _fail("is required", param=_join(base, "input_schema"))
        schema = item["input_schema"]
        tool = Tool(
            name=_required_string(item, "name", base),
            description=_optional(item, "description", ""),
            parameters=schema,
            strict=_optional(item, "strict", False),
        )
        _check_tool(tool, base=base, parameters_field=("input_schema",))
        _check_unique(tool.name, i, seen, param=_join(base, "name"))
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
        raise _fail(
            f"must be an object, got {_json_type(value)}",
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
        raise _fail(problem, param="tool_choice.type", code="invalid_tool_choice")
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise _fail(
            f"must be a boolean, got {_json_type(disable)}",
            param="tool_choice.disable_parallel_tool_use",
            code="invalid_tool_choice",
        )
    return choice, None if disable is None else not disable


def _list_of_objects(value: Any, param: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(f"must be an array, got {_json_type(value)}", param=param)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _fail(f"must be an object, got {_json_type(item)}", param=f"{param}[{i}]")
    return value


def _required_string(obj: dict, key: str, base: str, *, code: str = "invalid_tool") -> str:
    value = obj.get(key)
    if value is None:
        raise _fail("is required", param=_join(base, key), code=code)
    if not isinstance(value, str):
        raise _fail(f"must be a string, got {_json_type(value)}", param=_join(base, key), code=code)
    return value


def _optional(obj: dict, key: str, default: Any) -> Any:
    """The value, or ``default`` when absent or null; type checks happen in ``_check_tool``."""
    value = obj.get(key)
    return default if value is None else value


# -- tool calls in replies -----------------------------------------------------------------


def tool_call_from_gemini(part: dict, index: int, *, scope: str = "") -> ToolCall:
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
            f"gemini: functionCall.args is {_json_type(args)}, not an object", provider="gemini"
        )
    name = call["name"]
    call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
    if call_id is None:
        call_id = f"call_{scope}_{index}_{name}" if scope else f"call_{index}_{name}"
    return ToolCall(
        id=call_id, name=name, arguments=json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    )
