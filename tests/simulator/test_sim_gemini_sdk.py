"""The Gemini generateContent wire, judged by the official google-genai SDK over loopback."""

import json

import pytest
from google.genai import errors, types

from tests.simulator.sim_helpers import (
    STOCK_ARGS,
    STOCK_SCHEMA,
    WEATHER_ARGS,
    gemini_client,
)

# The SDK's own aiohttp session subclass warns on every client; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

MODEL = "gemini-2.5-flash"

GEMINI_TOOLS = [
    types.Tool(
        function_declarations=[
            # Gemini's own Schema (OpenAPI subset, upper-case types) ...
            types.FunctionDeclaration(
                name="get_weather",
                parameters=types.Schema(
                    type="OBJECT",
                    properties={
                        "city": types.Schema(type="STRING"),
                        "units": types.Schema(type="STRING", enum=["c", "f"]),
                        "days": types.Schema(type="INTEGER"),
                    },
                ),
            ),
            # ... and plain JSON Schema.
            types.FunctionDeclaration(name="get_stock_price", parameters_json_schema=STOCK_SCHEMA),
        ]
    )
]


@pytest.fixture
def client(simulator):
    return gemini_client(simulator)


async def test_it_answers_with_the_last_user_message(client):
    response = await client.aio.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="first question")]),
            types.Content(role="model", parts=[types.Part(text="first answer")]),
            types.Content(role="user", parts=[types.Part(text="hello there")]),
        ],
        config=types.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert response.text == "Simulated reply to: hello there"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count == 8
    assert response.usage_metadata.candidates_token_count == 5
    assert response.usage_metadata.total_token_count == 13
    assert response.model_version == MODEL


async def test_it_streams_one_word_per_chunk_with_usage_on_every_chunk(client):
    chunks = [
        chunk
        async for chunk in await client.aio.models.generate_content_stream(
            model=MODEL, contents="stream me please"
        )
    ]
    assert [c.text for c in chunks] == ["Simulated ", "reply ", "to: ", "stream ", "me ", "please"]
    assert all(c.usage_metadata.prompt_token_count == 3 for c in chunks)
    assert [c.usage_metadata.candidates_token_count for c in chunks] == [None] * 5 + [6]
    assert [c.candidates[0].finish_reason for c in chunks][-2:] == [None, types.FinishReason.STOP]


async def test_it_truncates_to_max_output_tokens(client):
    response = await client.aio.models.generate_content(
        model=MODEL,
        contents="one two three",
        config=types.GenerateContentConfig(max_output_tokens=3),
    )
    assert response.text == "Simulated reply to:"
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


async def test_it_calls_named_functions_in_parallel(client):
    response = await client.aio.models.generate_content(
        model=MODEL,
        contents="get_weather then get_stock_price",
        config=types.GenerateContentConfig(tools=GEMINI_TOOLS),
    )
    calls = response.function_calls
    assert [(c.name, c.args) for c in calls] == [
        ("get_weather", WEATHER_ARGS),
        ("get_stock_price", STOCK_ARGS),
    ]
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


async def test_it_streams_all_function_calls_in_one_chunk(client):
    chunks = [
        chunk
        async for chunk in await client.aio.models.generate_content_stream(
            model=MODEL,
            contents="get_stock_price and get_weather",
            config=types.GenerateContentConfig(tools=GEMINI_TOOLS),
        )
    ]
    [chunk] = chunks
    assert [c.name for c in chunk.function_calls] == ["get_stock_price", "get_weather"]


async def test_it_honours_function_calling_config(client):
    def config(mode, allowed=None):
        return types.GenerateContentConfig(
            tools=GEMINI_TOOLS,
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode=mode, allowed_function_names=allowed
                )
            ),
        )

    none = await client.aio.models.generate_content(
        model=MODEL, contents="get_weather please", config=config("NONE")
    )
    assert none.text == "Simulated reply to: get_weather please"
    restricted = await client.aio.models.generate_content(
        model=MODEL, contents="get_weather please", config=config("ANY", ["get_stock_price"])
    )
    assert [c.name for c in restricted.function_calls] == ["get_stock_price"]


async def test_it_answers_function_responses_in_a_second_turn(client):
    contents = [
        types.Content(role="user", parts=[types.Part(text="get_weather and get_stock_price")])
    ]
    first = await client.aio.models.generate_content(
        model=MODEL, contents=contents, config=types.GenerateContentConfig(tools=GEMINI_TOOLS)
    )
    contents.append(first.candidates[0].content)
    contents.append(
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name="get_weather", response={"result": "sunny"}),
                types.Part.from_function_response(name="get_stock_price", response={"price": 42}),
            ],
        )
    )
    second = await client.aio.models.generate_content(
        model=MODEL, contents=contents, config=types.GenerateContentConfig(tools=GEMINI_TOOLS)
    )
    assert second.text == 'Tool results: {"result":"sunny"} | {"price":42}'


async def test_it_lists_models(client):
    models = [m async for m in await client.aio.models.list()]
    names = [m.name for m in models]
    assert "models/gemini-2.0-flash" in names
    flash = next(m for m in models if m.name == "models/gemini-2.0-flash")
    assert flash.input_token_limit == 1048576
    assert "generateContent" in flash.supported_actions
    model = await client.aio.models.get(model="gemini-2.5-flash")
    assert model.display_name == "Gemini 2.5 Flash"


