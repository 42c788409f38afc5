"""Console: the request log (/console/requests/). Every gateway request a viewer may see,
newest first, filtered by the URL's choices (bad ones answered with a message, never a
500), a live-tail fragment of the rows stored since the newest shown, and a detail page
(the drawer's fragment under htmx) with the attempts and, when captured, the bodies.
Members see their tenants' requests and filter choices only; staff see all."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import RequestBody, UsageRecord, UsageStatus
from tenants_app.services.keys import virtual_key_create

URL = "/console/requests/"
LIVE = "/console/requests/live/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    # the page keeps each viewer's filter choices in the cache for the live tail
    cache.clear()
    yield
    cache.clear()


def record(tenant, request_id, *, ago=dt.timedelta(minutes=5), **fields):
    values = {
        "request_id": request_id,
        "tenant": tenant,
        "provider_name": "openai-prod",
        "model": "gpt-4o-mini",
        "alias": "fast",
        "status": UsageStatus.SUCCESS,
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "cost_usd": Decimal("0.0012"),
        "latency_ms": 321.0,
        "ttft_ms": 87.0,
        "created_at": timezone.now() - ago,
    }
    return UsageRecord.objects.create(**{**values, **fields})


def request_ids(response) -> list[str]:
    """The request ids of the table's rows, in order."""
    return re.findall(r'title="Request ([^"]+)"', response.content.decode())


@pytest.fixture
def log(tenant, other_tenant, owner):
    """Acme: two keys and four requests (one an error, one a cache hit, one a week old);
    Globex: one request of its own."""
    support, _ = virtual_key_create(tenant=tenant, name="support-bot", actor=owner)
    batch, _ = virtual_key_create(tenant=tenant, name="batch-jobs", actor=owner)
    globex_key, _ = virtual_key_create(tenant=other_tenant, name="globex-secret-app", actor=None)
    record(tenant, "acme-ok", virtual_key=support, ago=dt.timedelta(minutes=1))
    record(
        tenant,
        "acme-limited",
        virtual_key=batch,
        status=UsageStatus.ERROR,
        error_type="rate_limit",
        model="claude-3-5-haiku",
        provider_name="anthropic",
        ago=dt.timedelta(minutes=2),
    )
    record(tenant, "acme-cached", virtual_key=support, cached=True, ago=dt.timedelta(minutes=3))
    record(tenant, "acme-old", virtual_key=support, ago=dt.timedelta(days=6))
    record(
        other_tenant,
        "globex-1",
        virtual_key=globex_key,
        model="globex-private-model",
        error_type="globex_error",
        status=UsageStatus.ERROR,
    )
    return {"support": support, "batch": batch, "globex": globex_key}


# -- the list ------------------------------------------------------------------------------


def test_it_lists_the_last_day_newest_first_by_default(client_as, owner, log):
    response = client_as(owner).get(URL)
    assert response.status_code == 200
    assert request_ids(response) == ["acme-ok", "acme-limited", "acme-cached"]
    html = response.content.decode()
    assert "support-bot" in html and "fast → openai-prod/gpt-4o-mini" in html
    assert "321 ms" in html and "87 ms" in html and "120 / 30" in html


def test_it_is_in_the_navigation_right_after_the_dashboard(client_as, teammate, log):
    html = client_as(teammate).get(URL).content.decode()
    nav = html[html.index('aria-label="Console"') :]
    assert nav.index(">Dashboard<") < nav.index(">Requests<") < nav.index(">Tenants<")
    assert 'href="/console/requests/" aria-current="page"' in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?range=week", ["acme-ok", "acme-limited", "acme-cached", "acme-old"]),
        ("?range=hour&status=error", ["acme-limited"]),
        ("?error_type=rate_limit", ["acme-limited"]),
        ("?model=claude-3-5-haiku", ["acme-limited"]),
        ("?model=fast", ["acme-ok", "acme-limited", "acme-cached"]),
        ("?cached=1", ["acme-cached"]),
        ("?cached=0&status=success", ["acme-ok"]),
        ("?tenant=acme&range=month", ["acme-ok", "acme-limited", "acme-cached", "acme-old"]),
    ],
)
def test_it_filters_by_the_url(client_as, owner, log, query, expected):
    response = client_as(owner).get(URL + query)
    assert response.status_code == 200
    assert request_ids(response) == expected


