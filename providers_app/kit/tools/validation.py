"""Checking tool definitions, tool choices, and the arguments a model produced.

Cached by the schema's canonical JSON: the gateway sees the same tools on
every request.
"""

from __future__ import annotations

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

from ..types import Tool, ToolChoice
from .errors import fail, join_path, json_type
from .schema import find_unresolvable_ref, forbid_unknown_properties

TOOL_NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_DEFAULT_VALIDATOR = jsonschema.Draft202012Validator


def validate_tool(tool: Tool) -> None:
    """Reject a tool the providers would refuse, with the field that is wrong."""
    check_tool(tool, base="")


def validate_tools(tools: Sequence[Tool]) -> None:
    """Validate every tool, and reject two tools with the same name (providers do)."""
    if not isinstance(tools, (list, tuple)):
        raise fail(f"must be an array of tools, got {json_type(tools)}", param="tools")
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        if not isinstance(tool, Tool):
            raise fail(f"must be a Tool, got {type(tool).__name__}", param=f"tools[{i}]")
        check_tool(tool, base=f"tools[{i}]")
        check_unique(tool.name, i, seen, param=join_path(f"tools[{i}]", "name"))


def validate_tool_choice(choice: ToolChoice | None, tools: Sequence[Tool]) -> None:
    """Reject a choice that cannot be honoured: forcing a tool nobody declared."""
    if choice is None or choice.mode in ("auto", "none"):
        return
    if choice.mode not in ("required", "function"):
        raise fail(f"unknown mode {choice.mode!r}", param="tool_choice", code="invalid_tool_choice")
    if not tools:
        raise fail(
            f"{choice.mode!r} needs at least one tool, and no tools were given",
            param="tool_choice",
            code="invalid_tool_choice",
        )
    if choice.mode == "function" and choice.name not in {tool.name for tool in tools}:
        raise fail(
            f"names the function {choice.name!r}, but no tool has that name",
            param="tool_choice",
            code="invalid_tool_choice",
        )


def check_unique(name: str, index: int, seen: dict[str, int], *, param: str) -> None:
    if name in seen:
        raise fail(
            f"duplicate tool name {name!r} (already used by tools[{seen[name]}])",
            param=param,
            tool=name,
        )
    seen[name] = index


def check_tool(
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
        raise fail(
            f"{name!r} is not a valid tool name: "
            "use 1 to 64 letters, digits, underscores or dashes",
            param=join_path(base, *name_field),
        )
    if not isinstance(tool.description, str):
        raise fail(
            f"must be a string, got {json_type(tool.description)}",
            param=join_path(base, *description_field),
            tool=name,
        )
    if not isinstance(tool.strict, bool):
        raise fail(
            f"must be a boolean, got {json_type(tool.strict)}",
            param=join_path(base, *strict_field),
            tool=name,
        )
    params_param = join_path(base, *parameters_field)
    if not isinstance(tool.parameters, dict):
        raise fail(
            f"must be a JSON Schema object, got {json_type(tool.parameters)}",
            param=params_param,
            tool=name,
        )
    try:
        key = _canonical(tool.parameters)
    except (TypeError, ValueError) as exc:
        raise fail(f"is not JSON ({exc})", param=params_param, tool=name) from None
    problem = _schema_problem(key)
    if problem is not None:
        path, message = problem
        raise fail(message, param=join_path(params_param, *path), tool=name)


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


def validate_tool_arguments(
    tool: Tool, arguments: str | dict[str, Any], *, strict: bool = False
) -> dict[str, Any]:
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
        raise fail(f"is not JSON ({exc})", param="parameters", tool=tool.name) from None
    validator = _argument_validator(key, bool(strict or tool.strict))
    try:
        error = best_match(validator.iter_errors(parsed))
    except (
        referencing.exceptions.Unresolvable
    ) as exc:  # a tool that never went through validate_tool
        raise fail(f"cannot resolve a $ref ({exc})", param="parameters", tool=tool.name) from None
    if error is not None:
        raise fail(
            error.message,
            param=join_path("arguments", *error.absolute_path),
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


def arguments_to_object(arguments: str | dict[str, Any]) -> dict[str, Any]:
    """Tool-call arguments as a dict.

    For providers that want an object: Anthropic ``tool_use.input``, Gemini ``functionCall.args``.
    """
    return _parse_arguments(arguments, tool=None)


def _parse_arguments(arguments: Any, *, tool: str | None) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise fail(
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
        raise fail(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            param="arguments",
            tool=tool,
            code="invalid_tool_arguments",
        ) from None
    if not isinstance(parsed, dict):
        raise fail(
            f"must be a JSON object, got {json_type(parsed)}",
            param="arguments",
            tool=tool,
            code="invalid_tool_arguments",
        )
    return parsed
