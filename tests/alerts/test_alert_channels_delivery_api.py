"""The test-send action and the deliveries list over the API, against a real receiver."""

from __future__ import annotations

import pytest

from tenants_app.services.alerts import alert_channel_create, alert_raise

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/api/tenants/acme/alert-channels"


def test_it_test_sends_and_lists_the_channels_deliveries(client_as, owner, tenant, receiver):
    channel, _ = alert_channel_create(
        tenant=tenant, name="ops", kind="webhook", target=receiver.url
    )

    reply = client_as(owner).post(f"{BASE}/{channel.pk}/test")

    assert reply.status_code == 202, reply.content
    assert reply.json()["status"] == "sent" and reply.json()["attempts"] == 1
    assert [b["event"] for b in receiver.bodies()] == ["test"]
    listed = client_as(owner).get(f"{BASE}/{channel.pk}/deliveries")
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert item["kind"] == "test" and item["response_status"] == 200


def test_it_lists_a_tenants_own_deliveries_and_staff_the_global_ones(
    client_as, owner, outsider, staff, tenant, other_tenant, receiver
):
    acme, _ = alert_channel_create(tenant=tenant, name="a", kind="slack", target=receiver.url)
    globex, _ = alert_channel_create(
        tenant=other_tenant, name="g", kind="slack", target=receiver.url
    )
    org, _ = alert_channel_create(tenant=None, name="org", kind="slack", target=receiver.url)

    alert_raise(
        kind="budget.threshold", subject="acme at 50%", payload={}, dedup_key="x", tenant=tenant
    )

    # Acme's channel and the organisation's heard of it; Globex's did not
    assert sorted(b["text"] for b in receiver.bodies()) == ["[aipk] acme at 50%"] * 2
    acme_items = client_as(owner).get(f"{BASE}/{acme.pk}/deliveries").json()["items"]
    assert [i["subject"] for i in acme_items] == ["acme at 50%"]
    globex_items = (
        client_as(outsider)
        .get(f"/api/tenants/globex/alert-channels/{globex.pk}/deliveries")
        .json()["items"]
    )
    assert globex_items == []
    org_items = client_as(staff).get(f"/api/alert-channels/{org.pk}/deliveries").json()["items"]
    assert [i["subject"] for i in org_items] == ["acme at 50%"]
    assert client_as(owner).get(f"/api/alert-channels/{org.pk}/deliveries").status_code == 403
