"""The dashboard: figures over a time range (hour, day, week, 30 days or custom) for
the tenants the viewer may see, series per time bucket drawn by charts.js from a
JSON element, a table of each chart's figures, and links into the requests page."""

import datetime as dt
import itertools
import json
import re
from decimal import Decimal
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.utils import timezone

from aipk_site.console import dashboard as dashboard_module
from aipk_site.console.dashboard import dashboard_for, parse_window
from providers_app.kit.providers import ADAPTERS
from providers_app.kit.types import ChatRequest, Message
from providers_app.models import HealthCheck, Provider
from providers_app.services.chat import credentials_cache_clear, provider_chat
from tenants_app.models import UsageRecord, UsageStatus
from tests.providers.conftest import connect as connect  # fixtures
from tests.providers.conftest import make_provider as make_provider

_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def usage(
    tenant,
    *,
    status=UsageStatus.SUCCESS,
    latency=100.0,
    ttft=None,
    cost="0.001",
    tokens=(10, 5),
    at=None,
    model="gpt-4o-mini",
    error_type="",
):
    return UsageRecord.objects.create(
        request_id=f"req-{next(_ids)}",
        tenant=tenant,
        status=status,
        latency_ms=latency,
        ttft_ms=ttft,
        cost_usd=Decimal(cost),
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        model=model,
        provider_name="openai",
        error_type=error_type,
        created_at=at or timezone.now(),
    )


def figure(body: str, name: str) -> str:
    return re.search(rf'data-figure="{name}"[^>]*>([^<]*)<', body).group(1).strip()


def figure_href(body: str, name: str) -> str:
    return unescape(re.search(rf'data-figure="{name}" href="([^"]*)"', body).group(1))


def query(href: str) -> dict[str, str]:
    parts = urlsplit(href)
    assert parts.path == "/console/requests/"
    return {name: values[0] for name, values in parse_qs(parts.query).items()}


def charts(body: str) -> dict[str, dict]:
    data = re.search(
        r'<script id="console-charts" type="application/json">(.*?)</script>', body, re.S
    ).group(1)
    return {chart["id"]: chart for chart in json.loads(data)}


def table_links(body: str, chart_id: str) -> list[str]:
    section = body.split(f'data-chart="{chart_id}"', 1)[1].split("</section>", 1)[0]
    return [unescape(href) for href in re.findall(r'<a href="([^"]*)"', section)]


def test_it_sums_the_last_24_hours_by_default(client_as, owner, tenant):
    for latency in (100, 200, 300, 400):
        usage(tenant, latency=latency)
    usage(tenant, status=UsageStatus.ERROR, latency=900, cost="0")
    usage(tenant, status=UsageStatus.REFUSED, latency=0, cost="0", tokens=(0, 0))
    usage(tenant, latency=50, at=timezone.now() - dt.timedelta(hours=30))  # outside

    body = client_as(owner).get("/console/").content.decode()

    assert "Last 24 hours" in body
    assert figure(body, "requests") == "6"
    assert figure(body, "error_rate") == "16.7%"
    # nearest rank over the five served requests (refusals never reached a provider)
    assert figure(body, "latency") == "300 / 900 / 900 ms"
    assert figure(body, "tokens") == "75"
    assert figure(body, "spend") == "$0.0040"


def test_it_computes_exact_percentiles_over_known_rows(owner, tenant):
    for latency in range(1, 101):  # 1..100 ms
        usage(tenant, latency=latency, ttft=latency / 10 if latency <= 40 else None)

    totals = dashboard_for(owner, parse_window({"range": "hour"})).totals

    assert (totals.p50_ms, totals.p95_ms, totals.p99_ms) == (50, 95, 99)
    # time to first token over the 40 streamed requests only: 0.1..4.0
    assert (totals.ttft_p50_ms, totals.ttft_p95_ms) == (2.0, 3.8)


def test_it_computes_percentiles_per_bucket(owner, tenant):
    now = timezone.now()
    earlier = now - dt.timedelta(hours=3)
    for latency in (10, 20, 30, 40):
        usage(tenant, latency=latency, at=earlier)
    usage(tenant, latency=500, at=now)

    board = dashboard_for(owner, parse_window({"range": "day"}, now=now))
    by_start = {b.start: b for b in board.buckets}
    three_hours_ago = by_start[earlier.replace(minute=0, second=0, microsecond=0)]

    assert (three_hours_ago.p50_ms, three_hours_ago.p95_ms, three_hours_ago.p99_ms) == (20, 40, 40)
    assert by_start[now.replace(minute=0, second=0, microsecond=0)].p50_ms == 500
    assert three_hours_ago.sampled is False


