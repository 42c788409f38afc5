"""Several choices (``n``) in one OpenAI-wire stream: each chunk names its choice by
``choices[].index``; the kit keeps them apart (``ChatChunk.choice``) and folds them into
``extra_choices``, usage counting them all."""

from __future__ import annotations

import json

from providers_app.kit.adapters import OpenAIAdapter
from providers_app.kit.types import ChatChunk, ResponseBuilder, ToolCallDelta, Usage
from tests.providers.kit.wire_helpers import decode, fold


def event(choices: list[dict], usage: dict | None = None) -> bytes:
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def delta(index: int, content: str | None = None, finish: str | None = None, **extra) -> dict:
    d = {"content": content, **extra} if content is not None else dict(extra)
    return {"index": index, "delta": d, "finish_reason": finish}


STREAM = [
    event([delta(0, "", role="assistant")]),
    event([delta(1, "", role="assistant")]),
    event([delta(0, "Hello ")]),
    # an event carrying two choices at once (vLLM-style servers batch them)
    event([delta(1, "Bonjour "), delta(0, "world")]),
    event([delta(1, "monde")]),
    event([delta(0, finish="stop")]),
    event([delta(1, finish="length")]),
    event([], usage={"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}),
    b"data: [DONE]\n\n",
]


def test_it_names_each_chunks_choice_one_kit_chunk_a_choice():
    chunks = decode(OpenAIAdapter(), STREAM)
    texts = [(c.choice, c.text) for c in chunks if c.text]
    assert texts == [(0, "Hello "), (1, "Bonjour "), (0, "world"), (1, "monde")]
    assert [(c.choice, c.finish_reason) for c in chunks if c.finish_reason] == [
        (0, "stop"),
        (1, "length"),
    ]
    (usage,) = [c for c in chunks if c.usage is not None]
    assert usage.choice == 0 and usage.usage is not None and usage.usage.completion_tokens == 8


def test_it_folds_the_further_choices_into_extra_choices_with_usage_on_the_first():
    reply = fold(decode(OpenAIAdapter(), STREAM))
    assert (reply.text, reply.finish_reason) == ("Hello world", "stop")
    [other] = reply.extra_choices
    assert (other.text, other.finish_reason) == ("Bonjour monde", "length")
    assert reply.usage.completion_tokens == 8 and other.usage.total_tokens == 0


def test_it_keeps_each_choices_tool_calls_apart():
    builder = ResponseBuilder()
    for choice in (0, 2, 1):
        builder.add(
            ChatChunk(
                tool_calls=[ToolCallDelta(index=0, id=f"call_{choice}", name="f", arguments="{}")],
                choice=choice,
            )
        )
    builder.add(ChatChunk(usage=Usage(prompt_tokens=1, completion_tokens=3), choice=2))
    reply = builder.build()
    assert [c.id for c in reply.tool_calls] == ["call_0"]
    # in index order, whatever order they came in; usage belongs to the whole reply
    assert [[c.id for c in extra.tool_calls] for extra in reply.extra_choices] == [
        ["call_1"],
        ["call_2"],
    ]
    assert reply.usage.completion_tokens == 3


def test_it_builds_no_extra_choices_for_a_single_choice_stream():
    reply = fold([ChatChunk(text="hi"), ChatChunk(finish_reason="stop")])
    assert reply.extra_choices == [] and reply.text == "hi"
