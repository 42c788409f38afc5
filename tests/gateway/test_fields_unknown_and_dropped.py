"""Every top-level field has a rule (issue 13): a field neither format knows is a 400 naming
it, a field a provider cannot take is refused naming both -- unless the key's drop option
is on, when the droppable ones are dropped and named in ``x-aipk-dropped-params``. A route
whose candidates differ in type tries the next candidate that can take the field.
Judged by the official SDKs against the simulator."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tenants_app.models import ModelRoute

pytestmark = pytest.mark.django_db(transaction=True)

DROPPED = "x-aipk-dropped-params"
HI = [{"role": "user", "content": "hi"}]


def openai_client(secret: str, gateway_server) -> openai.OpenAI:
    return openai.OpenAI(api_key=secret, base_url=gateway_server.openai_base_url, max_retries=0)


def anthropic_client(secret: str, gateway_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=secret, base_url=gateway_server.url, max_retries=0)


@pytest.fixture
def drop_secret(world, make_key) -> str:
    """A key of the same tenant whose option is "drop unsupported parameters"."""
    _, secret = make_key(world.tenant, name="drops", unsupported_params="drop")
    return secret


def sent_to(simulator, prefix: str) -> list[dict]:
    return [r["body"] for r in simulator.requests() if r["path"].startswith(prefix)]


def route(world, alias: str, *provider_types: str) -> str:
    from tests.gateway.conftest import MODELS

    ModelRoute.objects.create(
        tenant=world.tenant,
        alias=alias,
        strategy="failover",
        candidates=[
            {"provider": world.providers[t].name, "model": MODELS[t]} for t in provider_types
        ],
    )
    return alias


# -- unknown fields


def test_it_refuses_an_unknown_field_in_openais_words(world, gateway_server):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(world.secret, gateway_server).chat.completions.create(
            model=world.model("openai"), messages=HI, extra_body={"frobnicate": 1}
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["message"] == "Unrecognized request argument supplied: frobnicate"
    assert error["param"] == "frobnicate"
    assert error["code"] == "unknown_parameter"


def test_it_refuses_an_unknown_messages_field_in_anthropics_shape(world, gateway_server):
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client(world.secret, gateway_server).messages.create(
            model=world.model("anthropic"),
            max_tokens=50,
            messages=HI,  # type: ignore[arg-type]
            extra_body={"frobnicate": 1},
        )
    assert caught.value.status_code == 400
    assert "Unrecognized request argument supplied: frobnicate" in str(caught.value)


def test_it_takes_an_openai_field_on_messages_as_unknown(world, gateway_server):
    """The two formats' fields are not pooled: ``seed`` is OpenAI's, not Anthropic's."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client(world.secret, gateway_server).messages.create(
            model=world.model("anthropic"),
            max_tokens=50,
            messages=HI,  # type: ignore[arg-type]
            extra_body={"seed": 1},
        )
    assert "Unrecognized request argument supplied: seed" in str(caught.value)


def test_it_drops_unknown_fields_under_the_drop_option_and_says_which(
    world, gateway_server, drop_secret, simulator
):
    simulator.clear_requests()
    raw = openai_client(drop_secret, gateway_server).chat.completions.with_raw_response.create(
        model=world.model("openai"), messages=HI, extra_body={"zeta": 1, "alpha": True}
    )
    assert raw.headers[DROPPED] == "alpha, zeta"
    assert raw.parse().choices[0].message.content == "Simulated reply to: hi"
    (body,) = sent_to(simulator, "/openai")
    assert "alpha" not in body and "zeta" not in body


def test_it_drops_unknown_messages_fields_when_streaming_too(world, gateway_server, drop_secret):
    with anthropic_client(drop_secret, gateway_server).messages.with_streaming_response.create(
        model=world.model("anthropic"),
        max_tokens=50,
        messages=HI,  # type: ignore[arg-type]
        stream=True,
        extra_body={"frobnicate": 1},
    ) as response:
        assert response.headers[DROPPED] == "frobnicate"
        assert "message_stop" in "".join(response.iter_text())


def test_it_sends_no_dropped_header_when_nothing_was_dropped(world, gateway_server, drop_secret):
    raw = openai_client(drop_secret, gateway_server).chat.completions.with_raw_response.create(
        model=world.model("openai"), messages=HI, seed=7
    )
    assert DROPPED not in raw.headers


# -- refused fields under the drop option


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_drops_a_droppable_field_the_provider_cannot_take(
    world, gateway_server, drop_secret, simulator, stream
):
    simulator.clear_requests()
    client = openai_client(drop_secret, gateway_server)
    raw = client.chat.completions.with_raw_response.create(
        model=world.model("anthropic"),
        messages=HI,
        seed=7,
        frequency_penalty=0.5,
        stream=stream,
    )
    assert raw.headers[DROPPED] == "seed, frequency_penalty"
    assert raw.headers["x-aipk-provider"] == "anthropic"
    (body,) = sent_to(simulator, "/anthropic")
    assert "seed" not in body and "frequency_penalty" not in body


