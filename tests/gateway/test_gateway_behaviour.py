"""Routing between providers, the input guard, PII redaction, tenant-owned credentials and
Gemini's thought signatures, as clients see them through /v1."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import ModelRoute, Tenant
from tests.gateway.support import WEATHER_TOOLS

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(world, gateway_server, secret=None) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=secret or world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


def post_raw(gateway_server, secret, content: bytes, **headers):
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        content=content,
        headers={
            "authorization": f"Bearer {secret}",
            "content-type": "application/json",
            **headers,
        },
    )


def test_it_fails_over_to_the_next_candidate_before_the_first_byte(world, gateway_server):
    ModelRoute.objects.create(
        alias="smart",
        candidates=[
            {"provider": "openai", "model": "gpt-fail-server"},
            {"provider": "anthropic", "model": "claude-3-5-haiku-20241022"},
        ],
    )
    client = client_for(world, gateway_server)
    for stream in (False, True):
        raw = client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": "Hello there"}], stream=stream
        )
        assert raw.headers["x-aipk-provider"] == "anthropic"
        assert raw.headers["x-aipk-model"] == "claude-3-5-haiku-20241022"


def test_it_does_not_fail_over_a_bad_request(world, gateway_server, simulator):
    ModelRoute.objects.create(
        alias="strict",
        candidates=[
            {"provider": "openai", "model": "gpt-fail-bad_request"},
            {"provider": "anthropic", "model": "claude-3-5-haiku-20241022"},
        ],
    )
    simulator.clear_requests()
    with pytest.raises(openai.BadRequestError):
        client_for(world, gateway_server).chat.completions.create(
            model="strict", messages=[{"role": "user", "content": "hi"}]
        )
    assert not [r for r in simulator.requests() if r["path"].startswith("/anthropic")]


def test_it_rotates_a_round_robin_route(world, gateway_server):
    ModelRoute.objects.create(
        alias="spread",
        strategy="round_robin",
        candidates=[
            {"provider": "cerebras", "model": "llama3.1-8b"},
            {"provider": "groq", "model": "llama-3.1-8b-instant"},
        ],
    )
    client = client_for(world, gateway_server)
    served = [
        client.chat.completions.with_raw_response.create(
            model="spread", messages=[{"role": "user", "content": "hi"}]
        ).headers["x-aipk-provider"]
        for _ in range(4)
    ]
    assert sorted(served) == ["cerebras", "cerebras", "groq", "groq"]
    assert served[0] != served[1]


def test_it_refuses_an_oversized_body_with_413(world, gateway_server, settings):
    big = json.dumps(
        {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5_000_000}]}
    ).encode()
    reply = post_raw(gateway_server, world.secret, big)
    assert reply.status_code == 413
    assert reply.json()["error"]["param"] == "body"


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"model": 5, "messages": []}', "model"),
        (b'{"model": "openai/gpt-4o-mini"}', "messages"),
        (
            b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": 7}]}',
            "messages[0].content",
        ),
        (
            b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], '
            b'"tools": [{"type": "function", "function": {"name": "f", "parameters": '
            b'{"type": "banana"}}}]}',
            "tools[0].function.parameters.type",
        ),
    ],
)
def test_it_names_the_problem_in_a_malformed_request(world, gateway_server, content, param):
    reply = post_raw(gateway_server, world.secret, content)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_it_redacts_pii_before_the_request_leaves_when_the_tenant_asks(
    world, gateway_server, simulator
):
    Tenant.objects.filter(pk=world.tenant.pk).update(pii_redaction=True)
    simulator.clear_requests()
    reply = client_for(world, gateway_server).chat.completions.create(
        model=world.model("openai"),
        messages=[
            {
                "role": "user",
                "content": "Mail jane.doe@example.com or call +1 415 555 0100, "
                "card 4111 1111 1111 1111",
            }
        ],
    )
    sent = json.dumps([r["body"] for r in simulator.requests()])
    assert "jane.doe@example.com" not in sent and "4111 1111 1111 1111" not in sent
    assert "[EMAIL]" in sent and "[CARD]" in sent and "[PHONE]" in sent
    assert "[EMAIL]" in reply.choices[0].message.content


def test_it_uses_a_tenants_own_credentials_only_for_that_tenant(
    world, gateway_server, simulator, make_key
):
    private = provider_create(name="private", type="openai", base_url=simulator.url + "/openai/v1")
    other = Tenant.objects.create(name="Other", slug="other")
    api_key_add(provider=private, label="other's key", secret="sk-sim-others-0001")
    private.api_keys.update(tenant=other)
    _, other_secret = make_key(other)
    body = {"model": "private/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    mine = client_for(world, gateway_server)
    with pytest.raises(openai.InternalServerError) as caught:
        mine.chat.completions.create(**body)
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "no_available_credential"
    theirs = client_for(world, gateway_server, other_secret).chat.completions.create(**body)
    assert theirs.choices[0].message.content == "Simulated reply to: hi"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_it_keeps_geminis_thought_signature_across_turns(world, gateway_server, simulator, stream):
    client = client_for(world, gateway_server)
    model = "gemini/gemini-3-pro-preview"
    messages = [{"role": "user", "content": "Use get_weather"}]
    if stream:
        calls = {}
        for chunk in client.chat.completions.create(
            model=model, messages=messages, tools=WEATHER_TOOLS, stream=True
        ):
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] = delta.function.name or call["name"]
                call["arguments"] += delta.function.arguments or ""
        call = calls[0]
    else:
        first = client.chat.completions.create(model=model, messages=messages, tools=WEATHER_TOOLS)
        c = first.choices[0].message.tool_calls[0]
        call = {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
    assistant = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    simulator.clear_requests()
    second = client.chat.completions.create(
        model=model, messages=[*messages, assistant, result], tools=WEATHER_TOOLS
    )
    assert second.choices[0].message.content == 'Tool results: {"result":"sunny"}'
    [sent] = [r["body"] for r in simulator.requests()]
    model_turn = next(c for c in sent["contents"] if c["role"] == "model")
    assert model_turn["parts"][0]["thoughtSignature"]
    # a client that drops the signature gets the provider's refusal, as a 400
    unsigned = {**assistant, "tool_calls": [{**assistant["tool_calls"][0], "id": "call_plain"}]}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model,
            messages=[*messages, unsigned, {**result, "tool_call_id": "call_plain"}],
            tools=WEATHER_TOOLS,
        )
    assert "thought_signature" in caught.value.message


def test_it_answers_gateway_errors_with_a_request_id_and_the_site_headers(world, gateway_server):
    reply = httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {world.secret}", "x-request-id": "trace-123"},
    )
    assert reply.status_code == 400
    assert reply.headers["x-request-id"] == "trace-123"  # the caller's id follows the request
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["x-content-type-options"] == "nosniff"
