"""The rest of the /v1 surface, over real loopback HTTP with the official SDKs: unknown
paths and wrong methods (JSON 404/405 in the caller's format), ``GET /v1/models/{id}``
(OpenAI and Anthropic model objects, the key's visibility), Anthropic's model fields
the newest SDK requires, and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from django.test import Client

from aipk_site.gateway.formats.anthropic_format import parse_messages
from aipk_site.gateway.formats.common import InputLimits
from aipk_site.gateway.ledger import estimate_prompt_tokens
from aipk_site.gateway.usage import usage_flush
from tests.gateway.support import ALL_TYPES

pytestmark = pytest.mark.django_db(transaction=True)

ANTHROPIC_VERSION = {"anthropic-version": "2023-06-01"}
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def openai_client(world, gateway_server, secret: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=secret or world.secret,
        base_url=gateway_server.openai_base_url,
        max_retries=0,
        # the SDK's own models must accept every field, none missing
        _strict_response_validation=True,
    )


def anthropic_client(world, gateway_server, secret: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=secret or world.secret,
        base_url=gateway_server.url,
        max_retries=0,
        _strict_response_validation=True,
    )


def json_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    return response.json()


def usage_rows() -> int:
    from tenants_app.models import UsageRecord

    usage_flush()
    return UsageRecord.objects.count()


def upstream_requests(simulator) -> int:
    return len(httpx.get(simulator.url + "/_sim/requests", timeout=30).json())


# -- unknown paths and wrong methods --------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("path", ["/v1/nope", "/v1/embeddingz", "/v1/models-list/x"])
def test_it_answers_an_unknown_path_with_a_json_404_in_openai_shape(gateway_server, method, path):
    response = httpx.request(method, gateway_server.url + path, timeout=30)
    error = json_error(response, 404)["error"]
    assert error["type"] == "not_found_error"
    assert error["code"] == "unknown_path"
    assert error["param"] is None
    assert path in error["message"] and method in error["message"]


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/messages/batches"])
def test_it_answers_an_unknown_path_in_anthropic_shape_for_anthropic_clients(gateway_server, path):
    response = httpx.post(gateway_server.url + path, json={}, headers=ANTHROPIC_VERSION)
    body = json_error(response, 404)
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert path in body["error"]["message"]


def test_the_openai_sdk_raises_not_found_for_an_unknown_path(world, gateway_server):
    client = openai_client(world, gateway_server)
    with pytest.raises(openai.NotFoundError) as caught:
        client.get("/no/such/thing", cast_to=object)
    assert caught.value.body["code"] == "unknown_path"


@pytest.mark.parametrize(
    "method, path, allowed, anthropic_shape",
    [
        ("GET", "/v1/chat/completions", "POST", False),
        ("DELETE", "/v1/models", "GET", False),
        ("PUT", "/v1/messages", "POST", True),
        ("POST", "/v1/models/openai/gpt-4o-mini", "GET", False),
        ("GET", "/v1/messages/count_tokens", "POST", True),
    ],
)
def test_it_answers_a_wrong_method_with_a_json_405_and_an_allow_header(
    gateway_server, method, path, allowed, anthropic_shape
):
    response = httpx.request(method, gateway_server.url + path, timeout=30)
    body = json_error(response, 405)
    assert response.headers["allow"] == allowed
    error = body["error"]
    if anthropic_shape:
        assert body["type"] == "error"
    else:
        assert error["param"] is None
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "method_not_allowed"
    assert method in error["message"] and allowed in error["message"]


def test_the_anthropic_sdk_raises_for_a_wrong_method(world, gateway_server):
    client = anthropic_client(world, gateway_server)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.delete("/v1/messages/count_tokens", cast_to=object)
    assert caught.value.status_code == 405
    assert caught.value.body["error"]["code"] == "method_not_allowed"


def test_it_still_serves_the_openapi_description_and_the_docs(gateway_server):
    schema = httpx.get(gateway_server.url + "/v1/openapi.json", timeout=30)
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/v1/models/{model_id}", "/v1/messages/count_tokens"} <= paths.keys()
    assert "get" in paths["/v1/models/{model_id}"]
    assert "post" in paths["/v1/messages/count_tokens"]
    docs = httpx.get(gateway_server.url + "/v1/docs", timeout=30)
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")


# -- GET /v1/models/{id} --------------------------------------------------------------------


@pytest.mark.parametrize("provider_type", ALL_TYPES)
def test_the_openai_sdk_retrieves_each_model_the_key_may_use(world, gateway_server, provider_type):
    client = openai_client(world, gateway_server)
    model = client.models.retrieve(world.model(provider_type))
    assert model.id == world.model(provider_type)
    assert model.object == "model"
    assert model.owned_by == world.providers[provider_type].name


def test_it_retrieves_a_model_id_sent_with_raw_slashes(world, gateway_server):
    # a model id holds "/" ("openrouter/openai/gpt-4o-mini"); the SDK sends it as %2F,
    # a hand-written client as it is
    model_id = world.model("openrouter")
    response = httpx.get(
        f"{gateway_server.url}/v1/models/{model_id}",
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json() == {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "openrouter",
    }


def test_it_retrieves_an_alias_the_tenant_has(world, gateway_server):
    from tenants_app.models import ModelRoute

    ModelRoute.objects.create(
        tenant=world.tenant,
        alias="smart",
        candidates=[{"provider": "openai", "model": "gpt-4o-mini"}],
    )
    model = openai_client(world, gateway_server).models.retrieve("smart")
    assert (model.id, model.owned_by) == ("smart", "aipk")


def test_it_answers_404_for_a_model_that_does_not_exist(world, gateway_server):
    client = openai_client(world, gateway_server)
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("openai/no-such-model")
    assert caught.value.body["code"] == "model_not_found"
    assert caught.value.body["param"] == "model"


def test_it_does_not_reveal_another_tenants_alias(world, gateway_server):
    from tenants_app.models import ModelRoute, Tenant

    other = Tenant.objects.create(name="Globex", slug="globex")
    ModelRoute.objects.create(
        tenant=other,
        alias="globex-secret",
        candidates=[{"provider": "openai", "model": "gpt-4o-mini"}],
    )
    client = openai_client(world, gateway_server)
    with pytest.raises(openai.NotFoundError) as hidden:
        client.models.retrieve("globex-secret")
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-alias")
    # the same answer as for a name nobody has
    assert hidden.value.body["code"] == missing.value.body["code"] == "model_not_found"


def test_it_answers_404_for_a_model_the_key_may_not_use(world, gateway_server, make_key):
    _key, secret = make_key(world.tenant, name="openai only", allowed_models=["openai/*"])
    client = openai_client(world, gateway_server, secret)
    assert client.models.retrieve(world.model("openai")).id == world.model("openai")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(world.model("anthropic"))


def test_it_answers_404_for_a_model_of_a_disabled_provider(world, gateway_server):
    from aipk_site.gateway.routing import routing_cache_clear

    gemini = world.providers["gemini"]
    gemini.enabled = False
    gemini.save()
    routing_cache_clear()
    with pytest.raises(openai.NotFoundError):
        openai_client(world, gateway_server).models.retrieve(world.model("gemini"))


def test_it_asks_for_a_key_before_it_says_whether_a_model_exists(world, gateway_server):
    response = httpx.get(gateway_server.url + "/v1/models/openai/gpt-4o-mini", timeout=30)
    assert json_error(response, 401)["error"]["type"] == "authentication_error"


def test_it_cuts_a_huge_model_id_in_the_404(world, gateway_server):
    response = httpx.get(
        gateway_server.url + "/v1/models/openai/" + "x" * 5000,
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    )
    assert len(json_error(response, 404)["error"]["message"]) < 500


# -- Anthropic model objects ----------------------------------------------------------------


def test_the_anthropic_sdk_lists_models_with_every_field_it_requires(world, gateway_server):
    models = list(anthropic_client(world, gateway_server).models.list())
    assert {m.id for m in models} == {world.model(t) for t in ALL_TYPES}
    assert {m.lifecycle for m in models} == {"active"}
    assert {m.type for m in models} == {"model"}
    assert all(m.display_name and m.created_at for m in models)


def test_it_gives_the_catalogues_limits_and_name_where_it_knows_them(world, gateway_server):
    client = anthropic_client(world, gateway_server)
    by_id = {m.id: m for m in client.models.list()}
    haiku = by_id[world.model("anthropic")]  # in the anthropic adapter's static catalogue
    assert haiku.display_name == "Claude Haiku 3.5"
    assert (haiku.max_input_tokens, haiku.max_tokens) == (200_000, 8_192)
    cerebras = by_id[world.model("cerebras")]  # a context window but no output limit
    assert (cerebras.max_input_tokens, cerebras.max_tokens) == (8_192, None)
    unknown = by_id[world.model("qwen")]  # in no catalogue here
    assert unknown.display_name == world.model("qwen")
    assert unknown.max_input_tokens is None and unknown.max_tokens is None


def test_a_discovered_models_own_figures_win(world, gateway_server):
    from django.utils import timezone

    from providers_app.models import DiscoveredModel

    DiscoveredModel.objects.create(
        provider=world.providers["anthropic"],
        model_id="claude-3-5-haiku-20241022",
        name="Haiku (discovered)",
        context_window=100_000,
        max_output_tokens=4_096,
        discovered_at=timezone.now(),
    )
    model = anthropic_client(world, gateway_server).models.retrieve(world.model("anthropic"))
    assert model.display_name == "Haiku (discovered)"
    assert (model.max_input_tokens, model.max_tokens) == (100_000, 4_096)


@pytest.mark.parametrize("provider_type", ["anthropic", "openai", "gemini"])
def test_the_anthropic_sdk_retrieves_a_model(world, gateway_server, provider_type):
    model = anthropic_client(world, gateway_server).models.retrieve(world.model(provider_type))
    assert model.id == world.model(provider_type)
    assert model.type == "model" and model.lifecycle == "active"


def test_the_anthropic_sdk_gets_its_own_404_for_an_unknown_model(world, gateway_server):
    client = anthropic_client(world, gateway_server)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.models.retrieve("anthropic/claude-none")
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "not_found_error"


# -- POST /v1/messages/count_tokens ---------------------------------------------------------


def _estimate(**body) -> int:
    limits = InputLimits(max_messages=10_000, max_message_chars=10**7, max_tools=1_000)
    return estimate_prompt_tokens(parse_messages({"max_tokens": 1, **body}, limits).request)


def test_the_anthropic_sdk_counts_a_messages_input_tokens(world, gateway_server, simulator):
    client = anthropic_client(world, gateway_server)
    body = {
        "model": world.model("anthropic"),
        "system": "You are a weather assistant. " * 10,
        "messages": [{"role": "user", "content": "What is the weather in Paris today? " * 20}],
        "tools": TOOLS,
    }
    rows, upstream = usage_rows(), upstream_requests(simulator)
    counted = client.messages.count_tokens(**body)
    # the gateway's own estimate, the one admission reserves for the same body
    assert counted.input_tokens == _estimate(**body)
    assert counted.input_tokens > 100
    # it costs nothing: no provider call, no usage row
    assert upstream_requests(simulator) == upstream
    assert usage_rows() == rows


def test_a_longer_conversation_counts_more(world, gateway_server):
    client = anthropic_client(world, gateway_server)
    short = client.messages.count_tokens(
        model=world.model("openai"), messages=[{"role": "user", "content": "Hi"}]
    )
    longer = client.messages.count_tokens(
        model=world.model("openai"),
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help you today?"},
            {"role": "user", "content": "Tell me everything about the weather in Paris."},
        ],
    )
    assert 0 < short.input_tokens < longer.input_tokens


def test_it_counts_for_an_alias(world, gateway_server):
    from tenants_app.models import ModelRoute

    ModelRoute.objects.create(
        tenant=world.tenant,
        alias="smart",
        candidates=[{"provider": "anthropic", "model": "claude-3-5-haiku-20241022"}],
    )
    counted = anthropic_client(world, gateway_server).messages.count_tokens(
        model="smart", messages=[{"role": "user", "content": "Hello there, friend"}]
    )
    assert counted.input_tokens == _estimate(
        model="smart", messages=[{"role": "user", "content": "Hello there, friend"}]
    )


def test_it_refuses_a_bad_body_naming_the_field(world, gateway_server):
    client = anthropic_client(world, gateway_server)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.count_tokens(
            model=world.model("anthropic"), messages=[{"role": "robot", "content": "x"}]
        )
    assert caught.value.body["type"] == "error"
    assert "messages[0].role" in caught.value.message


@pytest.mark.parametrize(
    "content, param",
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        (b'{"model": "anthropic/claude-3-5-haiku-20241022"}', "messages"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
    ],
)
def test_it_answers_bad_input_with_an_anthropic_400(world, gateway_server, content, param):
    response = httpx.post(
        gateway_server.url + "/v1/messages/count_tokens",
        content=content,
        headers={"x-api-key": world.secret, "content-type": "application/json"},
        timeout=30,
    )
    body = json_error(response, 400)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert param in body["error"]["message"]


def test_it_refuses_a_model_the_key_may_not_use(world, gateway_server, make_key):
    _key, secret = make_key(world.tenant, name="openai only", allowed_models=["openai/*"])
    client = anthropic_client(world, gateway_server, secret)
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(
            model=world.model("anthropic"), messages=[{"role": "user", "content": "x"}]
        )


def test_it_answers_404_for_a_model_nobody_has(world, gateway_server):
    client = anthropic_client(world, gateway_server)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.count_tokens(
            model="nowhere/model", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["error"]["code"] == "model_not_found"


def test_it_wants_a_key(world, gateway_server):
    client = anthropic_client(world, gateway_server, secret="aipk-not-a-real-key")
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.count_tokens(
            model=world.model("anthropic"), messages=[{"role": "user", "content": "x"}]
        )


def test_it_counts_against_the_keys_rpm_and_nothing_else(world, gateway_server, make_key):
    from decimal import Decimal

    # TPM of 1 and a budget of nothing would refuse any /v1/messages request; a count
    # uses neither
    _key, secret = make_key(world.tenant, name="tight", rpm=2, tpm=1, monthly_budget_usd=Decimal(0))
    client = anthropic_client(world, gateway_server, secret)
    ask = {"model": world.model("anthropic"), "messages": [{"role": "user", "content": "x"}]}
    first = client.messages.with_raw_response.count_tokens(**ask)
    assert first.parse().input_tokens >= 1
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    client.messages.count_tokens(**ask)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.count_tokens(**ask)
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert "retry-after" in caught.value.response.headers


def test_counts_and_messages_share_the_rpm(world, gateway_server, make_key):
    _key, secret = make_key(world.tenant, name="one a minute", rpm=1)
    client = anthropic_client(world, gateway_server, secret)
    client.messages.count_tokens(
        model=world.model("anthropic"), messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(
            model=world.model("anthropic"),
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        )


# -- the same operations through Django's handler -------------------------------------------


def test_the_django_views_serve_the_same_operations(world):
    """A server started on another entry point than aipk_site.asgi reaches /v1/ through
    Django: the NinjaAPI views hand the request to the same edge operations."""
    client = Client(headers={"authorization": f"Bearer {world.secret}", "host": "127.0.0.1"})
    model = client.get("/v1/models/" + world.model("openrouter"))
    assert model.status_code == 200 and model.json()["id"] == world.model("openrouter")
    counted = client.post(
        "/v1/messages/count_tokens",
        {"model": world.model("anthropic"), "messages": [{"role": "user", "content": "Hi"}]},
        content_type="application/json",
    )
    assert counted.status_code == 200 and counted.json()["input_tokens"] >= 1
    missing = client.get("/v1/models/openai/nothing", headers=ANTHROPIC_VERSION)
    assert missing.status_code == 404 and missing.json()["type"] == "error"
