"""Replies whose real token counts beat a 4-characters-per-token estimate: an exact
word count (words-<n>), one token per character (dense), and a provider that exceeds
max_tokens by a tenth (overrun)."""

import httpx
import openai
import pytest

from tests.simulator.sim_helpers import (
    DEFAULT_MODELS,
    PROVIDERS,
    openai_client,
    raw_chat,
    reply_text,
    usage_of,
)


async def _post(simulator, provider, **kwargs):
    url, headers, body = raw_chat(simulator, provider, **kwargs)
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_it_replies_with_exactly_the_asked_number_of_words(simulator, provider):
    reply = await _post(simulator, provider, model=DEFAULT_MODELS[provider] + "-words-3000")
    text = reply_text(provider, reply)
    assert len(text.split()) == 3000
    assert text.startswith("Simulated reply to: hello there")
    assert usage_of(provider, reply)[1] == 3000


async def test_it_still_cuts_a_long_reply_at_max_tokens(simulator):
    client = openai_client(simulator.base_url("openai"))
    result = await client.chat.completions.create(
        model="gpt-4o-words-500", messages=[{"role": "user", "content": "hi"}], max_tokens=40
    )
    assert len(result.choices[0].message.content.split()) == 40
    assert result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 40


async def test_it_streams_an_exact_number_of_words(simulator):
    client = openai_client(simulator.base_url("openai"))
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-sim-words": "25"},
    )
    pieces, usage = [], None
    async for chunk in stream:
        usage = chunk.usage or usage
        pieces += [c.delta.content for c in chunk.choices if c.delta.content]
    assert len(pieces) == 25
    assert usage.completion_tokens == 25


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_it_counts_one_token_per_character_when_dense(simulator, provider):
    prompt = "日本語のテキスト and code {x: 1}"
    reply = await _post(simulator, provider, model=DEFAULT_MODELS[provider] + "-dense", text=prompt)
    text = reply_text(provider, reply)
    prompt_tokens, completion_tokens = usage_of(provider, reply)
    assert prompt_tokens == len(prompt)  # 4 times a words-based count, and more
    assert completion_tokens == len(text)
    # Never more tokens than UTF-8 bytes: a reservation by bytes stays an upper bound.
    assert prompt_tokens <= len(prompt.encode())
    assert completion_tokens <= len(text.encode())
    assert completion_tokens > len(text) / 4


async def test_it_cuts_a_dense_reply_at_max_tokens_characters(simulator):
    reply = await _post(
        simulator, "anthropic", key="sk-ant-sim-dense-0001", max_tokens=12, text="x " * 50
    )
    assert reply["content"][0]["text"] == "Simulated re"
    assert reply["usage"]["output_tokens"] == 12
    assert reply["stop_reason"] == "max_tokens"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_it_exceeds_max_tokens_by_a_tenth_when_overrunning(simulator, provider):
    reply = await _post(
        simulator, provider, model=DEFAULT_MODELS[provider] + "-overrun", max_tokens=20
    )
    assert usage_of(provider, reply)[1] == 22  # 20 + 10 %
    assert len(reply_text(provider, reply).split()) == 22


async def test_it_overruns_dense_replies_in_characters(simulator):
    client = openai_client(simulator.base_url("openai"))
    result = await client.chat.completions.create(
        model="gpt-4o-dense-overrun", messages=[{"role": "user", "content": "hi"}], max_tokens=100
    )
    assert result.usage.completion_tokens == 110
    assert len(result.choices[0].message.content) == 110
    assert result.choices[0].finish_reason == "length"


async def test_it_combines_several_tokens_in_one_model_id(simulator):
    client = openai_client(simulator.base_url("openai"))
    result = await client.chat.completions.create(
        model="gpt-4o-ttft-50ms-tps-1000-words-200-dense",
        messages=[{"role": "user", "content": "hi"}],
    )
    text = result.choices[0].message.content
    assert len(text.split()) == 200
    assert result.usage.completion_tokens == len(text)


async def test_it_ignores_tokens_inside_other_words(simulator):
    client = openai_client(simulator.base_url("openai"))
    result = await client.chat.completions.create(
        model="condensed-imagen-3", messages=[{"role": "user", "content": "one two"}]
    )
    assert result.usage.prompt_tokens == 2  # words, not characters: "condensed" is not dense
    with pytest.raises(openai.BadRequestError):  # and unknown x-sim-fail values still say so
        await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-sim-fail": "dense"},
        )
