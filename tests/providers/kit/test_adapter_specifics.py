"""What sets each provider apart, against the simulator over loopback."""

from __future__ import annotations

import httpx
import pytest

from providers_app.kit import errors
from providers_app.kit.adapters import GeminiAdapter, OpenAIAdapter, ProviderConfig
from providers_app.kit.adapters.qwen import DASHSCOPE_BASE_URL, PORTAL_BASE_URL, QwenAdapter
from providers_app.kit.providers import create_adapter
from tests.providers.kit.live_helpers import ask, make_adapter


async def sent_requests(simulator) -> list[dict]:
    async with httpx.AsyncClient() as client:
        return (await client.get(simulator.url + "/_sim/requests")).json()


async def last_request_headers(simulator) -> dict[str, str]:
    requests = await sent_requests(simulator)
    return {k.lower(): v for k, v in requests[-1]["headers"].items()}


async def test_it_sends_the_openai_organization_header(simulator):
    adapter = make_adapter(simulator, "openai", organization="org-aipk")
    await adapter.chat(ask("openai"))
    headers = await last_request_headers(simulator)
    assert headers["openai-organization"] == "org-aipk"
    assert (
        headers["authorization"].endswith("1234")
        and "sk-test-key-1234" not in headers["authorization"]
    )


async def test_it_points_the_openai_adapter_at_any_compatible_endpoint(simulator):
    adapter = create_adapter(
        "openai-compatible",
        ProviderConfig(base_url=simulator.url + "/openai/v1", api_key="gsk-groq-like-0001"),
    )
    assert isinstance(adapter, OpenAIAdapter)
    reply = await adapter.chat(ask("openai"))
    assert reply.text == "Simulated reply to: Hello there"
    body = (await sent_requests(simulator))[-1]["body"]
    assert "max_completion_tokens" not in body  # compatible servers get max_tokens


def test_it_refuses_an_openai_compatible_provider_without_a_base_url():
    with pytest.raises(ValueError, match="base_url"):
        create_adapter("openai-compatible", ProviderConfig(api_key="k"))


async def test_it_sends_the_anthropic_version_and_the_key_in_x_api_key(simulator):
    adapter = make_adapter(simulator, "anthropic")
    await adapter.chat(ask("anthropic"))
    headers = await last_request_headers(simulator)
    assert headers["anthropic-version"] == "2023-06-01"
    assert "x-api-key" in headers and "authorization" not in headers


async def test_it_sends_an_anthropic_oauth_token_as_a_bearer(simulator):
    adapter = make_adapter(
        simulator, "anthropic", api_key=None, access_token="sk-ant-oat-token-4321"
    )
    reply = await adapter.chat(ask("anthropic"))
    assert reply.text
    headers = await last_request_headers(simulator)
    assert headers["authorization"].startswith("Bearer ") and "x-api-key" not in headers
    assert adapter.auth_state().method == "oauth"


async def test_it_sends_the_system_prompt_apart_and_tool_results_in_one_user_turn(simulator):
    from providers_app.kit.types import Message, ToolCall

    adapter = make_adapter(simulator, "anthropic")
    request = ask("anthropic")
    request.messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="weather and time?"),
        Message(
            role="assistant",
            tool_calls=[
                ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
                ToolCall("toolu_2", "get_time", '{"city": "Paris"}'),
            ],
        ),
        Message(role="tool", tool_call_id="toolu_1", content="sunny"),
        Message(role="tool", tool_call_id="toolu_2", content="noon"),
    ]
    reply = await adapter.chat(request)
    assert reply.text == "Tool results: sunny | noon"
    body = (await sent_requests(simulator))[-1]["body"]
    assert body["system"] == "Be brief."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "tool_result"]
    assert body["messages"][1]["content"][0]["input"] == {"city": "Paris"}


async def test_it_sends_the_gemini_api_key_in_its_header_not_the_url(simulator):
    adapter = make_adapter(simulator, "gemini")
    await adapter.chat(ask("gemini"))
    request = (await sent_requests(simulator))[-1]
    assert "x-goog-api-key" in {k.lower() for k in request["headers"]}
    assert "key=" not in (request.get("query") or "")


async def test_it_uses_the_code_assist_endpoint_with_oauth_and_a_project(simulator):
    adapter = make_adapter(
        simulator, "gemini", api_key=None, access_token="ya29.token-7777", project_id="proj-1"
    )
    reply = await adapter.chat(ask("gemini"))
    assert reply.text == "Simulated reply to: Hello there"
    streamed = ""
    async with adapter.stream(ask("gemini")) as stream:
        async for chunk in stream:
            streamed += chunk.text
    assert streamed == reply.text
    request = (await sent_requests(simulator))[-1]
    assert request["path"].endswith("/v1internal:streamGenerateContent")
    assert request["body"]["project"] == "proj-1"
    models = await adapter.list_models()
    assert models and models[0].source == "static"  # Code Assist lists no models


