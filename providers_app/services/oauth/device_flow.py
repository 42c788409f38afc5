"""The device authorization grant (RFC 8628): ask for a user code, then poll.

Polls are paced by the flow's interval across processes (the last poll time
sits in Django's cache), so a console that refreshes often never makes aipk
poll faster than the server allows.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import transaction

from aipk_site.infra.audit import audit_record
from providers_app.kit import oauth as wire
from providers_app.kit.oauth import OAuthError
from providers_app.models import OAuthFlow, Provider

from . import clock
from .config import oauth_defaults, oauth_endpoints, require
from .store import claim, credential_store, flow_record_failure, user_or_none
from .transport import post

DEVICE_STATUSES = ("pending", "slow_down", "success", "expired", "denied")


async def device_start(*, provider: Provider, actor: Any = None) -> OAuthFlow:
    """Ask for a device code; the flow holds the user code and verification URL to show."""
    endpoints = oauth_endpoints(provider)
    client_id = require(endpoints.client_id, "oauth_client_id", "an OAuth client id")
    require(endpoints.token_url, "oauth_token_url", "a token URL")
    pkce = wire.new_pkce_pair()
    url, form = wire.device_authorization_request(
        require(endpoints.device_url, "oauth_device_url", "a device authorization URL"),
        client_id,
        endpoints.scopes,
        pkce,
    )
    if endpoints.client_secret:
        form["client_secret"] = endpoints.client_secret
    status, body = await post(url, provider=provider.name, form=form)
    if status != 200:
        raise wire.oauth_error_from_response(status, body, provider=provider.name)
    device = wire.parse_device_authorization(
        body,
        now=time.time(),
        default_interval=oauth_defaults(provider).device_poll_interval
        or wire.DEFAULT_DEVICE_POLL_INTERVAL,
    )

    @transaction.atomic
    def store() -> OAuthFlow:
        flow = OAuthFlow.objects.create(
            provider=provider,
            kind=OAuthFlow.Kind.DEVICE_CODE,
            state=secrets.token_urlsafe(32),
            code_verifier=pkce.verifier,
            device_code=device.device_code,
            user_code=device.user_code[:64],
            verification_uri=(device.verification_uri_complete or device.verification_uri)[:200],
            poll_interval=device.interval,
            created_by=user_or_none(actor),
            expires_at=clock.from_unix(device.expires_at),
        )
        audit_record(
            action="oauth_flow.start",
            obj=flow,
            actor=actor,
            changes={"provider": provider.name, "flow": flow.kind, "user_code": flow.user_code},
        )
        return flow

    return await sync_to_async(store)()


def _device_poll_key(flow: OAuthFlow) -> str:
    # keyed by the random state, not the row id: ids can be reused after a flush
    return f"aipk:oauth:device-poll:{flow.state}"


def _finished_status(flow: OAuthFlow) -> str:
    if flow.oauth_credential_id:
        return "success"
    return "denied" if flow.error == "access_denied" else "expired"


async def device_poll(*, flow: OAuthFlow) -> str:
    """Poll the token endpoint once, if the interval allows: one of DEVICE_STATUSES.

    Called before the interval since the last poll has passed, it answers
    ``pending`` without asking the server. ``slow_down`` raises the flow's
    interval by 5 s (RFC 8628 §3.5). Other OAuth errors end the flow and raise.
    """
    flow = await OAuthFlow.objects.select_related("provider", "created_by").aget(pk=flow.pk)
    if flow.kind != OAuthFlow.Kind.DEVICE_CODE:
        raise ValueError("device_poll needs a device-code flow")
    if flow.used_at is not None:
        return _finished_status(flow)
    now = clock.now()
    if flow.expires_at <= now:
        if await claim(flow):
            await sync_to_async(flow_record_failure)(flow=flow, error="expired_token")
        return "expired"
    key = _device_poll_key(flow)
    last = await cache.aget(key)
    if last is not None and now.timestamp() < last + flow.poll_interval:
        return "pending"
    await cache.aset(key, now.timestamp(), timeout=int(flow.poll_interval) + 3600)

    endpoints = oauth_endpoints(flow.provider)
    url, form = wire.device_token_request(
        endpoints.token_url, endpoints.client_id, flow.device_code, flow.code_verifier
    )
    if endpoints.client_secret:
        form["client_secret"] = endpoints.client_secret
    status, body = await post(url, provider=flow.provider.name, form=form)
    try:
        result = wire.classify_device_poll(
            status,
            body if isinstance(body, dict) else {},
            now=time.time(),
            interval=flow.poll_interval,
        )
    except OAuthError as exc:
        if exc.retryable:
            raise
        if await claim(flow):
            await sync_to_async(flow_record_failure)(flow=flow, error=exc.error)
        raise
    if result.status == "pending":
        return "pending"
    if result.status == "slow_down":
        flow.poll_interval = result.interval or flow.poll_interval + wire.SLOW_DOWN_STEP
        await OAuthFlow.objects.filter(pk=flow.pk).aupdate(poll_interval=flow.poll_interval)
        return "slow_down"
    if not await claim(flow):  # another poller finished it first
        return _finished_status(await OAuthFlow.objects.aget(pk=flow.pk))
    if result.status in ("expired", "denied"):
        error = "expired_token" if result.status == "expired" else "access_denied"
        await sync_to_async(flow_record_failure)(flow=flow, error=error)
        return result.status
    assert result.tokens is not None
    await sync_to_async(credential_store)(flow=flow, tokens=result.tokens)
    return "success"
