"""What the SDKs hide: headers, SSE framing, cut connections, broken chunks, hangs, aliases."""

import asyncio
import json
import re
import time
from datetime import UTC, datetime

import httpx
import pytest

OPENAI_AUTH = {"Authorization": "Bearer sk-test-1234"}
ANTHROPIC_AUTH = {"x-api-key": "sk-ant-1234", "anthropic-version": "2023-06-01"}
GEMINI_AUTH = {"x-goog-api-key": "AIza-1234"}
USER = [{"role": "user", "content": "one two three four"}]


def openai_request(simulator, **body):
    return (
        simulator.base_url("openai") + "/chat/completions",
        OPENAI_AUTH,
        {"model": "gpt-4o", "messages": USER, **body},
    )


def anthropic_request(simulator, **body):
    return (
        simulator.base_url("anthropic") + "/v1/messages",
        ANTHROPIC_AUTH,
        {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": USER, **body},
    )


def gemini_request(simulator, stream=False):
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return (
        simulator.base_url("gemini") + f"/v1beta/models/gemini-2.5-flash:{method}",
        GEMINI_AUTH,
        {"contents": [{"role": "user", "parts": [{"text": "one two three four"}]}]},
    )


def stream_request(simulator, provider):
    if provider == "openai":
        return openai_request(simulator, stream=True)
    if provider == "anthropic":
        return anthropic_request(simulator, stream=True)
    return gemini_request(simulator, stream=True)


def data_lines(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]


async def test_it_sends_openai_rate_limit_headers_as_go_durations(simulator):
    url, headers, body = openai_request(simulator)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers=headers, json=body)
    assert response.headers["x-ratelimit-limit-requests"] == "60"
    assert response.headers["x-ratelimit-remaining-requests"] == "59"
    assert response.headers["x-ratelimit-reset-requests"] == "1s"
    assert response.headers["x-ratelimit-reset-tokens"] == "6m0s"
    assert response.headers["x-request-id"]


async def test_it_sends_anthropic_rate_limit_headers_with_rfc3339_resets(simulator):
    url, headers, body = anthropic_request(simulator)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers=headers, json=body)
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        assert int(response.headers[f"anthropic-ratelimit-{kind}-limit"]) > 0
        assert int(response.headers[f"anthropic-ratelimit-{kind}-remaining"]) >= 0
        reset = datetime.strptime(
            response.headers[f"anthropic-ratelimit-{kind}-reset"], "%Y-%m-%dT%H:%M:%SZ"
        ).replace(tzinfo=UTC)
        assert reset > datetime.now(UTC)


async def test_it_sends_no_rate_limit_headers_for_gemini(simulator):
    url, headers, body = gemini_request(simulator)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers=headers, json=body)
    assert response.status_code == 200
    assert not [h for h in response.headers if "ratelimit" in h.lower()]


async def test_it_frames_openai_streams_like_the_recorded_ones(simulator):
    url, headers, body = openai_request(simulator, stream=True)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers=headers, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = data_lines(response.text)
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


async def test_it_frames_anthropic_streams_like_the_recorded_ones(simulator):
    url, headers, body = anthropic_request(simulator, stream=True)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers=headers, json=body)
    events = re.findall(r"^event: (\w+)$", response.text, flags=re.M)
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 7,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for line in data_lines(response.text):
        json.loads(line)


async def test_it_frames_gemini_streams_with_crlf_and_no_done(simulator):
    url, headers, body = gemini_request(simulator, stream=True)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers=headers, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.count("\r\n\r\n") == 7
    chunks = [json.loads(line) for line in data_lines(response.text)]
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == (
        "Simulated reply to: one two three four"
    )
    assert "[DONE]" not in response.text


async def test_it_streams_a_json_array_without_alt_sse(simulator):
    url, headers, body = gemini_request(simulator, stream=True)
    async with httpx.AsyncClient() as http:
        response = await http.post(url.replace("?alt=sse", ""), headers=headers, json=body)
    chunks = response.json()
    assert isinstance(chunks, list) and len(chunks) == 7
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_it_cuts_the_stream_after_two_chunks_on_disconnect(simulator, provider):
    url, headers, body = stream_request(simulator, provider)
    received = b""
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            async with http.stream(
                "POST", url, headers={**headers, "x-sim-fail": "disconnect"}, json=body
            ) as response:
                async for data in response.aiter_bytes():
                    received += data
    text = received.decode()
    assert "Simulated " in text and "reply " in text and "to: " not in text


async def test_it_closes_without_a_response_on_non_stream_disconnect(simulator):
    url, headers, body = anthropic_request(simulator)
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, headers={**headers, "x-sim-fail": "disconnect"}, json=body)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_it_sends_a_chunk_that_is_not_json_when_malformed(simulator, provider):
    url, headers, body = stream_request(simulator, provider)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers={**headers, "x-sim-fail": "malformed"}, json=body)
    lines = data_lines(response.text)
    for line in lines[:-1]:
        json.loads(line)
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[-1])