def test_it_samples_a_big_bucket_instead_of_reading_all_its_rows(owner, tenant, monkeypatch):
    monkeypatch.setattr(dashboard_module, "SAMPLE_PER_BUCKET", 10)
    for latency in range(1, 41):
        usage(tenant, latency=latency)

    board = dashboard_for(owner, parse_window({"range": "hour"}))
    [busy] = [b for b in board.buckets if b.requests]

    assert busy.sampled is True
    assert busy.requests == 40  # counts stay exact; only the percentiles are sampled
    # every 4th id: 10 latencies spread over the whole range of 1..40
    assert 15 <= busy.p50_ms <= 25 and busy.p99_ms >= 36


@pytest.mark.parametrize(
    ("params", "bucket", "buckets"),
    [
        ({"range": "hour"}, "minute", (60, 61)),
        ({"range": "day"}, "hour", (24, 25)),
        ({"range": "week"}, "day", (7, 8)),
        ({"range": "month"}, "day", (30, 31)),
        ({"range": "custom", "since": "2026-03-01", "until": "2026-03-01"}, "hour", (24, 24)),
        (
            {"range": "custom", "since": "2026-03-01T10:00", "until": "2026-03-01T11:30"},
            "minute",
            (90, 90),
        ),
        ({"range": "custom", "since": "2026-03-01", "until": "2026-03-10"}, "day", (10, 10)),
    ],
)
def test_it_adapts_the_buckets_to_the_range(owner, params, bucket, buckets):
    window = parse_window(params)
    board = dashboard_for(owner, window)

    assert window.bucket == bucket
    assert buckets[0] <= len(board.buckets) <= buckets[1]
    assert board.buckets[0].start <= window.start < board.buckets[0].end
    steps = {b.end - b.start for b in board.buckets}
    assert len(steps) == 1


def test_it_counts_a_custom_range_from_its_since_to_its_until(client_as, owner, tenant):
    usage(tenant, at=dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC))
    usage(tenant, at=dt.datetime(2026, 3, 2, 23, 59, tzinfo=dt.UTC))
    usage(tenant, at=dt.datetime(2026, 3, 3, 0, 1, tzinfo=dt.UTC))  # after the until day

    body = client_as(owner).get("/console/?range=custom&since=2026-03-01&until=2026-03-02").content
    body = body.decode()

    assert figure(body, "requests") == "2"
    assert query(figure_href(body, "requests")) == {
        "range": "custom",
        "since": "2026-03-01",
        "until": "2026-03-02",
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("range=year", "Unknown range “year”"),
        ("range=custom", "A custom range needs a start"),
        ("range=custom&since=yesterday", "“yesterday” is not a date or time (since)"),
        ("range=custom&since=2026-02-30", "“2026-02-30” is not a date or time"),
        ("range=custom&since=2026-03-01&until=nope", "“nope” is not a date or time (until)"),
        ("range=custom&since=2026-03-05&until=2026-03-01", "must come after its start"),
        ("range=custom&since=2020-01-01&until=2026-01-01", "at most 366 days"),
    ],
)
def test_it_says_what_is_wrong_with_a_bad_range_and_shows_the_last_day(
    client_as, owner, tenant, params, message
):
    usage(tenant)

    response = client_as(owner).get(f"/console/?{params}")

    assert response.status_code == 200
    body = response.content.decode()
    error = re.search(r'role="alert" data-range-error>([^<]*)<', body).group(1)
    assert message in unescape(error)
    assert figure(body, "requests") == "1"


def test_it_shows_a_member_only_their_tenants_traffic(
    client_as, owner, tenant, outsider, other_tenant
):
    usage(tenant, cost="0.5")
    usage(other_tenant, model="secret-model")
    usage(other_tenant, model="secret-model")

    mine = client_as(owner).get("/console/?range=week").content.decode()
    theirs = client_as(outsider).get("/console/?range=week").content.decode()

    assert figure(mine, "requests") == "1"
    assert figure(theirs, "requests") == "2"
    assert charts(mine)["by-tenant"]["labels"] == ["Acme"]
    assert charts(mine)["by-model"]["labels"] == ["gpt-4o-mini"]
    assert "Globex" not in mine and "secret-model" not in mine
    assert 'aria-label="Credential limits"' not in mine


def test_it_shows_staff_every_tenant_by_spend(client_as, staff, tenant, other_tenant):
    usage(tenant, cost="0.25")
    usage(other_tenant, cost="1.5", model="gpt-4o")

    body = client_as(staff).get("/console/").content.decode()

    assert figure(body, "requests") == "2"
    by_tenant = charts(body)["by-tenant"]
    assert by_tenant["labels"] == ["Globex", "Acme"]
    assert by_tenant["series"][0]["values"] == [1.5, 0.25]
    assert charts(body)["by-model"]["labels"] == ["gpt-4o", "gpt-4o-mini"]


