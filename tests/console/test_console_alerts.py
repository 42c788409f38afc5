"""The console's alert pages: the organisation's channels at /console/alerts/ (staff) and a
tenant's under its Alerts tab (owners and admins, as the management API decides). Adding,
editing, switching on and off, deleting and test-sending go through the alert services
(validated, audited); a test alert really reaches a loopback HTTP receiver; a target's
token and a webhook's signing secret never appear on a page after the one response that
creates the channel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenants_app.models import AlertChannel, AlertDelivery, AuditEvent, DeliveryStatus, Role
from tenants_app.services.alerts import alert_channel_create
from tests.alerts.receiver import Receiver, start_receiver
from tests.cast import make_user

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.com/services/T000/B000/XyZSecretPath?token=QuerySecret99"
TENANT_URL = "/console/tenants/acme/alerts/"
GLOBAL_URL = "/console/alerts/"
HTMX = {"HTTP_HX_REQUEST": "true"}
# a test alert is queued when its row is committed (transaction.on_commit), so the tests
# that send one commit for real
committed = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _eager_tasks(monkeypatch, settings):
    """The delivery task runs in the test's process, whichever mode the suite runs in."""
    from aipk_site.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running, server = start_receiver()
    yield running
    server.shutdown()
    server.server_close()


def make_channel(tenant=None, *, name="ops", kind="webhook", target=HOOK, **extra):
    channel, secret = alert_channel_create(
        tenant=tenant, name=name, kind=kind, target=target, **extra
    )
    return channel, secret


def form(**fields):
    data = {"name": "ops", "kind": "webhook", "target": HOOK, "enabled": "on"}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


# --- who may do what -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "tenant_admin", "staff"])
def test_it_shows_a_tenants_channels_to_its_owners_admins_and_staff(
    request, client_as, tenant, who
):
    channel, _ = make_channel(tenant, events=["budget.threshold"])

    page = client_as(request.getfixturevalue(who)).get(TENANT_URL)

    assert page.status_code == 200
    html = page.content.decode()
    assert f'id="alert-channel-{channel.pk}"' in html
    assert "budget.threshold" in html and "https://hooks.example.com/…et99" in html
    assert 'aria-current="page">Alerts</a>' in html  # the tenant's tab


@pytest.mark.parametrize("who", ["teammate", "viewer"])
def test_it_refuses_members_and_viewers_as_the_api_does(request, client_as, tenant, who):
    channel, _ = make_channel(tenant)
    client = client_as(request.getfixturevalue(who))

    assert client.get(TENANT_URL).status_code == 403
    assert client.get(f"{TENANT_URL}{channel.pk}/").status_code == 403
    assert client.post(TENANT_URL, form(name="sneaky")).status_code == 403
    assert client.post(f"{TENANT_URL}{channel.pk}/test/").status_code == 403
    assert client.get(f"{TENANT_URL}{channel.pk}/row/").status_code == 403
    assert client.post(f"{TENANT_URL}{channel.pk}/enable/", {"enabled": "0"}).status_code == 403
    assert client.post(f"{TENANT_URL}{channel.pk}/delete/").status_code == 403
    assert list(AlertChannel.objects.values_list("name", "enabled")) == [("ops", True)]
    assert not AlertDelivery.objects.exists()
    # and the tab is not offered to them
    assert "Alerts</a>" not in client.get("/console/tenants/acme/").content.decode()


def test_it_hides_a_tenant_from_an_outsider_as_if_it_did_not_exist(client_as, tenant, outsider):
    channel, _ = make_channel(tenant)
    client = client_as(outsider)

    assert client.get(TENANT_URL).status_code == 404
    assert client.get(f"{TENANT_URL}{channel.pk}/").status_code == 404
    assert client.post(f"{TENANT_URL}{channel.pk}/delete/").status_code == 404
    assert AlertChannel.objects.filter(pk=channel.pk).exists()


