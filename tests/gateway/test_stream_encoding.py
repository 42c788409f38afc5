"""The OpenAI stream encoder's bytes for text chunks: the fast path for a content-only
chunk renders exactly what the general path renders for the same event."""

from __future__ import annotations

import json

from aipk_site.gateway.formats.openai_format import OpenAIStreamEncoder
from providers_app.kit.types import ChatChunk, ToolCallDelta, Usage


def event(model: str, content: str) -> bytes:
    payload = {
        "id": "chatcmpl-gw1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": model,
        "choices": [
            {"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": None}
        ],
    }
    return (
        b"data: "
        + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n\n"
    )


def test_it_renders_each_text_chunk_as_one_content_event_with_the_text_as_json():
    encoder = OpenAIStreamEncoder("gpt-4o", "chatcmpl-gw1", 7, False)
    first = encoder.chunk(ChatChunk(text="Hello"))
    assert first == event("gpt-4o", "").replace(
        b'"content":""', b'"role":"assistant","content":""'
    ) + event("gpt-4o", "Hello")
    for text in [" wörld 🌍", 'a "quoted"\nline\\', "\u2028\ue000\x00"]:
        assert encoder.chunk(ChatChunk(text=text)) == event("gpt-4o", text)


def test_it_renders_text_the_same_when_the_model_name_holds_the_placeholder_character():
    encoder = OpenAIStreamEncoder("odd\ue000model", "chatcmpl-gw1", 7, False)
    encoder.chunk(ChatChunk(text="a"))
    assert encoder.chunk(ChatChunk(text="b")) == event("odd\ue000model", "b")


def test_it_still_renders_tool_calls_finish_and_usage_after_text_chunks():
    encoder = OpenAIStreamEncoder("gpt-4o", "chatcmpl-gw1", 7, True)
    out = encoder.chunk(ChatChunk(text="a")) + encoder.chunk(ChatChunk(text="b"))
    out += encoder.chunk(
        ChatChunk(tool_calls=[ToolCallDelta(index=0, id="call_1", name="f", arguments="{}")])
    )
    out += encoder.chunk(ChatChunk(text="late", finish_reason="stop", raw_finish_reason="stop"))
    out += encoder.chunk(ChatChunk(text="after the finish"))
    out += encoder.finish(Usage(prompt_tokens=3, completion_tokens=2))
    events = [
        json.loads(line[6:]) for line in out.split(b"\n\n") if line and line != b"data: [DONE]"
    ]
    deltas = [e["choices"][0]["delta"] if e["choices"] else None for e in events]
    assert deltas[:3] == [{"role": "assistant", "content": ""}, {"content": "a"}, {"content": "b"}]
    assert deltas[3]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert deltas[4] == {"content": "late"}
    # text after the finish reason is not lost: the finish chunk waits for the end
    assert deltas[5] == {"content": "after the finish"}
    assert [e["choices"][0]["finish_reason"] for e in events[:6]] == [None] * 6
    assert events[6]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[7]["usage"]["total_tokens"] == 5
    assert len(events) == 8  # nothing after the finish but the usage
    assert out.endswith(b"data: [DONE]\n\n")


def test_it_keeps_the_first_finish_reason_and_sends_one_finish_chunk():
    encoder = OpenAIStreamEncoder("gpt-4o", "chatcmpl-gw1", 7, False)
    out = encoder.chunk(ChatChunk(text="cut", finish_reason="length", raw_finish_reason="length"))
    out += encoder.chunk(ChatChunk(text=" short", finish_reason="stop", raw_finish_reason="stop"))
    out += encoder.finish()
    events = [
        json.loads(line[6:]) for line in out.split(b"\n\n") if line and line != b"data: [DONE]"
    ]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert text == "cut short"
    assert [e["choices"][0]["finish_reason"] for e in events] == [None, None, None, "length"]
