"""Invoices: itemised per provider and model, per UTC month, draft until the month ends."""

from __future__ import annotations

import csv
import importlib
import io
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone as dj_timezone
from django_celery_beat.models import PeriodicTask

from tenants_app.models import Invoice, Tenant, UsageRecord
from tenants_app.services.billing import (
    INVOICE_CSV_HEADER,
    USAGE_CSV_FIELDS,
    invoice_csv,
    invoice_generate,
    invoices_generate,
    month_start,
    previous_month,
    usage_csv,
)
from tenants_app.tasks import generate_invoices

MARCH = date(2025, 3, 1)


@pytest.fixture
def tenant(db):
    return Tenant.objects.create(name="Acme", slug="acme")


@pytest.fixture
def other_tenant(db):
    return Tenant.objects.create(name="Globex", slug="globex")


def usage(tenant, when, provider="openai-a", model="gpt-4o", **fields):
    values = {
        "request_id": uuid.uuid4().hex,
        "tenant": tenant,
        "provider_name": provider,
        "model": model,
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cost_usd": Decimal("0.00100000"),
        "status": "success",
        "created_at": when,
    }
    values.update(fields)
    return UsageRecord.objects.create(**values)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# rows of no provider aipk knows (only its name): token detail 0, no priced parts
NO_DETAIL = {
    "cached_tokens": 0,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "cached_cost_usd": None,
    "cache_write_cost_usd": None,
    "reasoning_cost_usd": None,
}


def test_it_itemises_by_provider_and_model_with_totals(tenant, other_tenant):
    t = at(2025, 3, 10, 12)
    usage(tenant, t, "openai-a", "gpt-4o", cost_usd=Decimal("0.01000000"))
    usage(tenant, t, "openai-a", "gpt-4o", prompt_tokens=50, completion_tokens=5)
    usage(tenant, t, "openai-a", "gpt-4o-mini", cost_usd=Decimal("0.00012345"))
    usage(
        tenant,
        t,
        "anthropic-a",
        "claude-sonnet-4-20250514",
        cost_usd=Decimal("0"),
        cached=True,
        cost_saved_usd=Decimal("0.00450000"),
    )
    usage(tenant, t, "anthropic-a", "claude-sonnet-4-20250514", cost_usd=Decimal("0.02"))
    usage(tenant, t, "", "", status="refused", cost_usd=Decimal("0"))  # never billed
    usage(other_tenant, t, "openai-a", "gpt-4o", cost_usd=Decimal("5"))  # not this tenant's

    invoice = invoice_generate(tenant=tenant, period=date(2025, 3, 17))

    assert invoice.period == MARCH
    assert invoice.lines == [
        {
            "provider": "anthropic-a",
            "model": "claude-sonnet-4-20250514",
            "requests": 2,
            "prompt_tokens": 200,
            "completion_tokens": 20,
            "cost_usd": "0.02000000",
            "cached_requests": 1,
            "cost_saved_usd": "0.00450000",
            **NO_DETAIL,
        },
        {
            "provider": "openai-a",
            "model": "gpt-4o",
            "requests": 2,
            "prompt_tokens": 150,
            "completion_tokens": 15,
            "cost_usd": "0.01100000",
            "cached_requests": 0,
            "cost_saved_usd": "0E-8",
            **NO_DETAIL,
        },
        {
            "provider": "openai-a",
            "model": "gpt-4o-mini",
            "requests": 1,
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "cost_usd": "0.00012345",
            "cached_requests": 0,
            "cost_saved_usd": "0E-8",
            **NO_DETAIL,
        },
    ]
    invoice.refresh_from_db()
    assert invoice.total_usd == Decimal("0.031123")  # the column keeps 6 decimals
    assert invoice.final is True  # March 2025 has ended


def test_it_aggregates_in_the_database(tenant):
    for n in range(40):
        usage(tenant, at(2025, 3, 1 + n % 28), model=f"m{n % 3}")
    with CaptureQueriesContext(connection) as queries:
        invoice = invoice_generate(tenant=tenant, period=MARCH)

    reads = [q["sql"] for q in queries.captured_queries if "tenants_app_usagerecord" in q["sql"]]
    assert len(reads) == 1 and "GROUP BY" in reads[0]
    assert [line["requests"] for line in invoice.lines] == [14, 13, 13]


