"""Alerts about providers and their credentials, each raised through the real code path:
an OAuth refresh the simulator's server refuses (re-authorisation needed), a circuit
breaker tripped and recovered by real /v1 requests, a key rotation whose grace period
ends. A tenant hears only of credentials it owns; the organisation's channels hear of
everything."""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from providers_app.models import ApiKey, OAuthCredential
from providers_app.services.chat import resilience_for
from providers_app.services.credentials import api_key_add, api_key_rotate
from providers_app.services.oauth import oauth_callback, oauth_start
from providers_app.services.providers import provider_create, provider_update
from providers_app.tasks.monitoring import run_health_checks, watch_provider_status
from providers_app.tasks.oauth import refresh_expiring_tokens
from tenants_app.models import AlertDelivery
from tenants_app.services.alerts import alert_channel_create
from tenants_app.tasks import alert_rotation_grace

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def channels(tenant, other_tenant, receiver):
    """A webhook for Acme, one for Globex and one for the organisation, all on the
    receiver; ``heard()`` says which of them got which events."""
    made = {
        "acme": alert_channel_create(tenant=tenant, name="a", kind="webhook", target=receiver.url),
        "globex": alert_channel_create(
            tenant=other_tenant, name="g", kind="webhook", target=receiver.url
        ),
        "org": alert_channel_create(tenant=None, name="o", kind="webhook", target=receiver.url),
    }
    names = {channel.pk: name for name, (channel, _) in made.items()}

    def heard() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {name: [] for name in made}
        for delivery in AlertDelivery.objects.order_by("id"):
            assert delivery.status == "sent"
            out[names[delivery.channel_id]].append(delivery.kind)
        return out

    return heard


def connect_oauth(simulator, name: str) -> OAuthCredential:
    provider = provider_create(
        name=name,
        type="openai",
        base_url=simulator.url + "/openai/v1",
        oauth_client_id=f"sim-{name}",
        oauth_authorize_url=simulator.url + "/oauth/authorize",
        oauth_token_url=simulator.url + "/oauth/token",
    )
    url = oauth_start(provider=provider, redirect_uri=f"http://testserver/oauth/callback/{name}/")
    location = httpx.get(url, follow_redirects=False).headers["location"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    result = async_to_sync(oauth_callback)(provider_name=name, params=params)
    return OAuthCredential.objects.select_related("provider").get(pk=result.credential.pk)


def refused_refresh(credential: OAuthCredential) -> None:
    """Make the next refresh one the server refuses: a refresh token it never issued."""
    OAuthCredential.objects.filter(pk=credential.pk).update(
        refresh_token="sim-rt-never-issued", expires_at=timezone.now()
    )


def test_it_alerts_the_owning_tenant_when_its_oauth_credential_needs_reauth(
    simulator, tenant, channels, receiver
):
    credential = connect_oauth(simulator, "acme-openai")
    OAuthCredential.objects.filter(pk=credential.pk).update(tenant=tenant)
    refused_refresh(credential)

    summary = refresh_expiring_tokens()

    assert summary["failed"] == [credential.pk]
    assert OAuthCredential.objects.get(pk=credential.pk).state == "needs_reauth"
    assert channels() == {
        "acme": ["credential.reauth_required"],
        "globex": [],
        "org": ["credential.reauth_required"],
    }
    body = receiver.bodies()[0]
    assert body["data"]["credential"] == f"oauth:{credential.pk}"
    assert body["data"]["error"].startswith("invalid_grant")
    assert credential.access_token not in str(receiver.bodies())
    assert credential.refresh_token not in str(receiver.bodies())
    # still broken on the next run: no second alert for the same state
    refresh_expiring_tokens()
    assert len(receiver) == 2


def test_it_tells_only_the_organisation_of_a_shared_credential(simulator, channels):
    credential = connect_oauth(simulator, "shared-openai")
    refused_refresh(credential)

    refresh_expiring_tokens()

    assert channels() == {"acme": [], "globex": [], "org": ["credential.reauth_required"]}


def fail(gateway_server, secret: str) -> int:
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        # the simulator answers 500 to a model id naming the failure
        json={
            "model": "openai/gpt-4o-fail-server",
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    ).status_code


def test_it_alerts_when_the_breaker_trips_and_again_when_it_recovers(
    world,
    gateway_server,
    settings,
    receiver,
    other_tenant,
):
    settings.PROVIDER_BREAKER_FAILURES = 2
    settings.PROVIDER_BREAKER_RESET_SECONDS = 0.5
    provider = world.providers["openai"]
    # Acme holds a key of its own on this provider; Globex holds nothing there
    ApiKey.objects.create(
        provider=provider,
        tenant=world.tenant,
        label="acme's",
        secret="sk-sim-acme-0001",
        last4="0001",
    )
    alert_channel_create(tenant=world.tenant, name="a", kind="webhook", target=receiver.url)
    alert_channel_create(tenant=other_tenant, name="g", kind="webhook", target=receiver.url)
    alert_channel_create(tenant=None, name="o", kind="slack", target=receiver.url)
    breaker = resilience_for(provider).breaker
    assert watch_provider_status()["openai"] == "ok"  # first sight, healthy: no news

    for _ in range(5):
        if async_to_sync(breaker.state)() == "open":
            break
        assert fail(gateway_server, world.secret) >= 500
    assert async_to_sync(breaker.state)() == "open"
    assert watch_provider_status()["openai"] == "degraded"
    assert watch_provider_status()["openai"] == "degraded"  # still: not news again

    time.sleep(0.6)  # half-open: still degraded until a probe gets through
    assert watch_provider_status()["openai"] == "degraded"
    ok = httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    )
    assert ok.status_code == 200
    assert async_to_sync(breaker.state)() == "closed"
    assert watch_provider_status()["openai"] == "ok"

    kinds = [
        (d.channel.name, d.kind)
        for d in AlertDelivery.objects.select_related("channel").order_by("id")
    ]
    assert sorted(kinds) == sorted(
        [
            ("a", "provider.degraded"),
            ("o", "provider.degraded"),
            ("a", "provider.recovered"),
            ("o", "provider.recovered"),
        ]
    )
    slack = [b["text"] for b in receiver.bodies() if "text" in b]
    assert slack[0].startswith("[aipk] provider openai is degraded: circuit breaker open")
    assert slack[1].startswith("[aipk] provider openai is recovered")


