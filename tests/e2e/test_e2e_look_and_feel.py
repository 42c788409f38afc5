"""The console's look in a real browser: every page a staff user and a tenant member can
reach, in light and dark, on a phone (390 px) and a wide screen (1400 px), runs with no
JavaScript error, no failed request and nothing wider than the window; dark is really
dark; the theme picker switches and remembers; the phone menu opens and closes; long
names stop at an ellipsis with their full text on hover; axe-core finds no serious or
critical WCAG 2.1 A/AA violation on any page (docs/CONSOLE.md).

One chromium per module (the ``browser`` fixture), one context per theme and width.
Every page's screenshot lands in test-artifacts/look-and-feel/ (git-ignored)."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from providers_app.models import DiscoveredModel, OAuthFlow
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import (
    AlertDelivery,
    DeliveryStatus,
    Membership,
    RequestBody,
    Role,
    Tenant,
    UsageRecord,
    UsageStatus,
)
from tenants_app.services.alerts import alert_channel_create
from tenants_app.services.billing import invoice_generate
from tenants_app.services.keys import virtual_key_create
from tenants_app.services.pricing import pricing_set
from tenants_app.services.routes import route_create

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "look-and-feel"
PHONE, WIDE = 390, 1400

# names as long as the models allow, so every page shows how it truncates them
TENANT_NAME = "Acme Interplanetary Logistics and Extremely Long Subsidiary Name Holdings"
PROVIDER_NAME = "openai-production-europe-west-primary-account-for-batch-jobs"
KEY_NAME = "nightly-batch-summariser-for-the-customer-support-knowledge-base"
ROUTE_ALIAS = "support-summaries-with-a-very-long-alias-name-for-routing"
MODEL_ID = "gpt-4o-mini"
ALERT_CHANNEL_NAME = "platform-on-call-pager-for-budget-and-provider-health-alerts-eu"
PASSWORD = "correct horse battery staple"  # as tests/e2e/conftest.py


@dataclass
class Seeded:
    provider_pk: int
    api_key_pk: int
    virtual_key_pk: int
    device_flow_pk: int
    price_pk: int = 1
    alert_channel_pk: int = 1  # Acme's webhook channel
    org_alert_channel_pk: int = 1  # the organisation's


@pytest.fixture
def seeded(transactional_db, settings, simulator, gateway_server) -> Iterator[Seeded]:
    from django.contrib.auth import get_user_model

    from tests.gateway.conftest import _clear_caches

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    _clear_caches()
    users = get_user_model().objects
    ada = users.create_user("ada", password=PASSWORD, is_staff=True, is_superuser=True)
    bob = users.create_user("bob", password=PASSWORD)
    provider = provider_create(
        name=PROVIDER_NAME,
        type="openai",
        base_url=simulator.url + "/openai/v1",
        default_model=MODEL_ID,
    )
    api_key = api_key_add(
        provider=provider, label="simulator " + KEY_NAME, secret="sk-sim-look-0001"
    )
    DiscoveredModel.objects.create(
        provider=provider,
        model_id=MODEL_ID + "-" + KEY_NAME,
        name="A long model name",
        discovered_at=timezone.now(),
    )
    tenant = Tenant.objects.create(name=TENANT_NAME, slug="acme")
    Membership.objects.create(user=ada, tenant=tenant, role=Role.OWNER)
    Membership.objects.create(user=bob, tenant=tenant, role=Role.MEMBER)
    route_create(
        tenant=tenant,
        alias=ROUTE_ALIAS,
        candidates=[{"provider": PROVIDER_NAME, "model": MODEL_ID}],
        actor=None,
    )
    key, _secret = virtual_key_create(tenant=tenant, name=KEY_NAME, actor=bob)
    now = timezone.now()
    for n, status in enumerate([UsageStatus.SUCCESS, UsageStatus.SUCCESS, UsageStatus.ERROR]):
        UsageRecord.objects.create(
            request_id=f"look-{n}",
            tenant=tenant,
            virtual_key=key,
            provider_name=PROVIDER_NAME,
            model=MODEL_ID,
            status=status,
            prompt_tokens=200,
            completion_tokens=50,
            cost_usd=Decimal("0.25"),
            created_at=now,
        )
    # the requests page's drawer: a failed request with a long attempt trail and bodies
    # whose lines are far wider than a phone
    UsageRecord.objects.filter(request_id="look-2").update(
        alias=ROUTE_ALIAS,
        error_type="rate_limit",
        end_user="end-user-" + KEY_NAME,
        attempts=[
            {
                "provider": PROVIDER_NAME,
                "credential_id": f"key:{api_key.pk}",
                "model": MODEL_ID + "-" + KEY_NAME,
                "status": "error",
                "http_status": 429,
                "error_type": "rate_limit",
                "latency_ms": 12.0,
                "answered": False,
            }
        ],
    )
    RequestBody.objects.create(
        request_id="look-2",
        tenant=tenant,
        request='{"model": "' + ROUTE_ALIAS + '", "messages": [' + "x" * 600 + "]}",
        response="",
        created_at=now,
        expires_at=now + timedelta(days=7),
    )
    invoice_generate(tenant=tenant, period=date.today())
    # the configuration pages: a global route the tenant's own route of that alias shadows,
    # a price set by hand for the long model, and traffic of a model with no price
    route_create(
        tenant=None,
        alias=ROUTE_ALIAS,
        candidates=[{"provider": PROVIDER_NAME, "model": MODEL_ID + "-" + KEY_NAME}],
        actor=None,
    )
    price = pricing_set(
        provider_type="openai",
        provider=provider,
        model=MODEL_ID + "-" + KEY_NAME,
        input_per_million="0.15",
        output_per_million="0.6",
        actor=ada,
    )
    UsageRecord.objects.create(
        request_id="look-unpriced",
        tenant=tenant,
        virtual_key=key,
        provider=provider,
        provider_name=PROVIDER_NAME,
        model="unpriced-" + KEY_NAME,
        status=UsageStatus.SUCCESS,
        created_at=now,
    )
    # a device-code flow that has run out: its page shows without polling the provider
    device_flow = OAuthFlow.objects.create(
        provider=provider,
        kind=OAuthFlow.Kind.DEVICE_CODE,
        state="look-and-feel",
        code_verifier="",
        user_code="WDJB-MJHT",
        verification_uri=simulator.url + "/device",
        expires_at=now - timedelta(minutes=1),
    )
    # alert channels: a tenant's webhook with a failed delivery, the organisation's email
    alert_channel, _secret = alert_channel_create(
        tenant=tenant,
        name=ALERT_CHANNEL_NAME,
        kind="webhook",
        target="https://hooks.example.com/services/T000/B000/look-and-feel-token",
        events=["budget.threshold", "provider.degraded"],
    )
    AlertDelivery.objects.create(
        channel=alert_channel,
        tenant=tenant,
        kind="budget.threshold",
        dedup_key="look:budget",
        subject=f"Key {KEY_NAME} used 80 % of its monthly budget",
        status=DeliveryStatus.FAILED,
        attempts=5,
        last_error="the receiver answered HTTP 503",
        response_status=503,
    )
    org_alert_channel, _none = alert_channel_create(
        tenant=None, name=ALERT_CHANNEL_NAME, kind="email", target="ops@example.com"
    )
    yield Seeded(
        provider_pk=provider.pk,
        api_key_pk=api_key.pk,
        virtual_key_pk=key.pk,
        device_flow_pk=device_flow.pk,
        price_pk=price.pk,
        alert_channel_pk=alert_channel.pk,
        org_alert_channel_pk=org_alert_channel.pk,
    )
    _clear_caches()


def staff_pages(seeded: Seeded) -> list[str]:
    """Every console page staff reach by GET (aipk_site/console/urls.py and the apps'
    console_urls.py); a member's pages are the tenant ones and those open to all."""
    provider, api_key = seeded.provider_pk, seeded.api_key_pk
    return [
        "/console/",
        "/console/providers/",
        "/console/providers/add/",
        "/console/providers/add/openai/",
        f"/console/providers/{provider}/",
        f"/console/providers/{provider}/edit/",
        "/console/credentials/",
        f"/console/credentials/keys/{api_key}/rotate/",
        f"/console/credentials/oauth/flows/{seeded.device_flow_pk}/",
        *member_pages(seeded),
        f"/console/tenants/acme/routes/{ROUTE_ALIAS}/",
        "/console/audit/",
        f"/console/routes/{ROUTE_ALIAS}/",
        f"/console/pricing/{seeded.price_pk}/",
        "/console/models/",
        "/console/alerts/",
        f"/console/alerts/{seeded.org_alert_channel_pk}/",
        "/console/tenants/acme/alerts/",
        f"/console/tenants/acme/alerts/{seeded.alert_channel_pk}/",
    ]