def test_it_cuts_months_at_midnight_utc(tenant):
    usage(tenant, at(2025, 2, 28, 23, 59, 59), cost_usd=Decimal("1"))  # February
    usage(tenant, at(2025, 3, 1, 0, 0, 0), cost_usd=Decimal("2"))  # March
    usage(tenant, at(2025, 3, 31, 23, 59, 59, 999999), cost_usd=Decimal("4"))  # March
    usage(tenant, at(2025, 4, 1, 0, 0, 0), cost_usd=Decimal("8"))  # April
    # 00:30 on April 1st in Paris is still March 31st in UTC
    paris = timezone(timedelta(hours=2))
    usage(tenant, datetime(2025, 4, 1, 0, 30, tzinfo=paris), cost_usd=Decimal("16"))

    assert invoice_generate(tenant=tenant, period=date(2025, 2, 1)).total_usd == Decimal("1")
    assert invoice_generate(tenant=tenant, period=MARCH).total_usd == Decimal("22")
    assert invoice_generate(tenant=tenant, period=date(2025, 4, 1)).total_usd == Decimal("8")


def test_it_handles_december_to_january(tenant):
    usage(tenant, at(2024, 12, 31, 23, 0), cost_usd=Decimal("1"))
    usage(tenant, at(2025, 1, 1, 0, 0), cost_usd=Decimal("2"))
    assert invoice_generate(tenant=tenant, period=date(2024, 12, 5)).total_usd == Decimal("1")
    assert invoice_generate(tenant=tenant, period=date(2025, 1, 5)).total_usd == Decimal("2")
    assert previous_month(date(2025, 1, 20)) == date(2024, 12, 1)


def test_it_keeps_the_current_month_a_draft_and_updates_it(tenant):
    now = dj_timezone.now()
    usage(tenant, now, cost_usd=Decimal("1"))
    draft = invoice_generate(tenant=tenant, period=now.date())
    assert draft.final is False
    assert draft.period == month_start(now.date())

    usage(tenant, now, cost_usd=Decimal("2"))
    again = invoice_generate(tenant=tenant, period=now.date())

    assert again.pk == draft.pk
    assert Invoice.objects.filter(tenant=tenant).count() == 1
    assert again.total_usd == Decimal("3")


def test_it_makes_an_empty_invoice_for_a_month_without_usage(tenant):
    invoice = invoice_generate(tenant=tenant, period=MARCH)
    assert (invoice.lines, invoice.total_usd, invoice.final) == ([], Decimal("0"), True)


def test_it_generates_for_active_tenants_and_finalises_last_month(tenant, other_tenant):
    Tenant.objects.create(name="Gone", slug="gone", active=False)
    now = dj_timezone.now()
    this_month = month_start(now.date())
    last_month = previous_month(this_month)
    usage(tenant, now, cost_usd=Decimal("1"))
    usage(tenant, datetime.combine(last_month, datetime.min.time(), UTC), cost_usd=Decimal("5"))
    # last month's draft, made before the month ended
    Invoice.objects.create(
        tenant=tenant, period=last_month, final=False, generated_at=now - timedelta(days=40)
    )

    assert invoices_generate() == 4  # two tenants x (this month + last month)

    invoices = {(i.tenant.slug, i.period): i for i in Invoice.objects.select_related("tenant")}
    assert set(invoices) == {
        ("acme", this_month),
        ("acme", last_month),
        ("globex", this_month),
        ("globex", last_month),
    }
    assert invoices["acme", last_month].final and invoices["acme", last_month].total_usd == 5
    assert not invoices["acme", this_month].final
    assert invoices["acme", this_month].total_usd == 1

    # a final invoice is left as it was shown; only the drafts are refreshed
    usage(tenant, datetime.combine(last_month, datetime.min.time(), UTC), cost_usd=Decimal("7"))
    assert invoices_generate() == 2
    assert Invoice.objects.get(tenant=tenant, period=last_month).total_usd == Decimal("5")


