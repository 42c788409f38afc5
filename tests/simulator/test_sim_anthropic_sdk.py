"""The Anthropic Messages wire, judged by the official anthropic SDK over loopback."""

import anthropic
import httpx
import pytest

from tests.simulator.sim_helpers import (
    ANTHROPIC_TOOLS,
    STOCK_ARGS,
    WEATHER_ARGS,
    anthropic_client,
)


@pytest.fixture
def client(simulator):
    return anthropic_client(simulator)


def user(text):
    return [{"role": "user", "content": text}]


async def test_it_answers_with_the_last_user_message(client):
    message = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system="Be brief.",
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ],
    )
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Simulated reply to: hello there"
    assert message.stop_reason == "end_turn"
    assert message.id.startswith("msg_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (8, 5)


async def test_it_streams_text_with_cumulative_usage(client):
    async with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, messages=user("stream me please")
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_message()
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert deltas == ["Simulated ", "reply ", "to: ", "stream ", "me ", "please"]
    start = next(e for e in events if e.type == "message_start")
    assert (start.message.usage.input_tokens, start.message.usage.output_tokens) == (3, 1)
    message_delta = next(e for e in events if e.type == "message_delta")
    assert message_delta.usage.output_tokens == 6
    assert final.content[0].text == "Simulated reply to: stream me please"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6


async def test_it_truncates_to_max_tokens(client):
    message = await client.messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=2, messages=user("one two three")
    )
    assert message.content[0].text == "Simulated reply"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


async def test_it_calls_named_tools_in_parallel(client):
    message = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=user("check get_stock_price, then get_weather"),
    )
    assert message.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in message.content] == [
        ("tool_use", "get_stock_price", STOCK_ARGS),
        ("tool_use", "get_weather", WEATHER_ARGS),
    ]
    assert all(b.id.startswith("toolu_") for b in message.content)


async def test_it_streams_tool_input_as_json_fragments(client):
    async with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=user("get_weather and get_stock_price"),
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_message()
    fragments: dict[int, list[str]] = {}
    for e in events:
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta":
            fragments.setdefault(e.index, []).append(e.delta.partial_json)
    assert sorted(fragments) == [0, 1]
    for parts in fragments.values():
        assert parts[0] == "" and len(parts) >= 3
    assert final.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in final.content] == [
        ("get_weather", WEATHER_ARGS),
        ("get_stock_price", STOCK_ARGS),
    ]


async def test_it_honours_tool_choice(client):
    forced = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "tool", "name": "get_stock_price"},
        messages=user("get_weather please"),
    )
    assert [b.name for b in forced.content] == ["get_stock_price"]
    none = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "none"},
        messages=user("get_weather please"),
    )
    assert none.content[0].text == "Simulated reply to: get_weather please"
    single = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=user("get_stock_price and get_weather"),
    )
    assert [b.name for b in single.content] == ["get_stock_price"]


async def test_it_answers_tool_results_in_a_second_turn(client):
    messages = user("get_weather and get_stock_price")
    first = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, tools=ANTHROPIC_TOOLS, messages=messages
    )
    results = [
        {"type": "tool_result", "tool_use_id": first.content[0].id, "content": "sunny"},
        {
            "type": "tool_result",
            "tool_use_id": first.content[1].id,
            "content": [{"type": "text", "text": "42 USD"}],
        },
    ]
    messages = messages + [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": results},
    ]
    second = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, tools=ANTHROPIC_TOOLS, messages=messages
    )
    assert second.content[0].text == "Tool results: sunny | 42 USD"
    assert second.stop_reason == "end_turn"


async def test_it_lists_models(client):
    page = await client.models.list()
    ids = [m.id for m in page.data]
    assert "claude-sonnet-4-6" in ids
    assert all(m.type == "model" and m.display_name for m in page.data)
    model = await client.models.retrieve("claude-haiku-4-5-20251001")
    assert model.display_name == "Claude Haiku 4.5"


async def test_it_accepts_oauth_bearer_tokens(simulator):
    client = anthropic.AsyncAnthropic(
        base_url=simulator.base_url("anthropic"),
        auth_token="oauth-access-token-5678",
        max_retries=0,
    )
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=10, messages=user("hi")
    )
    assert message.content[0].text == "Simulated reply to: hi"


@pytest.mark.parametrize(
    ("mode", "exception", "status", "error_type"),
    [
        ("auth", anthropic.AuthenticationError, 401, "authentication_error"),
        ("permission", anthropic.PermissionDeniedError, 403, "permission_error"),
        ("not_found", anthropic.NotFoundError, 404, "not_found_error"),
        ("bad_request", anthropic.BadRequestError, 400, "invalid_request_error"),
        ("context_length", anthropic.BadRequestError, 400, "invalid_request_error"),
        ("rate_limit", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("quota", anthropic.APIStatusError, 402, "billing_error"),
        ("server", anthropic.InternalServerError, 500, "api_error"),
        ("overloaded", anthropic.OverloadedError, 529, "overloaded_error"),
    ],
)
async def test_it_fails_on_request_with_the_sdk_exception(
    client, mode, exception, status, error_type
):
    with pytest.raises(exception) as caught:
        await client.messages.create(
            model=f"claude-sonnet-4-6-fail-{mode}", max_tokens=10, messages=user("hi")
        )
    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == error_type
    assert caught.value.body["request_id"] == caught.value.response.headers["request-id"]
    expect_retry = "true" if status in (429, 500, 529) else "false"
    assert caught.value.response.headers["x-should-retry"] == expect_retry


async def test_it_rejects_missing_and_invalid_credentials(simulator):
    bad = anthropic_client(simulator, key="invalid-key-4321")
    with pytest.raises(anthropic.AuthenticationError):
        await bad.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=user("hi"))
    url = simulator.base_url("anthropic") + "/v1/messages"
    body = {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": user("hi")}
    async with httpx.AsyncClient() as http:
        missing = await http.post(url, json=body, headers={"anthropic-version": "2023-06-01"})
        no_version = await http.post(url, json=body, headers={"x-api-key": "sk-ant-1234"})
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert no_version.status_code == 400
    assert no_version.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }


async def test_it_sends_an_overloaded_error_event_midstream(client):
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(
            model="claude-sonnet-4-6-fail-midstream_error", max_tokens=100, messages=user("a b c")
        ) as stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    received.append(event.delta.text)
    assert received == ["Simulated ", "reply "]
    assert "overloaded_error" in str(caught.value.body)


async def test_it_refuses_on_content_filter(client):
    message = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=user("something bad"),
        extra_headers={"x-sim-fail": "content_filter"},
    )
    assert message.stop_reason == "refusal"
    assert message.content[0].text == "Simulated reply "


async def test_it_times_out_a_hanging_request(simulator):
    client = anthropic_client(simulator, timeout=0.3)
    with pytest.raises(anthropic.APITimeoutError):
        await client.messages.create(
            model="claude-sonnet-4-6-fail-hang", max_tokens=10, messages=user("hi")
        )


async def test_it_counts_tokens(client):
    count = await client.messages.count_tokens(
        model="claude-sonnet-4-6", system="be brief", messages=user("three words here")
    )
    assert count.input_tokens == 5
