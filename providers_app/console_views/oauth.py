"""The console's OAuth account actions: connect (browser flow), the device flow's page
and polls, refresh now, disconnect. Which flows a provider offers comes from its profile
(``oauth_options``)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import aget_object_or_404, get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from aipk_site.infra.access import staff_required
from aipk_site.infra.client_ip import client_ip
from providers_app.kit.oauth import OAuthError
from providers_app.models import OAuthCredential, OAuthFlow, Provider
from providers_app.services.oauth import (
    OAuthConfigError,
    device_poll,
    device_start,
    oauth_credential_disconnect,
    oauth_credential_refresh_now,
    oauth_start,
)

from .common import DEVICE_WAITING, arender, back, credentials_url


@staff_required
@require_POST
def oauth_connect(request: HttpRequest, provider_pk: int) -> HttpResponse:
    """Authorization code + PKCE: off to the provider, back at /oauth/callback/<name>/."""
    provider = get_object_or_404(Provider, pk=provider_pk)
    redirect_uri = request.build_absolute_uri(reverse("oauth-callback", args=[provider.name]))
    try:
        url = oauth_start(provider=provider, redirect_uri=redirect_uri, actor=request.user)
    except OAuthConfigError as exc:
        messages.error(request, f"{provider.name} cannot start an OAuth connection: {exc}")
        return back(request, credentials_url())
    return HttpResponseRedirect(url)


@staff_required
@require_POST
async def oauth_device_start(request: HttpRequest, provider_pk: int) -> HttpResponse:
    provider = await aget_object_or_404(Provider, pk=provider_pk)
    try:
        flow = await device_start(provider=provider, actor=request.user)
    except OAuthConfigError as exc:
        messages.error(request, f"{provider.name} cannot start a device code: {exc}")
        return back(request, credentials_url())
    except OAuthError as exc:
        messages.error(
            request, f"{provider.name}'s authorisation server refused a device code ({exc.error})."
        )
        return back(request, credentials_url())
    return redirect("console:oauth_device", flow_pk=flow.pk)


async def _device_context(flow: OAuthFlow) -> dict[str, Any]:
    """Poll once (the service keeps to the interval) and describe where the flow stands."""
    error = ""
    try:
        status = await device_poll(flow=flow)
    except OAuthError as exc:
        # a retryable error leaves the flow pending: keep polling; others end it
        status = "pending" if exc.retryable else "error"
        error = exc.error
    flow = await OAuthFlow.objects.select_related("provider", "oauth_credential").aget(pk=flow.pk)
    return {
        "flow": flow,
        "status": status,
        "error": error,
        "polling": status in DEVICE_WAITING,
        "credential": flow.oauth_credential,
    }


async def _device_flow(pk: int) -> OAuthFlow:
    return await aget_object_or_404(
        OAuthFlow.objects.select_related("provider"), pk=pk, kind=OAuthFlow.Kind.DEVICE_CODE
    )


@staff_required
async def oauth_device(request: HttpRequest, flow_pk: int) -> HttpResponse:
    """The device-code page: the user code, the verification link, and a status that polls."""
    context = await _device_context(await _device_flow(flow_pk))
    context["nav_section"] = "credentials"
    return await arender(request, "console/credentials/device.html", context)


@staff_required
@require_POST
async def oauth_device_poll(request: HttpRequest, flow_pk: int) -> HttpResponse:
    context = await _device_context(await _device_flow(flow_pk))
    return await arender(request, "console/credentials/_device_status.html", context)


@staff_required
@require_POST
async def oauth_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    credential = await aget_object_or_404(OAuthCredential, pk=pk)
    try:
        credential = await oauth_credential_refresh_now(
            credential_id=credential.pk, actor=request.user, ip_address=client_ip(request)
        )
    except OAuthError as exc:
        messages.error(
            request, f"Refreshing {credential.account_label} failed ({exc.error}); see its state."
        )
    else:
        expires = (
            timezone.localtime(credential.expires_at).strftime("%Y-%m-%d %H:%M %Z")
            if credential.expires_at
            else "no expiry"
        )
        messages.success(
            request, f"{credential.account_label} refreshed (…{credential.last4}, {expires})."
        )
    return back(request, credentials_url())


@staff_required
@require_POST
def oauth_disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    credential = get_object_or_404(OAuthCredential.objects.select_related("provider"), pk=pk)
    if credential.state == OAuthCredential.State.REVOKED:
        messages.info(request, f"{credential.account_label} is already disconnected.")
        return back(request, credentials_url())
    oauth_credential_disconnect(
        credential=credential, actor=request.user, ip_address=client_ip(request)
    )
    messages.success(
        request, f"{credential.account_label} ({credential.provider.name}) disconnected."
    )
    return back(request, credentials_url())