def test_it_generates_a_given_month_for_every_active_tenant(tenant, other_tenant):
    usage(other_tenant, at(2025, 3, 3), cost_usd=Decimal("3"))
    assert invoices_generate(MARCH) == 2
    assert Invoice.objects.get(tenant=other_tenant, period=MARCH).total_usd == Decimal("3")


def test_it_runs_from_the_celery_task(tenant):
    assert generate_invoices.run() == 2
    assert Invoice.objects.filter(tenant=tenant).count() == 2


def test_it_schedules_the_invoice_task_hourly(db):
    # run the migration's own code: a transactional test elsewhere may have flushed its row
    schedule = importlib.import_module("tenants_app.migrations.0004_invoice_schedule")
    schedule.create_schedule(django_apps, None)
    schedule.create_schedule(django_apps, None)  # idempotent

    task = PeriodicTask.objects.get(name="tenants: generate invoices")
    assert task.task == generate_invoices.name
    assert (task.interval.every, task.interval.period, task.enabled) == (1, "hours", True)


def test_it_exports_an_invoice_as_csv(tenant):
    usage(tenant, at(2025, 3, 2), "openai-a", "gpt-4o", cost_usd=Decimal("0.5"))
    usage(tenant, at(2025, 3, 2), "anthropic-a", 'model "quoted", with comma')
    invoice = invoice_generate(tenant=tenant, period=MARCH)

    rows = list(csv.reader(io.StringIO(invoice_csv(invoice))))

    assert rows[0] == list(INVOICE_CSV_HEADER)
    assert rows[1] == [
        "2025-03",
        "anthropic-a",
        'model "quoted", with comma',
        "1",
        "100",
        "10",
        "0",
        "0",
        "0",
        "",
        "",
        "",
        "0",
        "0E-8",
        "0.00100000",
    ]
    assert rows[2][:4] == ["2025-03", "openai-a", "gpt-4o", "1"]
    assert rows[-1] == ["2025-03", "total", *[""] * 12, "0.50100000"]


def test_it_streams_usage_as_csv_lines_header_first(tenant):
    first = usage(tenant, at(2025, 3, 2, 8, 30), ttft_ms=None, latency_ms=12.5)
    second = usage(tenant, at(2025, 3, 3), status="error", error_type="rate_limit")

    lines = usage_csv(UsageRecord.objects.order_by("created_at").iterator())
    header = next(lines)
    assert header == ",".join(USAGE_CSV_FIELDS) + "\r\n"
    rest = list(lines)
    assert len(rest) == 2

    rows = list(csv.DictReader(io.StringIO(header + "".join(rest))))
    assert rows[0]["request_id"] == first.request_id
    assert rows[0]["created_at"] == "2025-03-02T08:30:00+00:00"
    assert (rows[0]["ttft_ms"], rows[0]["latency_ms"]) == ("", "12.5")
    assert rows[0]["cost_usd"] == "0.00100000"
    assert (rows[1]["request_id"], rows[1]["status"], rows[1]["error_type"]) == (
        second.request_id,
        "error",
        "rate_limit",
    )


def test_it_writes_only_the_header_for_no_usage():
    assert list(usage_csv([])) == [",".join(USAGE_CSV_FIELDS) + "\r\n"]


# -- cached, cache-write and reasoning tokens at their own rates --------------------


