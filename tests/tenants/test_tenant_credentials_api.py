"""A tenant's own provider keys through /api/tenants/{slug}/credentials: its members see
their tenant's keys with the limits the provider last reported (after a real reply from
the simulator), never the organisation's shared keys, another tenant's, or a secret.
Outsiders get the 404 of a tenant they cannot see."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache

from providers_app.kit.types import ChatRequest, Message
from providers_app.models import ApiKey
from providers_app.services.chat import credentials_cache_clear, provider_chat
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create

pytestmark = pytest.mark.django_db(transaction=True)

ACME_SECRET = "sk-sim-acme-own-key-0001"
GLOBEX_SECRET = "sk-sim-globex-own-key-0002"
SHARED_SECRET = "sk-sim-shared-key-0003"


@pytest.fixture(autouse=True)
def fresh_state():
    cache.clear()
    credentials_cache_clear()
    yield
    cache.clear()
    credentials_cache_clear()


@pytest.fixture
def keys(simulator, tenant, other_tenant):
    """Acme's own key on "acme-openai", Globex's own on "globex-openai", and a shared one."""

    def own_provider(name, secret, owner):
        provider = provider_create(name=name, type="openai", base_url=simulator.url + "/openai/v1")
        key = api_key_add(provider=provider, label=f"{name} key", secret=secret)
        ApiKey.objects.filter(pk=key.pk).update(tenant=owner)
        return provider, key

    acme_provider, acme_key = own_provider("acme-openai", ACME_SECRET, tenant)
    _, globex_key = own_provider("globex-openai", GLOBEX_SECRET, other_tenant)
    _, shared_key = own_provider("shared-openai", SHARED_SECRET, None)
    return {"acme": acme_key, "globex": globex_key, "shared": shared_key, "p": acme_provider}


def ask(provider, tenant) -> None:
    request = ChatRequest(model="gpt-4o-mini", messages=[Message(role="user", content="hi")])
    assert async_to_sync(provider_chat)(provider, request, tenant_id=tenant.pk).text


@pytest.mark.parametrize("who", ["owner", "teammate", "viewer", "staff"])
def test_it_shows_the_tenants_own_keys_with_their_limits(request, client_as, keys, tenant, who):
    ask(keys["p"], tenant)

    response = client_as(request.getfixturevalue(who)).get("/api/tenants/acme/credentials")

    assert response.status_code == 200
    [key] = response.json()
    assert (key["id"], key["tenant"], key["last4"]) == (keys["acme"].pk, "acme", "0001")
    [limits] = key["upstream_limits"]
    assert limits["model"] == "gpt-4o-mini"
    assert {w["name"]: w["remaining"] for w in limits["windows"]} == {
        "requests": 59,
        "tokens": 149_984,
    }
    body = response.content.decode()
    assert ACME_SECRET not in body and SHARED_SECRET not in body and "globex" not in body


def test_it_shows_another_tenant_only_its_own_keys(client_as, keys, outsider):
    response = client_as(outsider).get("/api/tenants/globex/credentials")

    assert response.status_code == 200
    assert [k["id"] for k in response.json()] == [keys["globex"].pk]
    assert response.json()[0]["upstream_limits"] == []


def test_it_hides_the_tenant_from_an_outsider(client_as, keys, outsider):
    listing = client_as(outsider).get("/api/tenants/acme/credentials")
    credits = client_as(outsider).get(f"/api/tenants/acme/credentials/{keys['acme'].pk}/credits")

    assert listing.status_code == credits.status_code == 404
    assert listing.json()["error"]["type"] == "not_found_error"


def test_it_refuses_a_key_of_another_tenant_under_this_one(client_as, keys, owner):
    for other in ("globex", "shared"):
        response = client_as(owner).get(f"/api/tenants/acme/credentials/{keys[other].pk}/credits")
        assert response.status_code == 404


def test_it_asks_for_sign_in(client, keys):
    assert client.get("/api/tenants/acme/credentials").status_code == 401


def test_it_reports_the_credit_of_the_tenants_own_openrouter_key(
    simulator, client_as, tenant, teammate, outsider
):
    provider = provider_create(
        name="acme-openrouter", type="openrouter", base_url=simulator.url + "/openrouter/api/v1"
    )
    key = api_key_add(provider=provider, label="acme router", secret="sk-or-acme-own-4321")
    ApiKey.objects.filter(pk=key.pk).update(tenant=tenant)

    response = client_as(teammate).get(f"/api/tenants/acme/credentials/{key.pk}/credits")
    assert response.status_code == 200
    assert response.json()["limit_remaining"] == 74.5
    assert "sk-or-acme-own-4321" not in response.content.decode()
    outside = client_as(outsider).get(f"/api/tenants/globex/credentials/{key.pk}/credits")
    assert outside.status_code == 404


def test_it_refuses_credit_for_the_tenants_non_openrouter_key(client_as, keys, owner):
    response = client_as(owner).get(f"/api/tenants/acme/credentials/{keys['acme'].pk}/credits")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "provider"