def test_it_filters_by_key(client_as, owner, log):
    response = client_as(owner).get(f"{URL}?key={log['batch'].pk}")
    assert request_ids(response) == ["acme-limited"]


def test_it_filters_by_provider(client_as, staff, tenant, log):
    provider = provider_create(name="openai-x", type="openai", base_url="http://127.0.0.1:9/v1")
    record(tenant, "acme-provider", provider=provider)
    response = client_as(staff).get(f"{URL}?provider={provider.pk}")
    assert request_ids(response) == ["acme-provider"]


def test_it_takes_a_custom_range_of_dates_or_times(client_as, owner, log):
    today = timezone.now().date()
    week_ago = today - dt.timedelta(days=6)
    client = client_as(owner)
    # a date alone is its whole UTC day: "until" the day includes it
    by_dates = client.get(f"{URL}?range=custom&since={week_ago}&until={week_ago}")
    assert request_ids(by_dates) == ["acme-old"]
    since = (timezone.now() - dt.timedelta(minutes=150 / 60)).strftime("%Y-%m-%dT%H:%M:%S")
    by_time = client.get(f"{URL}?since={since}")  # since alone: a custom range
    assert request_ids(by_time) == ["acme-ok", "acme-limited"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?range=year", "Select a valid choice"),
        ("?range=custom&since=yesterday", "Write an ISO date or time"),
        ("?range=custom&since=2026-13-45", "Write an ISO date or time"),
        ("?range=custom&since=2026-02-01&until=2026-01-01", "Must be after"),
        ("?range=custom", "A custom range needs a start"),
        ("?status=exploded", "Select a valid choice"),
        ("?key=abc", "Select a valid choice"),
        ("?key=999999", "Select a valid choice"),
        ("?model=%00", "Select a valid choice"),
        ("?provider=-1", "Select a valid choice"),
        ("?error_type=nope", "Select a valid choice"),
        ("?cached=maybe", "Select a valid choice"),
        ("?tenant=nowhere", "Select a valid choice"),
        ("?since=" + "9" * 50, "Ensure this value has at most 40 characters"),
    ],
)
def test_it_explains_a_bad_filter_without_failing(client_as, owner, log, query, message):
    response = client_as(owner).get(URL + query)
    assert response.status_code == 422
    html = response.content.decode()
    assert message in html
    assert "Fix the filters above to see requests." in html
    assert request_ids(response) == []


def test_it_pages_through_older_requests(client_as, owner, tenant, log, settings):
    for n in range(55):
        record(tenant, f"bulk-{n:02d}", ago=dt.timedelta(hours=1, seconds=n))
    client = client_as(owner)
    first = client.get(URL + "?status=success&model=gpt-4o-mini")
    assert len(request_ids(first)) == 50
    assert 'rel="next"' in first.content.decode()
    second = client.get(URL + "?status=success&model=gpt-4o-mini&page=2")
    assert request_ids(second) == [f"bulk-{n:02d}" for n in range(48, 55)]
    assert 'rel="prev"' in second.content.decode()
    # the older page keeps the filters in its link
    assert "status=success&amp;model=gpt-4o-mini&amp;page=2" in first.content.decode()


