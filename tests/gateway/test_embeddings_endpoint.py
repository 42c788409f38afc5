"""POST /v1/embeddings: the official openai SDK, unchanged, through aipk to the simulator."""

from __future__ import annotations

import math
from decimal import Decimal

import httpx
import openai
import pytest

from aipk_site.gateway.redaction import EMAIL_MASK
from aipk_site.gateway.usage import usage_flush
from tenants_app.models import ModelRoute, Tenant, UsageRecord
from tenants_app.services.pricing import pricing_load_bundled

pytestmark = pytest.mark.django_db(transaction=True)

SMALL = "openai/text-embedding-3-small"


def client_for(world, gateway_server, secret=None) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=secret or world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


def records(**filters) -> list[UsageRecord]:
    usage_flush()
    return list(UsageRecord.objects.filter(**filters).order_by("created_at", "id"))


def post(gateway_server, secret, body):
    return httpx.post(
        gateway_server.openai_base_url + "/embeddings",
        json=body,
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_it_embeds_a_text_as_floats_and_as_base64_the_sdk_decodes(world, gateway_server):
    client = client_for(world, gateway_server)
    floats = client.embeddings.create(model=SMALL, input="hello world", encoding_format="float")
    # the SDK's default: it asks base64 and decodes the float32 bytes itself
    decoded = client.embeddings.create(model=SMALL, input="hello world")
    assert floats.object == "list" and floats.model == SMALL
    [first] = floats.data
    assert first.index == 0 and len(first.embedding) == 1536
    assert math.isclose(math.fsum(v * v for v in first.embedding), 1.0, rel_tol=1e-6)
    assert decoded.data[0].embedding == pytest.approx(first.embedding, rel=1e-5, abs=1e-7)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 2


def test_it_embeds_a_list_of_inputs_with_dimensions_in_order(world, gateway_server):
    client = client_for(world, gateway_server)
    texts = ["one", "two words", "three more words"]
    reply = client.embeddings.create(model=SMALL, input=texts, dimensions=256)
    assert [d.index for d in reply.data] == [0, 1, 2]
    assert all(len(d.embedding) == 256 for d in reply.data)
    alone = client.embeddings.create(model=SMALL, input="two words", dimensions=256)
    assert alone.data[0].embedding == pytest.approx(reply.data[1].embedding, rel=1e-5)
    assert reply.usage.prompt_tokens == 6


def test_it_embeds_token_id_arrays(world, gateway_server):
    client = client_for(world, gateway_server)
    reply = client.embeddings.create(model=SMALL, input=[[1, 2, 3], [4, 5]])
    assert len(reply.data) == 2 and reply.usage.prompt_tokens == 5


def test_it_records_one_usage_row_costed_at_the_bundled_embedding_price(world, gateway_server):
    pricing_load_bundled()  # text-embedding-3-small: 0.02 USD per million input tokens
    raw = client_for(world, gateway_server).embeddings.with_raw_response.create(
        model=SMALL, input=["alpha beta", "gamma"]
    )
    reply = raw.parse()
    [record] = records()
    assert record.request_id == raw.headers["x-request-id"]
    assert raw.headers["x-aipk-provider"] == "openai"
    assert (record.endpoint, record.status, record.model) == (
        "embeddings",
        "success",
        "text-embedding-3-small",
    )
    assert record.provider_id == world.providers["openai"].pk
    assert record.credential_id.startswith("key:")
    assert (record.prompt_tokens, record.completion_tokens) == (reply.usage.prompt_tokens, 0)
    assert record.prompt_tokens == 3 and not record.tokens_estimated
    assert record.cost_usd == Decimal(3) * Decimal("0.02") / 10**6


def test_it_flags_gemini_token_counts_as_estimated(world, gateway_server):
    pricing_load_bundled()  # gemini-embedding-001: 0.15
    reply = client_for(world, gateway_server).embeddings.create(
        model="gemini/gemini-embedding-001", input="a text of some length", dimensions=8
    )
    assert len(reply.data[0].embedding) == 8
    [record] = records()
    assert record.tokens_estimated and record.prompt_tokens == reply.usage.prompt_tokens > 0
    assert record.cost_usd == Decimal(record.prompt_tokens) * Decimal("0.15") / 10**6


def test_it_fails_an_alias_over_to_a_provider_that_can_embed(world, gateway_server):
    # Anthropic cannot embed (skipped), OpenAI answers 500 (failover), Qwen answers
    ModelRoute.objects.create(
        tenant=world.tenant,
        alias="embedder",
        candidates=[
            {"provider": "anthropic", "model": "claude-3-5-haiku-20241022"},
            {"provider": "openai", "model": "text-embedding-3-small-fail-server"},
            {"provider": "qwen", "model": "text-embedding-v4"},
        ],
    )
    raw = client_for(world, gateway_server).embeddings.with_raw_response.create(
        model="embedder", input=["first", "second"], dimensions=64
    )
    reply = raw.parse()
    assert reply.model == "embedder" and len(reply.data) == 2
    assert len(reply.data[0].embedding) == 64
    assert (raw.headers["x-aipk-provider"], raw.headers["x-aipk-model"]) == (
        "qwen",
        "text-embedding-v4",
    )
    [record] = records()
    assert (record.alias, record.provider_name, record.status) == ("embedder", "qwen", "success")


def test_it_refuses_an_anthropic_model_naming_the_provider(world, gateway_server):
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(world, gateway_server).embeddings.create(
            model="anthropic/claude-3-5-haiku-20241022", input="hello"
        )
    error = caught.value.body
    assert error["param"] == "model" and error["code"] == "embeddings_not_supported"
    assert "anthropic" in error["message"] and "Anthropic has no embeddings API" in error["message"]
    [record] = records()
    assert (record.status, record.endpoint, record.provider_name) == (
        "refused",
        "embeddings",
        "anthropic",
    )


def test_it_answers_404_for_an_unknown_model(world, gateway_server):
    client = client_for(world, gateway_server)
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="no-such-embedder", input="hello")
    assert caught.value.body["param"] == "model"
    assert len(records(status="refused", endpoint="embeddings")) == 1