def test_it_shows_cached_cache_write_and_reasoning_tokens_and_their_cost_exactly(tenant):
    from providers_app.kit.types import Usage
    from providers_app.services.providers import provider_create
    from tenants_app.models import Pricing
    from tenants_app.services.pricing import cost_usd, price_for, pricing_cache_clear

    claude = provider_create(name="claude", type="anthropic", base_url="https://api.anthropic.com")
    gpt = provider_create(name="gpt", type="openai", base_url="https://api.openai.com/v1")
    # Sonnet's shape: cache reads 0.1x input, writes 1.25x; o3-mini's: reads 0.25x
    Pricing.objects.create(
        provider=claude,
        provider_type="anthropic",
        model="sonnet",
        input_per_million=Decimal("3"),
        output_per_million=Decimal("15"),
        cached_input_per_million=Decimal("0.30"),
        cache_write_per_million=Decimal("3.75"),
    )
    Pricing.objects.create(
        provider=gpt,
        provider_type="openai",
        model="o3-mini",
        input_per_million=Decimal("2"),
        output_per_million=Decimal("8"),
        cached_input_per_million=Decimal("0.5"),
    )
    pricing_cache_clear()

    def row(provider, model, *, hit=False, **tokens):
        # each row costed as the gateway costs it (the usage row's cost_usd)
        cost = cost_usd(price_for(provider, model), Usage(**tokens))
        return usage(
            tenant,
            at(2025, 3, 9),
            provider.name,
            model,
            provider_id=provider.pk,
            cost_usd=Decimal(0) if hit else cost,
            cached=hit,
            cost_saved_usd=cost if hit else Decimal(0),
            **tokens,
        )

    big = dict(
        prompt_tokens=10_000,
        completion_tokens=2_000,
        cached_tokens=6_000,
        cache_write_tokens=3_000,
        reasoning_tokens=1_500,
    )
    row(claude, "sonnet", **big)
    row(
        claude,
        "sonnet",
        prompt_tokens=2_000,
        completion_tokens=500,
        cache_write_tokens=2_000,
    )
    row(claude, "sonnet", hit=True, **big)  # a response-cache hit: billed nothing
    row(
        gpt,
        "o3-mini",
        prompt_tokens=1_300,
        completion_tokens=68,
        cached_tokens=1_280,
        reasoning_tokens=64,
    )

    invoice = invoice_generate(tenant=tenant, period=MARCH)

    sonnet, o3 = invoice.lines
    # 1,000 plain x 3 + 6,000 read x 0.30 + 3,000 written x 3.75 + 2,000 out x 15,
    # and 2,000 written x 3.75 + 500 out x 15 (USD per million)
    assert Decimal(sonnet["cost_usd"]) == Decimal("0.04605") + Decimal("0.015")
    assert (sonnet["cached_tokens"], sonnet["cache_write_tokens"], sonnet["reasoning_tokens"]) == (
        12_000,
        8_000,
        3_000,
    )  # every row's tokens, the hit's too
    # the parts' cost: the billed rows' tokens (not the hit's) at each rate
    assert Decimal(sonnet["cached_cost_usd"]) == Decimal("0.0018")  # 6,000 x 0.30
    assert Decimal(sonnet["cache_write_cost_usd"]) == Decimal("0.01875")  # 5,000 x 3.75
    assert Decimal(sonnet["reasoning_cost_usd"]) == Decimal("0.0225")  # 1,500 x 15
    assert (sonnet["cached_requests"], Decimal(sonnet["cost_saved_usd"])) == (1, Decimal("0.04605"))
    # 20 plain x 2 + 1,280 read x 0.5 + 68 out x 8
    assert Decimal(o3["cost_usd"]) == Decimal("0.001224")
    assert Decimal(o3["cached_cost_usd"]) == Decimal("0.00064")
    assert Decimal(o3["cache_write_cost_usd"]) == 0
    assert Decimal(o3["reasoning_cost_usd"]) == Decimal("0.000512")  # 64 x 8
    invoice.refresh_from_db()
    assert invoice.total_usd == Decimal("0.062274")
    assert invoice.total_usd == sum(r.cost_usd for r in UsageRecord.objects.filter(tenant=tenant))

    rows = list(csv.DictReader(io.StringIO(invoice_csv(invoice))))
    assert [
        (r["model"], r["cached_tokens"], r["cache_write_cost_usd"], r["reasoning_cost_usd"])
        for r in rows[:2]
    ] == [
        ("sonnet", "12000", "0.01875000", "0.02250000"),
        ("o3-mini", "1280", "0E-8", "0.00051200"),
    ]
