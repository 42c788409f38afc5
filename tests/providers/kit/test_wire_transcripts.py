"""Every captured provider transcript, parsed into the normalised result.

Streams are fed to the same reader a live stream uses, cut at random places
(mid-line, mid-CRLF, mid UTF-8 character) many times over: the result must
never depend on where the network happened to split the bytes.
"""

from __future__ import annotations

import json
import random

import pytest

from providers_app.kit import errors
from providers_app.kit.adapters import (
    AnthropicAdapter,
    GeminiAdapter,
    OpenAIAdapter,
    OpenRouterAdapter,
)
from providers_app.kit.adapters.openrouter import parse_credits
from tests.providers.kit.wire_helpers import (
    REQUEST,
    decode,
    fold,
    random_splits,
    read_http,
    wire_bytes,
    wire_json,
)

SPLITS = 40


def each_split(name: str):
    data = wire_bytes(name)
    rng = random.Random(name)
    yield [data]
    for _ in range(SPLITS):
        yield random_splits(data, rng)


def decode_every_split(adapter, name: str):
    results = [fold(decode(adapter, pieces)) for pieces in each_split(name)]
    first = results[0]
    for other in results[1:]:
        assert other == first
    return first


def raises_on_every_split(adapter, name: str, error_class):
    caught = []
    for pieces in each_split(name):
        with pytest.raises(error_class) as info:
            decode(adapter, pieces)
        caught.append(info.value)
    return caught[0]


# -- OpenAI ---------------------------------------------------------------------


def test_it_reads_an_openai_text_stream_with_its_usage_chunk():
    reply = decode_every_split(OpenAIAdapter(), "openai_chat_stream_text_usage.sse")
    assert reply.text.startswith("I'm unable to provide real-time weather updates.")
    assert reply.text.endswith("a reliable weather website or a weather app.")
    assert reply.finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        14,
        30,
        44,
    )
    assert reply.usage.estimated is False


def test_it_merges_openai_parallel_tool_call_fragments_by_index_keeping_the_first_id():
    reply = decode_every_split(OpenAIAdapter(), "openai_chat_stream_tools.sse")
    assert reply.finish_reason == "tool_calls"
    assert len(reply.tool_calls) == 2
    first, second = reply.tool_calls
    assert first.id == "call_JMW1whyEaYG438VE1OIflxA2"
    assert first.name == "GetWeatherArgs"
    assert second.id.startswith("call_") and second.id != first.id
    for call in reply.tool_calls:
        assert isinstance(call.parsed_arguments(), dict)
    assert reply.usage.total_tokens > 0


def test_it_parses_an_openai_tool_call_completion_with_string_arguments():
    reply = OpenAIAdapter().parse_chat(wire_json("openai_chat_completion_tool_calls.json"), REQUEST)
    assert reply.text == ""
    assert reply.finish_reason == "tool_calls"
    [call] = reply.tool_calls
    assert (call.id, call.name) == ("call_abc123", "get_current_weather")
    assert call.parsed_arguments() == {"location": "Boston, MA"}
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (82, 17)


def test_it_classifies_openai_insufficient_quota_as_a_quota_error_not_a_rate_limit():
    error = OpenAIAdapter().classify_error(
        429, wire_json("openai_error_429_insufficient_quota.json"), {}
    )
    assert type(error) is errors.QuotaExceededError
    # key-level (the pool cools the key down until the reset), never retried on the same key
    assert not error.permanent and not error.retryable and error.scope == "credential"
    assert error.code == "credit_balance_exhausted"
    assert error.status_code == 429


# -- OpenRouter -------------------------------------------------------------------


def test_it_raises_the_openrouter_mid_stream_error_sent_after_a_200():
    error = raises_on_every_split(
        OpenRouterAdapter(), "openrouter_stream_midstream_error.sse", errors.ServerError
    )
    assert error.code == "server_error"
    assert "Provider disconnected" in error.message


def test_it_classifies_the_openrouter_429_body_with_its_numeric_code():
    error = OpenRouterAdapter().classify_error(429, wire_json("openrouter_error_429.json"), {})
    assert type(error) is errors.RateLimitError
    assert error.retryable


def test_it_normalises_openrouter_models_with_per_token_string_prices():
    [model] = OpenRouterAdapter().parse_models(wire_json("openrouter_models_response.json"))
    assert (model.id, model.name, model.context_window, model.max_output_tokens) == (
        "openai/gpt-4",
        "GPT-4",
        8192,
        4096,
    )
    assert model.input_price_per_million == 30.0
    assert model.output_price_per_million == 60.0
    assert model.supports_tools is False  # its supported_parameters do not list tools
    assert model.supports_vision is False  # its input_modalities are ["text"]


def test_it_reads_openrouter_credits_from_the_key_endpoint_body():
    credits = parse_credits(wire_json("openrouter_key_response.json"))
    assert (credits.limit, credits.limit_remaining, credits.usage) == (100, 74.5, 25.5)
    assert credits.limit_reset == "monthly"
    assert credits.is_free_tier is False


# -- Anthropic --------------------------------------------------------------------


def test_it_reads_an_anthropic_text_stream_that_ends_without_a_blank_line():
    reply = decode_every_split(AnthropicAdapter(), "anthropic_messages_stream_text.sse")
    assert reply.text == "Hello there!"
    assert reply.finish_reason == "stop"
    assert reply.raw_finish_reason == "end_turn"


def test_it_assembles_an_anthropic_streamed_tool_use_from_partial_json():
    reply = decode_every_split(AnthropicAdapter(), "anthropic_messages_stream_tool_use.sse")
    assert reply.text == "I'll check the current weather in Paris for you."
    [call] = reply.tool_calls
    assert (call.id, call.name) == ("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather")
    assert call.parsed_arguments() == {"location": "Paris"}
    assert reply.finish_reason == "tool_calls"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (377, 65)


