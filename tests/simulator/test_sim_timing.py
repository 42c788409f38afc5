"""Generation time: time to first token, tokens per second, long non-stream replies.

Real completions take tens of seconds; these knobs let a test ask for that
(scaled down) by header, model id or key, on every wire. Timings are asserted
with wide margins: they prove a wait happened, they do not benchmark it.
"""

import json
import time

import httpx
import pytest

from tests.simulator.sim_helpers import DEFAULT_MODELS, PROVIDERS, raw_chat


async def _timed_stream(url, headers, body):
    """(seconds to response headers, seconds to each content-carrying line)."""
    start = time.monotonic()
    marks = []
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("POST", url, headers=headers, json=body) as response:
            assert response.status_code == 200
            headers_at = time.monotonic() - start
            async for line in response.aiter_lines():
                if _text_in(line):
                    marks.append(time.monotonic() - start)
    return headers_at, marks


def _text_in(line: str) -> str:
    """The generated text an SSE data line carries, in any of the wire formats."""
    if not line.startswith("data:") or line.strip() == "data: [DONE]":
        return ""
    event = json.loads(line[5:])
    if "choices" in event:  # OpenAI-compatible
        return "".join((c.get("delta") or {}).get("content") or "" for c in event["choices"])
    if event.get("type") == "content_block_delta":  # Anthropic
        return event["delta"].get("text", "")
    response = event.get("response", event)  # Gemini (Code Assist wraps it)
    parts = [p for c in response.get("candidates", []) for p in c["content"]["parts"]]
    return "".join(p.get("text", "") for p in parts)


async def _timed_plain(url, headers, body):
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 200, response.text
    return time.monotonic() - start, response.json()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_it_sends_stream_headers_at_once_and_the_first_word_after_the_ttft(
    simulator, provider
):
    model = DEFAULT_MODELS[provider] + "-ttft-800ms"
    url, headers, body = raw_chat(simulator, provider, model=model, stream=True)
    headers_at, marks = await _timed_stream(url, headers, body)
    assert marks, "no content arrived"
    assert marks[0] >= 0.75  # the first word waited its 800 ms
    assert headers_at < marks[0] - 0.4  # headers (and framing) went out before it


async def test_it_paces_words_at_the_tokens_per_second_after_the_first(simulator):
    # 10 words: 100 ms to the first, then 9 more at 10 per second -> about 1 s in all.
    url, headers, body = raw_chat(
        simulator, "openai", model="gpt-4o-ttft-100ms-tps-10-words-10", stream=True
    )
    _, marks = await _timed_stream(url, headers, body)
    assert len(marks) == 10
    assert marks[0] < 0.6
    assert marks[-1] - marks[0] >= 0.8  # nine gaps of 100 ms, not sent in one burst


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_it_answers_a_non_stream_request_only_after_the_whole_generation(simulator, provider):
    # ttft 200 ms + 5 more words at 5 per second = 1.2 s before any response byte.
    model = DEFAULT_MODELS[provider] + "-ttft-200ms-tps-5-words-6"
    url, headers, body = raw_chat(simulator, provider, model=model)
    elapsed, _ = await _timed_plain(url, headers, body)
    assert 1.1 <= elapsed < 6


async def test_it_takes_the_timing_knobs_from_headers(simulator):
    url, headers, body = raw_chat(
        simulator,
        "anthropic",
        headers={"x-sim-ttft-ms": "300", "x-sim-tps": "10", "x-sim-words": "6"},
    )
    elapsed, reply = await _timed_plain(url, headers, body)
    assert 0.75 <= elapsed < 6  # 0.3 s + 5 words at 10/s
    assert reply["usage"]["output_tokens"] == 6


async def test_it_takes_the_timing_knobs_from_the_key(simulator):
    url, headers, body = raw_chat(simulator, "gemini", key="AIza-sim-gen-1s-0001")
    elapsed, _ = await _timed_plain(url, headers, body)
    assert 0.95 <= elapsed < 6


async def test_it_spreads_a_streamed_generation_over_its_gen_seconds(simulator):
    url, headers, body = raw_chat(simulator, "openai", model="gpt-4o-gen-1s-words-5", stream=True)
    _, marks = await _timed_stream(url, headers, body)
    assert len(marks) == 5
    assert 0.15 <= marks[0] < 0.6  # 1 s / 5 words = 200 ms each
    assert marks[-1] >= 0.95


async def test_it_lets_the_header_win_over_the_model_id(simulator):
    url, headers, body = raw_chat(
        simulator, "openai", model="gpt-4o-gen-30s", headers={"x-sim-gen-seconds": "0.3"}
    )
    elapsed, _ = await _timed_plain(url, headers, body)
    assert elapsed < 5  # the header's 0.3 s, not the model's 30 s


async def test_it_keeps_the_plain_delay_as_it_was(simulator):
    url, headers, body = raw_chat(simulator, "openai", model="gpt-4o-delay-300ms")
    elapsed, _ = await _timed_plain(url, headers, body)
    assert 0.28 <= elapsed < 3  # waited once, not once per word


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "soon", "1e400"])
async def test_it_ignores_knob_headers_that_are_not_usable_numbers(simulator, value):
    knobs = {
        name: value
        for name in (
            "x-sim-ttft-ms",
            "x-sim-tps",
            "x-sim-gen-seconds",
            "x-sim-words",
            "x-sim-retry-after",
            "x-sim-delay-ms",
        )
    }
    url, headers, body = raw_chat(simulator, "openai", headers=knobs)
    elapsed, reply = await _timed_plain(url, headers, body)
    assert elapsed < 3
    assert reply["choices"][0]["message"]["content"] == "Simulated reply to: hello there"