def test_it_swaps_only_the_results_under_htmx(client_as, owner, log):
    response = client_as(owner).get(URL + "?status=error", **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="requests-results">')
    assert '<nav class="sidebar"' not in html
    assert request_ids(response) == ["acme-limited"]


# -- isolation -----------------------------------------------------------------------------


def test_it_shows_a_member_only_their_tenants_requests_and_choices(client_as, teammate, log):
    html = client_as(teammate).get(URL + "?range=month").content.decode()
    assert "globex-1" not in html
    assert "globex-secret-app" not in html and "globex-private-model" not in html
    assert "globex_error" not in html and ">Globex<" not in html
    assert "support-bot" in html and "rate_limit" in html


def test_it_refuses_another_tenants_filter_values_as_unknown(client_as, teammate, log):
    client = client_as(teammate)
    for query in (
        "?tenant=globex",
        f"?key={log['globex'].pk}",
        "?model=globex-private-model",
        "?error_type=globex_error",
    ):
        response = client.get(URL + query)
        assert response.status_code == 422, query
        assert "globex-1" not in response.content.decode()


def test_it_shows_an_outsider_only_their_own_tenant(client_as, outsider, log):
    response = client_as(outsider).get(URL)
    assert request_ids(response) == ["globex-1"]


def test_it_shows_staff_every_tenant_and_filters_by_tenant(client_as, staff, log):
    client = client_as(staff)
    assert set(request_ids(client.get(URL))) == {
        "acme-ok",
        "acme-limited",
        "acme-cached",
        "globex-1",
    }
    assert request_ids(client.get(URL + "?tenant=globex")) == ["globex-1"]


def test_it_sends_a_signed_out_visitor_to_sign_in(client):
    for url in (URL, LIVE + "?after=0", URL + "acme-ok/"):
        response = client.get(url)
        assert response.status_code == 302 and "/console/login/" in response["Location"]


# -- the live tail -------------------------------------------------------------------------


def test_it_gives_the_live_tail_the_rows_stored_after_the_newest_shown(
    client_as, owner, tenant, log
):
    client = client_as(owner)
    page = client.get(URL).content.decode()
    newest = int(re.search(r"after=(\d+)", page).group(1))
    assert client.get(f"{LIVE}?after={newest}", **HTMX).status_code == 204

    record(tenant, "acme-new", ago=dt.timedelta(seconds=1))
    record(tenant, "acme-new-error", status=UsageStatus.ERROR, ago=dt.timedelta(seconds=0))
    fresh = client.get(f"{LIVE}?after={newest}", **HTMX)
    assert fresh.status_code == 200
    assert request_ids(fresh) == ["acme-new-error", "acme-new"]
    # the poller comes back out of band, asking after the newest row now shown
    html = fresh.content.decode()
    assert 'id="requests-live-poller"' in html and 'hx-swap-oob="true"' in html
    assert f"after={UsageRecord.objects.get(request_id='acme-new-error').pk}" in html


def test_it_keeps_the_live_tail_to_the_filters_and_the_viewer(
    client_as, teammate, tenant, other_tenant, log
):
    client = client_as(teammate)
    newest = UsageRecord.objects.order_by("-id").first().pk
    record(tenant, "acme-new-ok")
    record(other_tenant, "globex-new", status=UsageStatus.ERROR)
    record(tenant, "acme-new-error", status=UsageStatus.ERROR)
    errors = client.get(f"{LIVE}?status=error&after={newest}", **HTMX)
    assert request_ids(errors) == ["acme-new-error"]
    assert "status=error&amp;after=" in errors.content.decode()


def test_it_polls_without_scanning_the_usage_table_for_choices(client_as, owner, log):
    client = client_as(owner)
    client.get(URL + "?status=error")  # the page computes the choices
    with CaptureQueriesContext(connection) as queries:
        response = client.get(LIVE + "?status=error&after=0", **HTMX)
    assert response.status_code == 200
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"].upper()]


def test_it_offers_choices_from_a_recent_window_or_from_a_custom_ranges_start(
    client_as, owner, log, tenant
):
    """The choices come from an indexed window of rows (the last 31 days, or from a custom
    range's start), never from a scan of the whole usage table."""
    record(tenant, "acme-long-ago", ago=dt.timedelta(days=60), model="gpt-3.5-turbo-0301")
    client = client_as(owner)

    recent = client.get(URL + "?range=month").content.decode()
    assert "gpt-3.5-turbo-0301" not in recent

    old = dt.date.today() - dt.timedelta(days=61)
    response = client.get(URL + f"?range=custom&since={old}&model=gpt-3.5-turbo-0301")
    assert response.status_code == 200
    assert request_ids(response) == ["acme-long-ago"]


def test_it_reuses_a_pages_choices_for_a_burst_of_filter_changes(client_as, owner, log):
    client = client_as(owner)
    client.get(URL)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL + "?status=error", **HTMX)
    assert response.status_code == 200
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"].upper()]