async def test_it_truncates_a_non_stream_body_when_malformed(simulator):
    url, headers, body = openai_request(simulator)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers={**headers, "x-sim-fail": "malformed"}, json=body)
    assert response.status_code == 200
    assert response.text.startswith('{"id":"chatcmpl-')
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_it_sends_anthropic_error_events_midstream(simulator):
    url, headers, body = anthropic_request(simulator, stream=True)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url, headers={**headers, "x-sim-fail": "midstream_error"}, json=body
        )
    assert response.status_code == 200
    tail = response.text.rstrip().split("\n\n")[-1]
    assert tail.startswith("event: error\ndata: ")
    assert json.loads(tail.split("data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


async def test_it_sends_a_bare_json_error_object_midstream_for_gemini(simulator):
    url, headers, body = gemini_request(simulator, stream=True)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url, headers={**headers, "x-sim-fail": "midstream_error"}, json=body
        )
    head, _, tail = response.text.rpartition("\r\n\r\n")
    assert len(data_lines(head)) == 2
    assert not tail.startswith("data:")
    assert json.loads(tail)["error"]["status"] == "UNAVAILABLE"


async def test_it_hangs_without_blocking_other_requests(simulator):
    url, headers, body = openai_request(simulator)
    async with httpx.AsyncClient() as http:
        hanging = asyncio.ensure_future(
            http.post(url, headers={**headers, "x-sim-fail": "hang"}, json=body, timeout=0.5)
        )
        ok = await http.post(url, headers=headers, json=body)
        assert ok.status_code == 200
        assert not hanging.done()
        with pytest.raises(httpx.ReadTimeout):
            await hanging


async def test_it_waits_the_requested_delay_between_chunks(simulator):
    url, headers, body = openai_request(simulator, stream=True)
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers={**headers, "x-sim-delay-ms": "30"}, json=body)
    assert response.status_code == 200
    assert time.monotonic() - started >= 7 * 0.03  # 7 words, one delay before each


async def test_it_takes_retry_after_from_the_request(simulator):
    url, headers, body = openai_request(simulator)
    async with httpx.AsyncClient() as http:
        default = await http.post(url, headers={**headers, "x-sim-fail": "rate_limit"}, json=body)
        custom = await http.post(
            url,
            headers={**headers, "x-sim-fail": "rate_limit", "x-sim-retry-after": "9"},
            json=body,
        )
        anthropic_url, anthropic_headers, anthropic_body = anthropic_request(simulator)
        anthropic = await http.post(
            anthropic_url,
            headers={**anthropic_headers, "x-sim-fail": "rate_limit"},
            json=anthropic_body,
        )
    assert default.status_code == custom.status_code == anthropic.status_code == 429
    assert default.headers["retry-after"] == "2"
    assert custom.headers["retry-after"] == "9"
    assert anthropic.headers["retry-after"] == "2"
    assert anthropic.headers["anthropic-ratelimit-requests-remaining"] == "0"


async def test_it_rejects_an_unknown_failure_mode(simulator):
    url, headers, body = openai_request(simulator)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, headers={**headers, "x-sim-fail": "explode"}, json=body)
    assert response.status_code == 400
    assert "explode" in response.json()["error"]["message"]


async def test_it_answers_an_unparseable_body_with_a_400(simulator):
    url, headers, _ = openai_request(simulator)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url, headers={**headers, "content-type": "application/json"}, content=b"{not json"
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "auth",
    [
        {"params": {"key": "AIza-1234"}},
        {"headers": {"x-goog-api-key": "AIza-1234"}},
        {"headers": {"Authorization": "Bearer ya29.token-1234"}},
    ],
)
async def test_it_accepts_every_gemini_credential_style(simulator, auth):
    url, _, body = gemini_request(simulator)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, json=body, **auth)
    assert response.status_code == 200


async def test_it_requires_credentials_everywhere(simulator):
    async with httpx.AsyncClient(base_url=simulator.url) as http:
        responses = [
            await http.get("/openai/v1/models"),
            await http.get("/anthropic/v1/models", headers={"anthropic-version": "2023-06-01"}),
            await http.get("/gemini/v1beta/models"),
            await http.get("/qwen/v1/models"),
            await http.post("/cerebras/v1/chat/completions", json={}),
            await http.get("/openrouter/api/v1/credits"),
        ]
    assert [r.status_code for r in responses] == [401] * 6


async def test_it_serves_the_unprefixed_aliases(simulator):
    async with httpx.AsyncClient(base_url=simulator.url) as http:
        chat = await http.post(
            "/v1/chat/completions", headers=OPENAI_AUTH, json={"model": "gpt-4o", "messages": USER}
        )
        message = await http.post(
            "/v1/messages",
            headers=ANTHROPIC_AUTH,
            json={"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": USER},
        )
        openai_models = await http.get("/v1/models", headers=OPENAI_AUTH)
        anthropic_models = await http.get("/v1/models", headers=ANTHROPIC_AUTH)
        gemini = await http.post(
            "/v1beta/models/gemini-2.0-flash:generateContent",
            headers=GEMINI_AUTH,
            json={"contents": [{"parts": [{"text": "hi"}]}]},
        )
    assert chat.json()["object"] == "chat.completion"
    assert message.json()["type"] == "message"
    assert openai_models.json()["object"] == "list"
    assert anthropic_models.json()["has_more"] is False
    assert gemini.json()["candidates"][0]["content"]["parts"][0]["text"] == "Simulated reply to: hi"


async def test_it_reports_health(simulator):
    async with httpx.AsyncClient() as http:
        response = await http.get(simulator.url + "/_sim/health")
    assert response.status_code == 200


async def test_it_fails_a_request_whose_credential_names_a_failure_mode(simulator):
    url, _, body = openai_request(simulator)
    async with httpx.AsyncClient() as client:
        failing = await client.post(
            url, headers={"Authorization": "Bearer sk-sim-fail-rate_limit-0001"}, json=body
        )
        serving = await client.post(
            url, headers={"Authorization": "Bearer sk-sim-good-0002"}, json=body
        )
        anthropic_url, _, anthropic_body = anthropic_request(simulator)
        overloaded = await client.post(
            anthropic_url,
            headers={"x-api-key": "sk-ant-fail-overloaded-0003", "anthropic-version": "2023-06-01"},
            json=anthropic_body,
        )
    assert failing.status_code == 429 and failing.headers["retry-after"] == "2"
    assert serving.status_code == 200
    assert overloaded.status_code == 529
