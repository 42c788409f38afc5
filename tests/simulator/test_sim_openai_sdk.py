"""The OpenAI wire, judged by the official openai SDK over loopback."""

import json

import openai
import pytest

from tests.simulator.sim_helpers import OPENAI_TOOLS, STOCK_ARGS, WEATHER_ARGS, openai_client


@pytest.fixture
def client(simulator):
    return openai_client(simulator.base_url("openai"))


def user(text):
    return [{"role": "user", "content": text}]


async def test_it_answers_with_the_last_user_message(client):
    result = await client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "hello there"},
        ],
    )
    assert result.choices[0].message.content == "Simulated reply to: hello there"
    assert result.choices[0].finish_reason == "stop"
    assert result.model == "gpt-4o"
    # 2 + 2 + 2 + 2 words of messages
    assert result.usage.prompt_tokens == 8
    assert result.usage.completion_tokens == 5
    assert result.usage.total_tokens == 13


async def test_it_says_a_plain_simulated_reply_to_an_empty_message(client):
    result = await client.chat.completions.create(model="gpt-4o", messages=user(""))
    assert result.choices[0].message.content == "Simulated reply."
    assert result.usage.prompt_tokens == 1


async def test_it_streams_one_word_per_chunk(client):
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("stream me please"), stream=True
    )
    pieces, finishes, usages = [], [], []
    async for chunk in stream:
        usages.append(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert pieces == ["Simulated ", "reply ", "to: ", "stream ", "me ", "please"]
    assert "".join(pieces) == "Simulated reply to: stream me please"
    assert finishes == ["stop"]
    assert usages == [None] * len(usages)  # no usage chunk unless asked for


async def test_it_sends_a_usage_chunk_when_asked(client):
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("count these words"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 6)
    assert all(c.usage is None for c in chunks[:-1])


async def test_it_truncates_to_max_tokens_words(client):
    result = await client.chat.completions.create(
        model="gpt-4o", messages=user("one two three four"), max_tokens=3
    )
    assert result.choices[0].message.content == "Simulated reply to:"
    assert result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 3

    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("one two three four"), max_completion_tokens=2, stream=True
    )
    text, finish = "", None
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert (text, finish) == ("Simulated reply", "length")


async def test_it_calls_the_first_tool_when_none_is_named(client):
    result = await client.chat.completions.create(
        model="gpt-4o", messages=user("what should I do?"), tools=OPENAI_TOOLS
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    assert call.id.startswith("call_")


async def test_it_calls_every_named_tool_in_parallel_in_order_of_mention(client):
    result = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("use get_stock_price and then get_weather"),
        tools=OPENAI_TOOLS,
    )
    calls = result.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_stock_price", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls] == [STOCK_ARGS, WEATHER_ARGS]
    assert len({c.id for c in calls}) == 2


async def test_it_streams_parallel_tool_calls_like_the_real_api(client):
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("get_weather and get_stock_price"),
        tools=OPENAI_TOOLS,
        stream=True,
    )
    fragments: dict[int, list] = {}
    finish_chunks = []
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                finish_chunks.append(choice)
            for call in choice.delta.tool_calls or []:
                fragments.setdefault(call.index, []).append(call)
    assert sorted(fragments) == [0, 1]
    for index, expected_name, expected_args in (
        (0, "get_weather", WEATHER_ARGS),
        (1, "get_stock_price", STOCK_ARGS),
    ):
        first, *rest = fragments[index]
        assert first.id and first.type == "function" and first.function.name == expected_name
        assert len(rest) >= 2
        assert all(f.id is None and f.function.name is None for f in rest)
        arguments = "".join(f.function.arguments for f in fragments[index])
        assert json.loads(arguments) == expected_args
    [finish] = finish_chunks
    assert finish.finish_reason == "tool_calls"
    assert finish.delta.content is None and finish.delta.tool_calls is None


async def test_it_honours_tool_choice(client):
    forced = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("get_weather please"),
        tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_stock_price"}},
    )
    assert [c.function.name for c in forced.choices[0].message.tool_calls] == ["get_stock_price"]

    none = await client.chat.completions.create(
        model="gpt-4o", messages=user("get_weather please"), tools=OPENAI_TOOLS, tool_choice="none"
    )
    assert none.choices[0].message.content == "Simulated reply to: get_weather please"

    single = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("get_weather and get_stock_price"),
        tools=OPENAI_TOOLS,
        parallel_tool_calls=False,
    )
    assert [c.function.name for c in single.choices[0].message.tool_calls] == ["get_weather"]


async def test_it_answers_tool_results_in_a_second_turn(client):
    messages = user("get_weather and get_stock_price")
    first = await client.chat.completions.create(
        model="gpt-4o", messages=messages, tools=OPENAI_TOOLS
    )
    assistant = first.choices[0].message
    messages = messages + [assistant.model_dump(exclude_none=True)]
    for call, result in zip(assistant.tool_calls, ["sunny", "42 USD"], strict=True):
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    second = await client.chat.completions.create(
        model="gpt-4o", messages=messages, tools=OPENAI_TOOLS
    )
    assert second.choices[0].message.content == "Tool results: sunny | 42 USD"
    assert second.choices[0].finish_reason == "stop"


