"""Request fields through the gateway, judged by the official SDKs: JSON mode and structured
output on every kind of upstream, reasoning, and a clear 400 for a field a provider cannot
take (kit/fields.py rules them; docs/SUPPORT_MATRIX.md renders the rules)."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from pydantic import BaseModel

from aipk_site.gateway.formats.common import InputLimits
from aipk_site.gateway.formats.openai_format import parse_chat_completion
from aipk_site.infra.errors import InvalidRequest
from providers_app.kit.types import Reasoning, ResponseFormat

pytestmark = pytest.mark.django_db(transaction=True)


SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temperature": {"type": "number"},
        "conditions": {"type": "string", "enum": ["sunny", "rainy"]},
    },
    "required": ["city", "temperature", "conditions"],
    "additionalProperties": False,
}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
}
STRUCTURED_TYPES = ("openai", "gemini", "anthropic")


class Weather(BaseModel):
    city: str
    temperature: float
    rainy: bool


def openai_client(world, gateway_server) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


def anthropic_client(world, gateway_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=world.secret, base_url=gateway_server.url, max_retries=0)


@pytest.mark.parametrize("provider_type", STRUCTURED_TYPES)
def test_it_returns_json_fitting_the_schema_from_every_kind_of_upstream(
    world, gateway_server, provider_type
):
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type),
        messages=[{"role": "user", "content": "Weather in Paris as JSON"}],
        response_format=JSON_SCHEMA_FORMAT,  # type: ignore[arg-type]
    )
    value = json.loads(reply.choices[0].message.content or "")
    assert set(value) == {"city", "temperature", "conditions"}
    assert value["conditions"] == "sunny"
    assert isinstance(value["temperature"], float)


@pytest.mark.parametrize("provider_type", STRUCTURED_TYPES)
def test_it_streams_json_fitting_the_schema(world, gateway_server, provider_type):
    stream = openai_client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type),
        messages=[{"role": "user", "content": "Weather in Paris as JSON"}],
        response_format=JSON_SCHEMA_FORMAT,  # type: ignore[arg-type]
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert set(json.loads(text)) == {"city", "temperature", "conditions"}


@pytest.mark.parametrize("provider_type", STRUCTURED_TYPES)
def test_it_parses_into_a_pydantic_model_with_the_sdk_helper(world, gateway_server, provider_type):
    completion = openai_client(world, gateway_server).chat.completions.parse(
        model=world.model(provider_type),
        messages=[{"role": "user", "content": "Weather in Paris"}],
        response_format=Weather,
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == Weather(city="city-value", temperature=1.5, rainy=True)


@pytest.mark.parametrize("provider_type", ("openai", "gemini"))
def test_it_answers_json_mode_with_a_json_object(world, gateway_server, provider_type):
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type),
        messages=[{"role": "user", "content": "any JSON"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(reply.choices[0].message.content or "") == {}


def test_it_refuses_json_object_mode_for_anthropic_naming_the_field_and_provider(
    world, gateway_server
):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model=world.model("anthropic"),
            messages=[{"role": "user", "content": "any JSON"}],
            response_format={"type": "json_object"},
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "response_format"
    assert error["code"] == "unsupported_parameter"
    assert "provider 'anthropic' (type anthropic)" in error["message"]


@pytest.mark.parametrize(
    ("provider_type", "field", "value"),
    [
        ("anthropic", "seed", 7),
        ("anthropic", "logprobs", True),
        ("gemini", "service_tier", "flex"),
        ("cerebras", "metadata", {"team": "a"}),
        ("qwen", "reasoning_effort", "low"),
        ("gemini", "metadata", {"team": "a"}),
    ],
)
def test_it_refuses_a_field_the_provider_cannot_take(
    world, gateway_server, provider_type, field, value
):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model=world.model(provider_type),
            messages=[{"role": "user", "content": "hi"}],
            extra_body={field: value},
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == field
    rule_type = provider_type.replace("-", "_")
    name = world.providers[provider_type].name
    assert error["message"].startswith(
        f"{field} is not supported by provider '{name}' (type {rule_type})"
    )


def test_it_accepts_a_neutral_value_everywhere(world, gateway_server):
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model("anthropic"),
        messages=[{"role": "user", "content": "hi"}],
        logprobs=False,
        n=1,
        response_format={"type": "text"},
    )
    assert reply.choices[0].message.content == "Simulated reply to: hi"


@pytest.mark.parametrize("provider_type", ("openai", "anthropic", "gemini"))
def test_it_passes_reasoning_effort_to_each_provider_in_its_form(
    world, gateway_server, provider_type
):
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type),
        messages=[{"role": "user", "content": "think"}],
        reasoning_effort="low",
    )
    # the simulator spends hidden reasoning tokens only when its wire asked for thinking
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert (reply.usage.completion_tokens_details.reasoning_tokens or 0) > 0


@pytest.mark.parametrize("provider_type", ("openai", "anthropic", "gemini"))
def test_it_translates_anthropic_thinking_for_each_provider(world, gateway_server, provider_type):
    message = anthropic_client(world, gateway_server).messages.create(
        model=world.model(provider_type),
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "think"}],
    )
    assert message.usage.output_tokens > 0
    assert message.content[-1].type == "text"
    # the reasoning comes back first where the provider returns it
    kinds = [b.type for b in message.content]
    expected = ["thinking", "text"] if provider_type in ("anthropic", "gemini") else ["text"]
    assert kinds == expected


def test_it_refuses_anthropic_top_k_for_openai_naming_the_field(world, gateway_server):
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client(world, gateway_server).messages.create(
            model=world.model("openai"),
            max_tokens=50,
            extra_body={"top_k": 5},
            messages=[{"role": "user", "content": "hi"}],
        )
    assert "top_k is not supported by provider 'openai' (type openai)" in str(caught.value)


@pytest.mark.parametrize("provider_type", ("anthropic", "gemini"))
def test_it_passes_anthropic_top_k_where_the_provider_has_it(world, gateway_server, provider_type):
    message = anthropic_client(world, gateway_server).messages.create(
        model=world.model(provider_type),
        max_tokens=50,
        extra_body={"top_k": 5},
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.content[0].type == "text"


def test_it_passes_seed_and_penalties_to_openai_compatible_providers(world, gateway_server):
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model("cerebras"),
        messages=[{"role": "user", "content": "hi"}],
        seed=3,
        frequency_penalty=0.5,
        presence_penalty=0.5,
    )
    assert reply.choices[0].message.content == "Simulated reply to: hi"


# -- parsing: a bad value is a 400 naming the field, whatever the provider ------------------

LIMITS = InputLimits(max_messages=50, max_message_chars=10_000, max_tools=8)


def parse(**fields):
    return parse_chat_completion(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}, LIMITS
    ).request


def test_it_parses_the_ruled_openai_fields_into_the_kit_request():
    request = parse(
        response_format=JSON_SCHEMA_FORMAT,
        reasoning_effort="high",
        seed=5,
        logprobs=True,
        top_logprobs=2,
        frequency_penalty=-1,
        presence_penalty=1,
        service_tier="flex",
        metadata={"team": "x"},
        logit_bias={"50256": -100},
        store=True,
    )
    assert request.response_format == ResponseFormat(
        type="json_schema", name="weather", schema=SCHEMA, strict=True
    )
    assert request.reasoning == Reasoning(effort="high")
    assert (request.seed, request.logprobs, request.top_logprobs) == (5, True, 2)
    assert (request.frequency_penalty, request.presence_penalty) == (-1, 1)
    assert (request.service_tier, request.metadata) == ("flex", {"team": "x"})
    assert request.passthrough == {"logit_bias": {"50256": -100}, "store": True}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}},
            "response_format.json_schema.name",
        ),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"metadata": {"a": 1}}, "metadata.a"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_it_refuses_a_bad_value_naming_the_field(fields, param):
    with pytest.raises(InvalidRequest) as caught:
        parse(**fields)
    assert caught.value.param == param


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_passes_back_the_providers_logprobs(world, gateway_server, stream):
    client = openai_client(world, gateway_server)
    kwargs = {
        "model": world.model("openai"),
        "messages": [{"role": "user", "content": "hi"}],
        "logprobs": True,
        "top_logprobs": 2,
    }
    if stream:
        chunks = [c for c in client.chat.completions.create(stream=True, **kwargs) if c.choices]
        entries = [
            e for c in chunks if c.choices[0].logprobs for e in c.choices[0].logprobs.content
        ]
    else:
        reply = client.chat.completions.create(**kwargs)
        assert reply.choices[0].logprobs is not None
        entries = reply.choices[0].logprobs.content or []
    assert "".join(e.token for e in entries) == "Simulated reply to: hi"
    assert all(len(e.top_logprobs) == 2 for e in entries)


@pytest.mark.parametrize("provider_type", STRUCTURED_TYPES)
def test_it_takes_anthropic_structured_outputs_to_every_kind_of_upstream(
    world, gateway_server, provider_type
):
    message = anthropic_client(world, gateway_server).messages.create(
        model=world.model(provider_type),
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Paris as JSON"}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
    )
    block = message.content[0]
    assert block.type == "text"
    assert set(json.loads(block.text)) == {"city", "temperature", "conditions"}


def test_it_counts_tokens_of_a_request_with_thinking(world, gateway_server):
    count = anthropic_client(world, gateway_server).messages.count_tokens(
        model=world.model("anthropic"),
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "think"}],
    )
    assert count.input_tokens > 0


def test_it_refuses_before_a_stream_starts_with_a_400(world, gateway_server):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(world, gateway_server).chat.completions.create(
            model=world.model("anthropic"),
            messages=[{"role": "user", "content": "hi"}],
            seed=1,
            stream=True,
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "seed"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_renders_geminis_logprobs_as_openais(world, gateway_server, simulator, stream):
    simulator.clear_requests()
    client = openai_client(world, gateway_server)
    kwargs = {
        "model": world.model("gemini"),
        "messages": [{"role": "user", "content": "hi"}],
        "logprobs": True,
        "top_logprobs": 2,
    }
    if stream:
        chunks = [c for c in client.chat.completions.create(stream=True, **kwargs) if c.choices]
        entries = [
            e for c in chunks if c.choices[0].logprobs for e in c.choices[0].logprobs.content
        ]
    else:
        reply = client.chat.completions.create(**kwargs)
        assert reply.choices[0].logprobs is not None
        entries = reply.choices[0].logprobs.content or []
    assert "".join(e.token for e in entries) == "Simulated reply to: hi"
    assert all(e.logprob == -0.5 for e in entries)
    assert all([t.token for t in e.top_logprobs][0] == e.token for e in entries)
    assert all(len(e.top_logprobs) == 2 for e in entries)
    (sent,) = [r["body"] for r in simulator.requests() if r["path"].startswith("/gemini")]
    config = sent["generationConfig"]
    assert (config["responseLogprobs"], config["logprobs"]) == (True, 2)
