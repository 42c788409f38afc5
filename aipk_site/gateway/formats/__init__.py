"""Client-facing wire formats of the gateway: OpenAI chat completions and Anthropic messages.

Each format module parses a client's request body into the kit's
provider-neutral ``ChatRequest`` (with precise 400s naming the field) and
renders the kit's ``ChatResponse`` / ``ChatChunk`` stream back in the
client's own shape, so the official SDKs work against the gateway unchanged.
Pure Python: no Django, no I/O.
"""

from .anthropic_format import (
    AnthropicStreamEncoder,
    anthropic_error_body,
    parse_messages,
    render_message,
)
from .common import (
    InputLimits,
    ParsedRequest,
    public_tool_call_id,
    response_as_chunks,
    split_tool_call_id,
)
from .openai_format import (
    OpenAIStreamEncoder,
    openai_error_body,
    parse_chat_completion,
    render_chat_completion,
)

__all__ = [
    "AnthropicStreamEncoder",
    "InputLimits",
    "OpenAIStreamEncoder",
    "ParsedRequest",
    "anthropic_error_body",
    "openai_error_body",
    "parse_chat_completion",
    "parse_messages",
    "public_tool_call_id",
    "render_chat_completion",
    "render_message",
    "response_as_chunks",
    "split_tool_call_id",
]