async def test_it_lists_models(client):
    models = [m async for m in client.models.list()]
    ids = [m.id for m in models]
    assert "gpt-4o" in ids and "gpt-4o-mini" in ids
    assert all(m.object == "model" and m.owned_by for m in models)
    model = await client.models.retrieve("gpt-4o")
    assert model.id == "gpt-4o"


@pytest.mark.parametrize(
    ("mode", "exception", "status"),
    [
        ("auth", openai.AuthenticationError, 401),
        ("permission", openai.PermissionDeniedError, 403),
        ("not_found", openai.NotFoundError, 404),
        ("bad_request", openai.BadRequestError, 400),
        ("context_length", openai.BadRequestError, 400),
        ("rate_limit", openai.RateLimitError, 429),
        ("quota", openai.RateLimitError, 429),
        ("server", openai.InternalServerError, 500),
        ("overloaded", openai.InternalServerError, 503),
    ],
)
async def test_it_fails_on_request_with_the_sdk_exception(simulator, mode, exception, status):
    client = openai_client(simulator.base_url("openai"))
    with pytest.raises(exception) as caught:
        await client.chat.completions.create(model=f"gpt-4o-fail-{mode}", messages=user("hi"))
    assert caught.value.status_code == status
    assert set(caught.value.body) >= {"message", "type", "param", "code"}


async def test_it_names_the_error_codes_clients_classify_on(simulator):
    client = openai_client(simulator.base_url("openai"))
    expected = {
        "context_length": ("invalid_request_error", "context_length_exceeded"),
        "quota": ("insufficient_quota", "insufficient_quota"),
        "rate_limit": ("requests", "rate_limit_exceeded"),
        "auth": ("invalid_request_error", "invalid_api_key"),
    }
    for mode, (type_, code) in expected.items():
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="gpt-4o", messages=user("hi"), extra_headers={"x-sim-fail": mode}
            )
        assert (caught.value.type, caught.value.code) == (type_, code)


async def test_it_rejects_missing_and_invalid_keys_without_echoing_them(simulator):
    bad = openai_client(simulator.base_url("openai"), key="invalid-secret-key-9876")
    with pytest.raises(openai.AuthenticationError) as caught:
        await bad.chat.completions.create(model="gpt-4o", messages=user("hi"))
    assert "invalid-secret" not in caught.value.message
    assert "9876" in caught.value.message
    assert caught.value.code == "invalid_api_key"


async def test_it_times_out_a_hanging_request_without_blocking_others(simulator):
    client = openai_client(simulator.base_url("openai"), timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="gpt-4o-fail-hang", messages=user("hi"))
    ok = await openai_client(simulator.base_url("openai")).chat.completions.create(
        model="gpt-4o", messages=user("still there?")
    )
    assert ok.choices[0].message.content == "Simulated reply to: still there?"


async def test_it_cuts_the_connection_on_disconnect(client):
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="gpt-4o-fail-disconnect", messages=user("hi"))
    stream = await client.chat.completions.create(
        model="gpt-4o-fail-disconnect", messages=user("a b c d"), stream=True
    )
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert received == ["Simulated ", "reply "]


async def test_it_reports_a_midstream_error_the_sdk_raises(client):
    stream = await client.chat.completions.create(
        model="gpt-4o-fail-midstream_error", messages=user("a b c"), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert received == ["Simulated ", "reply "]
    assert "Provider disconnected unexpectedly" in caught.value.message


async def test_it_finishes_with_content_filter(client):
    result = await client.chat.completions.create(
        model="gpt-4o-fail-content_filter", messages=user("something bad")
    )
    assert result.choices[0].finish_reason == "content_filter"
    assert result.choices[0].message.content == "Simulated reply "
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("x"),
        stream=True,
        extra_headers={"x-sim-fail": "prompt_blocked"},
    )
    finishes = [c.finish_reason async for chunk in stream for c in chunk.choices if c.finish_reason]
    assert finishes == ["content_filter"]


async def test_it_streams_n_choices_interleaved_each_with_its_finish(client):
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("stream me please"),
        stream=True,
        n=2,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    # one choice a chunk, taking turns: 0, 1, 0, 1, ...
    indexes = [c.choices[0].index for c in chunks if c.choices]
    assert all(len(c.choices) == 1 for c in chunks if c.choices)
    assert indexes == [0, 1] * (len(indexes) // 2)
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        assert mine[0].delta.role == "assistant"
        assert (
            "".join(ch.delta.content or "" for ch in mine) == "Simulated reply to: stream me please"
        )
        assert [ch.finish_reason for ch in mine if ch.finish_reason] == ["stop"]
    # one usage chunk, last, counting both choices
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]] and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 2 * 6


async def test_it_streams_each_choice_its_own_tool_calls(client):
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("get_weather please"),
        tools=OPENAI_TOOLS,
        stream=True,
        n=2,
    )
    calls: dict[int, dict[int, dict]] = {0: {}, 1: {}}
    async for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls[choice.index].setdefault(delta.index, {"id": "", "args": ""})
                call["id"] += delta.id or ""
                call["args"] += (delta.function.arguments if delta.function else "") or ""
    assert [json.loads(c["args"]) for c in calls[0].values()] == [WEATHER_ARGS]
    assert [json.loads(c["args"]) for c in calls[1].values()] == [WEATHER_ARGS]
    assert calls[0][0]["id"] != calls[1][0]["id"]
