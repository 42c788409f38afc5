"""Prices: which row applies, how long it is cached, what a request costs, who set it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections

from aipk_site.infra.errors import InvalidRequest
from providers_app.kit.providers import ADAPTERS
from providers_app.kit.types import Usage
from providers_app.models import Provider
from tenants_app.models import AuditEvent, Pricing
from tenants_app.services.pricing import (
    DEFAULT_COMPLETION_ALLOWANCE_TOKENS,
    Price,
    aprice_for,
    bundled_price_table,
    cost_micro,
    cost_usd,
    estimate_cost_micro,
    price_for,
    pricing_cache_clear,
    pricing_delete,
    pricing_load_bundled,
    pricing_set,
)


@pytest.fixture(autouse=True)
def fresh_cache():
    pricing_cache_clear()
    yield
    pricing_cache_clear()


@pytest.fixture
def bundled_prices(db):
    """The 0003 migration seeds these, but a transactional test elsewhere in the suite
    may have flushed the tables since; loading again is idempotent."""
    pricing_load_bundled()
    pricing_cache_clear()


@pytest.fixture
def admin(db):
    return get_user_model().objects.create_user("alice", password="x" * 12, is_staff=True)


@pytest.fixture
def openai_a(bundled_prices):
    return Provider.objects.create(name="openai-a", type="openai")


@pytest.fixture
def openai_b(db):
    return Provider.objects.create(name="openai-b", type="openai")


def set_price(provider_type, model, price_in, price_out, provider=None, source="manual"):
    return Pricing.objects.update_or_create(
        provider=provider,
        provider_type=provider_type,
        model=model,
        defaults={
            "input_per_million": Decimal(price_in),
            "output_per_million": Decimal(price_out),
            "source": source,
        },
    )[0]


# -- which price ---------------------------------------------------------------------


def test_it_uses_the_bundled_type_price(openai_a):
    row = Pricing.objects.get(provider=None, provider_type="openai", model="gpt-4o-mini")
    assert row.source == "bundled"
    assert price_for(openai_a, "gpt-4o-mini") == Price(
        Decimal("0.15"), Decimal("0.60"), cached_input_per_million=Decimal("0.075")
    )


def test_it_prefers_the_providers_own_row_over_its_types(openai_a, openai_b):
    set_price("openai", "gpt-4o", "1.00", "4.00", provider=openai_a)

    assert price_for(openai_a, "gpt-4o") == Price(Decimal("1.00"), Decimal("4.00"))
    assert price_for(openai_b, "gpt-4o") == Price(
        Decimal("2.50"), Decimal("10.00"), Decimal("1.25")
    )


def test_it_does_not_use_another_types_row(db):
    groq = Provider.objects.create(name="groq", type="openai-compatible")
    assert price_for(groq, "gpt-4o-mini") is None


def test_it_has_no_price_for_an_unknown_model(openai_a):
    assert price_for(openai_a, "no-such-model") is None


def test_it_caches_prices_and_misses_until_cleared(openai_a, django_assert_num_queries):
    with django_assert_num_queries(1):
        price_for(openai_a, "gpt-4o-mini")
        price_for(openai_a, "gpt-4o-mini")
    with django_assert_num_queries(1):
        assert price_for(openai_a, "custom-model") is None
        assert price_for(openai_a, "custom-model") is None

    Pricing.objects.filter(provider=None, model="gpt-4o-mini").update(
        input_per_million=Decimal("9")
    )
    assert price_for(openai_a, "gpt-4o-mini").input_per_million == Decimal("0.15")

    pricing_cache_clear()
    assert price_for(openai_a, "gpt-4o-mini").input_per_million == Decimal("9")


def test_it_forgets_a_cached_price_after_the_routing_cache_period(openai_a, settings):
    settings.ROUTING_CACHE_SECONDS = 0
    assert price_for(openai_a, "gpt-4o-mini").input_per_million == Decimal("0.15")
    Pricing.objects.filter(provider=None, model="gpt-4o-mini").update(
        input_per_million=Decimal("7")
    )
    assert price_for(openai_a, "gpt-4o-mini").input_per_million == Decimal("7")


@pytest.mark.django_db(transaction=True)
async def test_it_looks_prices_up_from_async_code():
    await sync_to_async(pricing_load_bundled)()
    provider = await Provider.objects.acreate(name="anthropic-a", type="anthropic")
    await Pricing.objects.acreate(
        provider=provider,
        provider_type="anthropic",
        model="claude-sonnet-4-20250514",
        input_per_million=Decimal("2"),
        output_per_million=Decimal("10"),
    )

    assert await aprice_for(provider, "claude-sonnet-4-20250514") == Price(
        Decimal("2"), Decimal("10")
    )
    assert await aprice_for(provider, "claude-3-5-haiku-20241022") == Price(
        Decimal("0.8"), Decimal("4"), Decimal("0.08"), Decimal("1.00")
    )
    assert await aprice_for(provider, "nope") is None
    await sync_to_async(connections.close_all)()  # the async ORM's worker thread's


# -- what it costs -------------------------------------------------------------------


def test_it_computes_cost_in_usd_to_eight_decimals():
    price = Price(Decimal("2.50"), Decimal("10.00"))
    assert cost_usd(price, Usage(1000, 500)) == Decimal("0.00750000")
    assert cost_usd(price, Usage(1_000_000, 1_000_000)) == Decimal("12.50000000")
    # 1 token at 0.15/M = 0.00000015 exactly; 1 token at 0.000123/M rounds to 0
    assert cost_usd(Price(Decimal("0.15"), Decimal("0")), Usage(1, 0)) == Decimal("0.00000015")
    assert cost_usd(Price(Decimal("0.000123"), Decimal("0")), Usage(1, 0)) == Decimal("0E-8")
    # half a unit of the 8th decimal rounds up
    assert cost_usd(Price(Decimal("0.005"), Decimal("0")), Usage(1, 0)) == Decimal("0.00000001")


def test_it_costs_nothing_without_a_price():
    assert cost_usd(None, Usage(1000, 1000)) == Decimal("0")
    assert cost_micro(None, 1000, 1000) == 0
    assert estimate_cost_micro(None, 1000, None) == 0


def test_it_rounds_micro_dollars_up():
    price = Price(Decimal("0.15"), Decimal("0.60"))
    assert cost_micro(price, 1, 0) == 1  # 0.15 micro-dollars
    assert cost_micro(price, 0, 0) == 0
    assert cost_micro(price, 1_000_000, 0) == 150_000
    assert cost_micro(price, 1_000_001, 0) == 150_001  # 150000.15
    assert cost_micro(Price(Decimal("3"), Decimal("15")), 1000, 1000) == 18_000


def test_it_never_reserves_less_than_the_stored_cost():
    price = Price(Decimal("0.123457"), Decimal("0.987651"))
    for prompt, completion in [(1, 1), (7, 3), (12345, 678), (999_999, 1)]:
        assert Decimal(cost_micro(price, prompt, completion)) >= cost_usd(
            price, Usage(prompt, completion)
        ) * Decimal(1_000_000)


def test_it_estimates_a_reservation_from_max_tokens_or_the_default_allowance():
    price = Price(Decimal("1"), Decimal("2"))
    assert estimate_cost_micro(price, 100, 50) == 100 * 1 + 50 * 2
    assert estimate_cost_micro(price, 100, None) == 100 + DEFAULT_COMPLETION_ALLOWANCE_TOKENS * 2
    assert estimate_cost_micro(price, 100, 0) == 100


# -- setting prices ------------------------------------------------------------------


def test_it_sets_a_manual_price_and_audits_it(admin, openai_a):
    pricing = pricing_set(
        provider_type="openai",
        provider=openai_a,
        model="gpt-4o",
        input_per_million="1.5",
        output_per_million=Decimal("6"),
        actor=admin,
    )

    assert (pricing.source, pricing.provider, pricing.input_per_million) == (
        "manual",
        openai_a,
        Decimal("1.5"),
    )
    event = AuditEvent.objects.get(action="pricing.create")
    assert event.actor == admin
    assert event.object_id == str(pricing.pk)
    assert event.changes["provider"] == "openai-a"
    assert event.changes["input_per_million"] == "1.500000"


def test_it_overrides_a_bundled_type_price_and_keeps_what_it_was(admin, openai_a):
    price_for(openai_a, "gpt-4o-mini")  # cached before the change

    pricing = pricing_set(
        provider_type="openai",
        model="gpt-4o-mini",
        input_per_million="0.2",
        output_per_million="0.8",
        actor=admin,
    )

    assert pricing.provider is None and pricing.source == "manual"
    assert Pricing.objects.filter(provider=None, model="gpt-4o-mini").count() == 1
    assert price_for(openai_a, "gpt-4o-mini") == Price(Decimal("0.2"), Decimal("0.8"))
    event = AuditEvent.objects.get(action="pricing.update")
    assert event.changes["before"]["source"] == "bundled"


@pytest.mark.parametrize(
    ("field", "value"),
    [("input_per_million", "-1"), ("output_per_million", "abc"), ("input_per_million", "NaN")],
)
def test_it_refuses_a_bad_price(admin, field, value):
    prices = {"input_per_million": "1", "output_per_million": "1", field: value}
    with pytest.raises(InvalidRequest) as caught:
        pricing_set(provider_type="openai", model="m", actor=admin, **prices)
    assert caught.value.param == field
    assert not Pricing.objects.filter(model="m").exists()
    assert not AuditEvent.objects.exists()


def test_it_refuses_a_provider_of_another_type(admin, openai_a):
    with pytest.raises(InvalidRequest) as caught:
        pricing_set(
            provider_type="anthropic",
            provider=openai_a,
            model="m",
            input_per_million=1,
            output_per_million=1,
            actor=admin,
        )
    assert caught.value.param == "provider_type"


def test_it_deletes_a_price_and_audits_it(admin, openai_a):
    pricing = set_price("openai", "gpt-4o", "1", "2", provider=openai_a)
    assert price_for(openai_a, "gpt-4o").input_per_million == Decimal("1")

    pricing_delete(pricing=pricing, actor=admin)

    assert price_for(openai_a, "gpt-4o").input_per_million == Decimal("2.5")  # the type's
    event = AuditEvent.objects.get(action="pricing.delete")
    assert event.changes["model"] == "gpt-4o" and event.actor == admin


# -- the bundled table ---------------------------------------------------------------


def test_it_bundles_every_price_the_adapters_list_and_their_default_models():
    table = bundled_price_table()
    for provider_type, adapter in ADAPTERS.items():
        if provider_type == "openai-compatible":
            continue  # any endpoint: no list price can be known
        assert adapter.default_model_id in table[provider_type], provider_type
        for model in adapter.static_models:
            if model.input_price_per_million is None:
                continue
            bundled = table[provider_type][model.id]
            assert float(bundled.input_per_million) == model.input_price_per_million, model.id
            assert float(bundled.output_per_million) == model.output_price_per_million, model.id


def test_it_reloads_bundled_prices_but_never_a_manual_one(bundled_prices, capsys):
    Pricing.objects.filter(provider=None, model="gpt-4o").update(input_per_million=Decimal("99"))
    set_price("openai", "gpt-4o-mini", "5", "5", source="manual")
    Pricing.objects.filter(provider=None, model="gemini-2.0-flash").delete()

    call_command("load_pricing")

    assert "1 created, 1 updated" in capsys.readouterr().out
    assert Pricing.objects.get(provider=None, model="gpt-4o").input_per_million == Decimal("2.5")
    manual = Pricing.objects.get(provider=None, model="gpt-4o-mini")
    assert (manual.source, manual.input_per_million) == ("manual", Decimal("5"))
    assert Pricing.objects.filter(provider=None, model="gemini-2.0-flash").exists()
    assert (
        pricing_load_bundled()["unchanged"]
        == len([m for models in bundled_price_table().values() for m in models]) - 1
    )