def test_it_reports_a_tool_input_cut_by_max_tokens_as_length_with_the_partial_arguments():
    reply = decode_every_split(
        AnthropicAdapter(), "anthropic_messages_stream_max_tokens_truncated_tool.sse"
    )
    assert reply.finish_reason == "length"
    assert reply.raw_finish_reason == "max_tokens"
    [call] = reply.tool_calls
    assert call.arguments.startswith('{"filename": "taxes.txt", "lines_of_text": [')
    with pytest.raises(json.JSONDecodeError):
        call.parsed_arguments()
    assert reply.usage.completion_tokens == 124


def test_it_raises_an_overloaded_error_for_an_anthropic_error_event_mid_stream():
    error = raises_on_every_split(
        AnthropicAdapter(), "anthropic_stream_error_overloaded.sse", errors.OverloadedError
    )
    assert error.retryable
    assert error.code == "overloaded_error"


def test_it_classifies_the_anthropic_529_overloaded_body():
    error = AnthropicAdapter().classify_error(
        529, wire_json("anthropic_error_529_overloaded.json"), {}
    )
    assert type(error) is errors.OverloadedError
    assert error.status_code == 529


def test_it_classifies_a_recorded_anthropic_429_as_a_rate_limit():
    status, headers, body = read_http("anthropic_error_429_rate_limit.http")
    error = AnthropicAdapter().classify_error(status, body, headers)
    assert type(error) is errors.RateLimitError
    assert error.status_code == 429 and error.retryable


def test_it_classifies_a_recorded_anthropic_400_as_an_invalid_request():
    status, headers, body = read_http("anthropic_error_400_invalid_request.http")
    error = AnthropicAdapter().classify_error(status, body, headers)
    assert type(error) is errors.InvalidRequestError
    assert not error.retryable and not error.permanent


def test_it_parses_a_recorded_anthropic_tool_use_message():
    reply = AnthropicAdapter().parse_chat(wire_json("anthropic_messages_tool_use.json"), REQUEST)
    [call] = reply.tool_calls
    assert (call.id, call.name) == ("toolu_01A9HHF5Ezy3oBrKmSgfASm9", "get_weather")
    assert call.parsed_arguments() == {"location": "San Francisco, CA", "units": "f"}
    assert reply.finish_reason == "tool_calls"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (656, 74)


# -- Gemini ---------------------------------------------------------------------


def test_it_reads_a_gemini_crlf_stream_with_usage_on_the_last_chunk():
    reply = decode_every_split(GeminiAdapter(), "gemini_stream_text.sse")
    assert reply.text == "The capital of Wyoming is **Cheyenne**.\n"
    assert reply.finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, 10)


def test_it_reads_a_gemini_streamed_function_call_leaving_thoughts_out_of_the_text():
    reply = decode_every_split(GeminiAdapter(), "gemini_stream_function_call.sse")
    assert reply.text == ""
    [call] = reply.tool_calls
    assert call.name == "now"
    assert call.parsed_arguments() == {}
    assert call.id  # Gemini sends none; the kit gives each call a stable one
    # thoughtSignature kept for the next turn
    assert call.signature and call.signature.startswith("CiIBVKhc7v")
    assert reply.finish_reason == "tool_calls"
    assert reply.raw_finish_reason == "STOP"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (38, 6 + 168)


def test_it_surfaces_a_gemini_blocked_prompt_as_content_filter_not_an_empty_stop():
    reply = decode_every_split(GeminiAdapter(), "gemini_stream_prompt_blocked_safety.sse")
    assert reply.text == ""
    assert reply.finish_reason == "content_filter"
    assert reply.raw_finish_reason == "SAFETY"


def test_it_raises_the_bare_json_error_gemini_sends_in_the_middle_of_a_stream():
    adapter = GeminiAdapter()
    for pieces in each_split("gemini_vertex_stream_error_mid_stream.txt"):
        reader = adapter.stream_reader(REQUEST)
        texts = []
        with pytest.raises(errors.ServerError) as info:
            for piece in pieces:
                texts.extend(c.text for c in reader.feed(piece))
            texts.extend(c.text for c in reader.close())
        assert "".join(texts) == "First Second "
        assert info.value.code == "CANCELLED"


def test_it_parses_a_gemini_function_call_reply_and_counts_thinking_as_output():
    reply = GeminiAdapter().parse_chat(wire_json("gemini_generate_function_call.json"), REQUEST)
    assert reply.text == ""
    [call] = reply.tool_calls
    assert call.name == "now"
    assert reply.finish_reason == "tool_calls"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (38, 8 + 501)


def test_it_keeps_the_partial_text_of_a_gemini_reply_stopped_for_safety():
    reply = GeminiAdapter().parse_chat(wire_json("gemini_generate_finish_safety.json"), REQUEST)
    assert reply.text == "Safety error incoming in 5, 4, 3, 2..."
    assert reply.finish_reason == "content_filter"
    assert reply.raw_finish_reason == "SAFETY"


def test_it_classifies_an_invalid_gemini_api_key_as_authentication_despite_status_400():
    error = GeminiAdapter().classify_error(
        400, wire_json("gemini_error_400_api_key_invalid.json"), {}
    )
    assert type(error) is errors.AuthenticationError
    assert error.permanent
    assert error.code == "API_KEY_INVALID"


def test_it_reads_the_retry_delay_from_a_gemini_resource_exhausted_body():
    error = GeminiAdapter().classify_error(
        429, wire_json("gemini_error_429_resource_exhausted.json"), {}
    )
    assert type(error) is errors.RateLimitError
    assert error.retry_after == 40.0