def test_it_keeps_a_key_to_its_allowed_models(world, gateway_server, make_key):
    _, secret = make_key(world.tenant, name="large only", allowed_models=[SMALL[:-5] + "large"])
    client = client_for(world, gateway_server, secret)
    assert len(client.embeddings.create(model=SMALL[:-5] + "large", input="hi").data) == 1
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.embeddings.create(model=SMALL, input="hi")
    assert caught.value.body["code"] == "model_not_allowed"


def test_it_refuses_past_the_keys_budget_at_the_embedding_price(world, gateway_server, make_key):
    pricing_load_bundled()  # text-embedding-3-large: 0.13 USD per million
    _, secret = make_key(world.tenant, name="a cent", monthly_budget_usd=Decimal("0.01"))
    client = client_for(world, gateway_server, secret)
    assert client.embeddings.create(model="openai/text-embedding-3-large", input="cheap").data
    # 100,000 bytes may be 100,000 tokens: 0.013 USD, more than the cent allows
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model="openai/text-embedding-3-large", input="word " * 20_000)
    assert caught.value.body["code"] == "key_budget"
    assert [r.status for r in records()] == ["success", "refused"]


def test_it_limits_requests_per_minute(world, gateway_server, make_key):
    _, secret = make_key(world.tenant, name="one a minute", rpm=1)
    client = client_for(world, gateway_server, secret)
    client.embeddings.create(model=SMALL, input="first")
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=SMALL, input="second")
    assert [r.status for r in records()] == ["success", "refused"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": "openai/text-\u0000embedding", "input": "hi"}, "model"),
        ({"model": SMALL}, "input"),
        ({"model": SMALL, "input": []}, "input"),
        ({"model": SMALL, "input": ["ok", ""]}, "input[1]"),
        ({"model": SMALL, "input": ["text", [1, 2]]}, "input"),
        ({"model": SMALL, "input": [[1, -2]]}, "input[0]"),
        ({"model": SMALL, "input": "hi", "dimensions": 0}, "dimensions"),
        ({"model": SMALL, "input": "hi", "dimensions": True}, "dimensions"),
        ({"model": SMALL, "input": "hi", "encoding_format": "hex"}, "encoding_format"),
        ({"model": SMALL, "input": "hi", "user": 7}, "user"),
        ({"model": SMALL, "input": "hi", "messages": []}, "messages"),
        ({"model": "gemini/gemini-embedding-001", "input": [[1, 2]]}, "input"),
        ({"model": "qwen/text-embedding-v4", "input": ["x"] * 11}, "input"),
    ],
)
def test_it_answers_400_naming_each_bad_field(world, gateway_server, body, param):
    reply = post(gateway_server, world.secret, body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    [record] = records()
    assert (record.status, record.endpoint) == ("refused", "embeddings")


def test_it_records_a_provider_error_once(world, gateway_server):
    with pytest.raises(openai.InternalServerError) as caught:
        client_for(world, gateway_server).embeddings.create(
            model="openai/text-embedding-3-small-fail-server", input="hello"
        )
    [record] = records()
    assert (record.status, record.endpoint, record.provider_name) == (
        "error",
        "embeddings",
        "openai",
    )
    assert caught.value.response.headers["x-request-id"] == record.request_id
    assert (record.prompt_tokens, record.cost_usd) == (0, 0)


def test_it_masks_pii_before_embedding_when_the_tenant_asks(world, gateway_server):
    Tenant.objects.filter(pk=world.tenant.pk).update(pii_redaction=True)
    client = client_for(world, gateway_server)
    sent = client.embeddings.create(model=SMALL, input="write to jane@example.com")
    masked = client.embeddings.create(model=SMALL, input=f"write to {EMAIL_MASK}")
    assert sent.data[0].embedding == masked.data[0].embedding


# -- the response cache (a key with cache_enabled), by chat's rules ------------------


def embedding_calls(simulator) -> list[dict]:
    return [r for r in simulator.requests() if r["path"].endswith("/embeddings")]


def test_it_serves_a_repeated_embedding_from_the_cache_without_calling_the_provider(
    world, gateway_server, simulator, make_key
):
    pricing_load_bundled()  # text-embedding-3-small: 0.02 USD per million input tokens
    key, secret = make_key(world.tenant, name="cached", cache_enabled=True, cache_ttl_seconds=60)
    client = client_for(world, gateway_server, secret)
    simulator.clear_requests()
    first = client.embeddings.with_raw_response.create(model=SMALL, input=["alpha beta", "gamma"])
    # base64 (the SDK's default above) or floats: the same vectors, rendered per request
    again = client.embeddings.with_raw_response.create(
        model=SMALL, input=["alpha beta", "gamma"], encoding_format="float"
    )
    assert (first.headers["x-aipk-cache"], again.headers["x-aipk-cache"]) == ("miss", "hit")
    assert len(embedding_calls(simulator)) == 1
    for cached, fresh in zip(again.parse().data, first.parse().data, strict=True):
        assert cached.embedding == pytest.approx(fresh.embedding, rel=1e-6)
    assert again.parse().usage.prompt_tokens == first.parse().usage.prompt_tokens == 3
    assert again.headers["x-aipk-provider"] == "openai"
    miss, hit = records(virtual_key=key)
    assert (miss.cached, hit.cached) == (False, True)
    assert (hit.status, hit.endpoint, hit.prompt_tokens) == ("success", "embeddings", 3)
    # chat's rule: a hit costs nothing and records what the call would have cost
    assert hit.cost_usd == 0
    assert hit.cost_saved_usd == miss.cost_usd == Decimal(3) * Decimal("0.02") / 10**6


def test_it_keys_embeddings_on_the_inputs_the_model_and_dimensions(
    world, gateway_server, simulator, make_key
):
    _, secret = make_key(world.tenant, name="cached", cache_enabled=True, cache_ttl_seconds=60)
    client = client_for(world, gateway_server, secret)
    simulator.clear_requests()
    asks = [
        {"model": SMALL, "input": "one"},
        {"model": SMALL, "input": "two"},
        {"model": SMALL, "input": "one", "dimensions": 8},
        {"model": "openai/text-embedding-3-large", "input": "one"},
    ]
    for ask in asks:
        reply = client.embeddings.with_raw_response.create(**ask)
        assert reply.headers["x-aipk-cache"] == "miss"
    assert len(embedding_calls(simulator)) == len(asks)


def test_it_never_serves_one_tenants_cached_embedding_to_another(
    world, gateway_server, simulator, make_key
):
    other = Tenant.objects.create(name="Globex", slug="globex")
    _, mine = make_key(world.tenant, name="cached", cache_enabled=True, cache_ttl_seconds=60)
    _, theirs = make_key(other, name="cached too", cache_enabled=True, cache_ttl_seconds=60)
    simulator.clear_requests()
    ask = {"model": SMALL, "input": "the same text"}
    assert (
        client_for(world, gateway_server, mine)
        .embeddings.with_raw_response.create(**ask)
        .headers["x-aipk-cache"]
        == "miss"
    )
    second = client_for(world, gateway_server, theirs).embeddings.with_raw_response.create(**ask)
    assert second.headers["x-aipk-cache"] == "miss"
    assert len(embedding_calls(simulator)) == 2
    assert [r.cached for r in records(tenant=other)] == [False]


def test_it_goes_upstream_every_time_for_a_key_without_the_cache(world, gateway_server, simulator):
    client = client_for(world, gateway_server)
    simulator.clear_requests()
    for _ in range(2):
        reply = client.embeddings.with_raw_response.create(model=SMALL, input="again")
        assert "x-aipk-cache" not in reply.headers
    assert len(embedding_calls(simulator)) == 2
    assert [r.cached for r in records()] == [False, False]