def test_it_keeps_a_second_tenants_channels_out_of_reach_of_the_first(
    client_as, tenant, other_tenant, owner, outsider
):
    """Globex's owner reaches Acme's channel through no address of Globex's, and the reverse."""
    acme_channel, _ = make_channel(tenant, name="acme-pager")
    globex_channel, _ = make_channel(other_tenant, name="globex-pager")

    globex_page = client_as(outsider).get("/console/tenants/globex/alerts/").content.decode()
    assert "globex-pager" in globex_page and "acme-pager" not in globex_page
    stray = f"/console/tenants/globex/alerts/{acme_channel.pk}/"
    assert client_as(outsider).get(stray).status_code == 404
    assert client_as(outsider).post(stray + "delete/").status_code == 404
    assert client_as(outsider).post(stray + "test/").status_code == 404
    stray_back = f"{TENANT_URL}{globex_channel.pk}/"
    assert client_as(owner).get(stray_back).status_code == 404
    assert AlertChannel.objects.count() == 2 and not AlertDelivery.objects.exists()


def test_it_keeps_the_organisations_channels_for_staff(client_as, tenant, staff, owner):
    org_channel, _ = make_channel(None, name="org-pager")
    tenant_channel, _ = make_channel(tenant, name="acme-pager")

    page = client_as(staff).get(GLOBAL_URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "org-pager" in html and "acme-pager" not in html
    # a tenant's channel is not the organisation's: not reachable under /console/alerts/
    assert client_as(staff).get(f"{GLOBAL_URL}{tenant_channel.pk}/").status_code == 404
    # owners of a tenant are not staff
    assert client_as(owner).get(GLOBAL_URL).status_code == 403
    assert client_as(owner).get(f"{GLOBAL_URL}{org_channel.pk}/").status_code == 403
    assert client_as(owner).post(f"{GLOBAL_URL}{org_channel.pk}/delete/").status_code == 403
    assert AlertChannel.objects.filter(pk=org_channel.pk).exists()


def test_it_links_alerts_in_the_navigation_for_staff_only(client_as, staff, owner):
    assert f'href="{GLOBAL_URL}"' in client_as(staff).get("/console/tenants/").content.decode()
    assert f'href="{GLOBAL_URL}"' not in client_as(owner).get("/console/tenants/").content.decode()


def test_it_sends_a_visitor_to_sign_in(client, tenant):
    assert client.get(GLOBAL_URL).status_code == 302
    assert client.get(TENANT_URL).status_code == 302


# --- adding, editing, switching, deleting -------------------------------------------------


def test_it_adds_a_webhook_channel_and_shows_its_signing_secret_once(client_as, tenant, owner):
    client = client_as(owner)

    created = client.post(
        TENANT_URL, form(name="pager", events=["budget.threshold", "provider.degraded"])
    )

    assert created.status_code == 201
    channel = AlertChannel.objects.get(name="pager")
    assert channel.tenant == tenant and channel.target == HOOK and channel.enabled
    assert channel.events == ["budget.threshold", "provider.degraded"]
    assert channel.signing_secret in created.content.decode()
    assert "no-store" in created["Cache-Control"]
    event = AuditEvent.objects.get(action="alert_channel.create")
    assert event.tenant == tenant and event.actor == owner
    # afterwards: the last four characters, never the secret, never the URL's path or query
    for later in (client.get(TENANT_URL), client.get(f"{TENANT_URL}{channel.pk}/")):
        html = later.content.decode()
        assert channel.signing_secret not in html
        assert f"…{channel.signing_secret[-4:]}" in html
        assert "XyZSecretPath" not in html and "QuerySecret99" not in html
        assert "T000" not in html


def test_it_adds_an_email_channel_and_goes_back_to_the_list(client_as, staff):
    client = client_as(staff)
    added = client.post(
        GLOBAL_URL, form(name="on-call", kind="email", target="a@example.com, b@example.com")
    )

    assert added.status_code == 302 and added["Location"] == GLOBAL_URL
    channel = AlertChannel.objects.get(name="on-call")
    assert channel.tenant is None and channel.target == "a@example.com, b@example.com"
    listing = client.get(GLOBAL_URL).content.decode()
    assert "Alert channel on-call added." in listing and "every kind" in listing


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"target": "not a url"}, "target", "target must be an http or https URL"),
        ({"target": "ftp://example.com/x"}, "target", "target must be an http or https URL"),
        (
            {"kind": "email", "target": "a@example.com, nope"},
            "target",
            "&#x27;nope&#x27; is not an email address",
        ),
        ({"target": ""}, "target", "This field is required."),
        ({"name": "   "}, "name", "This field is required."),
        ({"kind": "pager"}, "kind", "Select a valid choice. pager is not one of"),
        ({"events": ["budget.threshold", "test"]}, "events", "Select a valid choice. test is not"),
        ({"name": "x" * 101}, "name", "at most 100 characters"),
    ],
)
def test_it_shows_what_is_wrong_on_the_form_and_adds_nothing(
    client_as, tenant, tenant_admin, fields, field, message
):
    page = client_as(tenant_admin).post(TENANT_URL, form(**fields))

    assert page.status_code == 422
    html = page.content.decode()
    assert "has-error" in html
    assert message in html
    assert not AlertChannel.objects.exists()
    assert not AuditEvent.objects.filter(action="alert_channel.create").exists()


