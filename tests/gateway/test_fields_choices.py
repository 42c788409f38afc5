"""``n``: several choices where the provider can give them -- OpenAI-wire providers take
``n``, Gemini ``candidateCount`` -- each rendered with its index and usage counting them
all; Anthropic has no such field (400 naming it). More than one choice is served whole,
not streamed (a 400 naming ``n``). Judged by the official openai SDK."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


def client(world, gateway_server) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


@pytest.mark.parametrize("provider_type", ["openai", "gemini", "openai-compatible"])
def test_it_returns_n_choices_with_usage_counting_them_all(
    world, gateway_server, simulator, provider_type
):
    one = client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type), messages=HI
    )
    simulator.clear_requests()
    reply = client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type), messages=HI, n=3
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert {c.message.content for c in reply.choices} == {"Simulated reply to: hi"}
    assert {c.finish_reason for c in reply.choices} == {"stop"}
    assert reply.usage is not None and one.usage is not None
    assert reply.usage.completion_tokens == 3 * one.usage.completion_tokens
    (sent,) = [r["body"] for r in simulator.requests()]
    if provider_type == "gemini":
        assert sent["generationConfig"]["candidateCount"] == 3
    else:
        assert sent["n"] == 3


def test_it_refuses_n_for_anthropic_naming_the_field(world, gateway_server, simulator):
    simulator.clear_requests()
    with pytest.raises(openai.BadRequestError) as caught:
        client(world, gateway_server).chat.completions.create(
            model=world.model("anthropic"), messages=HI, n=2
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == ("n", "unsupported_parameter")
    assert not simulator.requests()


def test_it_takes_n_1_everywhere(world, gateway_server):
    reply = client(world, gateway_server).chat.completions.create(
        model=world.model("anthropic"), messages=HI, n=1
    )
    assert len(reply.choices) == 1


def test_it_refuses_several_streamed_choices_naming_n(world, gateway_server):
    with pytest.raises(openai.BadRequestError) as caught:
        client(world, gateway_server).chat.completions.create(
            model=world.model("openai"), messages=HI, n=2, stream=True
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "n"


@pytest.mark.parametrize("n", [0, 129, "2"])
def test_it_refuses_a_bad_n(world, gateway_server, n):
    with pytest.raises(openai.BadRequestError) as caught:
        client(world, gateway_server).chat.completions.create(
            model=world.model("openai"), messages=HI, extra_body={"n": n}
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "n"


def test_it_replays_every_choice_from_the_response_cache(world, gateway_server):
    world.key.cache_enabled = True
    world.key.save()
    from aipk_site.gateway.key_auth import key_auth_cache_clear

    key_auth_cache_clear()
    first = client(world, gateway_server).chat.completions.with_raw_response.create(
        model=world.model("openai"), messages=HI, n=2
    )
    again = client(world, gateway_server).chat.completions.with_raw_response.create(
        model=world.model("openai"), messages=HI, n=2
    )
    assert (first.headers["x-aipk-cache"], again.headers["x-aipk-cache"]) == ("miss", "hit")
    assert [c.index for c in again.parse().choices] == [0, 1]
