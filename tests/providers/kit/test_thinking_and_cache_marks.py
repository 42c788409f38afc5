"""Thinking content read from each provider's wire into the kit's ThinkingPart /
ThinkingDelta, and sent back in the provider's shape (Anthropic: first in the
assistant turn, unchanged)."""

from __future__ import annotations

import json

from providers_app.kit.adapters import AnthropicAdapter, GeminiAdapter, OpenAIAdapter
from providers_app.kit.adapters.anthropic import messages_to_anthropic
from providers_app.kit.types import Message, ThinkingPart, ToolCall
from tests.providers.kit.wire_helpers import REQUEST, decode, fold


def sse(*events: tuple[str, dict]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events
    )


# The event grammar of Anthropic's documented thinking stream: a thinking block (empty at
# its start, thinking_delta pieces, one signature_delta), a redacted block whole in its
# start, then a tool_use block.
ANTHROPIC_THINKING_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [],
        "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
        "type": "thinking", "thinking": "", "signature": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "thinking_delta", "thinking": "check."}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "signature_delta", "signature": "EqQBCgIYAh=="}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1,
                             "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                       "usage": {"output_tokens": 40}}),
    ("message_stop", {"type": "message_stop"}),
)  # fmt: skip

EXPECTED = [
    ThinkingPart(text="Let me check.", signature="EqQBCgIYAh=="),
    ThinkingPart(data="EmwKAhgB"),
]


def test_it_reads_anthropic_thinking_and_redacted_blocks_from_a_stream():
    reply = fold(decode(AnthropicAdapter(), [ANTHROPIC_THINKING_STREAM]))
    assert reply.thinking == EXPECTED
    assert [c.name for c in reply.tool_calls] == ["get_weather"]
    assert reply.text == ""


def test_it_reads_anthropic_thinking_and_redacted_blocks_from_a_reply():
    body = {
        "id": "msg_1",
        "model": "claude",
        "stop_reason": "tool_use",
        "content": [
            {"type": "thinking", "thinking": "Let me check.", "signature": "EqQBCgIYAh=="},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 40},
    }
    reply = AnthropicAdapter().parse_chat(body, REQUEST)
    assert reply.thinking == EXPECTED


def test_it_sends_thinking_back_first_and_unchanged_in_the_assistant_turn():
    turn = Message(
        role="assistant",
        content="Checking.",
        tool_calls=[ToolCall(id="toolu_1", name="get_weather", arguments="{}")],
        thinking=EXPECTED,
    )
    _, messages = messages_to_anthropic([Message(role="user", content="hi"), turn])
    assert messages[1]["content"] == [
        {"type": "thinking", "thinking": "Let me check.", "signature": "EqQBCgIYAh=="},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    ]


def test_it_puts_cache_control_on_the_block_it_was_given_for():
    system, messages = messages_to_anthropic(
        [
            Message(role="system", content="long", cache_control={"type": "ephemeral"}),
            Message(role="system", content="short"),
            Message(role="user", content="hi", cache_control={"type": "ephemeral", "ttl": "1h"}),
        ]
    )
    assert system == [
        {"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "short"},
    ]
    assert messages[0]["content"] == [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]


def test_it_reads_an_openai_wire_providers_reasoning_content():
    body = {
        "id": "c1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "4", "reasoning_content": "2+2"},
                "finish_reason": "stop",
            }
        ],
    }
    reply = OpenAIAdapter().parse_chat(body, REQUEST)
    assert reply.thinking == [ThinkingPart(text="2+2")]
    stream = (
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"reasoning":"2+2"}}]}\n\n'
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"4"},'
        b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )
    folded = fold(decode(OpenAIAdapter(), [stream]))
    assert (folded.thinking, folded.text) == ([ThinkingPart(text="2+2")], "4")


def test_it_reads_gemini_thought_parts_as_thinking_not_text():
    body = {
        "responseId": "r1",
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Weighing it.", "thought": True, "thoughtSignature": "c2ln"},
                        {"text": "Answer."},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
    }
    reply = GeminiAdapter().parse_chat(body, REQUEST)
    assert reply.text == "Answer."
    assert reply.thinking == [ThinkingPart(text="Weighing it.", signature="c2ln")]


def test_it_sends_cache_control_on_content_parts_to_openrouter_only():
    from providers_app.kit.adapters import OpenRouterAdapter
    from providers_app.kit.types import ChatRequest

    mark = {"type": "ephemeral"}
    request = ChatRequest(
        model="anthropic/claude-sonnet-4",
        messages=[
            Message(role="system", content="long", cache_control=mark),
            Message(role="user", content="hi"),
        ],
    )
    routed = OpenRouterAdapter().chat_body(request, stream=False)
    assert routed["messages"][0]["content"] == [
        {"type": "text", "text": "long", "cache_control": mark}
    ]
    # OpenAI caches prompt prefixes by itself: nothing to mark
    direct = OpenAIAdapter().chat_body(request, stream=False)
    assert direct["messages"][0]["content"] == "long"


def test_it_leaves_out_unsigned_reasoning_that_anthropic_could_never_verify():
    turn = Message(
        role="assistant",
        content="Done.",
        thinking=[ThinkingPart(text="from another provider"), *EXPECTED],
    )
    _, messages = messages_to_anthropic([Message(role="user", content="hi"), turn])
    assert [b["type"] for b in messages[1]["content"]] == ["thinking", "redacted_thinking", "text"]
    assert messages[1]["content"][0]["signature"] == "EqQBCgIYAh=="