def test_it_never_echoes_a_typed_target_back_with_an_error(client_as, tenant, owner):
    page = client_as(owner).post(TENANT_URL, form(name="", target=HOOK))

    assert page.status_code == 422
    assert "XyZSecretPath" not in page.content.decode()


def test_it_edits_a_channel_and_keeps_the_target_when_left_empty(client_as, tenant, owner):
    channel, _ = make_channel(tenant, events=["budget.threshold"])
    client = client_as(owner)

    page = client.get(f"{TENANT_URL}{channel.pk}/").content.decode()
    assert 'value="ops"' in page and "XyZSecretPath" not in page
    saved = client.post(
        f"{TENANT_URL}{channel.pk}/",
        {"name": "pager", "target": "", "events": ["provider.degraded"]},  # enabled unticked
    )

    assert saved.status_code == 302 and saved["Location"] == TENANT_URL
    channel.refresh_from_db()
    assert (channel.name, channel.target, channel.enabled) == ("pager", HOOK, False)
    assert channel.events == ["provider.degraded"]
    change = AuditEvent.objects.get(action="alert_channel.update").changes
    assert change["name"] == ["ops", "pager"] and "target" not in change


def test_it_replaces_a_target_and_refuses_a_bad_one_on_the_edit_form(client_as, tenant, owner):
    channel, _ = make_channel(tenant)
    client = client_as(owner)

    refused = client.post(f"{TENANT_URL}{channel.pk}/", {"name": "ops", "target": "nope"})
    assert refused.status_code == 422
    assert "target must be an http or https URL" in refused.content.decode()
    channel.refresh_from_db()
    assert channel.target == HOOK

    new = "https://hooks.example.com/next/hook-NEW1"
    assert (
        client.post(f"{TENANT_URL}{channel.pk}/", {"name": "ops", "target": new}).status_code == 302
    )
    channel.refresh_from_db()
    assert channel.target == new


def test_it_switches_a_channel_off_and_on_in_place(client_as, staff):
    channel, _ = make_channel(None)
    client = client_as(staff)

    off = client.post(f"{GLOBAL_URL}{channel.pk}/enable/", {"enabled": "0"}, **HTMX)
    assert off.status_code == 200
    html = off.content.decode()
    assert html.strip().startswith(f'<tr id="alert-channel-{channel.pk}">')
    assert ">disabled</span>" in html and 'name="enabled" value="1"' in html
    channel.refresh_from_db()
    assert not channel.enabled

    on = client.post(f"{GLOBAL_URL}{channel.pk}/enable/", {"enabled": "1"})
    assert on.status_code == 302
    channel.refresh_from_db()
    assert channel.enabled
    assert AuditEvent.objects.filter(action="alert_channel.update").count() == 2


@pytest.mark.parametrize("value", ["", "yes", "2"])
def test_it_refuses_a_switch_that_says_neither_on_nor_off(client_as, staff, value):
    channel, _ = make_channel(None)

    answer = client_as(staff).post(f"{GLOBAL_URL}{channel.pk}/enable/", {"enabled": value}, **HTMX)

    assert answer.status_code == 400 and b"enabled=1" in answer.content
    channel.refresh_from_db()
    assert channel.enabled


