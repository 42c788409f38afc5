"""Gemini through Code Assist (Google OAuth + project): wrapped responses and chunks."""

import json

import httpx
import pytest

BEARER = {"Authorization": "Bearer ya29.oauth-token-1234"}


def body(**extra):
    return {
        "model": "gemini-2.5-pro",
        "project": "sim-project-123",
        "request": {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]},
        **extra,
    }


@pytest.fixture
async def http(simulator):
    async with httpx.AsyncClient(base_url=simulator.url + "/gemini") as client:
        yield client


async def test_it_wraps_the_response_with_a_trace_id(http):
    response = await http.post("/v1internal:generateContent", headers=BEARER, json=body())
    assert response.status_code == 200
    wrapped = response.json()
    assert set(wrapped) == {"response", "traceId"}
    inner = wrapped["response"]
    assert (
        inner["candidates"][0]["content"]["parts"][0]["text"] == "Simulated reply to: hello there"
    )
    assert inner["candidates"][0]["finishReason"] == "STOP"
    assert inner["modelVersion"] == "gemini-2.5-pro"


async def test_it_wraps_every_stream_chunk(http):
    response = await http.post(
        "/v1internal:streamGenerateContent", params={"alt": "sse"}, headers=BEARER, json=body()
    )
    chunks = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert len(chunks) == 5
    assert all(set(c) == {"response", "traceId"} for c in chunks)
    assert len({c["traceId"] for c in chunks}) == 1
    text = "".join(c["response"]["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == "Simulated reply to: hello there"
    assert chunks[-1]["response"]["usageMetadata"]["candidatesTokenCount"] == 5


async def test_it_requires_a_bearer_token(http):
    api_key = await http.post(
        "/v1internal:generateContent", headers={"x-goog-api-key": "AIza-1234"}, json=body()
    )
    invalid = await http.post(
        "/v1internal:generateContent",
        headers={"Authorization": "Bearer invalid-token"},
        json=body(),
    )
    assert api_key.status_code == invalid.status_code == 401
    assert invalid.json()["error"]["status"] == "UNAUTHENTICATED"


async def test_it_requires_a_project(http):
    response = await http.post(
        "/v1internal:generateContent", headers=BEARER, json=body(project=None)
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_it_fails_on_request_unwrapped(http):
    response = await http.post(
        "/v1internal:generateContent",
        headers=BEARER,
        json=body(model="gemini-2.5-pro-fail-rate_limit"),
    )
    assert response.status_code == 429
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


async def test_it_calls_tools_through_the_wrapper(http):
    request = {
        "contents": [{"role": "user", "parts": [{"text": "run list_files"}]}],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "list_files",
                        "parametersJsonSchema": {
                            "type": "object",
                            "properties": {"path": {"type": "string"}},
                        },
                    }
                ]
            }
        ],
    }
    response = await http.post(
        "/v1internal:generateContent", headers=BEARER, json=body(request=request)
    )
    parts = response.json()["response"]["candidates"][0]["content"]["parts"]
    # Code Assist serves thinking models (gemini-2.5-*): the first call carries its signature
    assert [p["functionCall"] for p in parts] == [
        {"name": "list_files", "args": {"path": "path-value"}}
    ]
    assert parts[0]["thoughtSignature"]
