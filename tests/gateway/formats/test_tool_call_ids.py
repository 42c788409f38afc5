"""Public tool-call ids: Gemini's thought signature survives clients that keep only the id.

Also the replay of a stored reply as chunks, which must carry the same calls.
"""

from __future__ import annotations

import random
import re
import string

import pytest

from aipk_site.gateway.formats.anthropic_format import parse_messages, render_message
from aipk_site.gateway.formats.common import (
    InputLimits,
    public_tool_call_id,
    response_as_chunks,
    split_tool_call_id,
)
from aipk_site.gateway.formats.openai_format import parse_chat_completion, render_chat_completion
from providers_app.kit.types import ChatResponse, ResponseBuilder, ToolCall, Usage

ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
LIMITS = InputLimits(max_messages=10, max_message_chars=100_000, max_tools=4)
# what Gemini sends: standard base64 (with + / =), sometimes long
GEMINI_SIGNATURE = "CiQB0e2Kb7cR+uVq/2mHkY1l9zA3X0p8V4c5QkqL9eE0m2cXx3sKdwHR7Ypk=="


@pytest.mark.parametrize("call_id", ["call_abc123", "toolu_01A9HHF5Ezy3oBrKmSgfASm9", "call_0_now"])
def test_it_leaves_ids_without_a_signature_unchanged(call_id):
    assert public_tool_call_id(call_id, None) == call_id
    assert public_tool_call_id(call_id, "") == call_id
    assert split_tool_call_id(call_id) == (call_id, None)


def test_it_embeds_the_signature_in_the_documented_shape():
    public = public_tool_call_id("call_0_now", "sig")
    assert public == "call_0_now__sig_c2ln"
    assert split_tool_call_id(public) == ("call_0_now", "sig")


@pytest.mark.parametrize(
    "signature",
    [GEMINI_SIGNATURE, "a", "ab", "abc", "ünïcödé ✓", "x" * 5000, "with\nnewline and spaces"],
)
def test_it_round_trips_signatures_using_only_anthropic_safe_characters(signature):
    public = public_tool_call_id("call_1_get_weather", signature)
    assert ANTHROPIC_ID.fullmatch(public)
    assert split_tool_call_id(public) == ("call_1_get_weather", signature)


def test_it_round_trips_random_signatures():
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "+/=_-"
    for _ in range(500):
        signature = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300)))
        call_id = "call_" + "".join(rng.choice(string.ascii_letters) for _ in range(8))
        public = public_tool_call_id(call_id, signature)
        assert ANTHROPIC_ID.fullmatch(public)
        assert split_tool_call_id(public) == (call_id, signature)


def test_it_copes_with_the_marker_inside_the_provider_id():
    # Gemini call ids are made from tool names, which may contain anything in [A-Za-z0-9_-]
    call_id = "call_0_odd__sig_name"
    assert split_tool_call_id(public_tool_call_id(call_id, "s1")) == (call_id, "s1")


@pytest.mark.parametrize(
    "foreign_id",
    ["x__sig_", "__sig_c2ln", "toolu__sig_a", "call__sig_!!!", "call__sig_c2lnA"],
)
def test_it_does_not_split_ids_it_did_not_make(foreign_id):
    assert split_tool_call_id(foreign_id) == (foreign_id, None)


def _signed_response() -> ChatResponse:
    return ChatResponse(
        id="r1",
        model="gemini-2.5-flash",
        text="Checking both.",
        tool_calls=[
            ToolCall(id="call_0_now", name="now", arguments="{}", signature=GEMINI_SIGNATURE),
            ToolCall(id="call_1_weather", name="weather", arguments='{"city": "Oslo"}'),
        ],
        finish_reason="tool_calls",
        usage=Usage(prompt_tokens=10, completion_tokens=5),
    )


def test_it_restores_signatures_sent_back_by_an_openai_client():
    rendered = render_chat_completion(_signed_response(), model="m", request_id="r", created=1)
    assistant = rendered["choices"][0]["message"]
    results = [
        {"role": "tool", "tool_call_id": call["id"], "content": "ok"}
        for call in assistant["tool_calls"]
    ]
    parsed = parse_chat_completion(
        {"model": "m", "messages": [{"role": "user", "content": "go"}, assistant, *results]},
        LIMITS,
    )
    calls = parsed.request.messages[1].tool_calls
    assert [(c.id, c.signature) for c in calls] == [
        ("call_0_now", GEMINI_SIGNATURE),
        ("call_1_weather", None),
    ]
    assert [(m.tool_call_id, m.name) for m in parsed.request.messages[2:]] == [
        ("call_0_now", "now"),
        ("call_1_weather", "weather"),
    ]


def test_it_restores_signatures_sent_back_by_an_anthropic_client():
    rendered = render_message(_signed_response(), model="m", request_id="msg_1")
    results = [
        {"type": "tool_result", "tool_use_id": block["id"], "content": "ok"}
        for block in rendered["content"]
        if block["type"] == "tool_use"
    ]
    assert all(ANTHROPIC_ID.fullmatch(r["tool_use_id"]) for r in results)
    parsed = parse_messages(
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": rendered["content"]},
                {"role": "user", "content": results},
            ],
        },
        LIMITS,
    )
    calls = parsed.request.messages[1].tool_calls
    assert [(c.id, c.signature) for c in calls] == [
        ("call_0_now", GEMINI_SIGNATURE),
        ("call_1_weather", None),
    ]
    assert [m.tool_call_id for m in parsed.request.messages[2:]] == ["call_0_now", "call_1_weather"]


def test_it_replays_a_response_as_chunks_that_fold_back_into_it():
    response = _signed_response()
    response.text = "A reply long enough to be cut into several pieces for the replay."
    chunks = response_as_chunks(response)
    texts = [c.text for c in chunks if c.text]
    assert 1 < len(texts) <= 4
    builder = ResponseBuilder(response.id, response.model)
    for chunk in chunks:
        builder.add(chunk)
    rebuilt = builder.build()
    assert rebuilt.text == response.text
    assert rebuilt.tool_calls == response.tool_calls
    assert rebuilt.finish_reason == "tool_calls"
    assert (rebuilt.usage.prompt_tokens, rebuilt.usage.completion_tokens) == (10, 5)
    # finish, then usage, last: the order live adapters use
    assert chunks[-2].finish_reason == "tool_calls" and chunks[-1].usage is not None


def test_it_replays_an_empty_response():
    chunks = response_as_chunks(ChatResponse(id="r", model="m"))
    assert [c.text for c in chunks] == ["", ""]
    assert chunks[0].finish_reason == "stop"
