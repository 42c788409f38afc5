"""The dashboard: today's and this month's figures over the tenants the viewer may
see, charts as inline SVG, provider health at a glance."""

import datetime as dt
import itertools
import re
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from aipk_site.console.dashboard import dashboard_for
from providers_app.models import HealthCheck, Provider
from tenants_app.models import UsageRecord, UsageStatus

_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def usage(
    tenant, *, status=UsageStatus.SUCCESS, latency=100.0, cost="0.001", tokens=(10, 5), at=None
):
    return UsageRecord.objects.create(
        request_id=f"req-{next(_ids)}",
        tenant=tenant,
        status=status,
        latency_ms=latency,
        cost_usd=Decimal(cost),
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        model="gpt-4o-mini",
        provider_name="openai",
        created_at=at or timezone.now(),
    )


def figure(body: str, period: str, name: str) -> str:
    section = body.split(f'aria-label="{period}"', 1)[1]
    return re.search(rf'data-figure="{name}">([^<]*)<', section).group(1).strip()


def test_it_counts_today_and_the_month_for_a_tenant_owner(client_as, owner, tenant):
    now = timezone.now()
    for latency in (100, 200, 300, 400):
        usage(tenant, latency=latency)
    usage(tenant, status=UsageStatus.ERROR, latency=900, cost="0")
    usage(tenant, status=UsageStatus.REFUSED, latency=0, cost="0", tokens=(0, 0))
    if now.day > 1:  # earlier this month: in the month's figures, not today's
        usage(tenant, latency=50, at=now.replace(hour=0, minute=0) - dt.timedelta(hours=1))

    body = client_as(owner).get("/console/").content.decode()

    assert figure(body, "Today", "requests") == "6"
    assert figure(body, "Today", "error_rate") == "16.7%"
    # nearest rank over the five served requests: p50 = 300, p95 = 900
    assert figure(body, "Today", "latency") == "300 / 900 ms"
    assert figure(body, "Today", "tokens") == "75"
    assert figure(body, "Today", "spend") == "$0.0040"
    expected_month = "7" if now.day > 1 else "6"
    assert figure(body, "This month", "requests") == expected_month


def test_it_shows_a_member_only_their_tenants_traffic(
    client_as, owner, tenant, outsider, other_tenant
):
    usage(tenant)
    usage(other_tenant)
    usage(other_tenant)

    assert figure(client_as(owner).get("/console/").content.decode(), "Today", "requests") == "1"
    assert figure(client_as(outsider).get("/console/").content.decode(), "Today", "requests") == "2"


def test_it_shows_staff_every_tenant(client_as, staff, tenant, other_tenant):
    usage(tenant)
    usage(other_tenant)

    body = client_as(staff).get("/console/").content.decode()

    assert figure(body, "Today", "requests") == "2"


def test_it_draws_the_charts_as_inline_svg_without_scripts(client_as, staff, tenant):
    usage(tenant)

    body = client_as(staff).get("/console/").content.decode()

    assert body.count("<svg") == 3
    assert "Requests today by hour (UTC)" in body
    assert "Spend per day this month (USD)" in body
    svg = body[body.index("<svg") :]
    assert "<script" not in svg.split("</svg>")[0]


def test_it_shows_provider_health_at_a_glance(client_as, staff):
    up = Provider.objects.create(name="up", type="openai")
    down = Provider.objects.create(name="down", type="anthropic")
    Provider.objects.create(name="fresh", type="gemini")
    now = timezone.now()
    HealthCheck.objects.create(provider=up, healthy=True, latency_ms=5, checked_at=now)
    HealthCheck.objects.create(provider=down, healthy=False, latency_ms=5, checked_at=now)

    body = client_as(staff).get("/console/").content.decode()
    table = body.split('aria-label="Provider health"', 1)[1]
    assert f'<a href="/console/providers/{up.pk}/">up</a>' in table

    assert re.search(
        r">up</a></span></td>\s*<td><span class=\"badge badge-healthy\">healthy", table
    )
    assert re.search(r">down</a></span></td>\s*<td><span class=\"badge badge-down\">down", table)
    assert re.search(
        r">fresh</a></span></td>\s*<td><span class=\"badge badge-unknown\">not checked", table
    )


def test_it_shows_dashes_before_any_traffic(client_as, staff):
    body = client_as(staff).get("/console/").content.decode()

    assert figure(body, "Today", "requests") == "0"
    assert figure(body, "Today", "error_rate") == "—"
    assert figure(body, "Today", "latency") == "—"


def test_it_keeps_each_viewers_figures_apart_in_the_cache(owner, outsider, tenant, other_tenant):
    usage(tenant)

    assert dashboard_for(owner).today.requests == 1
    assert dashboard_for(outsider).today.requests == 0


def test_it_updates_itself_every_30_seconds_with_htmx(client_as, staff):
    body = client_as(staff).get("/console/").content.decode()

    assert (
        '<div id="dashboard" hx-get="/console/" hx-trigger="every 30s" hx-select="#dashboard"'
        in body
    )