def test_it_answers_a_bad_live_poll_with_a_message(client_as, owner, log):
    client = client_as(owner)
    for query in ("", "?after=x", "?after=1&status=nope", "?after=" + "9" * 30):
        response = client.get(LIVE + query, **HTMX)
        assert response.status_code == 400
        assert "Fix the filters" in response.content.decode()


# -- one request ---------------------------------------------------------------------------


@pytest.fixture
def failover(tenant, log):
    provider = provider_create(name="openai-prod", type="openai", base_url="http://127.0.0.1:9/v1")
    credential = api_key_add(provider=provider, label="prod key", secret="sk-live-abcdefgh1234")
    return record(
        tenant,
        "acme-failover",
        virtual_key=log["support"],
        credential_id=f"key:{credential.pk}",
        endpoint="chat.completions",
        streamed=True,
        end_user="customer-42",
        cached_tokens=20,
        reasoning_tokens=7,
        attempts=[
            {
                "provider": "anthropic",
                "credential_id": "oauth:999",
                "model": "claude-3-5-haiku",
                "status": "error",
                "http_status": 429,
                "error_type": "rate_limit",
                "latency_ms": 41.0,
                "answered": False,
            },
            {
                "provider": "openai-prod",
                "credential_id": f"key:{credential.pk}",
                "model": "gpt-4o-mini",
                "status": "answered",
                "http_status": 200,
                "error_type": "",
                "latency_ms": 280.0,
                "answered": True,
            },
        ],
    )


