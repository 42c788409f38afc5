"""/console/playground/: who may chat as which tenant, and with which models.

The page offers what the websocket chat accepts (docs/WEBSOCKET.md): tenants where the
user is a member, admin or owner, active ones only; the models are those GET /v1/models
lists for the tenant (routes first, then provider/model ids)."""

import re

import pytest
from django.utils import timezone

from aipk_site.gateway.formats.common import MAX_OUTPUT_TOKENS
from providers_app.models import DiscoveredModel
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import Role
from tenants_app.services.routes import route_create

URL = "/console/playground/"
PROVIDER_SECRET = "sk-playground-secret-0001"


@pytest.fixture(autouse=True)
def no_routing_copies(settings):
    # the router keeps per-process copies of providers and routes for a few seconds;
    # each test builds its own, so nothing may be kept between them
    settings.ROUTING_CACHE_SECONDS = 0


@pytest.fixture
def openai(db):
    provider = provider_create(
        name="openai",
        type="openai",
        base_url="http://127.0.0.1:9/openai/v1",
        default_model="gpt-4o-mini",
    )
    api_key_add(provider=provider, label="main", secret=PROVIDER_SECRET)
    DiscoveredModel.objects.create(
        provider=provider, model_id="gpt-4o", name="GPT-4o", discovered_at=timezone.now()
    )
    return provider


@pytest.fixture
def routes(tenant, other_tenant, openai, staff):
    candidates = [{"provider": "openai", "model": "gpt-4o-mini"}]
    route_create(tenant=tenant, alias="acme-smart", candidates=candidates, actor=staff)
    route_create(tenant=None, alias="everyone-fast", candidates=candidates, actor=staff)
    route_create(tenant=other_tenant, alias="globex-only", candidates=candidates, actor=staff)


def model_options(body: str) -> list[str]:
    field = body.split('id="pg-model-field"', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([^"]*)"', field)


def tenant_options(body: str) -> list[str]:
    if 'id="pg-tenant"' not in body:
        return []
    picker = body.split('id="pg-tenant"', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([^"]*)"', picker)


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/")


@pytest.mark.parametrize("who", ["owner", "tenant_admin", "teammate"])
def test_it_lets_members_and_above_chat_as_their_tenant(request, client_as, who, routes):
    response = client_as(request.getfixturevalue(who)).get(URL)
    body = response.content.decode()

    assert response.status_code == 200
    assert tenant_options(body) == ["acme"]
    assert 'data-ws-path="/ws/chat/"' in body
    assert '<script src="/static/console/playground.js" defer></script>' in body
    assert 'id="pg-send"' in body and 'id="pg-stop"' in body
    assert 'id="pg-demo-tool"' in body


def test_it_lists_the_tenants_routes_then_provider_models(client_as, teammate, routes):
    body = client_as(teammate).get(URL).content.decode()

    assert model_options(body) == [
        "acme-smart",
        "everyone-fast",
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
    ]
    assert "globex-only" not in body


def test_it_leaves_out_models_of_providers_the_tenant_may_not_use(
    client_as, teammate, tenant, routes
):
    anthropic = provider_create(
        name="anthropic",
        type="anthropic",
        base_url="http://127.0.0.1:9/anthropic",
        default_model="claude-3-5-haiku-20241022",
    )
    route_create(
        tenant=None,
        alias="claude-only",
        candidates=[{"provider": "anthropic", "model": "claude-3-5-haiku-20241022"}],
        actor=None,
    )
    before = model_options(client_as(teammate).get(URL).content.decode())
    tenant.allowed_providers.set([anthropic])

    after = model_options(client_as(teammate).get(URL).content.decode())

    assert "openai/gpt-4o-mini" in before and "claude-only" in before
    assert after == ["claude-only", "anthropic/claude-3-5-haiku-20241022"]


def test_it_leaves_out_a_disabled_provider_and_routes_that_only_reach_it(
    client_as, teammate, openai, routes
):
    openai.enabled = False
    openai.save()

    body = client_as(teammate).get(URL).content.decode()

    assert model_options(body) == [""]
    assert "has no usable model" in body


def test_it_tells_a_viewer_that_viewers_cannot_chat(client_as, viewer, routes):
    body = client_as(viewer).get(URL).content.decode()

    assert tenant_options(body) == []
    assert "You are a viewer in Acme: viewers cannot chat." in body
    assert "There is no tenant you can chat as." in body
    assert "playground.js" not in body and "acme-smart" not in body


def test_it_shows_an_outsider_nothing_of_acme(client_as, outsider, routes):
    body = client_as(outsider).get(URL).content.decode()

    assert tenant_options(body) == ["globex"]
    assert model_options(body) == [
        "everyone-fast",
        "globex-only",
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
    ]
    assert "Acme" not in body and "acme-smart" not in body


def test_it_answers_an_outsider_asking_for_acme_as_for_a_tenant_that_does_not_exist(
    client_as, outsider, routes
):
    client = client_as(outsider)
    for slug in ("acme", "no-such-tenant"):
        response = client.get(URL, {"tenant": slug})
        body = response.content.decode()

        assert response.status_code == 200
        assert "You cannot chat as that tenant" in body
        assert 'data-tenant="globex"' in body
        assert "acme-smart" not in body and "Acme" not in body


def test_it_switches_the_model_list_with_the_tenant_picker(
    client_as, make_member, tenant, other_tenant, routes
):
    both = make_member("both", tenant, Role.MEMBER)
    other_tenant.memberships.create(user=both, role=Role.ADMIN)
    client = client_as(both)

    acme = client.get(URL, {"tenant": "acme"}, headers={"HX-Request": "true"})
    globex = client.get(URL, {"tenant": "globex"}, headers={"HX-Request": "true"})

    assert tenant_options(acme.content.decode()) == ["acme", "globex"]
    assert 'data-tenant="acme"' in acme.content.decode()
    assert "acme-smart" in model_options(acme.content.decode())
    assert 'data-tenant="globex"' in globex.content.decode()
    assert "globex-only" in model_options(globex.content.decode())
    assert "acme-smart" not in model_options(globex.content.decode())


def test_it_does_not_offer_a_deactivated_tenant(client_as, owner, tenant, routes):
    tenant.active = False
    tenant.save()

    body = client_as(owner).get(URL).content.decode()

    assert tenant_options(body) == []
    assert "Acme is deactivated" in body


def test_it_tells_staff_that_chatting_needs_a_membership(client_as, staff, tenant, routes):
    body = client_as(staff).get(URL).content.decode()

    assert tenant_options(body) == []
    assert "being staff is not enough" in body


def test_it_never_shows_a_provider_secret(client_as, owner, routes):
    body = client_as(owner).get(URL).content.decode()

    assert PROVIDER_SECRET not in body
    assert PROVIDER_SECRET[-8:] not in body


def test_it_bounds_the_number_settings_as_the_chat_does_with_a_slot_for_each_error(
    client_as, teammate, routes
):
    body = client_as(teammate).get("/console/playground/").content.decode()

    temperature = re.search(r'<input id="pg-temperature"[^>]*>', body).group(0)
    max_tokens = re.search(r'<input id="pg-max-tokens"[^>]*>', body).group(0)
    assert 'min="0"' in temperature and 'max="2"' in temperature
    assert f'min="1" max="{MAX_OUTPUT_TOKENS}" step="1"' in max_tokens
    for field in ("pg-temperature", "pg-max-tokens", "pg-model"):
        assert f'aria-describedby="{field}-error"' in body
        assert f'<span class="field-error" id="{field}-error" aria-live="polite"></span>' in body