@pytest.mark.parametrize(
    ("mode", "exception", "code", "status"),
    [
        ("auth", errors.ClientError, 401, "UNAUTHENTICATED"),
        ("permission", errors.ClientError, 403, "PERMISSION_DENIED"),
        ("not_found", errors.ClientError, 404, "NOT_FOUND"),
        ("bad_request", errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("context_length", errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("rate_limit", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("quota", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("server", errors.ServerError, 500, "INTERNAL"),
        ("overloaded", errors.ServerError, 503, "UNAVAILABLE"),
    ],
)
async def test_it_fails_on_request_with_the_sdk_exception(client, mode, exception, code, status):
    with pytest.raises(exception) as caught:
        await client.aio.models.generate_content(model=f"{MODEL}-fail-{mode}", contents="hi")
    assert (caught.value.code, caught.value.status) == (code, status)


async def test_it_puts_retry_info_and_quota_failure_in_a_429(client):
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(
            model=MODEL,
            contents="hi",
            config=types.GenerateContentConfig(
                http_options=types.HttpOptions(
                    headers={"x-sim-fail": "rate_limit", "x-sim-retry-after": "7"}
                )
            ),
        )
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in caught.value.details["error"]["details"]}
    assert details["RetryInfo"]["retryDelay"] == "7s"
    assert details["QuotaFailure"]["violations"][0]["quotaId"].endswith(
        "PerMinutePerProjectPerModel-FreeTier"
    )


async def test_it_rejects_an_invalid_key_like_the_real_api(simulator):
    client = gemini_client(simulator, key="invalid-key-0000")
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    reasons = [d.get("reason") for d in caught.value.details["error"]["details"]]
    assert "API_KEY_INVALID" in reasons
    assert "invalid-key" not in json.dumps(caught.value.details)


async def test_it_raises_the_midstream_error_object(client):
    received = []
    with pytest.raises(errors.ServerError) as caught:
        async for chunk in await client.aio.models.generate_content_stream(
            model=f"{MODEL}-fail-midstream_error", contents="a b c"
        ):
            received.append(chunk.text)
    assert received == ["Simulated ", "reply "]
    assert caught.value.status == "UNAVAILABLE"


async def test_it_finishes_with_safety_and_malformed_function_call(client):
    safety = await client.aio.models.generate_content(
        model=f"{MODEL}-fail-content_filter", contents="x"
    )
    assert safety.candidates[0].finish_reason == types.FinishReason.SAFETY
    malformed = await client.aio.models.generate_content(
        model=f"{MODEL}-fail-malformed_function_call", contents="x"
    )
    assert malformed.candidates[0].finish_reason == types.FinishReason.MALFORMED_FUNCTION_CALL


async def test_it_blocks_the_prompt(client):
    chunks = [
        chunk
        async for chunk in await client.aio.models.generate_content_stream(
            model=f"{MODEL}-fail-prompt_blocked", contents="x"
        )
    ]
    [chunk] = chunks
    assert chunk.candidates is None
    assert chunk.prompt_feedback.block_reason == types.BlockedReason.SAFETY


async def test_it_times_out_a_hanging_request(simulator):
    client = gemini_client(simulator, timeout_ms=300)
    with pytest.raises(TimeoutError):  # what the SDK's aiohttp transport raises
        await client.aio.models.generate_content(model=f"{MODEL}-fail-hang", contents="hi")


async def test_it_sends_a_chunk_that_is_not_json_when_malformed(client):
    received = []
    with pytest.raises(errors.UnknownApiResponseError):
        async for chunk in await client.aio.models.generate_content_stream(
            model=f"{MODEL}-fail-malformed", contents="a b c"
        ):
            received.append(chunk.text)
    assert received == ["Simulated ", "reply "]


async def test_it_counts_tokens(client):
    result = await client.aio.models.count_tokens(model=MODEL, contents="three words here")
    assert result.total_tokens == 3


async def test_it_returns_logprobs_when_asked(client):
    response = await client.aio.models.generate_content(
        model=MODEL,
        contents="hi",
        config=types.GenerateContentConfig(response_logprobs=True, logprobs=2),
    )
    candidate = response.candidates[0]
    result = candidate.logprobs_result
    assert "".join(c.token for c in result.chosen_candidates) == "Simulated reply to: hi"
    assert all(len(step.candidates) == 2 for step in result.top_candidates)
    assert candidate.avg_logprobs == -0.5


async def test_it_returns_no_logprobs_unless_asked(client):
    response = await client.aio.models.generate_content(model=MODEL, contents="hi")
    assert response.candidates[0].logprobs_result is None


@pytest.mark.parametrize(
    "config",
    [
        types.GenerateContentConfig(logprobs=2),  # without response_logprobs
        types.GenerateContentConfig(response_logprobs=True, logprobs=21),
    ],
)
async def test_it_refuses_logprobs_the_real_api_refuses(client, config):
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=MODEL, contents="hi", config=config)
    assert caught.value.code == 400


async def test_it_returns_several_candidates_whole(client):
    response = await client.aio.models.generate_content(
        model=MODEL, contents="hi", config=types.GenerateContentConfig(candidate_count=2)
    )
    assert [c.index for c in response.candidates] == [0, 1]
    assert {c.content.parts[0].text for c in response.candidates} == {"Simulated reply to: hi"}


async def test_it_refuses_several_candidates_in_a_stream(client):
    with pytest.raises(errors.ClientError) as caught:
        async for _ in await client.aio.models.generate_content_stream(
            model=MODEL, contents="hi", config=types.GenerateContentConfig(candidate_count=2)
        ):
            pass
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert "candidate" in caught.value.message.lower()