def test_it_shows_a_request_with_its_attempt_trail(client_as, owner, failover):
    response = client_as(owner).get(URL + "acme-failover/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<nav class="sidebar"' in html  # a page of its own without htmx
    trail = html[html.index("<h3>Attempts</h3>") :]
    assert trail.count("data-attempt") == 2
    assert trail.index("claude-3-5-haiku") < trail.index("gpt-4o-mini")
    assert "rate_limit" in trail and "429" in trail and "41 ms" in trail and "280 ms" in trail
    # the credential by label and last four characters, never the secret
    assert "prod key …1234" in html
    assert "sk-live-abcdefgh1234" not in html
    assert "customer-42" in html and "chat.completions" in html and "streamed" in html
    assert "100 uncached · 20 cache reads" in html and "7 reasoning" in html


def test_it_gives_htmx_the_drawer_fragment(client_as, owner, failover):
    response = client_as(owner).get(URL + "acme-failover/", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert '<nav class="sidebar"' not in html
    assert "data-request-detail" in html and "data-attempt" in html


def test_it_shows_captured_bodies_as_the_writer_masked_them(client_as, owner, tenant, failover):
    RequestBody.objects.create(
        request_id="acme-failover",
        tenant=tenant,
        request='{"messages": [{"role": "user", "content": "my key is sk-***MASKED*** <b>x</b>"}]}',
        response="Hello [EMAIL]",
        response_truncated=True,
        headers={"user-agent": "OpenAI/Python 1.99.0", "authorization": "(not shown)"},
        created_at=timezone.now(),
        expires_at=timezone.now() + dt.timedelta(days=7),
    )
    html = client_as(owner).get(URL + "acme-failover/", **HTMX).content.decode()
    assert '<dt class="mono">user-agent</dt><dd class="mono">OpenAI/Python 1.99.0</dd>' in html
    assert '<dt class="mono">authorization</dt><dd class="mono muted">(not shown)</dd>' in html
    assert '<pre class="body-text" tabindex="0" data-body="request">' in html
    assert "sk-***MASKED***" in html and "Hello [EMAIL]" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html  # text, not markup
    assert "cut</span>" in html
    assert "data-body-absent" not in html


def test_it_says_when_bodies_were_not_captured_and_where_to_turn_it_on(client_as, owner, failover):
    html = client_as(owner).get(URL + "acme-failover/").content.decode()
    assert "data-body=" not in html
    assert "Body capture was off" in html and "capture_bodies" in html
    assert 'href="/console/tenants/acme/#id_capture_bodies"' in html


def test_it_hides_another_tenants_request_as_unknown(client_as, outsider, teammate, log):
    assert client_as(outsider).get(URL + "acme-ok/").status_code == 404
    assert client_as(outsider).get(URL + "acme-ok/", **HTMX).status_code == 404
    assert client_as(teammate).get(URL + "globex-1/").status_code == 404
    assert client_as(teammate).get(URL + "never-was/").status_code == 404
    assert client_as(teammate).get(URL + "x" * 80 + "/").status_code == 404
    assert client_as(teammate).get(URL + "acme-ok/").status_code == 200


def test_it_lets_staff_open_any_tenants_request(client_as, staff, log):
    assert client_as(staff).get(URL + "globex-1/").status_code == 200


# -- links into the page -------------------------------------------------------------------


def test_it_links_a_keys_page_to_its_requests(client_as, owner, tenant, log):
    key = log["support"]
    html = client_as(owner).get(f"/console/tenants/acme/keys/{key.pk}/").content.decode()
    assert f'href="/console/requests/?tenant=acme&amp;key={key.pk}"' in html


def test_it_links_the_tenant_overview_to_its_requests(client_as, owner, log):
    html = client_as(owner).get("/console/tenants/acme/").content.decode()
    assert 'href="/console/requests/?tenant=acme"' in html


def test_it_links_usage_rows_to_their_requests(client_as, owner, log):
    today = timezone.now().date()
    start = today - dt.timedelta(days=7)
    html = client_as(owner).get(f"/console/tenants/acme/usage/?from={start}&to={today}")
    html = html.content.decode()
    window = f"range=custom&amp;since={start}&amp;until={today}"
    assert f'href="/console/requests/?tenant=acme&amp;{window}&amp;model=gpt-4o-mini"' in html
    assert f'href="/console/requests/?tenant=acme&amp;{window}&amp;key={log["batch"].pk}"' in html


def test_it_links_audit_entries_about_a_key_to_its_requests(client_as, owner, log):
    html = client_as(owner).get("/console/audit/").content.decode()
    assert f'href="/console/requests/?tenant=acme&amp;key={log["support"].pk}"' in html


def test_it_shows_when_a_key_was_last_used(client_as, owner, log):
    key = log["support"]
    key.last_used_at = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)
    key.save(update_fields=["last_used_at"])
    client = client_as(owner)
    keys_page = client.get("/console/tenants/acme/keys/").content.decode()
    assert "2026-03-04 05:06" in keys_page
    # a used key's requests are one click away, even for members who cannot edit it
    assert f'href="/console/requests/?tenant=acme&amp;key={key.pk}"' in keys_page
    assert (
        "2026-03-04 05:06" in client.get(f"/console/tenants/acme/keys/{key.pk}/").content.decode()
    )


def test_it_shows_the_default_range_in_the_picker(client_as, owner, log):
    html = client_as(owner).get(URL).content.decode()
    assert '<option value="day" selected>' in html
