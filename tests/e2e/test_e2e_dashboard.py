"""The dashboard in a real browser: the range picker changes the URL and the figures,
the charts (vendored Chart.js, drawn by static/console/charts.js) show a value on
hover, a figure or a chart's bar opens the requests page with the matching filter in
its URL, and the charts are drawn again in the dark theme's colours."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tenants_app.models import Membership, Role, Tenant, UsageRecord, UsageStatus


@pytest.fixture
def traffic(transactional_db):
    """Acme: three requests in the last minutes, two more five hours ago."""
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    now = timezone.now()
    rows = [
        (now - dt.timedelta(minutes=2), UsageStatus.SUCCESS, 120, "0.0020"),
        (now - dt.timedelta(minutes=1), UsageStatus.SUCCESS, 240, "0.0030"),
        (now - dt.timedelta(minutes=1), UsageStatus.ERROR, 900, "0"),
        (now - dt.timedelta(hours=5), UsageStatus.SUCCESS, 80, "0.0010"),
        (now - dt.timedelta(hours=5), UsageStatus.SUCCESS, 90, "0.0010"),
    ]
    for n, (at, status, latency, cost) in enumerate(rows):
        UsageRecord.objects.create(
            request_id=f"e2e-dash-{n}",
            tenant=tenant,
            model="gpt-4o-mini",
            provider_name="openai",
            status=status,
            error_type="server_error" if status == UsageStatus.ERROR else "",
            latency_ms=latency,
            prompt_tokens=100,
            completion_tokens=20,
            cost_usd=Decimal(cost),
            created_at=at,
        )
    return tenant


def luminance(page, colour: str) -> float:
    return page.evaluate(
        """(c) => { const [r, g, b] = c.match(/[\\d.]+/g).map(Number);
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; }""",
        colour,
    )


def bar_position(page, chart_id: str, index: int = -1) -> dict:
    """Where a chart's bar (or point) is on the page, read from Chart.js itself; index -1:
    the last one with a value."""
    return page.evaluate(
        """([id, index]) => {
            const canvas = document.querySelector(`canvas[data-chart-canvas="${id}"]`);
            canvas.scrollIntoView({block: "center"});
            const chart = Chart.getChart(canvas);
            const points = chart.getDatasetMeta(0).data;
            const values = chart.data.datasets[0].data;
            // the last point that has a value (the current minute may have none yet)
            const last = values.findLastIndex((v) => v !== null && v !== 0);
            const point = points[index < 0 ? last : index];
            const box = canvas.getBoundingClientRect();
            return {x: box.left + point.x, y: box.top + (point.y + chart.chartArea.bottom) / 2};
        }""",
        [chart_id, index],
    )


def test_it_changes_the_range_from_the_picker(console, console_user, traffic):
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))
    console.goto("/console/")

    requests = page.locator('[data-figure="requests"]')
    expect(requests).to_have_text("5")
    expect(page.locator('.range-choices a[aria-current="true"]')).to_have_text("Last 24 hours")

    page.get_by_role("link", name="Last hour").click()
    page.wait_for_url(re.compile(r"/console/\?range=hour$"))
    expect(requests).to_have_text("3")
    expect(page.locator("[data-window]")).to_contain_text("per minute")

    six_hours_ago = timezone.now() - dt.timedelta(hours=6)
    page.get_by_label("Since (UTC)").fill(six_hours_ago.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"range=custom&since="))
    expect(requests).to_have_text("5")
    console.shot("custom-range")


def test_it_shows_a_value_when_hovering_a_chart(console, console_user, traffic):
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))
    console.goto("/console/?range=hour")
    canvas = page.locator('canvas[data-chart-canvas="requests"]')
    expect(canvas).to_have_attribute("data-drawn", "true")

    where = bar_position(page, "requests")
    page.mouse.move(where["x"], where["y"])

    tooltip = page.locator('[data-chart="requests"] .dash-tooltip')
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text("UTC")
    expect(tooltip).to_contain_text(re.compile(r"succeeded: \d"))
    console.shot("tooltip")

    where = bar_position(page, "latency")
    page.mouse.move(where["x"], where["y"])
    expect(page.locator('[data-chart="latency"] .dash-tooltip')).to_contain_text(
        re.compile(r"p95: [\d,]+ ms")
    )


def test_it_opens_the_requests_page_from_a_figure_and_from_a_bar(console, console_user, traffic):
    page = console.page
    console.sign_in(console_user("ada", is_staff=True))
    console.goto("/console/?range=week")

    page.locator('[data-figure="error_rate"]').click()
    page.wait_for_url(re.compile(r"/console/requests/\?"))
    assert parse_qs(urlsplit(page.url).query) == {"range": ["week"], "status": ["error"]}

    console.goto("/console/?range=day")
    canvas = page.locator('canvas[data-chart-canvas="requests"]')
    expect(canvas).to_have_attribute("data-drawn", "true")
    where = bar_position(page, "requests")
    page.mouse.click(where["x"], where["y"])
    page.wait_for_url(re.compile(r"/console/requests/\?"))
    query = parse_qs(urlsplit(page.url).query)
    assert query["range"] == ["custom"]
    since = dt.datetime.fromisoformat(query["since"][0].replace("Z", "+00:00"))
    until = dt.datetime.fromisoformat(query["until"][0].replace("Z", "+00:00"))
    assert until - since == dt.timedelta(hours=1)
    assert since <= timezone.now() - dt.timedelta(minutes=1) <= until + dt.timedelta(minutes=1)


def test_it_draws_the_charts_again_in_the_dark_theme(console, console_user, traffic):
    page = console.page
    user = console_user("bob")
    Membership.objects.create(user=user, tenant=traffic, role=Role.MEMBER)
    console.sign_in(user)
    console.goto("/console/")
    canvas = page.locator('canvas[data-chart-canvas="requests"]')
    expect(canvas).to_have_attribute("data-drawn", "true")
    page.get_by_label("Theme").select_option("light")
    light_ink = canvas.get_attribute("data-ink")
    assert luminance(page, light_ink) < 0.3

    page.get_by_label("Theme").select_option("dark")
    expect(canvas).not_to_have_attribute("data-ink", light_ink)
    assert luminance(page, canvas.get_attribute("data-ink")) > 0.6
    console.shot("dark")
    # the 30 s refresh (htmx) swaps in new canvases: they are drawn too, in dark
    page.evaluate("document.getElementById('dashboard').dataset.before = 'swap'")
    page.evaluate(
        """htmx.ajax("GET", location.pathname + location.search,
           {target: "#dashboard", select: "#dashboard", swap: "outerHTML"})"""
    )
    expect(page.locator("#dashboard[data-before]")).to_have_count(0)
    expect(canvas).to_have_attribute("data-drawn", "true")
    assert luminance(page, canvas.get_attribute("data-ink")) > 0.6
    # a member sees their tenant's figures, and no credential limits
    expect(page.locator('[data-figure="requests"]')).to_have_text("5")
    expect(page.locator('[aria-label="Credential limits"]')).to_have_count(0)