def member_pages(seeded: Seeded) -> list[str]:
    return [
        "/console/tenants/",
        "/console/tenants/acme/",
        "/console/tenants/acme/members/",
        "/console/tenants/acme/keys/",
        f"/console/tenants/acme/keys/{seeded.virtual_key_pk}/",
        "/console/tenants/acme/routes/",
        "/console/tenants/acme/usage/",
        "/console/tenants/acme/invoices/",
        "/console/playground/",
        "/console/tokens/",
        "/console/routes/",
        "/console/pricing/",
        "/console/requests/",
        "/console/requests/look-2/",
    ]


# console URLs that are actions (POST only, or an htmx fragment), not pages to look at
ACTIONS = {
    "logout",
    "provider_test",
    "provider_refresh_models",
    "api_key_add",
    "api_key_test",
    "api_key_state",
    "oauth_connect",
    "oauth_device_start",
    "oauth_device_poll",
    "oauth_refresh",
    "oauth_disconnect",
    "tenant_member_role",
    "tenant_member_remove",
    "tenant_key_revoke",
    "tenant_route_delete",
    "admin_token_revoke",
    "global_route_delete",
    "alert_channel_row",
    "alert_channel_enable",
    "alert_channel_delete",
    "alert_channel_test",
    "tenant_alert_channel_row",
    "tenant_alert_channel_enable",
    "tenant_alert_channel_delete",
    "tenant_alert_channel_test",
    # the requests page's live tail: an htmx fragment polled while "Live" is on
    "requests_live",
    # single sign-on's redirects to the identity provider and back (merged on main alongside)
    "sso-login",
    "sso-callback",
}


