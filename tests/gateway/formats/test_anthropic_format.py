"""Anthropic Messages format: parsing client bodies, rendering replies and streams.

Rendered streams are compared with the anthropic SDK's recorded fixtures in
tests/fixtures/wire and read back by the official ``anthropic`` SDK (its
``messages.stream`` helper and accumulator) through an in-memory transport.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import anthropic
import httpx2
import pytest

from aipk_site.gateway.formats.anthropic_format import (
    AnthropicStreamEncoder,
    anthropic_error_body,
    parse_messages,
    render_message,
)
from aipk_site.gateway.formats.common import InputLimits, public_tool_call_id, response_as_chunks
from aipk_site.infra.errors import (
    AipkError,
    AuthenticationFailed,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    UpstreamError,
)
from providers_app.kit.types import (
    ChatChunk,
    ChatResponse,
    Message,
    Reasoning,
    ThinkingDelta,
    ThinkingPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)

WIRE = Path(__file__).resolve().parents[2] / "fixtures" / "wire"
LIMITS = InputLimits(max_messages=50, max_message_chars=10_000, max_tools=8)
SIGNATURE = "CikB0e2Kb+/p9w==\nopaque"

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME_TOOL = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}


def body(**overrides):
    base = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    base.update(overrides)
    return base


def realistic_chunks() -> list[ChatChunk]:
    """Text, then two parallel tool calls streamed in fragments (one with a signature)."""
    return [
        ChatChunk(text="I'll check "),
        ChatChunk(text="Paris — ☀️?"),
        ChatChunk(
            tool_calls=[
                ToolCallDelta(
                    index=0, id="call_w", name="get_weather", arguments="", signature=SIGNATURE
                )
            ]
        ),
        ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments='{"city": "Pa')]),
        ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments='ris"}')]),
        ChatChunk(tool_calls=[ToolCallDelta(index=1, id="call_t", name="get_time", arguments="")]),
        ChatChunk(tool_calls=[ToolCallDelta(index=1, arguments="{}")]),
        ChatChunk(finish_reason="tool_calls", raw_finish_reason="tool_use"),
        ChatChunk(usage=Usage(prompt_tokens=377, completion_tokens=65)),
    ]


def encode(chunks, *, usage=None) -> bytes:
    encoder = AnthropicStreamEncoder("claude-sonnet-4-5", "msg_gw1", 350)
    return b"".join(encoder.chunk(c) for c in chunks) + encoder.finish(usage)


def client_returning(payload: bytes, *, status=200, content_type="text/event-stream"):
    def handler(request):
        return httpx2.Response(status, content=payload, headers={"content-type": content_type})

    return anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url="http://gateway.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


# -- parsing ---------------------------------------------------------------------------------


def test_it_parses_a_minimal_body():
    parsed = parse_messages(body(), LIMITS)
    assert parsed.request.model == "claude-sonnet-4-5"
    assert parsed.request.max_tokens == 1024
    assert parsed.request.messages == [Message(role="user", content="Hi")]
    assert parsed.stream is False
    # Anthropic streams always carry usage
    assert parsed.include_usage is True
    assert parsed.cache is None


def test_it_reads_every_supported_field():
    parsed = parse_messages(
        body(
            system=[
                {"type": "text", "text": "You are terse."},
                {
                    "type": "text",
                    "text": "Answer in French.",
                    "cache_control": {"type": "ephemeral"},
                },
            ],
            messages=[{"role": "user", "content": [{"type": "text", "text": "Salut"}]}],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            stop_sequences=["###"],
            temperature=0.3,
            top_p=0.9,
            top_k=40,
            metadata={"user_id": "u-1"},
            stream=True,
            aipk={"cache": True},
            # Anthropic's own rule: the budget stays below max_tokens
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 2000},
        ),
        LIMITS,
    )
    req = parsed.request
    # a system block with a cache breakpoint keeps its own message (and its mark)
    assert req.messages == [
        Message(role="system", content="You are terse."),
        Message(role="system", content="Answer in French.", cache_control={"type": "ephemeral"}),
        Message(role="user", content="Salut"),
    ]
    assert [t.name for t in req.tools] == ["get_weather"]
    assert req.tools[0].parameters == WEATHER_TOOL["input_schema"]
    assert req.tool_choice == ToolChoice.function("get_weather")
    assert req.parallel_tool_calls is False
    assert req.stop == ["###"]
    assert (req.temperature, req.top_p, req.user) == (0.3, 0.9, "u-1")
    assert (req.top_k, req.reasoning) == (40, Reasoning(budget_tokens=2000))
    assert req.wire_format == "anthropic"
    assert (parsed.stream, parsed.cache) == (True, True)


@pytest.mark.parametrize(
    ("choice", "mode"), [("auto", "auto"), ("any", "required"), ("none", "none")]
)
def test_it_reads_tool_choice_modes(choice, mode):
    parsed = parse_messages(body(tools=[WEATHER_TOOL], tool_choice={"type": choice}), LIMITS)
    assert parsed.request.tool_choice == ToolChoice(mode)
    assert parsed.request.parallel_tool_calls is None


def test_it_parses_a_two_turn_tool_conversation_and_restores_signatures():
    weather_id = public_tool_call_id("call_w", SIGNATURE)
    parsed = parse_messages(
        body(
            system="Be helpful.",
            messages=[
                {"role": "user", "content": "Weather and time in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "...", "signature": "abc"},
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": weather_id,
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                        {"type": "tool_use", "id": "toolu_t", "name": "get_time", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Here you go."},
                        {"type": "tool_result", "tool_use_id": weather_id, "content": "sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_t",
                            "content": [{"type": "text", "text": "clock broken"}],
                            "is_error": True,
                        },
                    ],
                },
                {"role": "assistant", "content": "Sunny; the time is unknown."},
                {"role": "user", "content": "Thanks"},
            ],
            tools=[WEATHER_TOOL, TIME_TOOL],
        ),
        LIMITS,
    )
    assert parsed.request.messages == [
        Message(role="system", content="Be helpful."),
        Message(role="user", content="Weather and time in Paris?"),
        Message(
            role="assistant",
            content="Checking.",
            tool_calls=[
                ToolCall(
                    id="call_w",
                    name="get_weather",
                    arguments='{"city": "Paris"}',
                    signature=SIGNATURE,
                ),
                ToolCall(id="toolu_t", name="get_time", arguments="{}"),
            ],
            # kept, to go back first in the turn to the provider that signed it
            thinking=[ThinkingPart(text="...", signature="abc")],
        ),
        # results come before the text of the same turn, one tool message each, in order
        Message(role="tool", content="sunny", tool_call_id="call_w", name="get_weather"),
        Message(
            role="tool", content="Error: clock broken", tool_call_id="toolu_t", name="get_time"
        ),
        Message(role="user", content="Here you go."),
        Message(role="assistant", content="Sunny; the time is unknown."),
        Message(role="user", content="Thanks"),
    ]


def test_it_allows_an_empty_final_assistant_prefill():
    parsed = parse_messages(
        body(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]),
        LIMITS,
    )
    assert parsed.request.messages[-1] == Message(role="assistant", content="")


def _with(path, value):
    b = body(
        messages=[
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}],
            },
        ],
        tools=[copy.deepcopy(WEATHER_TOOL)],
    )
    target = b
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return b


_DELETE = object()

INVALID = [
    (["model"], _DELETE, "model", "required"),
    (["model"], ["claude"], "model", "string"),
    (["max_tokens"], _DELETE, "max_tokens", "required"),
    (["max_tokens"], 0, "max_tokens", "between 1 and 1000000"),
    (["max_tokens"], "lots", "max_tokens", "integer"),
    (["max_tokens"], True, "max_tokens", "integer"),
    (["messages"], _DELETE, "messages", "required"),
    (["messages"], {}, "messages", "array"),
    (["messages"], [], "messages", "at least one"),
    (["messages", 0], "hi", "messages[0]", "object"),
    (["messages", 0, "role"], "system", "messages[0].role", "'system'"),
    (["messages", 0, "role"], _DELETE, "messages[0].role", "required"),
    (["messages", 0, "content"], _DELETE, "messages[0].content", "required"),
    (["messages", 0, "content"], 5, "messages[0].content", "string"),
    (["messages", 0, "content"], [], "messages[0].content", "empty"),
    (["messages", 0, "content"], "", "messages[0].content", "empty"),
    (
        ["messages", 0, "content"],
        [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}],
        "messages[0].content[0].source.data",
        "base64",
    ),
    (
        ["messages", 0, "content"],
        [{"type": "document", "source": {}}],
        "messages[0].content[0].source.type",
        "required",
    ),
    (["messages", 0, "content"], [{"type": "audio"}], "messages[0].content[0].type", "'audio'"),
    (["messages", 0, "content"], [{"type": "text"}], "messages[0].content[0].text", "string"),
    (
        ["messages", 0, "content"],
        [{"type": "tool_use", "id": "t", "name": "n", "input": {}}],
        "messages[0].content[0].type",
        "assistant",
    ),
    (["messages", 1, "content", 0, "id"], _DELETE, "messages[1].content[0].id", "required"),
    (["messages", 1, "content", 0, "name"], 3, "messages[1].content[0].name", "string"),
    (["messages", 1, "content", 0, "input"], "{}", "messages[1].content[0].input", "object"),
    (
        ["messages", 1, "content"],
        [{"type": "tool_result", "tool_use_id": "x"}],
        "messages[1].content[0].type",
        "user",
    ),
    (
        ["messages", 2, "content", 0, "tool_use_id"],
        _DELETE,
        "messages[2].content[0].tool_use_id",
        "required",
    ),
    (
        ["messages", 2, "content", 0, "content"],
        [{"type": "image", "source": {}}],
        "messages[2].content[0].content[0].source.type",
        "required",
    ),
    (
        ["messages", 2, "content", 0, "cache_control"],
        {"type": "persistent"},
        "messages[2].content[0].cache_control",
        "ephemeral",
    ),
    (
        ["system"],
        [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1d"}}],
        "system[0].cache_control",
        "'5m' or '1h'",
    ),
    (
        ["messages", 1, "content"],
        [{"type": "thinking", "thinking": "hm"}],
        "messages[1].content[0].signature",
        "string",
    ),
    (
        ["messages", 1, "content"],
        [{"type": "redacted_thinking"}],
        "messages[1].content[0].data",
        "string",
    ),
    (
        ["messages", 0, "content"],
        [{"type": "thinking", "thinking": "hm", "signature": "s"}],
        "messages[0].content[0].type",
        "assistant",
    ),
    (["messages", 2, "content", 0, "content"], 12, "messages[2].content[0].content", "string"),
    (
        ["messages", 2, "content", 0, "is_error"],
        "yes",
        "messages[2].content[0].is_error",
        "boolean",
    ),
    (["system"], 12, "system", "string"),
    (["system"], [{"type": "image"}], "system[0].type", "user messages only"),
    (["system"], [{"type": "text", "text": None}], "system[0].text", "string"),
    (["temperature"], 1.5, "temperature", "between 0 and 1"),
    (["temperature"], "warm", "temperature", "number"),
    (["top_p"], -1, "top_p", "between 0 and 1"),
    (["top_k"], -1, "top_k", "between 0 and 2147483647"),
    (["top_k"], 1.5, "top_k", "must be an integer"),
    (["stop_sequences"], "END", "stop_sequences", "array"),
    (["stop_sequences"], ["END", 3], "stop_sequences[1]", "string"),
    (["stop_sequences"], [""], "stop_sequences[0]", "empty"),
    (["metadata"], "u", "metadata", "object"),
    (["metadata"], {"user_id": 7}, "metadata.user_id", "string"),
    (["stream"], 1, "stream", "boolean"),
    (["aipk"], {"cache": 1}, "aipk.cache", "boolean"),
    (["tools"], "all", "tools", "array"),
    (["tools", 0, "input_schema"], _DELETE, "tools[0].input_schema", "required"),
    (["tools", 0, "input_schema"], {"type": "string"}, "tools[0].input_schema.type", "object"),
    (["tools", 0, "name"], "has space", "tools[0].name", "not a valid tool name"),
    (["tools", 0, "type"], "web_search_20250305", "tools[0].type", "not supported"),
    (["tool_choice"], {"type": "tool", "name": "get_time"}, "tool_choice", "get_time"),
    (["tool_choice"], {"type": "maybe"}, "tool_choice.type", "'maybe'"),
    (["tool_choice"], "auto", "tool_choice", "object"),
    (
        ["tool_choice"],
        {"type": "auto", "disable_parallel_tool_use": "yes"},
        "tool_choice.disable_parallel_tool_use",
        "boolean",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "param", "words"), INVALID, ids=[f"{c[2]}:{c[3]}" for c in INVALID]
)
def test_it_names_the_field_of_every_validation_error(path, value, param, words):
    with pytest.raises(InvalidRequest) as info:
        parse_messages(_with(path, value), LIMITS)
    err = info.value
    assert err.status == 400
    assert err.param == param
    assert words in err.message
    assert anthropic_error_body(err)["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("payload", [[{"model": "x"}], "hello", 3, None])
def test_it_refuses_a_body_that_is_not_an_object(payload):
    with pytest.raises(InvalidRequest) as info:
        parse_messages(payload, LIMITS)
    assert info.value.param == "body"


def test_it_enforces_the_input_limits():
    small = InputLimits(max_messages=2, max_message_chars=5, max_tools=1)
    with pytest.raises(InvalidRequest) as info:
        parse_messages(body(messages=[{"role": "user", "content": "a"}] * 3), small)
    assert info.value.param == "messages"
    with pytest.raises(InvalidRequest) as info:
        parse_messages(body(messages=[{"role": "user", "content": "123456"}]), small)
    assert info.value.param == "messages[0].content"
    with pytest.raises(InvalidRequest) as info:
        parse_messages(body(system="too long a system prompt"), small)
    assert info.value.param == "system"
    with pytest.raises(InvalidRequest) as info:
        parse_messages(body(tools=[WEATHER_TOOL, TIME_TOOL]), small)
    assert info.value.param == "tools"


# -- rendering -------------------------------------------------------------------------------


def tool_response(**overrides) -> ChatResponse:
    fields = dict(
        id="upstream-1",
        model="gemini-2.5-flash",
        text="",
        tool_calls=[
            ToolCall(
                id="call_w",
                name="get_weather",
                arguments='{"location": "San Francisco, CA", "units": "f"}',
                signature=SIGNATURE,
            )
        ],
        finish_reason="tool_calls",
        usage=Usage(prompt_tokens=656, completion_tokens=74),
    )
    fields.update(overrides)
    return ChatResponse(**fields)


def test_it_renders_a_tool_use_message_like_the_recorded_one():
    rendered = render_message(tool_response(), model="claude-haiku-4-5", request_id="msg_gw1")
    recorded = json.loads((WIRE / "anthropic_messages_tool_use.json").read_text())
    assert set(rendered) == set(recorded)
    assert set(rendered["content"][0]) == set(recorded["content"][0]) - {"caller"}
    assert set(rendered["usage"]) <= set(recorded["usage"])
    assert rendered == {
        "id": "msg_gw1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [
            {
                "type": "tool_use",
                "id": public_tool_call_id("call_w", SIGNATURE),
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "units": "f"},
            }
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 656,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 74,
        },
    }


def test_it_renders_text_before_tool_use_and_survives_unparsable_arguments():
    rendered = render_message(
        tool_response(
            text="Let me look.",
            tool_calls=[ToolCall(id="t1", name="f", arguments='{"a": ')],
        ),
        model="m",
        request_id="msg_1",
    )
    assert rendered["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
    ]


def test_it_renders_an_empty_reply_as_one_empty_text_block():
    rendered = render_message(
        ChatResponse(id="u", model="m", finish_reason="stop"), model="m", request_id="msg_1"
    )
    assert rendered["content"] == [{"type": "text", "text": ""}]
    assert rendered["stop_reason"] == "end_turn"


@pytest.mark.parametrize(
    ("kit", "raw", "has_calls", "stop_reason"),
    [
        ("stop", "end_turn", False, "end_turn"),
        ("stop", "stop_sequence", False, "stop_sequence"),
        ("stop", "STOP", True, "tool_use"),
        ("length", None, False, "max_tokens"),
        ("tool_calls", None, True, "tool_use"),
        ("content_filter", "SAFETY", False, "refusal"),
        ("malformed_tool_call", None, False, "end_turn"),
        ("error", None, False, "end_turn"),
        (None, None, False, "end_turn"),
    ],
)
def test_it_maps_finish_reasons(kit, raw, has_calls, stop_reason):
    response = tool_response(finish_reason=kit, raw_finish_reason=raw, text="x")
    if not has_calls:
        response.tool_calls = []
    assert render_message(response, model="m", request_id="r")["stop_reason"] == stop_reason


def test_it_renders_messages_the_sdk_parses():
    rendered = render_message(tool_response(text="Checking."), model="m", request_id="msg_gw1")
    client = client_returning(json.dumps(rendered).encode(), content_type="application/json")
    message = client.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    assert message.content[0].text == "Checking."
    assert message.content[1].id == public_tool_call_id("call_w", SIGNATURE)
    assert message.content[1].input == {"location": "San Francisco, CA", "units": "f"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (656, 74)


@pytest.mark.parametrize(
    ("err", "kind", "sdk_error"),
    [
        (InvalidRequest("bad"), "invalid_request_error", anthropic.BadRequestError),
        (AuthenticationFailed("who?"), "authentication_error", anthropic.AuthenticationError),
        (PermissionDenied("no"), "permission_error", anthropic.PermissionDeniedError),
        (NotFound("no model"), "not_found_error", anthropic.NotFoundError),
        (PayloadTooLarge("big"), "request_too_large", anthropic.APIStatusError),
        (LimitExceeded("slow down", code="key_rpm"), "rate_limit_error", anthropic.RateLimitError),
        (UpstreamError("boom", status=502), "api_error", anthropic.InternalServerError),
        (UpstreamError("busy", status=503), "overloaded_error", anthropic.InternalServerError),
        (UpstreamError("slow", status=504), "timeout_error", anthropic.InternalServerError),
        (UpstreamError("no credit", status=402), "billing_error", anthropic.APIStatusError),
        (UpstreamError("very busy", status=529), "overloaded_error", anthropic.InternalServerError),
    ],
)
def test_it_renders_errors_in_anthropics_envelope(err: AipkError, kind, sdk_error):
    envelope = anthropic_error_body(err)
    assert envelope == {
        "type": "error",
        "error": {"type": kind, "message": err.message, "code": err.code},
    }
    recorded = json.loads((WIRE / "anthropic_error_529_overloaded.json").read_text())
    assert set(envelope) == set(recorded)
    assert set(recorded["error"]) <= set(envelope["error"])
    client = client_returning(
        json.dumps(envelope).encode(), status=err.status, content_type="application/json"
    )
    with pytest.raises(sdk_error) as info:
        client.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == err.status
    assert info.value.body["error"]["type"] == kind


# -- streaming -------------------------------------------------------------------------------


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    """``(event name, parsed data)`` for every event; the fixtures lack a final blank line."""
    out = []
    for block in raw.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        lines = block.splitlines()
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: ")
        name, data = lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])
        assert data["type"] == name
        out.append((name, data))
    return out


_LETTERS = {
    "message_start": "M",
    "content_block_start": "S",
    "content_block_delta": "d",
    "content_block_stop": "X",
    "message_delta": "D",
    "message_stop": "Z",
    "ping": "p",
    "error": "E",
}
GRAMMAR = re.compile(r"Mp?(Sp?d*X)*DZ")


def grammar_of(events) -> str:
    return "".join(_LETTERS[name] for name, _ in events)


def check_block_indexes(events) -> None:
    """Blocks are numbered 0, 1, 2... and every delta and stop names the open block."""
    open_index, next_index = None, 0
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None


@pytest.mark.parametrize(
    "fixture", ["anthropic_messages_stream_text.sse", "anthropic_messages_stream_tool_use.sse"]
)
def test_it_streams_in_the_grammar_of_the_recorded_streams(fixture):
    recorded = sse_events((WIRE / fixture).read_bytes())
    ours = sse_events(encode(realistic_chunks()))
    assert GRAMMAR.fullmatch(grammar_of(recorded))
    assert GRAMMAR.fullmatch(grammar_of(ours))
    assert grammar_of(ours) == "MSddXSddXSdXDZ"
    check_block_indexes(recorded)
    check_block_indexes(ours)
    recorded_by_name = dict(recorded)
    ours_by_name = dict(ours)
    message = ours_by_name["message_start"]["message"]
    assert set(message) == set(recorded_by_name["message_start"]["message"])
    assert set(ours_by_name["message_delta"]["delta"]) == set(
        recorded_by_name["message_delta"]["delta"]
    )
    assert "output_tokens" in ours_by_name["message_delta"]["usage"]


def test_it_opens_a_block_per_tool_call_like_the_recorded_tool_stream():
    recorded = sse_events((WIRE / "anthropic_messages_stream_tool_use.sse").read_bytes())
    ours = sse_events(encode(realistic_chunks()))
    recorded_tool_start = next(
        d
        for n, d in recorded
        if n == "content_block_start" and d["content_block"]["type"] == "tool_use"
    )
    tool_starts = [
        d["content_block"] for n, d in ours if n == "content_block_start" and d["index"] > 0
    ]
    for block in tool_starts:
        assert set(block) == set(recorded_tool_start["content_block"]) - {"caller"}
        assert block["input"] == {}
    assert [(b["id"], b["name"]) for b in tool_starts] == [
        (public_tool_call_id("call_w", SIGNATURE), "get_weather"),
        ("call_t", "get_time"),
    ]
    deltas = [d["delta"] for n, d in ours if n == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"text_delta", "input_json_delta"}
    start = dict(ours)["message_start"]["message"]
    assert start["usage"] == {
        "input_tokens": 350,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1,
    }
    assert start["id"] == "msg_gw1" and start["content"] == []


def test_it_streams_what_the_sdk_reassembles():
    client = client_returning(encode(realistic_chunks()))
    with client.messages.stream(
        model="m", max_tokens=100, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "I'll check Paris — ☀️?"
    assert final.id == "msg_gw1"
    assert [block.type for block in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "I'll check Paris — ☀️?"
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == (
        public_tool_call_id("call_w", SIGNATURE),
        "get_weather",
        {"city": "Paris"},
    )
    assert (final.content[2].id, final.content[2].input) == ("call_t", {})
    assert final.stop_reason == "tool_use"
    # the estimate in message_start is replaced by the real count at the end
    assert (final.usage.input_tokens, final.usage.output_tokens) == (377, 65)


def test_it_reports_the_stop_reason_of_a_text_stream():
    events = sse_events(
        encode([ChatChunk(text="Hello"), ChatChunk(finish_reason="length")], usage=Usage(3, 9))
    )
    assert grammar_of(events) == "MSdXDZ"
    assert dict(events)["message_delta"] == {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {
            "input_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 9,
        },
    }


def test_it_opens_a_new_text_block_after_a_tool_call():
    events = sse_events(
        encode(
            [
                ChatChunk(tool_calls=[ToolCallDelta(index=0, id="t", name="f", arguments="{}")]),
                ChatChunk(text="done"),
            ]
        )
    )
    assert grammar_of(events) == "MSdXSdXDZ"
    check_block_indexes(events)


def test_it_streams_an_empty_reply_validly():
    events = sse_events(encode([]))
    assert grammar_of(events) == "MDZ"
    assert dict(events)["message_delta"]["delta"]["stop_reason"] == "end_turn"


def test_it_ends_the_stream_with_an_error_the_sdk_raises():
    encoder = AnthropicStreamEncoder("m", "msg_gw1", 10)
    raw = encoder.chunk(ChatChunk(text="partial")) + encoder.error(
        UpstreamError("Overloaded", status=529)
    )
    assert encoder.chunk(ChatChunk(text="late")) == b""
    assert encoder.finish(None) == b""
    events = sse_events(raw)
    assert grammar_of(events) == "MSdE"
    recorded = sse_events((WIRE / "anthropic_stream_error_overloaded.sse").read_bytes())
    assert events[-1][1]["error"]["type"] == recorded[-1][1]["error"]["type"] == "overloaded_error"
    assert set(recorded[-1][1]["error"]) <= set(events[-1][1]["error"])
    client = client_returning(raw)
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            for _ in stream:
                pass
    assert info.value.body["error"]["message"] == "Overloaded"


def test_it_replays_a_cached_reply_as_the_same_stream():
    response = tool_response(text="A cached answer, long enough to be replayed in pieces.")
    client = client_returning(encode(response_as_chunks(response)))
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == response.text
    assert final.content[1].input == {"location": "San Francisco, CA", "units": "f"}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (656, 74)


def test_it_sends_ping_events_the_sdk_skips():
    encoder = AnthropicStreamEncoder("m", "msg_gw1", 10)
    raw = (
        encoder.ping()
        + encoder.chunk(ChatChunk(text="hi"))
        + encoder.ping()
        + encoder.finish(Usage(1, 2))
    )
    assert encoder.ping() == b""
    events = sse_events(raw)
    # pings may come anywhere after message_start in the live API
    assert grammar_of(events) == "MpSdpXDZ"
    client = client_returning(raw)
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "hi"


def test_it_streams_thinking_blocks_like_anthropic_interleaved_with_tool_calls():
    encoder = AnthropicStreamEncoder("m", "msg_gw1", 10)
    raw = b"".join(
        [
            encoder.chunk(ChatChunk(thinking=ThinkingDelta(index=0, text="Let me "))),
            encoder.chunk(ChatChunk(thinking=ThinkingDelta(index=0, text="look."))),
            encoder.chunk(ChatChunk(thinking=ThinkingDelta(index=0, signature="sig0"))),
            encoder.chunk(ChatChunk(tool_calls=[ToolCallDelta(index=0, id="t1", name="f")])),
            encoder.chunk(ChatChunk(thinking=ThinkingDelta(index=1, data="opaque"))),
            encoder.chunk(ChatChunk(text="Done.")),
            encoder.finish(Usage(prompt_tokens=10, completion_tokens=5)),
        ]
    )
    events = sse_events(raw)
    assert GRAMMAR.fullmatch(grammar_of(events))
    check_block_indexes(events)
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert starts == [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": ""},
    ]
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert deltas[:3] == [
        {"type": "thinking_delta", "thinking": "Let me "},
        {"type": "thinking_delta", "thinking": "look."},
        {"type": "signature_delta", "signature": "sig0"},
    ]


def test_it_renders_thinking_blocks_first_in_a_message():
    response = ChatResponse(
        id="r",
        model="m",
        text="Answer.",
        thinking=[ThinkingPart(text="hm", signature="s"), ThinkingPart(data="x")],
    )
    content = render_message(response, model="m", request_id="msg_1")["content"]
    assert content == [
        {"type": "thinking", "thinking": "hm", "signature": "s"},
        {"type": "redacted_thinking", "data": "x"},
        {"type": "text", "text": "Answer."},
    ]