@committed
def test_it_deletes_a_channel_with_its_history(client_as, tenant, tenant_admin, receiver):
    channel, _ = make_channel(tenant, target=receiver.url)
    client = client_as(tenant_admin)
    client.post(f"{TENANT_URL}{channel.pk}/test/")

    deleted = client.post(f"{TENANT_URL}{channel.pk}/delete/")

    assert deleted.status_code == 302 and deleted["Location"] == TENANT_URL
    assert not AlertChannel.objects.exists() and not AlertDelivery.objects.exists()
    assert AuditEvent.objects.get(action="alert_channel.delete").tenant == tenant
    assert client.get(f"{TENANT_URL}{channel.pk}/").status_code == 404


def test_it_answers_405_to_a_get_on_an_action(client_as, staff):
    channel, _ = make_channel(None)

    for action in ("enable", "delete", "test"):
        assert client_as(staff).get(f"{GLOBAL_URL}{channel.pk}/{action}/").status_code == 405


# --- test alerts and deliveries -----------------------------------------------------------


@committed
def test_it_sends_a_test_alert_to_the_receiver_and_updates_the_row(
    client_as, tenant, owner, receiver
):
    channel, secret = make_channel(tenant, target=receiver.url)

    answer = client_as(owner).post(f"{TENANT_URL}{channel.pk}/test/", **HTMX)

    assert answer.status_code == 200
    html = answer.content.decode()
    assert html.strip().startswith(f'<tr id="alert-channel-{channel.pk}">')
    assert "badge-sent" in html and '<span class="help">test · ' in html
    assert len(receiver) == 1
    got = receiver.received[0]
    assert got.json()["event"] == "test" and got.json()["tenant"] == "acme"
    assert got.headers["x-aipk-signature"].startswith("t=")
    delivery = AlertDelivery.objects.get(channel=channel)
    assert delivery.status == DeliveryStatus.SENT and delivery.response_status == 200
    assert AuditEvent.objects.filter(action="alert_channel.test", actor=owner).exists()
    assert secret not in html and "aipk-T0K3N" not in html


@committed
def test_it_shows_a_failed_test_alert_with_its_error(client_as, staff, receiver):
    receiver.fail_first = 100  # the receiver answers 500 to everything
    channel, _ = make_channel(None, target=receiver.url, enabled=False)

    answer = client_as(staff).post(f"{GLOBAL_URL}{channel.pk}/test/", **HTMX)

    html = answer.content.decode()
    assert "badge-failed" in html and "the receiver answered HTTP 500" in html
    # switched off, the channel still takes a test: that is what a test is for
    assert len(receiver) >= 1
    detail = client_as(staff).get(f"{GLOBAL_URL}{channel.pk}/").content.decode()
    assert "the receiver answered HTTP 500" in detail and "badge-failed" in detail


@committed
def test_it_lists_a_channels_recent_deliveries_newest_first(client_as, tenant, owner, receiver):
    channel, _ = make_channel(tenant, target=receiver.url)
    client = client_as(owner)
    for _ in range(3):
        client.post(f"{TENANT_URL}{channel.pk}/test/", {"back": "channel"})
    AlertDelivery.objects.create(
        channel=channel,
        tenant=tenant,
        kind="budget.threshold",
        dedup_key="budget:key:1:2026-12:80",
        subject="Key nightly used 80 % of its December budget",
        status=DeliveryStatus.PENDING,
    )

    page = client.get(f"{TENANT_URL}{channel.pk}/")

    html = page.content.decode()
    ids = list(AlertDelivery.objects.filter(channel=channel).values_list("pk", flat=True))
    positions = [html.index(f'id="alert-delivery-{pk}"') for pk in ids]
    assert positions == sorted(positions)  # the model's order: newest first
    assert html.count("badge-sent") >= 3 and "Key nightly used 80 %" in html
    assert "budget.threshold" in html


