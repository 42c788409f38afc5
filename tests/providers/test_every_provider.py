"""The shared battery: every provider in the registry against the simulator, over real
loopback HTTP.

Parametrised over ``kit.providers.PROFILES``, so a new provider runs every test
here as soon as its profile is registered (and the simulator speaks its wire,
see ``SETUPS``). Where providers legitimately differ, the test asks the profile
(its primary credential, whether its error bodies code "context too long",
how it answers an exhausted quota, which rate-limit headers it sends) instead
of naming providers.
"""

from __future__ import annotations

import httpx
import pytest

from providers_app.kit import errors
from providers_app.kit.adapters import Deadlines, ProviderConfig
from providers_app.kit.providers import PROFILES
from providers_app.kit.ratelimit import HEADER_STYLES
from providers_app.kit.types import Message, ResponseBuilder, ToolChoice
from tests.providers.kit.live_helpers import (
    PROVIDERS,
    SETUPS,
    TIME,
    WEATHER,
    ask,
    make_adapter,
)

pytestmark = pytest.mark.parametrize("provider", PROVIDERS)


async def collect(stream):
    builder = ResponseBuilder()
    chunks = []
    async with stream:
        async for chunk in stream:
            chunks.append(chunk)
            builder.add(chunk)
    return builder.build(), chunks


async def test_it_answers_a_plain_chat(simulator, provider):
    adapter = make_adapter(simulator, provider)
    reply = await adapter.chat(ask(provider))
    assert reply.text == "Simulated reply to: Hello there"
    assert reply.finish_reason == "stop"
    assert reply.usage.prompt_tokens == 2 and reply.usage.completion_tokens == 5
    assert reply.usage.estimated is False
    await adapter.aclose()


async def test_it_streams_a_chat_word_by_word_with_usage(simulator, provider):
    adapter = make_adapter(simulator, provider)
    reply, chunks = await collect(adapter.stream(ask(provider)))
    assert reply.text == "Simulated reply to: Hello there"
    assert len([c for c in chunks if c.text]) >= 4
    assert reply.finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, 5)
    await adapter.aclose()


async def test_it_reports_length_when_max_tokens_cuts_the_reply(simulator, provider):
    adapter = make_adapter(simulator, provider)
    reply = await adapter.chat(ask(provider, max_tokens=2))
    assert reply.text.strip() == "Simulated reply"
    assert reply.finish_reason == "length"
    streamed, _ = await collect(adapter.stream(ask(provider, max_tokens=2)))
    assert streamed.finish_reason == "length"
    await adapter.aclose()


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "stream"])
async def test_it_holds_a_two_turn_tool_conversation_with_parallel_calls(
    simulator, provider, streaming
):
    adapter = make_adapter(simulator, provider)
    first_turn = ask(provider, "Use get_weather and get_time for Paris", tools=[WEATHER, TIME])
    if streaming:
        reply, _ = await collect(adapter.stream(first_turn))
    else:
        reply = await adapter.chat(first_turn)
    assert reply.finish_reason == "tool_calls"
    assert [c.name for c in reply.tool_calls] == ["get_weather", "get_time"]
    assert len({c.id for c in reply.tool_calls}) == 2
    assert reply.tool_calls[0].parsed_arguments() == {"city": "city-value", "unit": "celsius"}

    results = {"get_weather": '{"sky": "sunny"}', "get_time": '{"time": "12:00"}'}
    second_turn = ask(provider, "Use get_weather and get_time for Paris", tools=[WEATHER, TIME])
    second_turn.messages += [
        Message(role="assistant", content=reply.text or None, tool_calls=reply.tool_calls)
    ] + [
        Message(role="tool", tool_call_id=call.id, content=results[call.name])
        for call in reply.tool_calls
    ]
    if streaming:
        answer, _ = await collect(adapter.stream(second_turn))
    else:
        answer = await adapter.chat(second_turn)
    assert answer.finish_reason == "stop"
    assert answer.tool_calls == []
    assert "sunny" in answer.text and "12:00" in answer.text
    await adapter.aclose()


async def test_it_calls_no_tool_when_tool_choice_is_none_and_the_named_one_when_forced(
    simulator, provider
):
    adapter = make_adapter(simulator, provider)
    reply = await adapter.chat(
        ask(provider, "get_weather please", tools=[WEATHER, TIME], tool_choice=ToolChoice("none"))
    )
    assert reply.tool_calls == [] and reply.finish_reason == "stop"
    forced = await adapter.chat(
        ask(provider, "hello", tools=[WEATHER, TIME], tool_choice=ToolChoice.function("get_time"))
    )
    assert [c.name for c in forced.tool_calls] == ["get_time"]
    await adapter.aclose()


