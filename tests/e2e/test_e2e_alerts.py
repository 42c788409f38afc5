"""The alert pages in a real browser: a tenant's owner adds a webhook channel (its signing
secret shown once), sends a test alert that a real loopback receiver gets, sees the row's
status change in place and the delivery listed on the channel's page; staff reach the
organisation's channels from the navigation."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tenants_app.models import AlertChannel, AlertDelivery, Membership, Role, Tenant
from tests.alerts.receiver import Receiver, start_receiver


@pytest.fixture(autouse=True)
def eager_celery(monkeypatch):
    """The delivery task runs in the server (this process), whichever mode the suite runs
    in: with REDIS_URL Celery would queue it for a worker this test does not start
    (tests/alerts/test_alert_worker.py runs one)."""
    from aipk_site.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running, server = start_receiver()
    yield running
    server.shutdown()
    server.server_close()


def test_it_adds_a_webhook_channel_and_sends_it_a_test_alert(console, console_user, receiver):
    ada = console_user("ada")
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    Membership.objects.create(user=ada, tenant=tenant, role=Role.OWNER)
    page = console.page
    console.sign_in(ada)

    console.goto("/console/tenants/acme/")
    page.get_by_role("navigation", name="Tenant sections").get_by_role(
        "link", name="Alerts"
    ).click()
    page.wait_for_url(re.compile(r".*/console/tenants/acme/alerts/$"))
    expect(page.get_by_text("No alert channels yet.")).to_be_visible()
    console.shot("alerts-empty")

    # a bad target first: the form says what is wrong and keeps nothing
    page.get_by_label("Name", exact=True).fill("pager")
    page.get_by_label("Target").fill("not a url")
    page.get_by_role("button", name="Add channel").click()
    expect(page.locator(".field-error")).to_contain_text("target must be an http or https URL")
    assert not AlertChannel.objects.exists()

    page.get_by_label("Name", exact=True).fill("pager")
    page.get_by_label("Target").fill(receiver.url)
    page.get_by_label("Budget threshold crossed").check()
    page.get_by_role("button", name="Add channel").click()
    expect(page.locator(".secret-once")).to_be_visible()
    channel = AlertChannel.objects.get(name="pager")
    assert page.locator("#new-signing-secret").inner_text().strip() == channel.signing_secret
    assert page.url.endswith("/console/tenants/acme/alerts/")  # the secret is in no address
    row = page.locator(f"#alert-channel-{channel.pk}")
    expect(row).to_contain_text("budget.threshold")
    expect(row).to_contain_text("nothing sent yet")
    assert "aipk-T0K3N" not in row.inner_html()  # the receiver URL's token
    console.shot("alerts-added-secret-once")

    row.get_by_role("button", name="Send test alert to pager").click()
    expect(row.locator(".badge-sent")).to_have_text("sent")
    expect(row).to_contain_text("test ·")
    assert len(receiver) == 1 and receiver.bodies()[0]["event"] == "test"
    assert page.url.endswith("/console/tenants/acme/alerts/")  # swapped in place
    console.shot("alerts-test-sent")

    page.reload()
    expect(page.locator(".secret-once")).to_have_count(0)
    assert channel.signing_secret not in page.content()

    row.get_by_role("link", name="pager", exact=True).click()
    page.wait_for_url(re.compile(rf".*/alerts/{channel.pk}/$"))
    delivery = AlertDelivery.objects.get(channel=channel)
    delivered = page.locator(f"#alert-delivery-{delivery.pk}")
    expect(delivered).to_contain_text("test")
    expect(delivered.locator(".badge-sent")).to_have_text("sent")
    expect(delivered).to_contain_text("HTTP 200")
    console.shot("alert-channel-deliveries")

    # switched off from its own page, it stays there
    page.get_by_role("button", name="Disable pager").click()
    expect(page.locator("#flash")).to_contain_text("Alert channel pager switched off.")
    expect(page.locator(f"#alert-channel-{channel.pk}")).to_contain_text("disabled")
    channel.refresh_from_db()
    assert not channel.enabled


def test_it_shows_the_organisations_channels_to_staff(console, console_user, receiver):
    ada = console_user("ada", is_staff=True)
    page = console.page
    console.sign_in(ada)

    console.goto("/console/")
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Alerts").click()
    page.wait_for_url(re.compile(r".*/console/alerts/$"))
    expect(page.get_by_role("heading", name="Organisation alert channels")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("on-call")
    page.get_by_label("Kind").select_option("email")
    page.get_by_label("Target").fill("ops@example.com")
    page.get_by_role("button", name="Add channel").click()
    expect(page.get_by_role("status")).to_contain_text("Alert channel on-call added.")
    channel = AlertChannel.objects.get(name="on-call")
    assert channel.tenant is None
    row = page.locator(f"#alert-channel-{channel.pk}")
    expect(row).to_contain_text("ops@example.com")

    row.get_by_role("button", name="Disable on-call").click()
    expect(row.locator(".badge-disabled")).to_have_text("disabled")
    channel.refresh_from_db()
    assert not channel.enabled
    console.shot("organisation-alerts")
