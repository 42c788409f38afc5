"""Delivering alerts: signed webhooks, Slack-compatible webhooks and email, with retries
(Celery runs the task eagerly in embedded mode: each retry is a real second POST)."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from django.core import mail

from tenants_app.models import AlertDelivery, AuditEvent
from tenants_app.services.alerts import alert_channel_create, alert_channel_test, alert_raise

pytestmark = pytest.mark.django_db(transaction=True)


def webhook(tenant, receiver, **fields):
    return alert_channel_create(
        tenant=tenant, name="ops hook", kind="webhook", target=receiver.url, **fields
    )


def verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(parts["t"])) < 300
    return fresh and hmac.compare_digest(expected.hexdigest(), parts["v1"])


def test_it_signs_a_webhook_so_the_receiver_can_verify_sender_and_body(tenant, receiver):
    channel, secret = webhook(tenant, receiver)

    delivery = alert_channel_test(channel=channel)

    assert len(receiver) == 1
    got = receiver.received[0]
    assert got.path == "/hooks/aipk-T0K3N"
    assert got.headers["content-type"] == "application/json"
    assert verify(secret, got.headers["x-aipk-signature"], got.body)
    assert not verify(secret, got.headers["x-aipk-signature"], got.body + b" ")
    assert not verify("whsec_someone-else", got.headers["x-aipk-signature"], got.body)
    document = got.json()
    assert document["event"] == "test" and document["tenant"] == "acme"
    assert document["id"] == f"alert_{delivery.pk}"
    assert got.headers["x-aipk-event"] == "test"
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("sent", 1, 200)
    assert secret not in got.body.decode()


def test_it_retries_a_failing_receiver_until_it_answers(tenant, receiver):
    receiver.fail_first = 2
    channel, _ = webhook(tenant, receiver)

    delivery = alert_channel_test(channel=channel)

    assert len(receiver) == 3
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 3, "")
    sent = AuditEvent.objects.get(action="alert.sent", object_id=str(delivery.pk))
    assert sent.tenant == tenant and sent.changes["attempts"] == 3


def test_it_gives_up_after_the_last_attempt_and_records_why(tenant, receiver):
    receiver.fail_first = 1000
    channel, _ = webhook(tenant, receiver)

    delivery = alert_channel_test(channel=channel)

    assert len(receiver) == 5  # ALERT_MAX_ATTEMPTS
    assert (delivery.status, delivery.attempts) == ("failed", 5)
    assert delivery.last_error == "the receiver answered HTTP 500"
    assert delivery.response_status == 500
    failed = AuditEvent.objects.get(action="alert.failed", object_id=str(delivery.pk))
    assert failed.tenant == tenant and failed.changes["error"] == delivery.last_error


def test_it_never_logs_a_target_url(tenant, receiver, caplog):
    caplog.set_level("DEBUG")
    channel, _ = alert_channel_create(tenant=tenant, name="s", kind="slack", target=receiver.url)
    receiver.fail_first = 1

    assert alert_channel_test(channel=channel).status == "sent"

    assert len(receiver) == 2
    assert "aipk-T0K3N" not in caplog.text


def test_it_records_an_unreachable_receiver_without_its_url(tenant, receiver):
    channel, _ = alert_channel_create(
        tenant=tenant,
        name="nobody home",
        kind="slack",
        target="http://127.0.0.1:9/services/T000/B000/SeCrEtPaTh",
    )

    delivery = alert_channel_test(channel=channel)

    assert delivery.status == "failed" and delivery.attempts == 5
    assert delivery.last_error.startswith("could not reach the receiver (")
    assert "SeCrEtPaTh" not in delivery.last_error


def test_it_posts_slack_compatible_text(tenant, receiver):
    channel, secret = alert_channel_create(
        tenant=tenant, name="slack", kind="slack", target=receiver.url
    )

    alert_channel_test(channel=channel)

    assert secret is None
    (body,) = receiver.bodies()
    assert list(body) == ["text"]
    assert body["text"].startswith("[aipk] Test alert for channel 'slack'")
    assert "x-aipk-signature" not in receiver.received[0].headers


def test_it_emails_every_address_of_an_email_channel(tenant):
    channel, _ = alert_channel_create(
        tenant=tenant, name="mail", kind="email", target="ops@example.com, cfo@example.com"
    )

    delivery = alert_channel_test(channel=channel)

    assert delivery.status == "sent"
    (message,) = mail.outbox
    assert message.to == ["ops@example.com", "cfo@example.com"]
    assert message.subject == "[aipk] Test alert for channel 'mail'"


def test_it_sends_one_occurrence_once_per_channel(tenant, receiver):
    webhook(tenant, receiver)
    first = alert_raise(
        kind="budget.threshold", subject="s", payload={}, dedup_key="budget:key:1:2026-12:50"
    )
    again = alert_raise(
        kind="budget.threshold",
        subject="s",
        payload={},
        dedup_key="budget:key:1:2026-12:50",
        tenant=tenant,
    )
    assert len(first) == 0  # a tenant's channel hears only of that tenant's events
    assert len(again) == 1
    assert (
        alert_raise(
            kind="budget.threshold",
            subject="s",
            payload={},
            dedup_key="budget:key:1:2026-12:50",
            tenant=tenant,
        )
        == []
    )
    assert len(receiver) == 1
    assert AlertDelivery.objects.count() == 1


def test_it_sends_only_the_kinds_a_channel_subscribed_to(tenant, receiver):
    webhook(tenant, receiver, events=["provider.degraded"])
    assert (
        alert_raise(kind="budget.threshold", subject="s", payload={}, dedup_key="a", tenant=tenant)
        == []
    )
    assert (
        len(
            alert_raise(
                kind="provider.degraded", subject="s", payload={}, dedup_key="b", tenant=tenant
            )
        )
        == 1
    )
    assert [b["event"] for b in receiver.bodies()] == ["provider.degraded"]


def test_it_does_not_send_to_a_switched_off_channel(tenant, receiver):
    webhook(tenant, receiver, enabled=False)
    assert (
        alert_raise(kind="budget.threshold", subject="s", payload={}, dedup_key="a", tenant=tenant)
        == []
    )
    assert len(receiver) == 0
