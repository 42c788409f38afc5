"""Cached, cache-write and reasoning tokens priced at their own rates.

The kit's ``Usage`` counts every input token in prompt_tokens (cache reads and writes
included) and every output token in completion_tokens (reasoning included); a price's
cache rates apply to those parts, each falling back to the input rate when unset.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from providers_app.kit.types import ChatRequest, Message, Usage
from providers_app.models import Provider
from tenants_app.models import Pricing
from tenants_app.services.pricing import (
    Price,
    acost_bound,
    bundled_price_table,
    charge,
    cost_micro,
    cost_usd,
    price_for,
    pricing_cache_clear,
    pricing_load_bundled,
    pricing_set,
    prompt_tokens_upper_bound,
)

# Claude Sonnet 4.5: input $3/M, cache reads 0.1x, cache writes 1.25x, output $15/M
SONNET = Price(Decimal("3"), Decimal("15"), Decimal("0.30"), Decimal("3.75"))


@pytest.fixture(autouse=True)
def fresh_cache():
    pricing_cache_clear()
    yield
    pricing_cache_clear()


def test_it_prices_each_part_of_the_prompt_at_its_own_rate():
    usage = Usage(
        prompt_tokens=10_000,
        completion_tokens=2_000,
        cached_tokens=6_000,
        cache_write_tokens=3_000,
        reasoning_tokens=1_500,
    )
    cost, micro = charge(SONNET, usage)
    # 1,000 plain input, 6,000 read, 3,000 written; 2,000 output of which 1,500 reasoning
    expected = Decimal("0.003") + Decimal("0.0018") + Decimal("0.01125") + Decimal("0.03")
    assert cost == expected
    assert micro == int(expected * 1_000_000)
    assert cost_usd(SONNET, usage) == expected


def test_it_prices_reasoning_as_output_because_it_is_part_of_the_completion():
    with_reasoning = Usage(prompt_tokens=100, completion_tokens=1_100, reasoning_tokens=1_000)
    plain = Usage(prompt_tokens=100, completion_tokens=1_100)
    assert charge(SONNET, with_reasoning) == charge(SONNET, plain)


def test_it_falls_back_to_the_input_rate_for_an_unset_cache_rate():
    no_cache_rates = Price(Decimal("2"), Decimal("8"))
    usage = Usage(
        prompt_tokens=1_000, completion_tokens=0, cached_tokens=400, cache_write_tokens=100
    )
    assert charge(no_cache_rates, usage) == charge(no_cache_rates, Usage(prompt_tokens=1_000))
    reads_only = Price(Decimal("2"), Decimal("8"), cached_input_per_million=Decimal("0.5"))
    # 500 plain + 100 written at the input rate, 400 read at the cached rate
    assert cost_usd(reads_only, usage) == Decimal(600 * 2 + 400 * Decimal("0.5")) / 1_000_000


def test_it_never_bills_a_token_twice_when_a_provider_reports_more_cached_than_prompt():
    usage = Usage(prompt_tokens=100, completion_tokens=0, cached_tokens=80, cache_write_tokens=80)
    # 80 read, the 20 left written, none plain
    assert cost_usd(SONNET, usage) == (80 * Decimal("0.30") + 20 * Decimal("3.75")) / 1_000_000


def test_it_charges_nothing_without_a_price():
    assert charge(None, Usage(prompt_tokens=5, cached_tokens=5)) == (Decimal(0), 0)


def test_it_reserves_the_prompt_at_the_dearer_cache_write_rate():
    assert cost_micro(SONNET, 1_000, 0) == 3_750
    cheaper_writes = Price(Decimal("3"), Decimal("15"), cache_write_per_million=Decimal("1"))
    assert cost_micro(cheaper_writes, 1_000, 0) == 3_000


@pytest.mark.django_db(transaction=True)
async def test_it_keeps_the_budget_bound_above_a_reply_that_writes_its_whole_prompt_to_the_cache():
    provider = await Provider.objects.acreate(name="claude", type="anthropic")
    await Pricing.objects.acreate(
        provider=provider,
        provider_type="anthropic",
        model="sonnet",
        input_per_million=SONNET.input_per_million,
        output_per_million=SONNET.output_per_million,
        cached_input_per_million=SONNET.cached_input_per_million,
        cache_write_per_million=SONNET.cache_write_per_million,
    )
    request = ChatRequest(
        model="sonnet", messages=[Message(role="user", content="x" * 4_000)], max_tokens=100
    )
    bound = await acost_bound([(provider, "sonnet")], request)
    prompt = prompt_tokens_upper_bound(request)
    assert bound.cost_micro == cost_micro(SONNET, prompt, 100)
    everything_written = Usage(
        prompt_tokens=prompt, completion_tokens=100, cache_write_tokens=prompt
    )
    assert charge(SONNET, everything_written)[1] <= bound.cost_micro


def test_it_ships_cache_rates_in_the_bundled_table():
    table = bundled_price_table()
    sonnet = table["anthropic"]["claude-sonnet-4-5-20250929"]
    assert sonnet.cached_rate == sonnet.input_per_million / 10
    assert sonnet.cache_write_rate == sonnet.input_per_million * Decimal("1.25")
    assert table["openai"]["gpt-4o"].cached_rate == table["openai"]["gpt-4o"].input_per_million / 2
    flash = table["gemini"]["gemini-2.5-flash"]
    assert flash.cached_rate == flash.input_per_million / 4
    # no cache price known: the input rate
    llama = table["cerebras"]["llama3.1-8b"]
    assert llama.cached_input_per_million is None and llama.cached_rate == llama.input_per_million
    for models in table.values():
        for price in models.values():
            assert price.cached_rate <= price.input_per_million


@pytest.mark.django_db
def test_it_loads_the_bundled_cache_rates_into_the_type_rows_and_prices_from_them():
    Pricing.objects.filter(provider__isnull=True).delete()
    assert pricing_load_bundled()["created"] > 0
    row = Pricing.objects.get(
        provider=None, provider_type="anthropic", model="claude-haiku-4-5-20251001"
    )
    assert (row.cached_input_per_million, row.cache_write_per_million) == (
        Decimal("0.10"),
        Decimal("1.25"),
    )
    row.cached_input_per_million = Decimal("0.5")
    row.save()
    assert pricing_load_bundled()["updated"] == 1  # a changed cache rate is brought back
    provider = Provider.objects.create(name="claude", type="anthropic")
    price = price_for(provider, "claude-haiku-4-5-20251001")
    assert price == Price(Decimal("1"), Decimal("5"), Decimal("0.10"), Decimal("1.25"))


@pytest.mark.django_db
def test_it_sets_a_manual_price_with_or_without_cache_rates():
    admin = get_user_model().objects.create_user("alice", password="x" * 12, is_staff=True)
    row = pricing_set(
        provider_type="openai",
        model="my-model",
        input_per_million="2",
        output_per_million="8",
        cached_input_per_million="0.5",
        actor=admin,
    )
    assert (row.cached_input_per_million, row.cache_write_per_million) == (Decimal("0.5"), None)
    # a price set again without them has no cache discount left over from before
    row = pricing_set(
        provider_type="openai",
        model="my-model",
        input_per_million="4",
        output_per_million="8",
        actor=admin,
    )
    assert row.cached_input_per_million is None


@pytest.mark.django_db
def test_it_refuses_a_bad_cache_rate_naming_the_field():
    from aipk_site.infra.errors import InvalidRequest

    admin = get_user_model().objects.create_user("bob", password="x" * 12, is_staff=True)
    with pytest.raises(InvalidRequest) as info:
        pricing_set(
            provider_type="openai",
            model="my-model",
            input_per_million="2",
            output_per_million="8",
            cache_write_per_million="-1",
            actor=admin,
        )
    assert info.value.param == "cache_write_per_million"
