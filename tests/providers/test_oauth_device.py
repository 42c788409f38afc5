"""Qwen's device authorization grant (RFC 8628) against the simulator over loopback HTTP."""

from __future__ import annotations

import secrets
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from providers_app.kit.oauth import OAuthError
from providers_app.models import OAuthCredential, OAuthFlow
from providers_app.services import oauth
from providers_app.services.oauth import device_poll, device_start
from providers_app.services.providers import adapter_config
from tenants_app.models import AuditEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_thread")]


@pytest.fixture
def clock(monkeypatch):
    """The oauth service's clock, moved forward by hand instead of sleeping through intervals."""

    class Clock:
        now = timezone.now()

        def advance(self, seconds: float) -> None:
            self.now += timedelta(seconds=seconds)

    clock = Clock()
    monkeypatch.setattr(oauth.clock, "now", lambda: clock.now)
    return clock


@pytest.fixture
def qwen_provider(make_provider, simulator):
    async def make(knobs: str):
        client_id = f"sim-qwen-{secrets.token_hex(4)}"
        provider = await sync_to_async(make_provider)(
            "qwen",
            name=f"qwen-{secrets.token_hex(3)}",
            keys=0,
            oauth_client_id=client_id,
            oauth_device_url=simulator.url + "/qwen-oauth/api/v1/oauth2/device/code?" + knobs,
            oauth_token_url=simulator.url + "/qwen-oauth/api/v1/oauth2/token",
        )
        return provider

    return make


def _calls(simulator, client_id: str) -> dict[str, int]:
    return httpx.get(simulator.url + "/_sim/oauth/calls", params={"client_id": client_id}).json()


async def test_it_runs_through_pending_and_slow_down_to_tokens(qwen_provider, simulator, clock):
    provider = await qwen_provider("interval=0&pending_polls=1&slow_down_polls=1")
    flow = await device_start(provider=provider)
    assert flow.kind == OAuthFlow.Kind.DEVICE_CODE
    assert flow.user_code and flow.verification_uri.startswith(
        simulator.url + "/oauth/device?code="
    )
    assert flow.poll_interval == 2.0  # Qwen sends no interval: its client's 2 s
    assert timedelta(minutes=29) < flow.expires_at - timezone.now() <= timedelta(minutes=30)

    assert await device_poll(flow=flow) == "pending"
    # polled again before the interval: answered locally, the server is not asked
    assert await device_poll(flow=flow) == "pending"
    assert (
        _calls(simulator, provider.oauth_client_id)["urn:ietf:params:oauth:grant-type:device_code"]
        == 1
    )

    clock.advance(2)
    assert await device_poll(flow=flow) == "slow_down"
    flow = await OAuthFlow.objects.aget(pk=flow.pk)
    assert flow.poll_interval == 7.0  # +5 s (RFC 8628 §3.5)
    clock.advance(5)
    assert await device_poll(flow=flow) == "pending"  # 5 s is not enough any more
    clock.advance(2)
    assert await device_poll(flow=flow) == "success"

    credential = await OAuthCredential.objects.select_related("provider").aget(provider=provider)
    assert credential.resource_url == simulator.url + "/qwen"
    assert adapter_config(provider, credential).base_url == simulator.url + "/qwen/v1"
    assert credential.refresh_token and credential.state == OAuthCredential.State.ACTIVE
    flow = await OAuthFlow.objects.aget(pk=flow.pk)
    assert flow.used_at is not None and flow.oauth_credential_id == credential.pk
    assert await device_poll(flow=flow) == "success"
    assert await AuditEvent.objects.filter(action="oauth_credential.add").acount() == 1
    # the new account's token works on the simulator's Qwen routes
    async with httpx.AsyncClient() as http:
        reply = await http.get(
            simulator.url + "/qwen/v1/models",
            headers={"Authorization": f"Bearer {credential.access_token}"},
        )
    assert reply.status_code == 200


@pytest.mark.parametrize(
    "outcome, status, error",
    [("deny", "denied", "access_denied"), ("expire", "expired", "expired_token")],
)
async def test_it_ends_a_denied_or_expired_flow(qwen_provider, clock, outcome, status, error):
    provider = await qwen_provider(f"interval=0&pending_polls=0&outcome={outcome}")
    flow = await device_start(provider=provider)
    assert await device_poll(flow=flow) == status
    flow = await OAuthFlow.objects.aget(pk=flow.pk)
    assert flow.used_at is not None and flow.error == error
    assert not await OAuthCredential.objects.filter(provider=provider).aexists()
    clock.advance(10)
    assert await device_poll(flow=flow) == status  # finished flows stay finished
    assert (
        await AuditEvent.objects.filter(action="oauth_flow.failed", object_id=str(flow.pk)).acount()
        == 1
    )


async def test_it_expires_a_flow_past_its_lifetime_without_asking(qwen_provider, simulator, clock):
    provider = await qwen_provider("interval=0")
    flow = await device_start(provider=provider)
    clock.advance(1801)
    assert await device_poll(flow=flow) == "expired"
    assert _calls(simulator, provider.oauth_client_id) == {"device_authorization": 1}


async def test_it_raises_for_an_unknown_client(make_provider, simulator):
    provider = await sync_to_async(make_provider)(
        "qwen",
        name="qwen-confidential",
        keys=0,
        oauth_client_id="confidential-nobody",
        oauth_device_url=simulator.url + "/qwen-oauth/api/v1/oauth2/device/code",
        oauth_token_url=simulator.url + "/qwen-oauth/api/v1/oauth2/token",
    )
    with pytest.raises(OAuthError) as raised:
        await device_start(provider=provider)
    assert raised.value.error == "invalid_client" and raised.value.permanent
    assert not await OAuthFlow.objects.aexists()
