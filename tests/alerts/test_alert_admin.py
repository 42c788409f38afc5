"""The admin adds alert channels through the service: the webhook's signing secret is
shown once in a message, the target never whole."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tenants_app.models import AlertChannel, AuditEvent

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.com/aipk/KNOWN-token-abcd"


def test_it_adds_a_webhook_channel_and_shows_its_secret_once(client, staff, tenant):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)

    added = client.post(
        reverse("admin:tenants_app_alertchannel_add"),
        {
            "tenant": tenant.pk,
            "name": "ops",
            "kind": "webhook",
            "target": HOOK,
            "events": '["budget.threshold"]',
            "enabled": "on",
        },
        follow=True,
    )

    assert added.status_code == 200
    channel = AlertChannel.objects.get()
    assert channel.events == ["budget.threshold"] and channel.target == HOOK
    page = added.content.decode()
    assert channel.signing_secret in page  # the one message that shows it
    assert AuditEvent.objects.filter(action="alert_channel.create", tenant=tenant).exists()
    change = client.get(reverse("admin:tenants_app_alertchannel_change", args=[channel.pk]))
    html = change.content.decode()
    assert channel.signing_secret not in html and "KNOWN-token" not in html
    assert "https://hooks.example.com/…abcd" in html


def test_it_refuses_a_bad_target_in_the_form(client, staff):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    reply = client.post(
        reverse("admin:tenants_app_alertchannel_add"),
        {"name": "ops", "kind": "slack", "target": "ftp://nope", "events": "[]"},
    )
    assert reply.status_code == 200
    assert "target must be an http or https URL" in reply.content.decode()
    assert not AlertChannel.objects.exists()
