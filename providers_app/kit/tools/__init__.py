"""The universal tool format: validation, and translation to and from each provider.

The kit describes a tool once (``types.Tool``: a name, a description and a
JSON-Schema for its arguments) and a tool choice once (``types.ToolChoice``);
this package turns them into OpenAI, Anthropic and Gemini request fields, reads
OpenAI- and Anthropic-shaped requests back into them, and checks definitions
and the arguments a model produced.

Every problem raises ``ToolValidationError`` (an ``InvalidRequestError``, so a
4xx at the API edge) whose message names the tool and the exact field, e.g.
``tool 'get_weather': tools[0].function.parameters.properties.unit.type: ...``.
Nothing here mutates the caller's dicts.
"""

from .errors import ToolValidationError
from .inbound import (
    tool_call_from_gemini,
    tool_choice_from_anthropic,
    tool_choice_from_openai,
    tools_from_anthropic,
    tools_from_openai,
)
from .outbound import (
    tool_choice_to_anthropic,
    tool_choice_to_gemini,
    tool_choice_to_openai,
    tools_to_anthropic,
    tools_to_gemini,
    tools_to_openai,
)
from .validation import (
    arguments_to_object,
    validate_tool,
    validate_tool_arguments,
    validate_tool_choice,
    validate_tools,
)

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
