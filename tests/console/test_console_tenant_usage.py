"""Console: a tenant's usage tab. Charts are inline SVG drawn from the UsageRecord
rows (no script, no CDN); the tables group by model, provider and key; the CSV
link is the management API's export for the same days."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from tenants_app.models import UsageRecord, UsageStatus
from tenants_app.services.keys import virtual_key_create

USAGE_URL = "/console/tenants/acme/usage/"
MARCH = "?from=2025-03-01&to=2025-03-07"


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2025, 3, day, hour, tzinfo=dt.UTC)


def record(tenant, when, *, key=None, model="gpt-4o-mini", provider="openai-prod", **fields):
    values = {
        "request_id": f"req-{UsageRecord.objects.count()}",
        "tenant": tenant,
        "virtual_key": key,
        "provider_name": provider,
        "model": model,
        "status": UsageStatus.SUCCESS,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cost_usd": Decimal("0.01"),
        "created_at": when,
    }
    return UsageRecord.objects.create(**{**values, **fields})


@pytest.fixture
def march_usage(tenant, owner, other_tenant):
    """Four requests on March 2nd and 5th 2025 (one failed, two keys, two providers),
    plus noise outside the range and in another tenant."""
    backend, _ = virtual_key_create(tenant=tenant, name="backend", actor=owner)
    batch, _ = virtual_key_create(tenant=tenant, name="batch", actor=owner)
    record(
        tenant,
        at(2),
        key=backend,
        prompt_tokens=300,
        completion_tokens=50,
        cost_usd=Decimal("0.25"),
    )
    record(
        tenant,
        at(2, 18),
        key=backend,
        status=UsageStatus.ERROR,
        prompt_tokens=40,
        completion_tokens=0,
        cost_usd=Decimal("0"),
        error_type="upstream",
    )
    record(
        tenant,
        at(5),
        key=batch,
        model="claude-3-5-haiku",
        provider="claude",
        prompt_tokens=1000,
        completion_tokens=200,
        cost_usd=Decimal("1.5"),
    )
    record(
        tenant,
        at(5, 23),
        key=batch,
        prompt_tokens=60,
        completion_tokens=30,
        cost_usd=Decimal("0.05"),
    )
    record(tenant, at(9), key=backend, cost_usd=Decimal("9"))  # after the range
    record(other_tenant, at(2), cost_usd=Decimal("7"))  # another tenant
    return backend, batch


def chart(body: str, title: str) -> dict:
    """The chart titled ``title``, as the page hands it to charts.js."""
    data = re.search(
        r'<script id="console-charts" type="application/json">(.*?)</script>', body, re.S
    ).group(1)
    for spec in json.loads(data):
        if spec["title"] == title:
            return spec
    raise AssertionError(f"no chart titled {title!r}")


def bar_values(spec: dict) -> list:
    return [value for series in spec["series"] for value in series["values"]]


def table_cells(body: str, chart_id: str) -> list[str]:
    section = body.split(f'data-chart="{chart_id}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'<td class="num">([^<]*)</td>', section)


def test_it_draws_the_charts_from_usage_rows(client_as, viewer, march_usage):
    response = client_as(viewer).get(USAGE_URL + MARCH)
    body = response.content.decode()

    assert response.status_code == 200
    assert 'aria-current="page">Usage' in body
    assert '<script src="/static/console/charts.js" defer></script>' in body
    # one bar per day, March 1st to 7th; series in legend order
    requests = chart(body, "Requests per day")
    assert requests["labels"] == ["Mar 1", "2", "3", "4", "5", "6", "7"]
    assert bar_values(requests) == [0, 1, 0, 0, 2, 0, 0] + [0, 1, 0, 0, 0, 0, 0]
    tokens = bar_values(chart(body, "Tokens per day"))
    assert tokens[:7] == [0, 340, 0, 0, 1060, 0, 0]  # prompt
    assert tokens[7:] == [0, 50, 0, 0, 230, 0, 0]  # completion
    assert bar_values(chart(body, "Spend per day (USD)")) == [0, 0.25, 0, 0, 1.55, 0, 0]
    # the same figures in each chart's table, for screen readers
    assert table_cells(body, "usage-spend") == [
        "$0.0000",
        "$0.2500",
        "$0.0000",
        "$0.0000",
        "$1.5500",
        "$0.0000",
        "$0.0000",
    ]
    # a day's bar opens that day's requests of this tenant
    assert requests["links"][1] == (
        "/console/requests/?range=custom&since=2025-03-02&until=2025-03-02&tenant=acme"
    )


def test_it_shows_totals_and_tables_by_model_provider_and_key(client_as, viewer, march_usage):
    backend, batch = march_usage

    body = client_as(viewer).get(USAGE_URL + MARCH).content.decode()

    assert '<div class="value">4</div><div class="sub">1 not successful</div>' in body
    assert '<div class="value">$1.8000</div>' in body
    tables = {
        title: body.split(f"<h2>{title}</h2>")[1].split("</table>")[0]
        for title in ("By model", "By provider", "By key")
    }
    cells = lambda html: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()  # noqa: E731
    assert "claude-3-5-haiku 1 0 1000 200 0 0 0 1.5000" in cells(tables["By model"])
    assert "gpt-4o-mini 3 1 400 80 0 0 0 0.3000" in cells(tables["By model"])
    assert "claude 1 0 1000 200 0 0 0 1.5000" in cells(tables["By provider"])
    assert f"backend {backend.prefix}… 2 1 340 50 0 0 0 0.2500" in cells(tables["By key"])
    assert f"batch {batch.prefix}… 2 0 1060 230 0 0 0 1.5500" in cells(tables["By key"])


def test_it_shows_cache_and_reasoning_tokens_beside_the_token_totals(client_as, viewer, tenant):
    record(tenant, at(3), cached_tokens=60, cache_write_tokens=30, reasoning_tokens=12)
    record(tenant, at(4), cached_tokens=40, reasoning_tokens=3)

    body = client_as(viewer).get(USAGE_URL + MARCH).content.decode()

    assert "100 cache reads · 30 cache writes" in body and "15 reasoning" in body
    table = body.split("<h2>By model</h2>")[1].split("</table>")[0]
    assert "Cache reads" in table and "Reasoning" in table
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", table)).strip()
    assert "gpt-4o-mini 2 0 200 40 100 30 15 0.0200" in cells


def test_it_defaults_to_this_month(client_as, viewer, tenant):
    record(tenant, timezone.now(), cost_usd=Decimal("0.42"))
    record(tenant, timezone.now() - dt.timedelta(days=45), cost_usd=Decimal("5"))

    body = client_as(viewer).get(USAGE_URL).content.decode()

    today = timezone.now().date()
    assert f"from {today.replace(day=1):%Y-%m-%d} to {today:%Y-%m-%d}" in body
    assert f'name="from" value="{today.replace(day=1):%Y-%m-%d}"' in body
    assert f'name="to" value="{today:%Y-%m-%d}"' in body
    assert '<div class="value">$0.4200</div>' in body


def test_it_links_the_csv_export_for_the_same_days(client_as, viewer, march_usage):
    client = client_as(viewer)
    body = client.get(USAGE_URL + MARCH).content.decode()
    csv_url = "/api/tenants/acme/usage/csv?from=2025-03-01&amp;to=2025-03-07"
    assert f'href="{csv_url}"' in body

    response = client.get(csv_url.replace("&amp;", "&"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["model"], r["status"], r["prompt_tokens"], r["cost_usd"]) for r in rows] == [
        ("gpt-4o-mini", "success", "300", "0.25000000"),
        ("gpt-4o-mini", "error", "40", "0E-8"),
        ("claude-3-5-haiku", "success", "1000", "1.50000000"),
        ("gpt-4o-mini", "success", "60", "0.05000000"),
    ]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("?from=2025-03-07&to=2025-03-01", "to", "Must not be before"),
        ("?from=2020-01-01&to=2025-03-01", "from", "at most 366 days"),
        ("?from=yesterday", "from", "valid date"),
    ],
)
def test_it_shows_range_errors_inline(client_as, viewer, query, field, message):
    response = client_as(viewer).get(USAGE_URL + query)
    body = response.content.decode()

    assert response.status_code == 422
    block = body[body.index(f'id="id_{field}"') :]
    assert message in block[: block.index("</div>")]
    assert 'id="console-charts"' not in body


@pytest.mark.django_db
def test_it_answers_404_to_outsiders_here_and_on_the_csv(client_as, outsider, march_usage):
    client = client_as(outsider)

    assert client.get(USAGE_URL + MARCH).status_code == 404
    assert client.get("/api/tenants/acme/usage/csv" + MARCH).status_code == 404


def test_it_shows_staff_any_tenants_usage(client_as, staff, march_usage):
    body = client_as(staff).get(USAGE_URL + MARCH).content.decode()

    assert chart(body, "Requests per day")["labels"][0] == "Mar 1"
    assert '<div class="value">$1.8000</div>' in body


def test_it_shows_no_key_secret_or_hash_with_the_key_table(client_as, owner, march_usage):
    body = client_as(owner).get(USAGE_URL + MARCH).content.decode()

    for key in march_usage:
        assert key.key_hash not in body