def test_it_refuses_the_same_field_for_a_key_without_the_drop_option(world, gateway_server):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(world.secret, gateway_server).chat.completions.create(
            model=world.model("anthropic"), messages=HI, seed=7
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "seed" and error["code"] == "unsupported_parameter"
    assert DROPPED not in caught.value.response.headers


@pytest.mark.parametrize(
    ("provider_type", "field", "value"),
    [
        ("anthropic", "logprobs", True),
        ("gemini", "modalities", ["text", "audio"]),
        ("anthropic", "n", 3),
    ],
)
def test_it_still_refuses_a_field_that_changes_the_answers_shape(
    world, gateway_server, drop_secret, provider_type, field, value
):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(drop_secret, gateway_server).chat.completions.create(
            model=world.model(provider_type), messages=HI, extra_body={field: value}
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == field


def test_it_drops_an_anthropic_field_openai_cannot_take(world, gateway_server, drop_secret):
    raw = anthropic_client(drop_secret, gateway_server).messages.with_raw_response.create(
        model=world.model("openai"),
        max_tokens=50,
        messages=HI,  # type: ignore[arg-type]
        extra_body={"top_k": 5},  # no longer a keyword of the SDK, still a field of the API
    )
    assert raw.headers[DROPPED] == "top_k"
    assert raw.parse().content[0].text == "Simulated reply to: hi"  # type: ignore[union-attr]


# -- OpenRouter's own fields


def test_it_passes_openrouters_own_fields_to_openrouter(world, gateway_server, simulator):
    simulator.clear_requests()
    extra = {
        "models": ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"],
        "provider": {"order": ["openai"], "allow_fallbacks": False},
        "route": "fallback",
        "transforms": ["middle-out"],
    }
    reply = openai_client(world.secret, gateway_server).chat.completions.create(
        model=world.model("openrouter"), messages=HI, extra_body=extra
    )
    assert reply.choices[0].message.content == "Simulated reply to: hi"
    (body,) = sent_to(simulator, "/openrouter")
    assert {k: body[k] for k in extra} == extra


@pytest.mark.parametrize("provider_type", ["openai", "anthropic", "gemini"])
def test_it_refuses_openrouters_fields_elsewhere_naming_field_and_provider(
    world, gateway_server, provider_type
):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(world.secret, gateway_server).chat.completions.create(
            model=world.model(provider_type),
            messages=HI,
            extra_body={"models": ["a", "b"]},
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "models" and error["code"] == "unsupported_parameter"
    assert f"provider '{world.providers[provider_type].name}'" in error["message"]


# -- refused fields and failover


def test_it_tries_the_next_candidate_whose_type_takes_the_field(world, gateway_server, simulator):
    alias = route(world, "seeded", "anthropic", "openai")
    simulator.clear_requests()
    raw = openai_client(world.secret, gateway_server).chat.completions.with_raw_response.create(
        model=alias, messages=HI, seed=7
    )
    assert raw.headers["x-aipk-provider"] == "openai"
    assert not sent_to(simulator, "/anthropic")
    assert sent_to(simulator, "/openai")[0]["seed"] == 7


def test_it_tries_the_next_candidate_when_the_adapter_refuses_a_value(world, gateway_server):
    """Anthropic takes response_format, but not json_object (it needs a schema): its
    adapter refuses before sending, and the route goes on to Gemini."""
    alias = route(world, "json", "anthropic", "gemini")
    raw = openai_client(world.secret, gateway_server).chat.completions.with_raw_response.create(
        model=alias, messages=HI, response_format={"type": "json_object"}
    )
    assert raw.headers["x-aipk-provider"] == "gemini"
    assert raw.parse().choices[0].message.content == "{}"


def test_it_refuses_when_no_candidate_takes_the_field_naming_the_first(
    world, gateway_server, simulator
):
    alias = route(world, "nolog", "anthropic", "gemini")
    simulator.clear_requests()
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(world.secret, gateway_server).chat.completions.create(
            model=alias, messages=HI, extra_body={"modalities": ["text", "audio"]}
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "modalities"
    assert "provider 'anthropic'" in error["message"]
    assert not simulator.requests()


def test_it_prefers_a_candidate_that_takes_the_field_over_dropping_it(
    world, gateway_server, drop_secret
):
    """With the drop option, the first candidate that can take the request as it is
    still drops: the route's order is the tenant's preference."""
    alias = route(world, "dropfirst", "anthropic", "openai")
    raw = openai_client(drop_secret, gateway_server).chat.completions.with_raw_response.create(
        model=alias, messages=HI, seed=7
    )
    assert raw.headers["x-aipk-provider"] == "anthropic"
    assert raw.headers[DROPPED] == "seed"
