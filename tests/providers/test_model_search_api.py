"""Model search by capability (GET /api/models/): the catalogue discovered from the
simulator's providers, judged by the kit's model facts -- vision by catalogue or family,
reasoning by family where the provider takes the reasoning field, tools and context
from discovery. Staff only; an unknown capability is a 400 naming it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache

from providers_app.models import DiscoveredModel
from providers_app.services.discovery import discover_models

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_user("admin", is_staff=True))
    return client


@pytest.fixture
def catalogue(make_provider):
    cache.clear()
    for provider_type in ("openai", "cerebras", "qwen", "openrouter"):
        assert discover_models(make_provider(provider_type, keys=1))
    yield
    cache.clear()


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {model["id"] for model in response.json()}


def test_it_finds_models_that_take_images(staff, catalogue):
    found = ids(staff.get("/api/models/?capability=vision"))

    assert {"openai-sim/gpt-4o", "openai-sim/gpt-5", "openrouter-sim/openai/gpt-4o"} <= found
    assert {
        "cerebras-sim/llama3.1-8b",
        "cerebras-sim/gpt-oss-120b",
        "openrouter-sim/meta-llama/llama-3.3-70b-instruct:free",
    }.isdisjoint(found)


def test_it_finds_reasoning_models_only_where_the_provider_takes_the_field(staff, catalogue):
    found = ids(staff.get("/api/models/?capability=reasoning"))

    assert {"openai-sim/gpt-5", "cerebras-sim/gpt-oss-120b", "cerebras-sim/qwen-3-32b"} <= found
    assert {"openai-sim/gpt-4o", "cerebras-sim/llama3.1-8b"}.isdisjoint(found)
    # Qwen's API refuses reasoning_effort (kit/fields.py), whatever the model
    assert not any(model.startswith("qwen-sim/") for model in found)


def test_it_wants_every_capability_asked_for(staff, catalogue):
    both = ids(staff.get("/api/models/?capability=vision&capability=reasoning"))

    assert both == ids(staff.get("/api/models/?capability=vision")) & ids(
        staff.get("/api/models/?capability=reasoning")
    )
    assert "openai-sim/gpt-5" in both and "openai-sim/gpt-4o" not in both


def test_it_leaves_out_models_discovery_found_without_tools(staff, catalogue):
    DiscoveredModel.objects.filter(model_id="gpt-4o").update(supports_tools=False)

    found = ids(staff.get("/api/models/?capability=tools&provider=openai-sim"))

    assert "openai-sim/gpt-4o-mini" in found and "openai-sim/gpt-4o" not in found


def test_it_filters_by_provider_text_and_context(staff, catalogue):
    minis = ids(staff.get("/api/models/?provider=openai-sim&q=MINI"))
    assert minis == {"openai-sim/gpt-5.4-mini", "openai-sim/gpt-5-mini", "openai-sim/gpt-4o-mini"}

    big = staff.get("/api/models/?min_context=1000000").json()
    assert big and all(model["context_window"] >= 1_000_000 for model in big)


def test_it_says_what_each_model_can_do(staff, catalogue):
    [model] = staff.get("/api/models/?provider=openai-sim&q=gpt-4o-mini").json()

    assert model["provider"] == "openai-sim" and model["model"] == "gpt-4o-mini"
    assert set(model["capabilities"]) == {"tools", "streaming", "vision", "json"}
    assert model["context_window"] and model["source"] in ("fetched", "static")


def test_it_names_an_unknown_capability(staff, catalogue):
    response = staff.get("/api/models/?capability=vision&capability=telepathy")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "capability"
    assert "'telepathy'" in error["message"] and "vision" in error["message"]


def test_it_names_a_bad_context_window(staff, catalogue):
    response = staff.get("/api/models/?min_context=lots")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "min_context"


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_it_searches_for_staff_only(client, catalogue, who):
    if who == "member":
        client.force_login(User.objects.create_user("someone"))

    response = client.get("/api/models/?capability=vision")

    assert response.status_code == (401 if who == "anonymous" else 403)