def console_url_names() -> set[str]:
    from django.urls import URLResolver

    from aipk_site.console.urls import urlpatterns

    def walk(patterns) -> Iterator[str]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns)
            else:
                yield pattern.name

    return set(walk(urlpatterns))


def test_it_walks_every_console_page_of_the_url_confs(db):
    """A page added to a console URL conf must join the walk below (or be an action)."""
    from django.urls import resolve

    ids = Seeded(provider_pk=1, api_key_pk=1, virtual_key_pk=1, device_flow_pk=1)
    walked = {resolve(path).url_name for path in ["/console/login/", *staff_pages(ids)]}
    pages = console_url_names() - ACTIONS
    assert pages - walked == set(), "console pages the walk misses: add them, or to ACTIONS"
    assert walked - pages == set()
    assert set(member_pages(ids)) < set(staff_pages(ids))


@dataclass
class Watched:
    """A page with every JavaScript error, console error and failed request recorded."""

    page: Page
    url: str
    label: str
    problems: list[str] = field(default_factory=list)

    def visit(self, path: str) -> None:
        self.page.goto(self.url + path)  # returns once the page has loaded

    def sign_in(self, username: str) -> None:
        self.visit("/console/login/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r".*/console/(?!login).*"))

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        # ids differ from run to run: one file per page, overwritten by the next run
        slug = re.sub(r"[^A-Za-z]+", "-", re.sub(r"\d+", "id", name)).strip("-")
        self.page.screenshot(path=str(ARTIFACTS / f"{self.label}-{slug}.png"), full_page=True)


def watch(context, url: str, label: str) -> Watched:
    page = context.new_page()
    page.set_default_timeout(15_000)
    watched = Watched(page=page, url=url, label=label)
    page.on("pageerror", lambda error: watched.problems.append(f"{page.url}: error {error}"))
    page.on(
        "console",
        lambda message: (
            watched.problems.append(f"{page.url}: console {message.text}")
            if message.type == "error"
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            watched.problems.append(f"{response.url}: HTTP {response.status}")
            if response.status >= 400
            else None
        ),
    )
    page.on("requestfailed", lambda request: note_failure(watched, request))
    return watched


def note_failure(watched: Watched, request) -> None:
    # chromium fetches the favicon after a page's load event, and leaving the page cancels
    # whatever is still in flight (net::ERR_ABORTED): the browser's choice, not a failure
    # (a refused, blocked or unreachable request fails with another reason, and every
    # answer >= 400 is caught by the "response" listener)
    if request.failure != "net::ERR_ABORTED":
        watched.problems.append(f"{request.url}: failed {request.failure}")


def horizontal_overflow(page) -> int:
    """How many pixels the page is wider than the window (0 when it fits)."""
    return page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")


# WCAG relative luminance of a computed CSS colour, 0 black to 1 white
LUMINANCE_JS = """(colour) => {
  const [r, g, b] = colour.match(/[\\d.]+/g).map(Number).slice(0, 3).map((c) => {
    c /= 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}"""


def background_luminance(page) -> float:
    """How light the page's background is, 0 black to 1 white."""
    colour = page.evaluate("getComputedStyle(document.body).backgroundColor")
    return page.evaluate(LUMINANCE_JS, colour)


def chart_ink_luminance(canvas) -> float:
    """How light a chart's text is: charts.js notes the ink colour it drew with."""
    expect(canvas).to_have_attribute("data-drawn", "true")
    return canvas.page.evaluate(LUMINANCE_JS, canvas.get_attribute("data-ink"))


def assert_looks_right(watched: Watched, path: str, scheme: str) -> None:
    page = watched.page
    assert horizontal_overflow(page) <= 0, f"{path} scrolls sideways at {watched.label}"
    luminance = background_luminance(page)
    if scheme == "dark":
        assert luminance < 0.05, f"{path} is not dark ({luminance:.3f}) at {watched.label}"
    else:
        assert luminance > 0.8, f"{path} is not light ({luminance:.3f}) at {watched.label}"
    watched.shot(path)


@pytest.mark.parametrize("width", [PHONE, WIDE], ids=["phone", "wide"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_it_shows_every_page_cleanly(browser, gateway_server, seeded, scheme, width):
    contexts = []
    try:
        for username, pages in (
            ("ada", staff_pages(seeded)),
            ("bob", ["/console/", *member_pages(seeded)]),
        ):
            context = browser.new_context(
                viewport={"width": width, "height": 860}, color_scheme=scheme
            )
            contexts.append(context)
            watched = watch(context, gateway_server.url, f"{scheme}-{width}-{username}")
            if username == "ada":
                watched.visit("/console/login/")
                assert_looks_right(watched, "/console/login/", scheme)
            watched.sign_in(username)
            for path in pages:
                watched.visit(path)
                assert_looks_right(watched, path, scheme)
            assert watched.problems == []
    finally:
        for context in contexts:
            context.close()


def test_it_switches_the_theme_and_remembers_it(browser, gateway_server, seeded):
    context = browser.new_context(viewport={"width": WIDE, "height": 860}, color_scheme="dark")
    try:
        watched = watch(context, gateway_server.url, "theme-picker")
        page = watched.page
        watched.sign_in("ada")
        picker = page.get_by_label("Theme")
        expect(picker).to_have_value("system")
        assert background_luminance(page) < 0.05  # the system's dark

        picker.select_option("light")
        assert background_luminance(page) > 0.8
        watched.shot("chose-light")
        watched.visit("/console/tenants/acme/usage/")  # another page, a new load
        expect(page.get_by_label("Theme")).to_have_value("light")
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        assert background_luminance(page) > 0.8
        # the charts' text follows the theme: dark ink on the light page
        chart = page.locator(".dash-chart canvas").first
        assert chart_ink_luminance(chart) < 0.1
        light_ink = chart.get_attribute("data-ink")

        # the system turns light; dark chosen wins over it, also after a reload
        page.emulate_media(color_scheme="light")
        page.get_by_label("Theme").select_option("dark")
        assert background_luminance(page) < 0.05
        # drawn again in the dark theme's colours: light text on the dark page
        expect(chart).not_to_have_attribute("data-ink", light_ink)
        assert chart_ink_luminance(chart) > 0.6
        page.reload()
        expect(page.get_by_label("Theme")).to_have_value("dark")
        assert background_luminance(page) < 0.05

        # back to the system's choice: forgotten, and the page follows the system again
        page.get_by_label("Theme").select_option("system")
        assert page.evaluate("localStorage.getItem('aipk-theme')") is None
        assert background_luminance(page) > 0.8
        page.emulate_media(color_scheme="dark")
        assert background_luminance(page) < 0.05
        assert watched.problems == []
    finally:
        context.close()


def test_it_folds_the_navigation_behind_a_menu_button_on_a_phone(browser, gateway_server, seeded):
    context = browser.new_context(viewport={"width": PHONE, "height": 860})
    try:
        watched = watch(context, gateway_server.url, "phone-menu")
        page = watched.page
        watched.sign_in("bob")
        menu = page.get_by_role("button", name="Menu")
        nav = page.get_by_role("navigation", name="Console")
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(nav.get_by_role("link", name="Tenants")).to_be_hidden()
        # the content takes the whole width beside no sidebar
        assert page.locator(".page").evaluate("e => e.getBoundingClientRect().width") == PHONE

        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        expect(nav.get_by_role("link", name="Tenants")).to_be_visible()
        watched.shot("menu-open")
        # Escape closes it and leaves the focus on the button
        page.keyboard.press("Escape")
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(nav.get_by_role("link", name="Tenants")).to_be_hidden()
        expect(menu).to_be_focused()

        menu.click()
        nav.get_by_role("link", name="Tenants").click()
        page.wait_for_url(re.compile(r".*/console/tenants/$"))
        expect(page.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "false")

        # wide, there is no menu button: the sidebar is always there
        page.set_viewport_size({"width": WIDE, "height": 860})
        expect(page.get_by_role("button", name="Menu")).to_be_hidden()
        expect(nav.get_by_role("link", name="Tenants")).to_be_visible()
        assert watched.problems == []
    finally:
        context.close()


def test_it_opens_the_menu_without_javascript(browser, gateway_server, seeded):
    context = browser.new_context(
        viewport={"width": PHONE, "height": 860}, java_script_enabled=False
    )
    try:
        watched = watch(context, gateway_server.url, "phone-no-js")
        watched.sign_in("bob")
        nav = watched.page.get_by_role("navigation", name="Console")
        expect(nav.get_by_role("link", name="Tenants")).to_be_visible()
        assert horizontal_overflow(watched.page) <= 0
    finally:
        context.close()


def left_edges(locator) -> list[int]:
    return locator.evaluate_all(
        "elements => elements.map((e) => Math.round(e.getBoundingClientRect().left))"
    )


def test_it_stacks_forms_and_wraps_cards_on_a_phone(browser, gateway_server, seeded):
    context = browser.new_context(viewport={"width": PHONE, "height": 860})
    try:
        watched = watch(context, gateway_server.url, "phone-stacking")
        page = watched.page
        watched.sign_in("ada")

        # the audit filters, side by side when wide, one under the other
        watched.visit("/console/audit/")
        fields = page.locator(".audit-filters .audit-field")
        assert fields.count() > 1
        assert len(set(left_edges(fields))) == 1

        # the dashboard's figures wrap onto several rows; its cards make one column
        watched.visit("/console/")
        stats = page.locator(".stats").first.locator(".stat")
        assert len(set(left_edges(stats))) < stats.count()
        rights = stats.evaluate_all("els => els.map((e) => e.getBoundingClientRect().right)")
        assert max(rights) <= PHONE
        assert len(set(left_edges(page.locator(".grid-2 > .card")))) == 1
        assert watched.problems == []
    finally:
        context.close()


def test_it_truncates_long_names_and_keeps_them_on_hover(browser, gateway_server, seeded):
    context = browser.new_context(viewport={"width": PHONE, "height": 860})
    try:
        watched = watch(context, gateway_server.url, "long-names")
        page = watched.page
        watched.sign_in("ada")
        for path, name in (
            ("/console/tenants/", TENANT_NAME),
            ("/console/providers/", PROVIDER_NAME),
            ("/console/tenants/acme/keys/", KEY_NAME),
            ("/console/tenants/acme/routes/", ROUTE_ALIAS),
            ("/console/tenants/acme/alerts/", ALERT_CHANNEL_NAME),
            (f"/console/providers/{seeded.provider_pk}/", MODEL_ID + "-" + KEY_NAME),
        ):
            watched.visit(path)
            shown = page.locator(".truncate", has_text=name[:20]).first
            expect(shown).to_have_attribute("title", name)
            # the whole text is there, cut by the box with an ellipsis
            assert shown.evaluate("e => e.scrollWidth > e.clientWidth"), path
            assert shown.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
        # the tenant's own pages: its name heads them, cut the same way
        watched.visit("/console/tenants/acme/")
        expect(page.get_by_role("heading", level=1)).to_have_attribute("title", TENANT_NAME)
        watched.shot("tenant-heading")
        assert watched.problems == []
    finally:
        context.close()


def test_it_serves_a_favicon(browser, gateway_server, seeded):
    context = browser.new_context()
    try:
        watched = watch(context, gateway_server.url, "favicon")
        watched.visit("/console/login/")
        icons = watched.page.locator("link[rel=icon]")
        expect(icons).to_have_count(2)
        for href in icons.evaluate_all("links => links.map((l) => l.href)"):
            assert context.request.get(href).ok, href
        response = context.request.get(gateway_server.url + "/favicon.ico")
        assert response.ok
        assert response.headers["content-type"] == "image/png"
        assert response.body().startswith(b"\x89PNG")
        assert watched.problems == []
    finally:
        context.close()


# --- accessibility: axe-core (tests/e2e/vendor/README.md) on every page of the walk ---------

AXE_SOURCE = Path(__file__).resolve().parent / "vendor" / "axe-4.14.1.min.js"
# WCAG 2.0 and 2.1, levels A and AA: what the console promises (docs/CONSOLE.md)
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_FAILS = {"serious", "critical"}


@functools.cache
def axe_source() -> str:
    return AXE_SOURCE.read_text(encoding="utf-8")


@dataclass
class AxeFindings:
    failures: list[str] = field(default_factory=list)
    minor: dict[tuple[str, str], int] = field(default_factory=dict)  # (rule, impact) -> pages
    pages: int = 0
    seconds: float = 0.0  # spent injecting and running axe, for the printed summary

    def check(self, page: Page, where: str) -> None:
        """Run axe on the page as it stands; serious and critical violations are failures,
        minor and moderate ones only counted for the summary."""
        started = time.monotonic()
        page.add_script_tag(content=axe_source())
        violations = page.evaluate(
            """(tags) => axe.run(document, {
                   runOnly: {type: "tag", values: tags}, resultTypes: ["violations"],
                 })
                 .then((result) => result.violations.map((v) => ({
                   id: v.id, impact: v.impact, help: v.help,
                   targets: v.nodes.map((n) => n.target.join(" ")),
                 })))""",
            AXE_TAGS,
        )
        self.pages += 1
        self.seconds += time.monotonic() - started
        for violation in violations:
            if violation["impact"] in AXE_FAILS:
                targets = ", ".join(violation["targets"][:5])
                more = len(violation["targets"]) - 5
                self.failures.append(
                    f"{where}: {violation['id']} ({violation['impact']}: {violation['help']}) "
                    f"on {targets}{f' and {more} more' if more > 0 else ''}"
                )
            else:
                key = (violation["id"], violation["impact"])
                self.minor[key] = self.minor.get(key, 0) + 1

    def summary(self) -> str:
        return "; ".join(
            f"{rule} ({impact}) on {n} page(s)" for (rule, impact), n in self.minor.items()
        )


def oauth_callback_paths(simulator, gateway_server) -> tuple[str, str]:
    """A callback that connects an account (through the simulator's authorize page, as a
    browser would) and one the server refuses (no state): the two pages of templates/oauth/."""
    import httpx

    from providers_app.services.oauth import oauth_start

    provider = provider_create(
        name="openai-oauth-look",
        type="openai",
        base_url=simulator.url + "/openai/v1",
        oauth_client_id="sim-openai-oauth-look",
        oauth_authorize_url=simulator.url + "/oauth/authorize",
        oauth_token_url=simulator.url + "/oauth/token",
    )
    authorize = oauth_start(
        provider=provider,
        redirect_uri=f"{gateway_server.url}/oauth/callback/{provider.name}/",
        actor=None,
    )
    callback = httpx.get(authorize, follow_redirects=False).headers["location"]
    return callback.removeprefix(gateway_server.url), f"/oauth/callback/{provider.name}/?code=x"


# both palettes wide (contrast is the palette's business); the phone layout (the folded
# menu, tables that scroll sideways) once: each pass costs about as much as the walk above
@pytest.mark.parametrize(
    ("scheme", "width"),
    [("light", WIDE), ("dark", WIDE), ("light", PHONE)],
    ids=["light-wide", "dark-wide", "light-phone"],
)
def test_it_has_no_serious_accessibility_violation_on_any_page(
    browser, gateway_server, simulator, seeded, scheme, width
):
    """axe-core's WCAG 2.1 A/AA rules on every page of the walk, the sign-in, 403 and OAuth
    callback pages too: no serious or critical violation (contrast in both palettes,
    names, labels, landmarks, ids); the lesser ones are printed, not failed."""
    findings = AxeFindings()
    connected, refused = oauth_callback_paths(simulator, gateway_server)
    contexts = []
    try:
        for username, pages in (
            ("ada", staff_pages(seeded)),
            ("bob", ["/console/", *member_pages(seeded)]),
        ):
            # The console's CSP refuses inline scripts, and add_script_tag injects axe as
            # one: these contexts alone bypass the policy (the walk above keeps it, and
            # test_e2e_content_security_policy.py checks it)
            context = browser.new_context(
                viewport={"width": width, "height": 860}, color_scheme=scheme, bypass_csp=True
            )
            contexts.append(context)
            label = f"axe-{scheme}-{width}-{username}"
            watched = watch(context, gateway_server.url, label)
            if username == "ada":
                watched.visit("/console/login/")
                findings.check(watched.page, f"{label} /console/login/")
                watched.visit(connected)
                findings.check(watched.page, f"{label} oauth callback (connected)")
                watched.shot("oauth-callback-connected")
            watched.sign_in(username)
            for path in pages:
                watched.visit(path)
                findings.check(watched.page, f"{label} {path}")
            if username == "bob":
                watched.visit("/console/providers/")  # staff only: the 403 page
                expect(watched.page.get_by_role("heading", name="Not allowed")).to_be_visible()
                findings.check(watched.page, f"{label} 403 page")
                watched.shot("forbidden")
                watched.visit(refused)
                expect(
                    watched.page.get_by_role("heading", name="Authorisation failed")
                ).to_be_visible()
                findings.check(watched.page, f"{label} oauth callback (refused)")
                watched.shot("oauth-callback-refused")
        print(
            f"axe at {scheme} {width}: {findings.pages} pages in {findings.seconds:.1f} s; "
            f"minor and moderate: {findings.summary() or 'none'}"
        )
        assert findings.failures == [], "\n".join(findings.failures)
    finally:
        for context in contexts:
            context.close()
