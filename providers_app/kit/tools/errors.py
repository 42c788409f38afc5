"""``ToolValidationError``, and how every tool problem names the exact field at fault."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InvalidRequestError

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


def fail(
    problem: str, *, param: str, tool: str | None = None, code: str = "invalid_tool"
) -> ToolValidationError:
    if len(problem) > _MAX_PROBLEM_CHARS:
        problem = problem[: _MAX_PROBLEM_CHARS - 3] + "..."
    prefix = f"tool {tool!r}: " if tool else ""
    where = f"{param}: " if param else ""
    return ToolValidationError(f"{prefix}{where}{problem}", param=param, tool=tool, code=code)


def join_path(base: str, *parts: str | int) -> str:
    """``join_path("tools[0]", "function", "name")`` → ``tools[0].function.name``."""
    path = base
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$-]*", part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
    return path


def json_type(value: Any) -> str:
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
