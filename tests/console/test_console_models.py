"""The model catalogue (/console/models/): every discovered model per provider with what
it can do, the price a request pays for it and the route aliases that reach it,
searchable and filterable. It names providers, which only staff see (their pages and
API are staff-only), so the catalogue is staff-only too."""

from __future__ import annotations

import pytest
from django.utils import timezone

from providers_app.models import DiscoveredModel, Provider
from tenants_app.models import ModelRoute, Pricing
from tenants_app.services.pricing import pricing_cache_clear

URL = "/console/models/"


@pytest.fixture(autouse=True)
def fresh_prices():
    pricing_cache_clear()
    yield
    pricing_cache_clear()


@pytest.fixture
def catalogue(db, tenant, other_tenant):
    openai = Provider.objects.create(name="openai-prod", type="openai")
    claude = Provider.objects.create(
        name="claude",
        type="anthropic",
        settings={"fallback_input_per_million": 4, "fallback_output_per_million": 8},
    )

    def model(provider, model_id, **extra):
        return DiscoveredModel.objects.create(
            provider=provider,
            model_id=model_id,
            name=extra.pop("name", model_id),
            discovered_at=timezone.now(),
            **extra,
        )

    # gpt-4o-mini is in the OpenAI adapter's static list, which says it takes images
    model(openai, "gpt-4o-mini", name="GPT-4o mini", context_window=128000, max_output_tokens=16384)
    model(openai, "house-model", supports_tools=False, supports_streaming=False)
    model(claude, "claude-in-house", context_window=200000)
    # the built-in table (loaded by a migration) prices gpt-4o-mini for every openai account
    table_row = Pricing.objects.get(provider=None, provider_type="openai", model="gpt-4o-mini")
    assert table_row.source == "bundled"
    ModelRoute.objects.create(
        alias="fast", candidates=[{"provider": "openai-prod", "model": "gpt-4o-mini"}]
    )
    ModelRoute.objects.create(
        tenant=other_tenant,
        alias="globex-cheap",
        candidates=[
            {"provider": "claude", "model": "claude-in-house"},
            {"provider": "openai-prod", "model": "gpt-4o-mini"},
        ],
    )
    return openai, claude


def models_in(body: str) -> list[str]:
    results = body[body.index('id="catalogue-results"') :]
    return [
        line.split('title="', 1)[1].split('"', 1)[0]
        for line in results.split("<tr>")[2:]
        if 'class="mono truncate truncate-wide"' in line
    ]


def row_of(body: str, model_id: str) -> str:
    start = body.rindex("<tr", 0, body.index(f'title="{model_id}"'))
    return body[start : body.index("</tr>", start)]


def test_it_lists_each_model_with_its_capabilities_price_and_aliases(client_as, staff, catalogue):
    response = client_as(staff).get(URL)
    body = response.content.decode()

    assert response.status_code == 200
    assert models_in(body) == ["claude-in-house", "gpt-4o-mini", "house-model"]
    mini = row_of(body, "gpt-4o-mini")
    assert "128000" in mini and "16384" in mini and "GPT-4o mini" in mini
    assert ">tools<" in mini and ">streaming<" in mini and ">vision<" in mini
    assert "0.15 / 0.6" in mini and "built-in table" in mini
    assert ">fast</span>" in mini and "global" in mini and "globex" in mini
    house = row_of(body, "house-model")
    assert ">tools<" not in house and ">streaming<" not in house and "vision" not in house
    assert "no price" in house
    haiku = row_of(body, "claude-in-house")
    assert "4 / 8" in haiku and "provider fallback" in haiku
    assert ">globex-cheap</span>" in haiku


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "MINI"}, ["gpt-4o-mini"]),
        ({"capability": "tools"}, ["claude-in-house", "gpt-4o-mini"]),
        ({"capability": "vision"}, ["gpt-4o-mini"]),
        ({"capability": "unpriced"}, ["house-model"]),
        ({"capability": "priced"}, ["claude-in-house", "gpt-4o-mini"]),
        ({"q": "model", "capability": "streaming"}, []),
    ],
)
def test_it_filters_by_search_and_capability(client_as, staff, catalogue, query, expected):
    body = client_as(staff).get(URL, query).content.decode()

    assert models_in(body) == expected


def test_it_filters_by_provider(client_as, staff, catalogue):
    openai, _claude = catalogue

    body = client_as(staff).get(URL, {"provider": openai.pk}).content.decode()

    assert models_in(body) == ["gpt-4o-mini", "house-model"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"provider": "999"}, "Provider: Select a valid choice"),
        ({"provider": "openai"}, "Provider: Select a valid choice"),
        ({"capability": "telepathy"}, "Capability: Select a valid choice"),
        ({"q": "x" * 201}, "Search: Ensure this value has at most 200 characters"),
    ],
)
def test_it_explains_a_bad_filter_instead_of_failing(client_as, staff, catalogue, query, message):
    response = client_as(staff).get(URL, query)
    body = response.content.decode()

    assert response.status_code == 422
    assert message in body
    assert models_in(body) == []


@pytest.mark.parametrize("who", ["owner", "teammate", "viewer", "outsider"])
def test_it_is_for_staff_only_as_providers_are(request, client_as, who, catalogue):
    response = client_as(request.getfixturevalue(who)).get(URL)

    assert response.status_code == 403
    assert "gpt-4o-mini" not in response.content.decode()


def test_it_sends_a_visitor_to_sign_in(client, db):
    assert client.get(URL)["Location"].startswith("/console/login/")
