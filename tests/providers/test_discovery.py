"""Model discovery over real HTTP against the simulator: storing, caching, fallback, search."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from providers_app.models import DiscoveredModel
from providers_app.services.credentials import api_key_add
from providers_app.services.discovery import (
    acached_models,
    adiscover_models,
    cached_models,
    discover_all_models,
    discover_models,
    search_models,
)
from providers_app.tasks.monitoring import discover_provider_models

pytestmark = pytest.mark.django_db

# (provider type, a model the simulator lists, its context window, priced?)
LISTED = [
    ("openai", "gpt-4o", 128_000, True),
    ("anthropic", "claude-sonnet-4-20250514", 200_000, True),
    ("gemini", "gemini-2.5-flash", 1_048_576, True),
    ("cerebras", "llama-3.3-70b", 8_192, True),
    ("qwen", "qwen3-coder-plus", 1_000_000, False),
    ("openrouter", "openai/gpt-4o", 128_000, True),
]


@pytest.mark.parametrize(("provider_type", "model_id", "context", "priced"), LISTED)
def test_it_discovers_and_stores_the_models_of_each_provider_type(
    make_provider, simulator, provider_type, model_id, context, priced
):
    provider = make_provider(provider_type)
    simulator.clear_requests()
    rows = discover_models(provider)
    assert [r["path"] for r in simulator.requests()][-1].endswith("models")
    stored = DiscoveredModel.objects.get(provider=provider, model_id=model_id)
    assert stored.source == "fetched"
    assert {r.model_id for r in rows} == set(
        DiscoveredModel.objects.filter(provider=provider).values_list("model_id", flat=True)
    )
    assert stored.context_window and stored.context_window > 0
    if context:
        assert stored.context_window == context
    if priced:
        assert isinstance(stored.input_price_per_million, Decimal)
        assert stored.input_price_per_million > 0 and stored.output_price_per_million > 0


def test_it_converts_openrouter_per_token_prices_to_decimal_per_million(make_provider):
    provider = make_provider("openrouter")
    discover_models(provider)
    free = DiscoveredModel.objects.get(
        provider=provider, model_id="meta-llama/llama-3.3-70b-instruct:free"
    )
    assert free.input_price_per_million == Decimal("0")
    gpt = DiscoveredModel.objects.get(provider=provider, model_id="openai/gpt-4o")
    assert gpt.input_price_per_million == Decimal("2.500000")
    assert gpt.output_price_per_million == Decimal("10.000000")


def test_it_leaves_out_models_that_cannot_chat(make_provider):
    provider = make_provider("gemini")
    discover_models(provider)
    ids = set(DiscoveredModel.objects.filter(provider=provider).values_list("model_id", flat=True))
    assert "gemini-2.5-pro" in ids and "text-embedding-004" not in ids


def test_it_answers_the_second_call_from_the_cache_without_asking_the_provider(
    make_provider, simulator
):
    provider = make_provider("openai")
    first = discover_models(provider)
    simulator.clear_requests()
    second = discover_models(provider)
    assert simulator.requests() == []
    assert {m.model_id for m in second} == {m.model_id for m in first}
    cached = cached_models(provider)
    assert {m["id"] for m in cached} == {m.model_id for m in first}


def test_it_asks_again_when_told_to_refresh(make_provider, simulator):
    provider = make_provider("openai")
    discover_models(provider)
    simulator.clear_requests()
    discover_models(provider, refresh=True)
    assert len(simulator.requests()) == 1


def test_it_falls_back_to_the_static_catalogue_when_the_fetch_fails(make_provider, caplog):
    provider = make_provider("anthropic", keys=0)
    api_key_add(provider=provider, label="revoked", secret="invalid-anthropic-key-0001")
    with caplog.at_level(logging.WARNING, logger="providers_app.services.discovery"):
        rows = discover_models(provider)
    assert rows and {r.source for r in rows} == {"static"}
    assert DiscoveredModel.objects.filter(provider=provider, source="static").count() == len(rows)
    assert "authentication_error" in caplog.text and "invalid-anthropic" not in caplog.text


def test_it_keeps_the_last_fetched_list_when_a_later_fetch_fails(make_provider, simulator):
    provider = make_provider("openai")
    fetched = {m.model_id for m in discover_models(provider)}
    provider.base_url = f"{simulator.url}/nowhere/v1"
    provider.save()
    rows = discover_models(provider, refresh=True)
    assert {r.model_id for r in rows} == fetched
    assert {r.source for r in rows} == {"fetched"}


def test_it_falls_back_when_the_provider_cannot_be_reached(make_provider):
    provider = make_provider("cerebras")
    provider.base_url = "http://127.0.0.1:9/v1"  # discard port: connection refused
    provider.save()
    rows = discover_models(provider)
    assert rows and all(r.source == "static" for r in rows)


def test_it_removes_models_the_provider_no_longer_lists(make_provider):
    provider = make_provider("openai")
    discover_models(provider)
    DiscoveredModel.objects.create(
        provider=provider, model_id="gpt-retired", name="gone", discovered_at="2020-01-01T00:00Z"
    )
    discover_models(provider, refresh=True)
    assert not DiscoveredModel.objects.filter(provider=provider, model_id="gpt-retired").exists()


def test_it_searches_stored_models_by_capability_and_price(make_provider):
    openai = make_provider("openai")
    gemini = make_provider("gemini")
    discover_models(openai)
    discover_models(gemini)

    big = search_models(min_context=1_048_000)
    assert big.exists() and all(m.context_window >= 1_048_000 for m in big)
    assert {m.provider for m in big} == {gemini}

    only_openai = search_models(provider="openai-sim")
    assert {m.provider_id for m in only_openai} == {openai.pk}
    assert search_models(provider=openai).count() == only_openai.count()

    cheap = list(search_models(max_input_price=Decimal("0.5")))
    assert cheap and all(m.input_price_per_million <= Decimal("0.5") for m in cheap)
    prices = [m.input_price_per_million for m in search_models()]
    known = [p for p in prices if p is not None]
    assert known == sorted(known)

    assert (
        search_models(tools=True, streaming=True).count()
        == DiscoveredModel.objects.filter(supports_tools=True, supports_streaming=True).count()
    )


def test_it_finds_models_without_tool_support(make_provider):
    provider = make_provider("openai")
    discover_models(provider)
    DiscoveredModel.objects.filter(provider=provider, model_id="gpt-4o-mini").update(
        supports_tools=False
    )
    assert [m.model_id for m in search_models(tools=False)] == ["gpt-4o-mini"]
    assert "gpt-4o-mini" not in {m.model_id for m in search_models(tools=True)}


def test_it_leaves_disabled_providers_out_of_search(make_provider):
    provider = make_provider("openai")
    discover_models(provider)
    provider.enabled = False
    provider.save()
    assert not search_models(provider=provider).exists()


def test_it_runs_discovery_for_every_enabled_provider(make_provider):
    make_provider("openai")
    make_provider("qwen")
    off = make_provider("cerebras")
    off.enabled = False
    off.save()
    counts = discover_all_models()
    assert set(counts) == {"openai-sim", "qwen-sim"} and all(counts.values())
    assert not DiscoveredModel.objects.filter(provider=off).exists()


def test_it_runs_discovery_from_the_celery_task_by_id(make_provider):
    provider = make_provider("qwen")
    assert (
        discover_provider_models(provider.pk)
        == DiscoveredModel.objects.filter(provider=provider).count()
        > 0
    )


def test_it_ignores_a_task_for_a_provider_that_no_longer_exists(db):
    assert discover_provider_models(987654) == 0


@pytest.mark.django_db(transaction=True)
async def test_it_discovers_from_async_code_on_the_shared_client(make_provider):
    from asgiref.sync import sync_to_async
    from django.db import connections

    try:
        provider = await sync_to_async(make_provider)("openai", name="openai-async")
        rows = await adiscover_models(provider)
        assert any(r.model_id == "gpt-4o" for r in rows)
        cached = await acached_models(provider)
        assert {m["id"] for m in cached} == {r.model_id for r in rows}
        assert [m async for m in search_models(provider=provider, min_context=1_000_000)]
    finally:
        # the ORM ran in asgiref's worker thread: close its connection there
        await sync_to_async(connections.close_all)()


def test_one_crashing_discovery_does_not_stop_the_others(make_provider, monkeypatch, caplog):
    from providers_app.services import discovery

    make_provider("openai", name="good")
    make_provider("qwen", name="bad")
    real_discover = discovery.discover_models

    def discover(provider, *, refresh):
        if provider.name == "bad":
            raise RuntimeError("a bug")
        return real_discover(provider, refresh=refresh)

    monkeypatch.setattr(discovery, "discover_models", discover)
    with caplog.at_level(logging.ERROR, logger="providers_app.services.discovery"):
        counts = discovery.discover_all_models()
    assert list(counts) == ["good"] and counts["good"] > 0
    assert "model discovery crashed provider=bad" in caplog.text