def test_it_links_every_figure_to_the_requests_page_with_its_filter(client_as, owner, tenant):
    usage(tenant, status=UsageStatus.ERROR, error_type="rate_limit", cost="0")
    usage(tenant, status=UsageStatus.REFUSED, error_type="budget_exceeded", cost="0")
    usage(tenant)

    body = client_as(owner).get("/console/?range=week").content.decode()

    assert query(figure_href(body, "requests")) == {"range": "week"}
    assert query(figure_href(body, "error_rate")) == {"range": "week", "status": "error"}
    refused = re.search(r'href="([^"]*)" data-figure-link="refused"', body).group(1)
    assert query(unescape(refused)) == {"range": "week", "status": "refused"}
    errors = [query(href) for href in table_links(body, "errors")]
    assert {"range": "week", "status": "error", "error_type": "rate_limit"} in errors
    assert {"range": "week", "status": "refused", "error_type": "budget_exceeded"} in errors
    assert [query(href) for href in table_links(body, "by-tenant")] == [
        {"range": "week", "tenant": "acme"}
    ]
    assert [query(href) for href in table_links(body, "by-model")] == [
        {"range": "week", "model": "gpt-4o-mini"}
    ]
    assert charts(body)["errors"]["links"] == table_links(body, "errors")


def test_it_links_each_bucket_to_its_time_window(client_as, owner, tenant):
    now = timezone.now()
    usage(tenant, at=now)

    body = client_as(owner).get("/console/?range=day").content.decode()
    requests = charts(body)["requests"]

    assert len(requests["links"]) == len(requests["labels"]) == len(table_links(body, "requests"))
    last = query(requests["links"][-1])
    hour = now.replace(minute=0, second=0, microsecond=0)
    assert last == {
        "range": "custom",
        "since": hour.strftime("%Y-%m-%dT%H:00:00Z"),
        "until": (hour + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z"),
    }
    # the bucket holding the request counts it as succeeded
    assert requests["series"][0]["name"] == "succeeded"
    assert requests["series"][0]["values"][-1] == 1
    assert len(set(requests["labels"])) == len(requests["labels"])  # no repeated ticks


def test_it_keeps_a_table_of_each_charts_figures_for_screen_readers(client_as, staff, tenant):
    usage(tenant, latency=120, cost="0.0001")

    body = client_as(staff).get("/console/?range=hour").content.decode()

    for chart in ("requests", "latency", "spend", "tokens", "by-tenant", "by-model"):
        section = body.split(f'data-chart="{chart}"', 1)[1].split("</section>", 1)[0]
        assert "<canvas" in section and "<table>" in section
    # no streamed request: no chart of zeros, a sentence
    ttft = body.split('data-chart="ttft"', 1)[1].split("</section>", 1)[0]
    assert "<canvas" not in ttft and "Nothing in this range." in ttft
    assert "ttft" not in charts(body)
    latency = body.split('data-chart="latency"', 1)[1].split("</section>", 1)[0]
    assert '<td class="num">120 ms</td>' in latency
    spend = body.split('data-chart="spend"', 1)[1].split("</section>", 1)[0]
    assert '<td class="num">$0.0001</td>' in spend
    assert "<script" not in body.split('id="dashboard"', 1)[1].replace(
        '<script id="console-charts" type="application/json">', ""
    )


def test_it_loads_the_vendored_chart_library_and_its_drawing_script(client_as, staff):
    body = client_as(staff).get("/console/").content.decode()

    assert '<script src="/static/vendor/chart-4.6.2.umd.min.js" defer></script>' in body
    assert '<script src="/static/console/charts.js" defer></script>' in body


def test_it_shows_provider_health_at_a_glance_and_over_time(client_as, staff):
    up = Provider.objects.create(name="up", type="openai")
    down = Provider.objects.create(name="down", type="anthropic")
    Provider.objects.create(name="fresh", type="gemini")
    now = timezone.now()
    HealthCheck.objects.create(provider=up, healthy=True, latency_ms=5, checked_at=now)
    HealthCheck.objects.create(provider=down, healthy=True, latency_ms=5, checked_at=now)
    HealthCheck.objects.create(provider=down, healthy=False, latency_ms=5, checked_at=now)

    body = client_as(staff).get("/console/?range=hour").content.decode()
    table = body.split('aria-label="Provider health"', 1)[1]
    assert f'<a href="/console/providers/{up.pk}/">up</a>' in table
    assert re.search(
        r">up</a></span></td>\s*<td><span class=\"badge badge-healthy\">healthy", table
    )
    assert re.search(r">down</a></span></td>\s*<td><span class=\"badge badge-down\">down", table)
    assert re.search(
        r">fresh</a></span></td>\s*<td><span class=\"badge badge-unknown\">not checked", table
    )

    health = {s["name"]: s["values"] for s in charts(body)["health"]["series"]}
    assert health["up"][-1] == 100 and health["down"][-1] == 50
    assert set(health["fresh"]) == {None}


def test_it_shows_dashes_before_any_traffic(client_as, staff):
    body = client_as(staff).get("/console/").content.decode()

    assert figure(body, "requests") == "0"
    assert figure(body, "error_rate") == "—"
    assert figure(body, "latency") == "—"
    assert figure(body, "ttft") == "—"
    assert "Nothing in this range." in body


def test_it_keeps_each_viewers_figures_apart_in_the_cache(owner, outsider, tenant, other_tenant):
    usage(tenant)
    window = parse_window({"range": "day"})

    assert dashboard_for(owner, window).totals.requests == 1
    assert dashboard_for(outsider, window).totals.requests == 0


def test_it_updates_itself_every_30_seconds_keeping_the_range(client_as, staff):
    body = client_as(staff).get("/console/?range=week").content.decode()

    assert (
        '<div id="dashboard" hx-get="/console/?range=week" hx-trigger="every 30s"'
        ' hx-select="#dashboard"' in body
    )


@pytest.mark.django_db(transaction=True)
def test_it_shows_staff_each_credentials_remaining_limits_never_its_secret(
    client_as, staff, owner, make_provider
):
    cache.clear()
    credentials_cache_clear()
    provider = make_provider("openai", keys=1)
    model = ADAPTERS["openai"].default_model_id
    request = ChatRequest(model=model, messages=[Message(role="user", content="hi")])
    assert async_to_sync(provider_chat)(provider, request).text

    body = client_as(staff).get("/console/").content.decode()
    section = body.split('aria-label="Credential limits"', 1)[1].split("</section>", 1)[0]

    # what the simulator's rate-limit headers say after one request (60 a minute)
    assert "key 1 ····0001" in section
    assert re.search(r"<td>requests</td>\s*<td>59 / 60", section)
    assert "sk-sim-openai-key-0001" not in body
    member_body = client_as(owner).get("/console/").content.decode()
    assert 'aria-label="Credential limits"' not in member_body
    credentials_cache_clear()


@pytest.mark.django_db(transaction=True)
def test_it_shows_an_oauth_accounts_limits_too(client_as, staff, connect):
    cache.clear()
    credentials_cache_clear()
    credential = connect()
    model = ADAPTERS["openai"].default_model_id
    request = ChatRequest(model=model, messages=[Message(role="user", content="hi")])
    assert async_to_sync(provider_chat)(credential.provider, request).text

    body = client_as(staff).get("/console/").content.decode()
    section = body.split('aria-label="Credential limits"', 1)[1].split("</section>", 1)[0]

    assert credential.account_label in section
    assert re.search(r"<td>requests</td>\s*<td>59 / 60", section)
    credentials_cache_clear()


@pytest.mark.parametrize("params", ["range=day", "range=week", "range=hour", "range=month"])
def test_it_drills_into_requests_pages_that_take_every_link_and_show_its_rows(
    client_as, owner, tenant, params
):
    """The dashboard's links are the requests page's filters: each one opens it without a
    filter error and lists the rows the figure counted."""
    error = usage(tenant, status=UsageStatus.ERROR, error_type="rate_limit", cost="0")
    refused = usage(tenant, status=UsageStatus.REFUSED, error_type="budget_exceeded", cost="0")
    served = usage(tenant, model="claude-haiku")
    client = client_as(owner)

    body = client.get(f"/console/?{params}").content.decode()
    hrefs = {unescape(h) for h in re.findall(r'href="(/console/requests/[^"]*)"', body)}
    for chart in charts(body).values():
        hrefs.update(chart.get("links") or [])

    assert len(hrefs) > 5
    seen: set[str] = set()
    for href in sorted(hrefs):
        page = client.get(href)
        html = page.content.decode()
        assert page.status_code == 200, (href, page.status_code)
        assert "has-error" not in html and "not a valid choice" not in html, href
        seen.update(r.request_id for r in (error, refused, served) if r.request_id in html)
    assert seen == {error.request_id, refused.request_id, served.request_id}
