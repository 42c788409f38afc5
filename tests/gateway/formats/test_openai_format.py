"""OpenAI chat-completions format: parsing client bodies, rendering replies and streams.

The rendered bytes are checked against the recorded OpenAI transcripts in
tests/fixtures/wire and read back by the official ``openai`` SDK through an
in-memory transport, so "the SDK works unchanged" is tested, not assumed.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import httpx2
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from aipk_site.gateway.formats.common import InputLimits, public_tool_call_id, response_as_chunks
from aipk_site.gateway.formats.openai_format import (
    OpenAIStreamEncoder,
    openai_error_body,
    parse_chat_completion,
    render_chat_completion,
)
from aipk_site.infra.errors import InvalidRequest, LimitExceeded, UpstreamError
from providers_app.kit.types import (
    ChatChunk,
    ChatResponse,
    Message,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)

WIRE = Path(__file__).resolve().parents[2] / "fixtures" / "wire"
LIMITS = InputLimits(max_messages=50, max_message_chars=10_000, max_tools=8)
SIGNATURE = "CikB0e2Kb+/p9w==\nopaque"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


def body(**overrides):
    base = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    base.update(overrides)
    return base


def realistic_chunks() -> list[ChatChunk]:
    """Text, then two parallel tool calls streamed in fragments (one with a signature)."""
    return [
        ChatChunk(text="Let me "),
        ChatChunk(text="check — ☀️."),
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
        ChatChunk(finish_reason="tool_calls", raw_finish_reason="tool_calls"),
        ChatChunk(usage=Usage(prompt_tokens=149, completion_tokens=60)),
    ]


def encode(chunks, *, include_usage=True, usage=None) -> bytes:
    encoder = OpenAIStreamEncoder("gpt-4o", "chatcmpl-gw1", 1727346178, include_usage)
    return b"".join(encoder.chunk(c) for c in chunks) + encoder.finish(usage)


def client_returning(payload: bytes, *, status=200, content_type="text/event-stream"):
    def handler(request):
        return httpx2.Response(status, content=payload, headers={"content-type": content_type})

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://gateway.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


# -- parsing ---------------------------------------------------------------------------------


def test_it_parses_a_minimal_body():
    parsed = parse_chat_completion(body(), LIMITS)
    assert parsed.request.model == "gpt-4o"
    assert parsed.request.messages == [Message(role="user", content="Hi")]
    assert parsed.stream is False
    assert parsed.include_usage is False
    assert parsed.cache is None


def test_it_reads_every_supported_field():
    parsed = parse_chat_completion(
        body(
            messages=[
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
                },
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            ],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            parallel_tool_calls=False,
            max_tokens=100,
            temperature=0.5,
            top_p=1,
            stop="END",
            user="u-1",
            n=1,
            stream=True,
            stream_options={"include_usage": True},
            aipk={"cache": False},
            seed=7,
            frequency_penalty=0.1,
            response_format={"type": "text"},
        ),
        LIMITS,
    )
    req = parsed.request
    assert [m.role for m in req.messages] == ["system", "system", "user"]
    assert req.messages[1].content == "A\nB"
    assert [t.name for t in req.tools] == ["get_weather"]
    assert req.tool_choice == ToolChoice.function("get_weather")
    assert req.parallel_tool_calls is False
    assert req.max_tokens == 100
    assert req.temperature == 0.5 and req.top_p == 1
    assert req.stop == ["END"]
    assert req.user == "u-1"
    assert (parsed.stream, parsed.include_usage, parsed.cache) == (True, True, False)


def test_it_prefers_max_completion_tokens_over_max_tokens():
    parsed = parse_chat_completion(body(max_tokens=10, max_completion_tokens=20), LIMITS)
    assert parsed.request.max_tokens == 20


def test_it_parses_a_two_turn_tool_conversation_and_restores_signatures():
    weather_id = public_tool_call_id("call_w", SIGNATURE)
    parsed = parse_chat_completion(
        body(
            messages=[
                {"role": "user", "content": "Weather and time in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": weather_id,
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "call_t",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": weather_id, "content": "sunny"},
                {
                    "role": "tool",
                    "tool_call_id": "call_t",
                    "content": [{"type": "text", "text": "noon"}],
                },
                {"role": "assistant", "content": "Sunny, and it is noon."},
                {"role": "user", "content": "Thanks"},
            ],
            tools=[WEATHER_TOOL, TIME_TOOL],
        ),
        LIMITS,
    )
    assert parsed.request.messages == [
        Message(role="user", content="Weather and time in Paris?"),
        Message(
            role="assistant",
            content=None,
            tool_calls=[
                ToolCall(
                    id="call_w",
                    name="get_weather",
                    arguments='{"city":"Paris"}',
                    signature=SIGNATURE,
                ),
                ToolCall(id="call_t", name="get_time", arguments="{}"),
            ],
        ),
        Message(role="tool", content="sunny", tool_call_id="call_w", name="get_weather"),
        Message(role="tool", content="noon", tool_call_id="call_t", name="get_time"),
        Message(role="assistant", content="Sunny, and it is noon."),
        Message(role="user", content="Thanks"),
    ]


def test_it_accepts_tool_call_arguments_sent_back_as_an_object():
    parsed = parse_chat_completion(
        body(
            messages=[
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": {"a": 1}},
                        }
                    ],
                },
            ]
        ),
        LIMITS,
    )
    assert json.loads(parsed.request.messages[1].tool_calls[0].arguments) == {"a": 1}


def _with(path, value):
    """A valid body with one field replaced; ``path`` is a list of keys/indexes."""
    b = body(
        messages=[
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
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
    # (path in the body, new value, expected param, words the message contains)
    (["model"], _DELETE, "model", "required"),
    (["model"], 5, "model", "string"),
    (["model"], "  ", "model", "non-empty"),
    (["messages"], _DELETE, "messages", "required"),
    (["messages"], "hi", "messages", "array"),
    (["messages"], [], "messages", "at least one"),
    (["messages", 0], "hi", "messages[0]", "object"),
    (["messages", 0, "role"], _DELETE, "messages[0].role", "required"),
    (["messages", 0, "role"], "robot", "messages[0].role", "'robot'"),
    (["messages", 0, "role"], 3, "messages[0].role", "string"),
    (["messages", 0, "content"], _DELETE, "messages[0].content", "required"),
    (["messages", 0, "content"], 42, "messages[0].content", "string"),
    (
        ["messages", 0, "content"],
        [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}],
        "messages[0].content[0].image_url.url",
        "http(s) URL",
    ),
    (["messages", 0, "content"], [{"type": "video"}], "messages[0].content[0].type", "'video'"),
    (
        ["messages", 0, "content"],
        [{"type": "text", "text": 1}],
        "messages[0].content[0].text",
        "string",
    ),
    (["messages", 0, "content"], ["hi"], "messages[0].content[0]", "object"),
    (["messages", 1, "tool_calls"], _DELETE, "messages[1].content", "tool_calls"),
    (["messages", 1, "tool_calls"], {}, "messages[1].tool_calls", "array"),
    (["messages", 1, "tool_calls", 0, "id"], _DELETE, "messages[1].tool_calls[0].id", "required"),
    (["messages", 1, "tool_calls", 0, "type"], "code", "messages[1].tool_calls[0].type", "'code'"),
    (
        ["messages", 1, "tool_calls", 0, "function", "name"],
        _DELETE,
        "messages[1].tool_calls[0].function.name",
        "required",
    ),
    (
        ["messages", 1, "tool_calls", 0, "function", "arguments"],
        7,
        "messages[1].tool_calls[0].function.arguments",
        "JSON string",
    ),
    (["messages", 1, "function_call"], {"name": "f"}, "messages[1].function_call", "tool_calls"),
    (["messages", 2, "tool_call_id"], _DELETE, "messages[2].tool_call_id", "required"),
    (["messages", 2, "tool_call_id"], 9, "messages[2].tool_call_id", "string"),
    (["n"], 0, "n", "between 1 and 128"),
    (["n"], "1", "n", "integer"),
    (["temperature"], 2.5, "temperature", "between 0 and 2"),
    (["temperature"], -0.1, "temperature", "between"),
    (["temperature"], "hot", "temperature", "number"),
    (["temperature"], True, "temperature", "number"),
    (["top_p"], 1.5, "top_p", "between 0 and 1"),
    (["max_tokens"], 0, "max_tokens", "between 1 and 1000000"),
    (["max_tokens"], "many", "max_tokens", "integer"),
    (["max_tokens"], 1.5, "max_tokens", "integer"),
    (["max_completion_tokens"], -3, "max_completion_tokens", "between 1 and 1000000"),
    (["stop"], 5, "stop", "string"),
    (["stop"], ["a", 2], "stop[1]", "string"),
    (["stop"], ["a", ""], "stop[1]", "empty"),
    (["user"], 1, "user", "string"),
    (["stream"], "yes", "stream", "boolean"),
    (["stream_options"], [], "stream_options", "object"),
    (["stream_options"], {"include_usage": 1}, "stream_options.include_usage", "boolean"),
    (["parallel_tool_calls"], "no", "parallel_tool_calls", "boolean"),
    (["aipk"], True, "aipk", "object"),
    (["aipk"], {"cache": "yes"}, "aipk.cache", "boolean"),
    (["tools"], {}, "tools", "array"),
    (["tools", 0, "type"], "retrieval", "tools[0].type", "'retrieval'"),
    (
        ["tools", 0, "function", "name"],
        "bad name!",
        "tools[0].function.name",
        "not a valid tool name",
    ),
    (
        ["tools", 0, "function", "parameters"],
        {"type": "array"},
        "tools[0].function.parameters.type",
        "object",
    ),
    (
        ["tools", 0, "function", "parameters"],
        {"type": "object", "properties": {"city": {"type": "text"}}},
        "tools[0].function.parameters.properties.city.type",
        "not a JSON Schema type",
    ),
    (["tools", 0, "function", "strict"], "yes", "tools[0].function.strict", "boolean"),
    (
        ["tool_choice"],
        {"type": "function", "function": {"name": "get_time"}},
        "tool_choice",
        "get_time",
    ),
    (["tool_choice"], "sometimes", "tool_choice", "'sometimes'"),
    (["tool_choice"], {"type": "function"}, "tool_choice.function", "object"),
]


@pytest.mark.parametrize(
    ("path", "value", "param", "words"), INVALID, ids=[f"{c[2]}:{c[3]}" for c in INVALID]
)
def test_it_names_the_field_of_every_validation_error(path, value, param, words):
    with pytest.raises(InvalidRequest) as info:
        parse_chat_completion(_with(path, value), LIMITS)
    err = info.value
    assert err.status == 400
    assert err.param == param
    assert words in err.message
    assert openai_error_body(err)["error"]["param"] == param


@pytest.mark.parametrize("payload", [[], "hello", 3, None])
def test_it_refuses_a_body_that_is_not_an_object(payload):
    with pytest.raises(InvalidRequest) as info:
        parse_chat_completion(payload, LIMITS)
    assert info.value.param == "body"


def test_it_refuses_required_tool_choice_without_tools():
    with pytest.raises(InvalidRequest) as info:
        parse_chat_completion(body(tool_choice="required"), LIMITS)
    assert info.value.param == "tool_choice"


def test_it_refuses_duplicate_tool_names():
    with pytest.raises(InvalidRequest) as info:
        parse_chat_completion(body(tools=[WEATHER_TOOL, WEATHER_TOOL]), LIMITS)
    assert info.value.param == "tools[1].function.name"
    assert "duplicate" in info.value.message


def test_it_enforces_the_input_limits():
    small = InputLimits(max_messages=2, max_message_chars=5, max_tools=1)
    with pytest.raises(InvalidRequest) as info:
        parse_chat_completion(body(messages=[{"role": "user", "content": "a"}] * 3), small)
    assert (info.value.status, info.value.param) == (400, "messages")
    with pytest.raises(InvalidRequest) as info:
        parse_chat_completion(
            body(
                messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "123456"}]
            ),
            small,
        )
    assert info.value.param == "messages[1].content"
    assert "limit is 5" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        parse_chat_completion(body(tools=[WEATHER_TOOL, TIME_TOOL]), small)
    assert info.value.param == "tools"


# -- rendering -------------------------------------------------------------------------------


def tool_response(**overrides) -> ChatResponse:
    fields = dict(
        id="upstream-1",
        model="gemini-2.5-flash",
        text="",
        tool_calls=[
            ToolCall(
                id="call_w", name="get_weather", arguments='{"city":"Paris"}', signature=SIGNATURE
            )
        ],
        finish_reason="tool_calls",
        usage=Usage(prompt_tokens=82, completion_tokens=17),
    )
    fields.update(overrides)
    return ChatResponse(**fields)


def test_it_renders_a_tool_call_reply_like_the_recorded_one():
    rendered = render_chat_completion(
        tool_response(), model="gpt-4o-mini", request_id="chatcmpl-gw1", created=1699896916
    )
    recorded = json.loads((WIRE / "openai_chat_completion_tool_calls.json").read_text())
    assert set(rendered) == set(recorded)
    assert set(rendered["choices"][0]) == set(recorded["choices"][0])
    assert set(recorded["choices"][0]["message"]) <= set(rendered["choices"][0]["message"])
    assert set(rendered["choices"][0]["message"]["tool_calls"][0]) == set(
        recorded["choices"][0]["message"]["tool_calls"][0]
    )
    assert {"prompt_tokens", "completion_tokens", "total_tokens"} <= set(recorded["usage"])

    assert rendered["id"] == "chatcmpl-gw1"
    assert rendered["object"] == "chat.completion"
    assert rendered["created"] == 1699896916
    assert rendered["model"] == "gpt-4o-mini"
    choice = rendered["choices"][0]
    assert choice["message"]["content"] is None
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {
            "id": public_tool_call_id("call_w", SIGNATURE),
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert rendered["usage"] == {
        "prompt_tokens": 82,
        "completion_tokens": 17,
        "total_tokens": 99,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


@pytest.mark.parametrize(
    ("kit", "has_calls", "openai_reason"),
    [
        ("stop", False, "stop"),
        ("length", False, "length"),
        ("tool_calls", True, "tool_calls"),
        ("content_filter", False, "content_filter"),
        ("malformed_tool_call", False, "stop"),
        ("error", False, "stop"),
        (None, False, "stop"),
        # Gemini ends replies that call tools with a plain STOP
        ("stop", True, "tool_calls"),
    ],
)
def test_it_maps_finish_reasons(kit, has_calls, openai_reason):
    response = tool_response(finish_reason=kit, text="x")
    if not has_calls:
        response.tool_calls = []
    rendered = render_chat_completion(response, model="m", request_id="r", created=1)
    assert rendered["choices"][0]["finish_reason"] == openai_reason


def test_it_renders_text_replies_with_their_content():
    rendered = render_chat_completion(
        ChatResponse(id="u", model="m", text="Hello", finish_reason="stop"),
        model="m",
        request_id="r",
        created=1,
    )
    message = rendered["choices"][0]["message"]
    assert message["content"] == "Hello"
    assert "tool_calls" not in message


def test_it_renders_replies_the_sdk_parses():
    rendered = render_chat_completion(
        tool_response(text="Checking."), model="gpt-4o", request_id="chatcmpl-gw1", created=1
    )
    client = client_returning(json.dumps(rendered).encode(), content_type="application/json")
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    message = completion.choices[0].message
    assert message.content == "Checking."
    assert message.tool_calls[0].id == public_tool_call_id("call_w", SIGNATURE)
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert completion.usage.total_tokens == 99


def test_it_renders_errors_the_sdk_maps_to_its_exception_classes():
    err = LimitExceeded("Key rate limit reached", code="key_rpm")
    assert openai_error_body(err) == {
        "error": {
            "type": "rate_limit_error",
            "code": "key_rpm",
            "message": "Key rate limit reached",
            "param": None,
        }
    }
    client = client_returning(
        json.dumps(openai_error_body(err)).encode(), status=429, content_type="application/json"
    )
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "key_rpm"


# -- streaming -------------------------------------------------------------------------------


def sse_payloads(raw: bytes) -> list:
    """Every ``data:`` payload, parsed (``[DONE]`` kept as the string)."""
    events = [e for e in raw.decode("utf-8").split("\n\n") if e.strip()]
    out = []
    for event in events:
        (line,) = event.splitlines()
        assert line.startswith("data: ")
        data = line[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def classify(payload) -> str:
    """One letter per event: the grammar of a chat-completions stream."""
    if payload == "[DONE]":
        return "D"
    if "error" in payload:
        return "E"
    if not payload["choices"]:
        return "U"  # usage
    choice = payload["choices"][0]
    delta = choice["delta"]
    if choice["finish_reason"]:
        assert delta == {}
        return "F"
    if "role" in delta:
        return "R"
    if "tool_calls" in delta:
        return "T" if "id" in delta["tool_calls"][0] else "a"
    return "c"


GRAMMAR = re.compile(r"Rc*(Ta*)*FU?D")


@pytest.mark.parametrize(
    "fixture", ["openai_chat_stream_tools.sse", "openai_chat_stream_text_usage.sse"]
)
def test_it_streams_in_the_grammar_of_the_recorded_streams(fixture):
    recorded = sse_payloads((WIRE / fixture).read_bytes())
    ours = sse_payloads(encode(realistic_chunks()))
    assert GRAMMAR.fullmatch("".join(classify(p) for p in recorded))
    assert GRAMMAR.fullmatch("".join(classify(p) for p in ours))
    assert "".join(classify(p) for p in ours) == "RccTaaTaFUD"
    # every field the recorded chunks carry (bar the optional fingerprint/refusal) is there
    for mine, theirs in (
        (ours[0], recorded[0]),
        (ours[-2], recorded[-2]),
        (ours[-3], recorded[-3]),
    ):
        assert set(theirs) - {"system_fingerprint"} <= set(mine)
        if theirs["choices"]:
            assert set(theirs["choices"][0]) == set(mine["choices"][0])


def test_it_sends_a_tool_calls_id_type_and_name_once():
    recorded = sse_payloads((WIRE / "openai_chat_stream_tools.sse").read_bytes())
    ours = sse_payloads(encode(realistic_chunks()))
    firsts = [p["choices"][0]["delta"]["tool_calls"][0] for p in ours if classify(p) == "T"]
    recorded_first = next(
        p["choices"][0]["delta"]["tool_calls"][0] for p in recorded if classify(p) == "T"
    )
    assert [set(f) for f in firsts] == [set(recorded_first)] * 2
    assert [f["id"] for f in firsts] == [public_tool_call_id("call_w", SIGNATURE), "call_t"]
    later = [p["choices"][0]["delta"]["tool_calls"][0] for p in ours if classify(p) == "a"]
    assert all(
        set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in later
    )
    assert ours[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_it_writes_compact_utf8_json():
    raw = encode(realistic_chunks())
    assert "☀️".encode() in raw
    assert b'"object":"chat.completion.chunk"' in raw


def test_it_streams_what_the_sdk_reassembles():
    client = client_returning(encode(realistic_chunks()))
    state = ChatCompletionStreamState()
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        state.handle_chunk(chunk)
    final = state.get_final_completion()
    message = final.choices[0].message
    assert final.id == "chatcmpl-gw1"
    assert message.content == "Let me check — ☀️."
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls
    ] == [
        (public_tool_call_id("call_w", SIGNATURE), "get_weather", {"city": "Paris"}),
        ("call_t", "get_time", {}),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (
        149,
        60,
        209,
    )


def test_it_leaves_usage_out_unless_asked():
    payloads = sse_payloads(encode(realistic_chunks(), include_usage=False))
    assert "".join(classify(p) for p in payloads) == "RccTaaTaFD"


def test_it_prefers_the_usage_given_to_finish():
    payloads = sse_payloads(encode(realistic_chunks(), usage=Usage(1, 2)))
    assert payloads[-2]["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_it_closes_a_stream_that_never_said_why_it_ended():
    payloads = sse_payloads(encode([ChatChunk(text="hi")], include_usage=False))
    assert "".join(classify(p) for p in payloads) == "RcFD"
    assert payloads[2]["choices"][0]["finish_reason"] == "stop"


def test_it_streams_an_empty_reply_validly():
    payloads = sse_payloads(encode([], include_usage=True))
    assert "".join(classify(p) for p in payloads) == "RFUD"


def test_it_ends_the_stream_with_an_error_the_sdk_raises():
    encoder = OpenAIStreamEncoder("gpt-4o", "chatcmpl-gw1", 1, True)
    raw = encoder.chunk(ChatChunk(text="partial")) + encoder.error(
        UpstreamError("Every provider failed", status=502)
    )
    assert encoder.chunk(ChatChunk(text="late")) == b""
    assert encoder.finish(None) == b""
    payloads = sse_payloads(raw)
    assert "".join(classify(p) for p in payloads) == "RcE"
    assert payloads[-1] == {
        "error": {
            "type": "api_error",
            "code": "upstream_error",
            "message": "Every provider failed",
            "param": None,
        }
    }
    client = client_returning(raw)
    seen = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            seen.append(chunk)
    assert "Every provider failed" in str(info.value)
    assert len(seen) == 2


def test_it_replays_a_cached_reply_as_the_same_stream():
    response = tool_response(text="Here is a longer answer that the replay splits into pieces.")
    client = client_returning(encode(response_as_chunks(response)))
    state = ChatCompletionStreamState()
    for chunk in client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
    ):
        state.handle_chunk(chunk)
    message = state.get_final_completion().choices[0].message
    assert message.content == response.text
    assert message.tool_calls[0].id == public_tool_call_id("call_w", SIGNATURE)


def test_it_sends_keepalive_comments_the_sdk_ignores():
    encoder = OpenAIStreamEncoder("gpt-4o", "chatcmpl-gw1", 1, False)
    raw = (
        encoder.ping() + encoder.chunk(ChatChunk(text="hi")) + encoder.ping() + encoder.finish(None)
    )
    assert raw.startswith(b": ping\n\n")
    assert encoder.ping() == b""
    client = client_returning(raw)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert [c.choices[0].delta.content for c in chunks] == ["", "hi", None]


def test_it_names_a_tool_call_whose_first_fragment_has_no_id():
    payloads = sse_payloads(
        encode(
            [
                ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments='{"a"')]),
                ChatChunk(tool_calls=[ToolCallDelta(index=0, name="f", arguments=": 1}")]),
            ],
            include_usage=False,
        )
    )
    fragments = [p["choices"][0]["delta"]["tool_calls"][0] for p in payloads[1:3]]
    assert fragments == [
        {"index": 0, "id": "call_0", "type": "function", "function": {"arguments": '{"a"'}},
        {"index": 0, "function": {"name": "f", "arguments": ": 1}"}},
    ]
    assert payloads[3]["choices"][0]["finish_reason"] == "tool_calls"