async def test_it_lists_models_fetched_from_the_provider(simulator, provider):
    adapter = make_adapter(simulator, provider)
    models = await adapter.list_models()
    assert models and all(m.source == "fetched" for m in models)
    # an endpoint-agnostic type lists its models under its wire's name
    assert all(m.provider == PROFILES[provider].adapter.provider_type and m.id for m in models)
    assert SETUPS[provider].model in {m.id for m in models}
    await adapter.aclose()


async def test_it_falls_back_to_its_static_model_list_when_the_fetch_fails(simulator, provider):
    adapter = make_adapter(simulator, provider, api_key="invalid-key-0000")
    models = await adapter.list_models()
    assert models and all(m.source == "static" for m in models)
    assert adapter.default_model in {m.id for m in models}
    await adapter.aclose()


async def test_it_checks_health(simulator, provider):
    healthy = make_adapter(simulator, provider)
    status = await healthy.health_check()
    assert status.healthy and status.latency_ms > 0 and status.error_type is None
    broken = make_adapter(simulator, provider, api_key="invalid-key-0000")
    status = await broken.health_check()
    assert not status.healthy and status.error_type == "authentication_error"
    assert "invalid-key-0000" not in status.detail
    await healthy.aclose()
    await broken.aclose()


async def test_it_describes_its_authentication_without_the_secret(simulator, provider):
    adapter = make_adapter(simulator, provider)
    state = adapter.auth_state()
    assert state.configured
    assert state.method == PROFILES[provider].primary_credential
    assert state.hint in ("…1234", "…5678")
    assert "sk-test-key-1234" not in repr(adapter.config) + repr(adapter)
    await adapter.aclose()


# -- errors ---------------------------------------------------------------------

FAILURES = {
    "auth": errors.AuthenticationError,
    "permission": errors.PermissionDeniedError,
    "not_found": errors.NotFoundError,
    "bad_request": errors.InvalidRequestError,
    "rate_limit": errors.RateLimitError,
    "server": errors.ServerError,
    "overloaded": errors.OverloadedError,
}


@pytest.mark.parametrize("mode", list(FAILURES))
@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "stream"])
async def test_it_raises_the_typed_error_for_each_failure(simulator, provider, mode, streaming):
    adapter = make_adapter(simulator, provider, extra_headers={"x-sim-fail": mode})
    with pytest.raises(FAILURES[mode]) as info:
        if streaming:
            await collect(adapter.stream(ask(provider)))
        else:
            await adapter.chat(ask(provider))
    error = info.value
    assert error.retryable == (mode in ("rate_limit", "server", "overloaded"))
    # a 403 is about this model until the pool sees it on a second one: not permanent
    assert error.permanent == (mode == "auth")
    assert error.provider == provider
    assert error.status_code is not None
    if mode == "rate_limit":
        assert error.retry_after == 2
    assert "sk-test-key-1234" not in error.message + repr(error)
    await adapter.aclose()


async def test_it_rejects_an_invalid_key_as_an_authentication_error(simulator, provider):
    adapter = make_adapter(simulator, provider, api_key="invalid-secret-9999")
    with pytest.raises(errors.AuthenticationError) as info:
        await adapter.chat(ask(provider))
    assert "invalid-secret-9999" not in str(info.value) + repr(info.value)
    await adapter.aclose()


async def test_it_tells_a_context_length_error_where_the_provider_says_so(simulator, provider):
    adapter = make_adapter(simulator, provider, extra_headers={"x-sim-fail": "context_length"})
    expected = (
        errors.ContextLengthError
        if PROFILES[provider].context_length_coded
        else errors.InvalidRequestError
    )
    with pytest.raises(expected):
        await adapter.chat(ask(provider))
    await adapter.aclose()


async def test_it_times_out_on_a_hanging_provider(simulator, provider):
    adapter = make_adapter(
        simulator,
        provider,
        deadlines=Deadlines(first_byte=0.3),
        extra_headers={"x-sim-fail": "hang"},
    )
    with pytest.raises(errors.TimeoutError) as info:
        await adapter.chat(ask(provider))
    # a non-stream reply's first byte is the whole generation: a slow one looks the same
    assert info.value.phase == "first_byte" and info.value.scope == "request"
    with pytest.raises(errors.TimeoutError) as info:
        await collect(adapter.stream(ask(provider)))
    # a stream's headers come before generation starts: none is the provider's fault
    assert info.value.phase == "headers" and info.value.retryable and info.value.scope == "provider"
    await adapter.aclose()


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "stream"])
async def test_it_raises_a_network_error_when_the_provider_disconnects(
    simulator, provider, streaming
):
    adapter = make_adapter(simulator, provider, extra_headers={"x-sim-fail": "disconnect"})
    with pytest.raises(errors.NetworkError) as info:
        if streaming:
            await collect(adapter.stream(ask(provider)))
        else:
            await adapter.chat(ask(provider))
    assert info.value.retryable
    await adapter.aclose()


