"""Upstreams that stop talking: no headers (hang), headers and no body (stall), two chunks
and then silence (stall_midstream), on every wire. Short client timeouts prove the
silence; the connection stays open until the client leaves."""

import asyncio
import json

import httpx
import pytest

from tests.simulator.sim_helpers import DEFAULT_MODELS, PROVIDERS, raw_chat

SHORT = httpx.Timeout(5.0, read=0.6)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_it_sends_a_200_and_headers_then_no_body_byte_when_stalled(
    simulator, provider, stream
):
    model = DEFAULT_MODELS[provider] + "-fail-stall"
    url, headers, body = raw_chat(simulator, provider, model=model, stream=stream)
    async with httpx.AsyncClient(timeout=SHORT) as client:
        async with client.stream("POST", url, headers=headers, json=body) as response:
            assert response.status_code == 200
            if not stream:  # a non-stream reply promises its length, then never sends it
                assert int(response.headers["content-length"]) > 0
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_it_goes_silent_after_two_chunks_without_closing_when_stalled_midstream(
    simulator, provider
):
    model = DEFAULT_MODELS[provider] + "-fail-stall_midstream"
    url, headers, body = raw_chat(simulator, provider, model=model, stream=True)
    received = b""
    async with httpx.AsyncClient(timeout=SHORT) as client:
        async with client.stream("POST", url, headers=headers, json=body) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                async for piece in response.aiter_bytes():
                    received += piece
    text = received.decode()
    assert "Simulated " in text and "reply " in text
    assert "to: " not in text  # nothing after the second word
    assert "[DONE]" not in text and "message_stop" not in text and "finishReason" not in text


async def test_it_stalls_a_non_stream_reply_like_a_plain_stall(simulator):
    url, headers, body = raw_chat(simulator, "openai", headers={"x-sim-fail": "stall_midstream"})
    async with httpx.AsyncClient(timeout=SHORT) as client:
        async with client.stream("POST", url, headers=headers, json=body) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()


async def test_it_stalls_by_key_while_the_other_keys_serve(simulator):
    stalled = raw_chat(simulator, "anthropic", key="sk-ant-sim-fail-stall-0001")
    healthy = raw_chat(simulator, "anthropic", key="sk-ant-sim-0002")
    async with httpx.AsyncClient(timeout=SHORT) as client:

        async def stall():
            url, headers, body = stalled
            async with client.stream("POST", url, headers=headers, json=body) as response:
                assert response.status_code == 200
                with pytest.raises(httpx.ReadTimeout):
                    await response.aread()

        async def serve():
            url, headers, body = healthy
            response = await client.post(url, headers=headers, json=body)
            return response.status_code, json.loads(response.text)["type"]

        _, served = await asyncio.gather(stall(), serve())
    assert served == (200, "message")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_it_sends_no_headers_at_all_when_hung(simulator, provider):
    url, headers, body = raw_chat(simulator, provider, headers={"x-sim-fail": "hang"})
    async with httpx.AsyncClient(timeout=SHORT) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, headers=headers, json=body)