async def test_it_surfaces_gemini_malformed_function_call_and_blocked_prompts(simulator):
    malformed = make_adapter(
        simulator, "gemini", extra_headers={"x-sim-fail": "malformed_function_call"}
    )
    reply = await malformed.chat(ask("gemini"))
    assert (reply.finish_reason, reply.raw_finish_reason) == (
        "malformed_tool_call",
        "MALFORMED_FUNCTION_CALL",
    )
    blocked = make_adapter(simulator, "gemini", extra_headers={"x-sim-fail": "prompt_blocked"})
    text = ""
    finish = None
    async with blocked.stream(ask("gemini")) as stream:
        async for chunk in stream:
            text += chunk.text
            finish = chunk.finish_reason or finish
    assert (text, finish) == ("", "content_filter")


async def test_it_sends_openrouter_app_identification_and_reads_credits(simulator):
    adapter = make_adapter(
        simulator, "openrouter", site_url="https://aipk.example", site_name="aipk"
    )
    await adapter.chat(ask("openrouter"))
    headers = await last_request_headers(simulator)
    assert headers["http-referer"] == "https://aipk.example"
    assert headers["x-title"] == "aipk"
    credits = await adapter.credits()
    assert credits.usage >= 0
    models = await adapter.list_models()
    assert any(m.input_price_per_million for m in models)


async def test_it_gives_cerebras_a_long_first_byte_deadline_and_reads_its_day_limits(simulator):
    adapter = make_adapter(simulator, "cerebras")
    # slow first tokens on big models: the SDKs' 600 s read allowance, not the old 120 s
    assert adapter.deadlines.first_byte == 600.0
    reply = await adapter.chat(ask("cerebras"))
    assert reply.rate_limit.requests_day_limit and reply.rate_limit.requests_day_reset_at
    assert reply.rate_limit.tokens_minute_limit


async def test_it_reads_openai_and_anthropic_rate_limit_headers_on_streams_too(simulator):
    openai = make_adapter(simulator, "openai")
    async with openai.stream(ask("openai")) as stream:
        async for _ in stream:
            pass
    assert stream.rate_limit.requests_limit and stream.rate_limit.tokens_reset_at
    anthropic = make_adapter(simulator, "anthropic")
    reply = await anthropic.chat(ask("anthropic"))
    assert reply.rate_limit.input_tokens_limit and reply.rate_limit.requests_reset_at


async def test_it_authenticates_qwen_with_the_oauth_bearer_and_knows_both_base_urls(simulator):
    adapter = make_adapter(simulator, "qwen")
    reply = await adapter.chat(ask("qwen"))
    assert reply.rate_limit is None  # Qwen sends no rate-limit headers
    headers = await last_request_headers(simulator)
    assert headers["authorization"].startswith("Bearer ")
    assert QwenAdapter.default_base_url == PORTAL_BASE_URL
    assert DASHSCOPE_BASE_URL.endswith("/compatible-mode/v1")


async def test_it_waits_for_its_token_bucket_before_calling_a_provider_without_headers(simulator):
    from providers_app.kit.providers.qwen import qwen_bucket
    from providers_app.kit.ratelimit import MemoryRateLimitStore

    clock = [1000.0]
    bucket = qwen_bucket(MemoryRateLimitStore(), "qwen:test", clock=lambda: clock[0])
    adapter = QwenAdapter(
        ProviderConfig(base_url=simulator.url + "/qwen/v1", access_token="tok-1111", timeout=0.5),
        limiter=bucket,
    )
    for _ in range(60):
        await bucket.try_acquire()
    with pytest.raises(errors.RateLimitError) as info:
        await adapter.chat(ask("qwen"))
    assert info.value.retry_after and info.value.retry_after > 0.5


async def test_it_keeps_secrets_out_of_reprs_and_error_messages(simulator):
    adapter = GeminiAdapter(
        ProviderConfig(base_url=simulator.url + "/gemini", api_key="invalid-AIzaSecret-2222")
    )
    with pytest.raises(errors.AuthenticationError) as info:
        await adapter.chat(ask("gemini"))
    text = repr(adapter) + repr(adapter.config) + str(info.value) + repr(info.value)
    assert "invalid-AIzaSecret-2222" not in text


def test_it_sends_a_gemini_thought_signature_back_with_its_call():
    from providers_app.kit.adapters.gemini import messages_to_gemini
    from providers_app.kit.types import Message, ToolCall

    call = ToolCall(id="call_x_0_now", name="now", arguments="{}", signature="CiIBVKhc7v")
    _, contents = messages_to_gemini(
        [
            Message(role="user", content="days until new year?"),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id="call_x_0_now", content='{"date": "2026-11-21"}'),
        ]
    )
    assert contents[1]["parts"] == [
        {"functionCall": {"name": "now", "args": {}}, "thoughtSignature": "CiIBVKhc7v"}
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "now", "response": {"date": "2026-11-21"}}}
    ]


async def test_it_estimates_and_flags_usage_when_a_provider_reports_none(simulator):
    adapter = make_adapter(simulator, "openai")
    # a compatible server that ignores stream_options sends no usage chunk
    request = ask("openai", "Hello there", extra_body={"stream_options": {"include_usage": False}})
    usage = None
    async with adapter.stream(request) as stream:
        async for chunk in stream:
            usage = chunk.usage or usage
    assert usage.estimated is True
    assert (
        usage.prompt_tokens >= 1
        and usage.completion_tokens == len("Simulated reply to: Hello there") // 4
    )