def test_it_keeps_the_last_twenty_deliveries_on_a_channels_page(client_as, staff):
    channel, _ = make_channel(None)
    for n in range(25):
        AlertDelivery.objects.create(
            channel=channel, kind="test", dedup_key=f"test:{n}", subject=f"test {n}"
        )

    html = client_as(staff).get(f"{GLOBAL_URL}{channel.pk}/").content.decode()

    assert html.count('id="alert-delivery-') == 20
    assert "The last 20 deliveries" in html


@committed
def test_it_goes_back_to_the_channels_page_after_a_plain_test_post(
    client_as, tenant, owner, receiver
):
    channel, _ = make_channel(tenant, target=receiver.url)

    client = client_as(owner)
    answer = client.post(f"{TENANT_URL}{channel.pk}/test/", {"back": "channel"})

    assert answer.status_code == 302 and answer["Location"] == f"{TENANT_URL}{channel.pk}/"
    page = client.get(answer["Location"]).content.decode()
    assert f"Test alert to {channel.name}: sent." in page


def test_it_answers_404_for_a_channel_that_does_not_exist(client_as, tenant, owner, staff):
    assert client_as(owner).get(f"{TENANT_URL}999999/").status_code == 404
    assert client_as(staff).post(f"{GLOBAL_URL}999999/test/").status_code == 404
    assert client_as(staff).get("/console/tenants/nope/alerts/").status_code == 404
    # beyond any database integer: still just "no such channel"
    assert client_as(staff).get(f"{GLOBAL_URL}{10**30}/").status_code == 404
    assert (
        client_as(owner).post(f"{TENANT_URL}{10**30}/enable/", {"enabled": "0"}).status_code == 404
    )


def test_it_shows_a_url_with_credentials_by_its_host_only(client_as, staff, make_member, tenant):
    make_channel(None, target="https://robot:Pa55word@hooks.example.com/in/abcd")
    admin = make_member("carol", tenant, Role.ADMIN)

    html = client_as(staff).get(GLOBAL_URL).content.decode()

    assert "Pa55word" not in html and "robot" not in html
    assert "https://hooks.example.com/…abcd" in html
    assert client_as(admin).get(GLOBAL_URL).status_code == 403


def test_it_answers_an_htmx_add_with_the_panel_alone(client_as, tenant, owner):
    client = client_as(owner)

    webhook = client.post(TENANT_URL, form(name="pager"), **HTMX)
    email = client.post(TENANT_URL, form(name="mail", kind="email", target="a@example.com"), **HTMX)
    refused = client.post(TENANT_URL, form(name="bad", target="nope"), **HTMX)

    secret = AlertChannel.objects.get(name="pager").signing_secret
    for answer in (webhook, email, refused):
        html = answer.content.decode()
        assert html.lstrip().startswith('<div id="alerts-panel">') and "<html" not in html
    assert webhook.status_code == 201 and secret in webhook.content.decode()
    assert email.status_code == 201 and "Alert channel mail added." in email.content.decode()
    assert secret not in email.content.decode()
    assert refused.status_code == 422
    assert "target must be an http or https URL" in refused.content.decode()
    assert sorted(AlertChannel.objects.values_list("name", flat=True)) == ["mail", "pager"]


def test_it_has_a_pending_row_fetch_itself_until_the_delivery_settles(client_as, tenant, owner):
    channel, _ = make_channel(tenant)
    delivery = AlertDelivery.objects.create(
        channel=channel, tenant=tenant, kind="test", dedup_key="test:queued", subject="queued"
    )
    client = client_as(owner)
    row_url = f"{TENANT_URL}{channel.pk}/row/"

    pending = client.get(TENANT_URL).content.decode()
    assert f'hx-get="{row_url}" hx-trigger="load delay:4s"' in pending
    delivery.status = DeliveryStatus.SENT
    delivery.save()
    settled = client.get(row_url, **HTMX)

    assert settled.status_code == 200
    html = settled.content.decode()
    assert html.strip().startswith(f'<tr id="alert-channel-{channel.pk}">')
    assert "badge-sent" in html and "hx-trigger" not in html
    assert client.post(row_url).status_code == 405
    assert client_as(make_user("stranger")).get(row_url).status_code == 404
