"""/api/tenants/{slug}/alert-channels (owners and admins) and /api/alert-channels (staff):
who may do what, the signing secret shown once, targets never shown whole, bad input
named, and one tenant's channels invisible to everyone else."""

from __future__ import annotations

import pytest

from tenants_app.models import AlertChannel, AuditEvent
from tenants_app.services.alerts import alert_channel_create

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.com/services/T000/B000/XyZSecretPath"
BASE = "/api/tenants/acme/alert-channels"


def hook_body(**extra):
    return {"name": "ops", "kind": "webhook", "target": HOOK, **extra}


def test_it_creates_a_webhook_channel_and_shows_its_secret_once(client_as, owner, send):
    created = send(client_as(owner), "POST", BASE, hook_body(events=["budget.threshold"]))

    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["signing_secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    channel = body["channel"]
    assert channel["signing_secret_last4"] == secret[-4:]
    assert channel["target_display"] == "https://hooks.example.com/…Path"
    assert channel["events"] == ["budget.threshold"] and channel["tenant"] == "acme"
    listed = client_as(owner).get(BASE)
    one = client_as(owner).get(f"{BASE}/{channel['id']}")
    for reply in (listed, one):
        assert reply.status_code == 200
        assert (
            secret not in reply.content.decode() and "XyZSecretPath" not in reply.content.decode()
        )
    event = AuditEvent.objects.get(action="alert_channel.create")
    assert event.tenant.slug == "acme" and "XyZSecretPath" not in str(event.changes)
    stored = AlertChannel.objects.get(pk=channel["id"])
    assert stored.signing_secret == secret and stored.target == HOOK


@pytest.mark.parametrize("who", ["owner", "tenant_admin"])
def test_it_lets_owners_and_admins_manage_channels(request, client_as, send, who):
    client = client_as(request.getfixturevalue(who))
    channel_id = send(client, "POST", BASE, hook_body())
    channel_id = channel_id.json()["channel"]["id"]

    changed = send(client, "PATCH", f"{BASE}/{channel_id}", {"enabled": False, "name": "pager"})
    assert changed.status_code == 200
    assert (changed.json()["enabled"], changed.json()["name"]) == (False, "pager")
    assert client.delete(f"{BASE}/{channel_id}").status_code == 204
    assert not AlertChannel.objects.exists()


@pytest.mark.parametrize("who", ["teammate", "viewer"])
def test_it_refuses_members_and_viewers(request, client_as, send, tenant, who):
    channel, _ = alert_channel_create(tenant=tenant, name="ops", kind="webhook", target=HOOK)
    client = client_as(request.getfixturevalue(who))

    for reply in (
        client.get(BASE),
        client.get(f"{BASE}/{channel.pk}"),
        client.get(f"{BASE}/{channel.pk}/deliveries"),
        send(client, "POST", BASE, hook_body()),
        send(client, "PATCH", f"{BASE}/{channel.pk}", {"enabled": False}),
        client.delete(f"{BASE}/{channel.pk}"),
        client.post(f"{BASE}/{channel.pk}/test"),
    ):
        assert reply.status_code == 403
        assert reply.json()["error"]["message"] == "this needs the admin role in the tenant"
    assert AlertChannel.objects.get().enabled


def test_it_hides_a_tenants_channels_from_outsiders_and_other_tenants(
    client_as, send, tenant, outsider, other_tenant
):
    channel, _ = alert_channel_create(tenant=tenant, name="ops", kind="webhook", target=HOOK)
    client = client_as(outsider)  # owner of Globex, nothing in Acme

    assert client.get(BASE).status_code == 404
    assert client.get(f"{BASE}/{channel.pk}").status_code == 404
    # through their own tenant, Acme's channel id is not theirs either
    own = "/api/tenants/globex/alert-channels"
    assert client.get(own).json() == []
    for reply in (
        client.get(f"{own}/{channel.pk}"),
        client.get(f"{own}/{channel.pk}/deliveries"),
        send(client, "PATCH", f"{own}/{channel.pk}", {"enabled": False}),
        client.delete(f"{own}/{channel.pk}"),
        client.post(f"{own}/{channel.pk}/test"),
    ):
        assert reply.status_code == 404
    assert AlertChannel.objects.get().enabled


def test_it_keeps_global_channels_to_staff(client_as, send, staff, owner, tenant):
    made = send(client_as(staff), "POST", "/api/alert-channels", hook_body(kind="slack"))
    assert made.status_code == 201 and made.json()["signing_secret"] is None
    channel_id = made.json()["channel"]["id"]
    assert made.json()["channel"]["tenant"] is None
    owner_client = client_as(owner)

    assert owner_client.get("/api/alert-channels").status_code == 403
    assert owner_client.get(f"/api/alert-channels/{channel_id}").status_code == 403
    assert send(owner_client, "POST", "/api/alert-channels", hook_body()).status_code == 403
    # nor does a global channel show under a tenant
    assert owner_client.get(f"{BASE}/{channel_id}").status_code == 404
    assert [c["id"] for c in client_as(staff).get("/api/alert-channels").json()] == [channel_id]
    # staff manage tenants' channels too (they count as owners everywhere)
    assert send(client_as(staff), "POST", BASE, hook_body()).status_code == 201


def test_it_works_with_an_admin_token(bearer, token_for, owner, send):
    client = bearer(token_for(owner))
    assert send(client, "POST", BASE, hook_body()).status_code == 201


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        (hook_body(kind="pigeon"), "kind", 422),
        (hook_body(target="ftp://example.com/x"), "target", 400),
        (hook_body(target="not a url"), "target", 400),
        (hook_body(kind="email", target="ops@example.com, nope"), "target", 400),
        (hook_body(events=["budget.whatever"]), "events.0", 422),
        (hook_body(name=""), "name", 422),
        (hook_body(surprise=1), "surprise", 422),
    ],
)
def test_it_refuses_bad_input_naming_the_field(client_as, owner, send, body, field, status):
    reply = send(client_as(owner), "POST", BASE, body)
    assert reply.status_code == status, reply.content
    assert reply.json()["error"]["code"] == field
    assert not AlertChannel.objects.exists()


def test_it_refuses_an_empty_target_on_change(client_as, owner, send, tenant):
    channel, _ = alert_channel_create(tenant=tenant, name="m", kind="email", target="a@example.com")
    reply = send(client_as(owner), "PATCH", f"{BASE}/{channel.pk}", {"target": "   "})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "target"


def test_it_shows_email_targets_as_they_are(client_as, owner, send):
    reply = send(
        client_as(owner),
        "POST",
        BASE,
        {"name": "m", "kind": "email", "target": "ops@example.com,cfo@example.com"},
    )
    assert reply.json()["channel"]["target_display"] == "ops@example.com, cfo@example.com"
