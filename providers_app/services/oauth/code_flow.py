"""The browser flows: authorization code + PKCE, and OpenRouter's key exchange.

A flow is an OAuthFlow row with a single-use ``state`` and a ten-minute expiry
(OAUTH_FLOW_TTL_SECONDS); the callback claims it atomically, so a replayed or
raced callback stores nothing. The wire formats live in
``providers_app.kit.oauth`` (authlib for PKCE and the authorize URL).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from authlib.common.urls import add_params_to_uri
from django.db import transaction

from aipk_site.infra.audit import audit_record
from providers_app.kit import oauth as wire
from providers_app.kit.oauth import OAuthError
from providers_app.kit.providers import PROFILES
from providers_app.models import ApiKey, OAuthCredential, OAuthFlow, Provider
from providers_app.services.credentials import api_key_add

from . import clock
from .config import (
    OAuthCallbackError,
    OAuthConfigError,
    oauth_defaults,
    oauth_endpoints,
    require,
    setting,
)
from .store import claim, credential_store, flow_record_failure, user_or_none
from .transport import post, token_reply


@transaction.atomic
def oauth_start(*, provider: Provider, redirect_uri: str, actor: Any = None) -> str:
    """Begin an authorisation: store a single-use state + PKCE verifier, return the authorize URL.

    ``redirect_uri`` is this server's ``/oauth/callback/<provider>/`` URL as the
    provider knows it. A profile whose code flow is OpenRouter's PKCE variant
    gets that (the state rides in the callback URL, since OpenRouter returns
    only ``code``).
    """
    if not redirect_uri.startswith(("http://", "https://")):
        raise OAuthConfigError("redirect_uri", "must be an absolute http(s) URL")
    flows = oauth_defaults(provider)
    if flows.code_flow is None:
        label = PROFILES[provider.type].label
        raise OAuthConfigError("type", f"{label} uses the device flow (device_start)")
    endpoints = oauth_endpoints(provider)
    pkce = wire.new_pkce_pair()
    state = secrets.token_urlsafe(32)
    if flows.code_flow == "openrouter_pkce":
        kind = OAuthFlow.Kind.OPENROUTER_PKCE
        redirect_uri = add_params_to_uri(redirect_uri, [("state", state)])
        url = wire.openrouter_authorization_url(
            require(endpoints.authorize_url, "oauth_authorize_url", "an authorize URL"),
            redirect_uri,
            pkce,
            key_label=f"aipk {provider.name}",
        )
    else:
        kind = OAuthFlow.Kind.AUTHORIZATION_CODE
        require(endpoints.token_url, "oauth_token_url", "a token URL")
        url = wire.authorization_url(
            require(endpoints.authorize_url, "oauth_authorize_url", "an authorize URL"),
            client_id=require(endpoints.client_id, "oauth_client_id", "an OAuth client id"),
            redirect_uri=redirect_uri,
            scope=endpoints.scopes,
            state=state,
            pkce=pkce,
            extra_params=dict(endpoints.authorize_params),
        )
    flow = OAuthFlow.objects.create(
        provider=provider,
        kind=kind,
        state=state,
        code_verifier=pkce.verifier,
        redirect_uri=redirect_uri,
        created_by=user_or_none(actor),
        expires_at=clock.now() + timedelta(seconds=setting("OAUTH_FLOW_TTL_SECONDS", 600)),
    )
    audit_record(
        action="oauth_flow.start",
        obj=flow,
        actor=actor,
        changes={"provider": provider.name, "flow": kind},
    )
    return url


@dataclass(frozen=True, slots=True)
class OAuthCallbackResult:
    provider_name: str
    kind: str
    credential: OAuthCredential | None = None
    api_key: ApiKey | None = None

    @property
    def label(self) -> str:
        obj = self.credential or self.api_key
        return obj.account_label if self.credential else obj.label  # type: ignore[union-attr]

    @property
    def last4(self) -> str:
        return (self.credential or self.api_key).last4  # type: ignore[union-attr]


async def oauth_callback(*, provider_name: str, params: Mapping[str, str]) -> OAuthCallbackResult:
    """Complete an authorisation from the provider's redirect.

    A missing, unknown, used, expired or other provider's state stores nothing.
    A provider error (e.g. ``access_denied``) uses up the flow and is recorded.
    """
    state = params.get("state") or ""
    if not state:
        raise OAuthCallbackError("missing_state", "The callback has no state parameter.")
    flow = (
        await OAuthFlow.objects.select_related("provider", "created_by")
        .filter(state=state[:128])
        .afirst()
    )
    if flow is None or flow.kind == OAuthFlow.Kind.DEVICE_CODE:
        raise OAuthCallbackError("unknown_state", "This authorisation is unknown. Start again.")
    if flow.provider.name != provider_name:
        raise OAuthCallbackError(
            "state_mismatch", "This authorisation was started for another provider. Start again."
        )
    if flow.used_at is not None:
        raise OAuthCallbackError(
            "state_used", "This authorisation link was already used. Start again."
        )
    if flow.expires_at <= clock.now():
        raise OAuthCallbackError("state_expired", "This authorisation has expired. Start again.")

    error = params.get("error")
    if error:
        if not await claim(flow):
            raise OAuthCallbackError(
                "state_used", "This authorisation link was already used. Start again."
            )
        error_code = error if error.replace("_", "").isalnum() else "provider_error"
        await sync_to_async(flow_record_failure)(flow=flow, error=error_code)
        if error_code == "access_denied":
            raise OAuthCallbackError(
                "access_denied", "Access was denied at the provider. Nothing was stored."
            )
        raise OAuthCallbackError(
            "provider_error", f"The provider returned an error ({error_code[:64]})."
        )

    code = params.get("code")
    if not code:
        raise OAuthCallbackError("missing_code", "The callback has no authorization code.")
    if not await claim(flow):
        raise OAuthCallbackError(
            "state_used", "This authorisation link was already used. Start again."
        )

    try:
        if flow.kind == OAuthFlow.Kind.OPENROUTER_PKCE:
            api_key = await _openrouter_exchange(flow, code)
            return OAuthCallbackResult(provider_name, flow.kind, api_key=api_key)
        tokens = await _exchange_code(flow, code)
    except OAuthError as exc:
        await sync_to_async(flow_record_failure)(flow=flow, error=exc.error)
        status = 502 if exc.retryable else 400
        raise OAuthCallbackError(
            "exchange_failed",
            f"The provider refused the code exchange ({exc.error}).",
            status=status,
        ) from None
    credential = await sync_to_async(credential_store)(flow=flow, tokens=tokens)
    return OAuthCallbackResult(provider_name, flow.kind, credential=credential)


async def _exchange_code(flow: OAuthFlow, code: str) -> wire.OAuthTokens:
    endpoints = oauth_endpoints(flow.provider)
    url, form = wire.authorization_code_request(
        endpoints.token_url,
        endpoints.client_id,
        code,
        flow.redirect_uri,
        flow.code_verifier,
        endpoints.client_secret or None,
    )
    status, body = await post(url, provider=flow.provider.name, form=form)
    return token_reply(status, body, provider=flow.provider.name)


async def _openrouter_exchange(flow: OAuthFlow, code: str) -> ApiKey:
    """OpenRouter's variant: the code buys a permanent API key, which joins the key pool."""
    endpoints = oauth_endpoints(flow.provider)
    pkce = wire.PkcePair(verifier=flow.code_verifier, challenge="")
    status, body = await post(
        endpoints.token_url,
        provider=flow.provider.name,
        json_body=wire.openrouter_key_exchange_body(code, pkce),
    )
    key, user_id = wire.parse_openrouter_key_exchange(status, body)
    label = f"OpenRouter OAuth ({user_id})" if user_id else "OpenRouter OAuth"

    @transaction.atomic
    def store() -> ApiKey:
        api_key = api_key_add(
            provider=flow.provider, label=label[:100], secret=key, actor=flow.created_by
        )
        OAuthFlow.objects.filter(pk=flow.pk).update(api_key=api_key)
        return api_key

    return await sync_to_async(store)()