async def test_it_raises_a_protocol_error_on_a_malformed_chunk(simulator, provider):
    adapter = make_adapter(simulator, provider, extra_headers={"x-sim-fail": "malformed"})
    with pytest.raises(errors.ProtocolError):
        await collect(adapter.stream(ask(provider)))
    await adapter.aclose()


async def test_it_raises_the_error_a_provider_sends_mid_stream_after_some_text(simulator, provider):
    adapter = make_adapter(simulator, provider, extra_headers={"x-sim-fail": "midstream_error"})
    texts = []
    with pytest.raises(errors.ProviderError) as info:
        async with adapter.stream(ask(provider)) as stream:
            async for chunk in stream:
                texts.append(chunk.text)
    assert "".join(texts)  # the first chunks arrived before the failure
    assert info.value.retryable
    await adapter.aclose()


async def test_it_surfaces_a_content_filter_stop(simulator, provider):
    adapter = make_adapter(simulator, provider, extra_headers={"x-sim-fail": "content_filter"})
    reply = await adapter.chat(ask(provider))
    assert reply.finish_reason == "content_filter"
    streamed, _ = await collect(adapter.stream(ask(provider)))
    assert streamed.finish_reason == "content_filter"
    await adapter.aclose()


async def test_it_closes_the_upstream_connection_when_a_stream_is_abandoned(simulator, provider):
    client = httpx.AsyncClient()
    setup = SETUPS[provider]
    config = ProviderConfig(
        base_url=simulator.url + setup.path,
        api_key="sk-test-key-1234",
        extra_headers={"x-sim-delay-ms": "50"},
    )
    adapter = setup.adapter(provider)(config, client=client)
    stream = adapter.stream(ask(provider, "one two three four five six seven eight nine ten"))
    first = await stream.__anext__()
    assert first is not None
    await stream.aclose()
    # A response closed before its end cannot be reused: httpcore closes the
    # connection and drops it from the pool, which ends the upstream request.
    pool = client._transport._pool  # noqa: SLF001 - the only way to see the pool's connections
    assert pool.connections == []
    await client.aclose()


async def test_it_tells_an_exhausted_billing_quota_from_a_rate_limit(simulator, provider):
    adapter = make_adapter(simulator, provider, extra_headers={"x-sim-fail": "quota"})
    with pytest.raises(errors.ProviderError) as info:
        await adapter.chat(ask(provider))
    if PROFILES[provider].quota_is_rate_limit:
        # e.g. Gemini's per-day quota is a RESOURCE_EXHAUSTED like any other: it frees up at the
        # reset
        assert type(info.value) is errors.RateLimitError
    else:
        assert type(info.value) is errors.QuotaExceededError
        # not retried on this key, but not a dead key either: quotas come back
        assert not info.value.permanent and not info.value.retryable
        assert info.value.scope == "credential"
    await adapter.aclose()


# -- rate limits ------------------------------------------------------------------


async def test_it_reads_the_rate_limit_headers_of_its_style(simulator, provider):
    profile = PROFILES[provider]
    assert profile.rate_limit_style in HEADER_STYLES
    adapter = make_adapter(simulator, provider)
    reply = await adapter.chat(ask(provider))
    if profile.sends_rate_limit_headers and profile.rate_limit_headers_on_success:
        assert reply.rate_limit is not None and reply.rate_limit.has_limits
        assert all(
            remaining is None or limit is None or remaining <= limit
            for _, limit, remaining, _ in reply.rate_limit.windows()
        )
    else:
        assert reply.rate_limit is None or not reply.rate_limit.has_limits
    if not profile.sends_rate_limit_headers:
        # nothing to read: the profile's client-side bucket stands in for the headers
        assert profile.client_limits({}) is not None
    await adapter.aclose()


async def test_it_reads_the_retry_after_of_a_429_in_stream_and_reply_alike(simulator, provider):
    adapter = make_adapter(simulator, provider, extra_headers={"x-sim-fail": "rate_limit"})
    for streaming in (False, True):
        with pytest.raises(errors.RateLimitError) as info:
            if streaming:
                await collect(adapter.stream(ask(provider)))
            else:
                await adapter.chat(ask(provider))
        assert info.value.retry_after == 2 and info.value.retryable
    await adapter.aclose()


def test_it_is_registered_whole(provider):
    """The registry entry carries everything the services ask of a provider."""
    profile = PROFILES[provider]
    assert profile.provider_type == provider
    assert provider in SETUPS  # the simulator speaks its wire
    assert profile.label
    if profile.oauth.code_flow is None:
        assert profile.oauth.device_url  # a provider without a browser flow has the device flow
    limits = profile.client_limits({})
    if limits is not None:
        assert limits.per_minute > 0 and (limits.per_day is None or limits.per_day > 0)