def test_it_warns_once_before_a_rotated_keys_grace_period_ends(
    simulator, tenant, channels, receiver, settings
):
    settings.ALERT_GRACE_WARNING_HOURS = 24
    provider = provider_create(
        name="rotating", type="openai", base_url=simulator.url + "/openai/v1"
    )
    shared = api_key_add(provider=provider, label="shared", secret="sk-sim-openai-old-1111")
    owned = api_key_add(provider=provider, label="acme's", secret="sk-sim-openai-old-2222")
    ApiKey.objects.filter(pk=owned.pk).update(tenant=tenant)
    owned.refresh_from_db()
    api_key_rotate(key=shared, new_secret="sk-sim-openai-new-3333", grace_seconds=3600)
    api_key_rotate(key=owned, new_secret="sk-sim-openai-new-4444", grace_seconds=3 * 24 * 3600)

    assert alert_rotation_grace() == 1  # the shared key retires within a day
    assert channels() == {"acme": [], "globex": [], "org": ["key_rotation.grace_ending"]}
    assert alert_rotation_grace() == 0  # once per rotation

    ApiKey.objects.filter(pk=owned.pk).update(retire_at=timezone.now() + dt.timedelta(hours=2))
    assert alert_rotation_grace() == 1
    assert channels() == {
        "acme": ["key_rotation.grace_ending"],
        "globex": [],
        "org": ["key_rotation.grace_ending", "key_rotation.grace_ending"],
    }
    assert "sk-sim-openai" not in str(receiver.bodies())
    assert receiver.bodies()[-1]["data"]["last4"] == "2222"


def test_it_alerts_when_a_health_check_run_finds_a_provider_down_and_back(
    simulator, tenant, channels, receiver
):
    provider = provider_create(name="flaky", type="openai", base_url="http://127.0.0.1:9/v1")
    api_key_add(provider=provider, label="k", secret="sk-sim-openai-key-0001")

    run_health_checks()  # nothing listens on port 9: the provider-level check fails

    assert channels() == {"acme": [], "globex": [], "org": ["provider.degraded"]}
    assert receiver.bodies()[0]["data"] == {
        "provider": "flaky",
        "state": "degraded",
        "reason": "latest health check failed",
    }
    run_health_checks()  # still down: not news
    assert len(receiver) == 1

    provider_update(provider=provider, base_url=simulator.url + "/openai/v1")
    run_health_checks()

    assert channels()["org"] == ["provider.degraded", "provider.recovered"]
