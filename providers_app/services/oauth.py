"""OAuth flows: authorization code + PKCE, OpenRouter's key exchange, device grant, refresh.

The wire formats live in ``providers_app.kit.oauth`` (authlib for PKCE and the
authorize URL); this module keeps the state: OAuthFlow rows (single-use
``state``, ten-minute expiry), OAuthCredential rows (tokens Fernet-encrypted),
the audit log, and a refresh lock in Django's cache so that concurrent
refreshes of one credential -- in one process or many -- use its refresh
token exactly once.

HTTP goes through httpx.AsyncClient; ORM access from async code goes through
the async ORM API or ``sync_to_async``. Tokens never appear in logs, audit
records, exceptions or pages: only labels and last four characters.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from asgiref.sync import async_to_sync, sync_to_async
from authlib.common.urls import add_params_to_uri
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from aipk_site.infra.audit import audit_record
from aipk_site.infra.errors import AipkError, InvalidRequest
from aipk_site.infra.metrics import record_refresh
from providers_app.kit import oauth as wire
from providers_app.kit.oauth import OAuthError
from providers_app.models import ApiKey, OAuthCredential, OAuthFlow, Provider, ProviderType
from providers_app.services.credentials import api_key_add

logger = logging.getLogger(__name__)

HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
LOCK_POLL_SECONDS = 0.05


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class OAuthEndpoints:
    """One provider's OAuth client configuration: the admin's values, else the defaults."""

    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    device_url: str
    scopes: str
    authorize_params: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # the client secret stays out of reprs and tracebacks
        return (
            f"OAuthEndpoints(client_id={self.client_id!r}, "
            f"client_secret={'***' if self.client_secret else ''!r}, "
            f"authorize_url={self.authorize_url!r}, token_url={self.token_url!r}, "
            f"device_url={self.device_url!r}, scopes={self.scopes!r})"
        )


# The providers' public endpoints (docs/OAUTH.md). aipk ships no client id: an
# admin registers an OAuth client with the provider and enters its id.
PROVIDER_DEFAULTS: dict[str, dict[str, Any]] = {
    ProviderType.OPENAI: {
        "authorize_url": "https://auth.openai.com/oauth/authorize",
        "token_url": "https://auth.openai.com/oauth/token",
        "scopes": "openid profile email offline_access",
    },
    ProviderType.ANTHROPIC: {
        "authorize_url": "https://claude.ai/oauth/authorize",
        "token_url": "https://console.anthropic.com/v1/oauth/token",
        "scopes": "org:create_api_key user:profile user:inference",
    },
    ProviderType.GEMINI: {
        "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
        "scopes": (
            "https://www.googleapis.com/auth/cloud-platform "
            "https://www.googleapis.com/auth/userinfo.email "
            "https://www.googleapis.com/auth/userinfo.profile"
        ),
        # Google returns a refresh token only for offline access, and again only with consent.
        "authorize_params": (("access_type", "offline"), ("prompt", "consent")),
    },
    ProviderType.QWEN: {
        "device_url": "https://chat.qwen.ai/api/v1/oauth2/device/code",
        "token_url": "https://chat.qwen.ai/api/v1/oauth2/token",
        "scopes": "openid profile email model.completion",
    },
    ProviderType.OPENROUTER: {
        "authorize_url": wire.OPENROUTER_AUTH_URL,
        "token_url": wire.OPENROUTER_KEY_EXCHANGE_URL,
    },
}
# Qwen's device reply carries no interval; its own client polls every 2 s.
DEVICE_DEFAULT_INTERVAL = {ProviderType.QWEN: 2.0}


def oauth_endpoints(provider: Provider) -> OAuthEndpoints:
    defaults = PROVIDER_DEFAULTS.get(provider.type, {})
    token_url = provider.oauth_token_url or defaults.get("token_url", "")
    if (
        provider.type == ProviderType.OPENROUTER
        and not provider.oauth_token_url
        and provider.base_url
    ):
        token_url = provider.base_url.rstrip("/") + "/auth/keys"  # {base}/api/v1 + /auth/keys
    return OAuthEndpoints(
        client_id=provider.oauth_client_id,
        client_secret=provider.oauth_client_secret or "",
        authorize_url=provider.oauth_authorize_url or defaults.get("authorize_url", ""),
        token_url=token_url,
        device_url=provider.oauth_device_url or defaults.get("device_url", ""),
        scopes=provider.oauth_scopes or defaults.get("scopes", ""),
        authorize_params=defaults.get("authorize_params", ()),
    )


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def refresh_buffer() -> timedelta:
    return timedelta(seconds=_setting("OAUTH_REFRESH_BUFFER_SECONDS", 300))


def _now() -> datetime:
    """The clock of this module (tests move it forward to skip polling intervals)."""
    return timezone.now()


def _from_unix(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


# --------------------------------------------------------------------------- errors


class OAuthConfigError(InvalidRequest):
    """The provider's OAuth configuration is incomplete; names the field to fill in."""

    code = "oauth_not_configured"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}", param=field)


class OAuthCallbackError(AipkError):
    """A callback that cannot complete. ``message`` is safe to show; it holds no secret."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message, code=code)
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class OAuthCredentialUnusable(OAuthError):
    """The credential needs re-authorisation (or was revoked); the pool skips it."""

    def __init__(self, credential: OAuthCredential) -> None:
        super().__init__(
            "invalid_grant",
            f"OAuth credential {credential.pk} is {credential.state}; re-authorise it",
            provider=credential.provider.name,
        )


# --------------------------------------------------------------------------- HTTP


async def _post(
    url: str, *, provider: str, form: dict | None = None, json_body: dict | None = None
):
    """POST to an authorisation server; transport failures become a retryable OAuthError."""
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.post(
                url, data=form, json=json_body, headers={"Accept": "application/json"}
            )
    except httpx.HTTPError as exc:
        # The exception text may quote the request; only its type is kept.
        raise OAuthError(
            "temporarily_unavailable",
            f"{type(exc).__name__} talking to the authorisation server",
            provider=provider,
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def _token_reply(
    status: int, body: Any, *, provider: str, previous_refresh_token: str | None = None
):
    if status != 200:
        raise wire.oauth_error_from_response(status, body, provider=provider)
    return wire.parse_token_response(
        body, now=time.time(), previous_refresh_token=previous_refresh_token
    )


# --------------------------------------------------------------------------- storing


def _account_label(tokens: wire.OAuthTokens, provider: Provider) -> str:
    """The account's email from the id_token when there is one (display only, not trusted)."""
    if tokens.id_token and tokens.id_token.count(".") >= 1:
        payload = tokens.id_token.split(".")[1]
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, TypeError):
            claims = {}
        if isinstance(claims, dict):
            for claim in ("email", "preferred_username", "name", "sub"):
                if isinstance(claims.get(claim), str) and claims[claim]:
                    return claims[claim][:200]
    for key in ("email", "account", "user_id"):
        if isinstance(tokens.extra.get(key), str) and tokens.extra[key]:
            return tokens.extra[key][:200]
    return f"{provider.name} OAuth account"


@transaction.atomic
def _credential_store(*, flow: OAuthFlow, tokens: wire.OAuthTokens) -> OAuthCredential:
    provider = flow.provider
    endpoints = oauth_endpoints(provider)
    credential = OAuthCredential.objects.create(
        provider=provider,
        account_label=_account_label(tokens, provider),
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token or "",
        client_id=endpoints.client_id,
        client_secret=endpoints.client_secret,
        scopes=(tokens.scope or endpoints.scopes)[:500],
        expires_at=_from_unix(tokens.expires_at),
        resource_url=(tokens.resource_url or "")[:255],
        last4=tokens.access_token[-4:],
    )
    OAuthFlow.objects.filter(pk=flow.pk).update(oauth_credential=credential)
    audit_record(
        action="oauth_credential.add",
        obj=credential,
        actor=flow.created_by,
        changes={
            "provider": provider.name,
            "flow": flow.kind,
            "account_label": credential.account_label,
            "last4": credential.last4,
            "scopes": credential.scopes,
            "expires_at": credential.expires_at.isoformat() if credential.expires_at else None,
            "has_refresh_token": bool(credential.refresh_token),
        },
    )
    logger.info(
        "oauth credential stored provider=%s credential=%s flow=%s",
        provider.name,
        credential.pk,
        flow.kind,
    )
    return credential


def _flow_record_failure(*, flow: OAuthFlow, error: str) -> None:
    OAuthFlow.objects.filter(pk=flow.pk).update(used_at=flow.used_at or _now(), error=error[:200])
    audit_record(
        action="oauth_flow.failed",
        obj=flow,
        actor=flow.created_by,
        changes={"provider": flow.provider.name, "flow": flow.kind, "error": error[:200]},
    )
    logger.info(
        "oauth flow failed provider=%s flow=%s error=%s", flow.provider.name, flow.pk, error[:200]
    )


async def _claim(flow: OAuthFlow) -> bool:
    """Mark the flow used, atomically: only one callback can win a state."""
    now = _now()
    claimed = await OAuthFlow.objects.filter(pk=flow.pk, used_at__isnull=True).aupdate(used_at=now)
    if claimed:
        flow.used_at = now
    return bool(claimed)


# ------------------------------------------------------------------ authorization code + PKCE


def _require(value: str, field: str, what: str) -> str:
    if not value:
        raise OAuthConfigError(field, f"{what} is required for this OAuth flow")
    return value


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


@transaction.atomic
def oauth_start(*, provider: Provider, redirect_uri: str, actor: Any = None) -> str:
    """Begin an authorisation: store a single-use state + PKCE verifier, return the authorize URL.

    ``redirect_uri`` is this server's ``/oauth/callback/<provider>/`` URL as the
    provider knows it. OpenRouter providers get OpenRouter's PKCE variant (the
    state rides in the callback URL, since OpenRouter returns only ``code``).
    """
    if not redirect_uri.startswith(("http://", "https://")):
        raise OAuthConfigError("redirect_uri", "must be an absolute http(s) URL")
    if provider.type == ProviderType.QWEN:
        raise OAuthConfigError("type", "Qwen uses the device flow (device_start)")
    endpoints = oauth_endpoints(provider)
    pkce = wire.new_pkce_pair()
    state = secrets.token_urlsafe(32)
    if provider.type == ProviderType.OPENROUTER:
        kind = OAuthFlow.Kind.OPENROUTER_PKCE
        redirect_uri = add_params_to_uri(redirect_uri, [("state", state)])
        url = wire.openrouter_authorization_url(
            _require(endpoints.authorize_url, "oauth_authorize_url", "an authorize URL"),
            redirect_uri,
            pkce,
            key_label=f"aipk {provider.name}",
        )
    else:
        kind = OAuthFlow.Kind.AUTHORIZATION_CODE
        _require(endpoints.token_url, "oauth_token_url", "a token URL")
        url = wire.authorization_url(
            _require(endpoints.authorize_url, "oauth_authorize_url", "an authorize URL"),
            client_id=_require(endpoints.client_id, "oauth_client_id", "an OAuth client id"),
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
        created_by=_user(actor),
        expires_at=_now() + timedelta(seconds=_setting("OAUTH_FLOW_TTL_SECONDS", 600)),
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
    if flow.expires_at <= _now():
        raise OAuthCallbackError("state_expired", "This authorisation has expired. Start again.")

    error = params.get("error")
    if error:
        if not await _claim(flow):
            raise OAuthCallbackError(
                "state_used", "This authorisation link was already used. Start again."
            )
        error_code = error if error.replace("_", "").isalnum() else "provider_error"
        await sync_to_async(_flow_record_failure)(flow=flow, error=error_code)
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
    if not await _claim(flow):
        raise OAuthCallbackError(
            "state_used", "This authorisation link was already used. Start again."
        )

    try:
        if flow.kind == OAuthFlow.Kind.OPENROUTER_PKCE:
            api_key = await _openrouter_exchange(flow, code)
            return OAuthCallbackResult(provider_name, flow.kind, api_key=api_key)
        tokens = await _exchange_code(flow, code)
    except OAuthError as exc:
        await sync_to_async(_flow_record_failure)(flow=flow, error=exc.error)
        status = 502 if exc.retryable else 400
        raise OAuthCallbackError(
            "exchange_failed",
            f"The provider refused the code exchange ({exc.error}).",
            status=status,
        ) from None
    credential = await sync_to_async(_credential_store)(flow=flow, tokens=tokens)
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
    status, body = await _post(url, provider=flow.provider.name, form=form)
    return _token_reply(status, body, provider=flow.provider.name)


async def _openrouter_exchange(flow: OAuthFlow, code: str) -> ApiKey:
    """OpenRouter's variant: the code buys a permanent API key, which joins the key pool."""
    endpoints = oauth_endpoints(flow.provider)
    pkce = wire.PkcePair(verifier=flow.code_verifier, challenge="")
    status, body = await _post(
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


# ------------------------------------------------------------------ device grant (RFC 8628)

DEVICE_STATUSES = ("pending", "slow_down", "success", "expired", "denied")


async def device_start(*, provider: Provider, actor: Any = None) -> OAuthFlow:
    """Ask for a device code; the flow holds the user code and verification URL to show."""
    endpoints = oauth_endpoints(provider)
    client_id = _require(endpoints.client_id, "oauth_client_id", "an OAuth client id")
    _require(endpoints.token_url, "oauth_token_url", "a token URL")
    pkce = wire.new_pkce_pair()
    url, form = wire.device_authorization_request(
        _require(endpoints.device_url, "oauth_device_url", "a device authorization URL"),
        client_id,
        endpoints.scopes,
        pkce,
    )
    if endpoints.client_secret:
        form["client_secret"] = endpoints.client_secret
    status, body = await _post(url, provider=provider.name, form=form)
    if status != 200:
        raise wire.oauth_error_from_response(status, body, provider=provider.name)
    device = wire.parse_device_authorization(
        body,
        now=time.time(),
        default_interval=DEVICE_DEFAULT_INTERVAL.get(
            provider.type, wire.DEFAULT_DEVICE_POLL_INTERVAL
        ),
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
            created_by=_user(actor),
            expires_at=_from_unix(device.expires_at),
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
    now = _now()
    if flow.expires_at <= now:
        if await _claim(flow):
            await sync_to_async(_flow_record_failure)(flow=flow, error="expired_token")
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
    status, body = await _post(url, provider=flow.provider.name, form=form)
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
        if await _claim(flow):
            await sync_to_async(_flow_record_failure)(flow=flow, error=exc.error)
        raise
    if result.status == "pending":
        return "pending"
    if result.status == "slow_down":
        flow.poll_interval = result.interval or flow.poll_interval + wire.SLOW_DOWN_STEP
        await OAuthFlow.objects.filter(pk=flow.pk).aupdate(poll_interval=flow.poll_interval)
        return "slow_down"
    if not await _claim(flow):  # another poller finished it first
        return _finished_status(await OAuthFlow.objects.aget(pk=flow.pk))
    if result.status in ("expired", "denied"):
        error = "expired_token" if result.status == "expired" else "access_denied"
        await sync_to_async(_flow_record_failure)(flow=flow, error=error)
        return result.status
    assert result.tokens is not None
    await sync_to_async(_credential_store)(flow=flow, tokens=result.tokens)
    return "success"


# --------------------------------------------------------------------------- refresh


def _refresh_lock_key(credential_id: int) -> str:
    return f"aipk:oauth:refresh-lock:{credential_id}"


async def _load_credential(credential_id: int) -> OAuthCredential:
    return await OAuthCredential.objects.select_related("provider").aget(pk=credential_id)


def _usable(credential: OAuthCredential) -> OAuthCredential:
    if credential.state != OAuthCredential.State.ACTIVE:
        raise OAuthCredentialUnusable(credential)
    return credential


def _expiring(credential: OAuthCredential) -> bool:
    return credential.expires_at is not None and credential.expires_at - refresh_buffer() <= _now()


async def ensure_fresh_token(credential_id: int, *, force: bool = False) -> OAuthCredential:
    """The credential with an access token that is not about to expire.

    A token expiring within OAUTH_REFRESH_BUFFER_SECONDS (or any token, with
    ``force``) is refreshed. Concurrent callers -- coroutines, threads or other
    processes sharing the cache -- coalesce: ``cache.add`` is the lock, one
    holder refreshes, the others wait (bounded) for the new token in the
    database. Raises OAuthError when the credential cannot be refreshed
    (``permanent`` when it needs re-authorisation), so the pool can move on.
    """
    credential = _usable(await _load_credential(credential_id))
    if not force and not _expiring(credential):
        return credential
    seen_token = credential.access_token

    def done(current: OAuthCredential) -> bool:
        # Someone else's refresh counts as ours: the token changed since we looked.
        return current.access_token != seen_token or (not force and not _expiring(current))

    lock_key = _refresh_lock_key(credential_id)
    lock_seconds = _setting("OAUTH_REFRESH_LOCK_SECONDS", 30)
    deadline = time.monotonic() + _setting("OAUTH_REFRESH_WAIT_SECONDS", 20)
    while True:
        owner = secrets.token_hex(8)
        if await cache.aadd(lock_key, owner, timeout=lock_seconds):
            try:
                current = _usable(await _load_credential(credential_id))
                if done(current):
                    return current
                return await _refresh(current)
            finally:
                if await cache.aget(lock_key) == owner:
                    await cache.adelete(lock_key)
        await asyncio.sleep(LOCK_POLL_SECONDS)
        current = _usable(await _load_credential(credential_id))
        if done(current):
            return current
        if time.monotonic() > deadline:
            raise OAuthError(
                "temporarily_unavailable",
                f"timed out waiting for another refresh of OAuth credential {credential_id}",
                provider=credential.provider.name,
            )


async def _refresh(credential: OAuthCredential) -> OAuthCredential:
    provider = credential.provider
    endpoints = oauth_endpoints(provider)
    try:
        if not credential.refresh_token:
            raise OAuthError("invalid_grant", "no refresh token stored", provider=provider.name)
        url, form = wire.refresh_token_request(
            _require(endpoints.token_url, "oauth_token_url", "a token URL"),
            credential.client_id or endpoints.client_id,
            credential.refresh_token,
            credential.client_secret or endpoints.client_secret or None,
        )
        status, body = await _post(url, provider=provider.name, form=form)
        tokens = _token_reply(
            status, body, provider=provider.name, previous_refresh_token=credential.refresh_token
        )
    except OAuthError as exc:
        await sync_to_async(_refresh_failed)(credential=credential, error=exc)
        raise
    return await sync_to_async(_refresh_succeeded)(credential=credential, tokens=tokens)


@transaction.atomic
def _refresh_succeeded(*, credential: OAuthCredential, tokens: wire.OAuthTokens) -> OAuthCredential:
    credential.access_token = tokens.access_token
    credential.refresh_token = tokens.refresh_token or ""  # rotated, or the old one kept
    credential.last4 = tokens.access_token[-4:]
    credential.expires_at = _from_unix(tokens.expires_at)
    if tokens.scope:
        credential.scopes = tokens.scope[:500]
    if tokens.resource_url:
        credential.resource_url = tokens.resource_url[:255]
    credential.refresh_count += 1
    credential.last_refresh_at = _now()
    credential.last_refresh_error = ""
    credential.save(
        update_fields=[
            "access_token",
            "refresh_token",
            "last4",
            "expires_at",
            "scopes",
            "resource_url",
            "refresh_count",
            "last_refresh_at",
            "last_refresh_error",
        ]
    )
    record_refresh(provider=credential.provider, credential_id=credential, ok=True)
    logger.info(
        "oauth token refreshed provider=%s credential=%s refresh_count=%s",
        credential.provider.name,
        credential.pk,
        credential.refresh_count,
    )
    return credential


@transaction.atomic
def _refresh_failed(*, credential: OAuthCredential, error: OAuthError) -> None:
    """Record a failed refresh; a permanent one takes the credential out of the pool."""
    previous = credential.state
    credential.last_refresh_error = (
        f"{error.error} (HTTP {error.status_code})" if error.status_code else error.error
    )
    credential.last_refresh_error = credential.last_refresh_error[:200]
    fields = ["last_refresh_error"]
    if error.permanent:
        credential.state = OAuthCredential.State.NEEDS_REAUTH
        fields.append("state")
    credential.save(update_fields=fields)
    record_refresh(provider=credential.provider, credential_id=credential, ok=False)
    logger.warning(
        "oauth token refresh failed provider=%s credential=%s error=%s permanent=%s",
        credential.provider.name,
        credential.pk,
        error.error,
        error.permanent,
    )
    if error.permanent:
        audit_record(
            action="oauth_credential.needs_reauth",
            obj=credential,
            changes={"state": [previous, credential.state], "error": error.error},
        )


def oauth_refresh_expiring() -> dict[str, list[int]]:
    """Refresh every active credential expiring within the buffer (the Celery task's work)."""
    cutoff = _now() + refresh_buffer()
    ids = list(
        OAuthCredential.objects.filter(
            state=OAuthCredential.State.ACTIVE, expires_at__isnull=False, expires_at__lte=cutoff
        ).values_list("pk", flat=True)
    )
    result: dict[str, list[int]] = {"refreshed": [], "failed": []}

    async def refresh_all() -> None:
        for credential_id in ids:
            try:
                await ensure_fresh_token(credential_id)
            except OAuthError:
                result["failed"].append(credential_id)
            else:
                result["refreshed"].append(credential_id)

    if ids:
        async_to_sync(refresh_all)()
    return result


async def oauth_credential_refresh_now(
    *, credential_id: int, actor: Any = None, ip_address: str | None = None
) -> OAuthCredential:
    """A refresh a person asked for (the console's "Refresh now"): forced, and audited with
    who asked and how it went. Automatic refreshes are not audited one by one (the
    refresh count, ``last_refresh_*`` and the metrics record them)."""
    try:
        credential = await ensure_fresh_token(credential_id, force=True)
    except OAuthError as exc:
        await sync_to_async(audit_record)(
            action="oauth_credential.refresh",
            object_type=OAuthCredential._meta.label,
            object_id=str(credential_id),
            actor=actor,
            ip_address=ip_address,
            changes={"ok": False, "error": exc.error},
        )
        raise
    await sync_to_async(audit_record)(
        action="oauth_credential.refresh",
        obj=credential,
        actor=actor,
        ip_address=ip_address,
        changes={
            "ok": True,
            "last4": credential.last4,
            "expires_at": credential.expires_at.isoformat() if credential.expires_at else None,
        },
    )
    return credential


# --------------------------------------------------------------------------- disconnect


@transaction.atomic
def oauth_credential_disconnect(
    *, credential: OAuthCredential, actor: Any = None, ip_address: str | None = None
) -> OAuthCredential:
    """Take an OAuth account out of use for good: state ``revoked``, tokens wiped.

    The row stays (with its label, last four and history) so the audit log and
    past usage still name it; the tokens go, so nothing can use the account
    again -- reconnecting creates a new credential. The provider is not asked to
    revoke the tokens: not every provider offers a revocation endpoint, and
    wiping our copy is what makes aipk stop using them.
    """
    previous = credential.state
    credential.state = OAuthCredential.State.REVOKED
    credential.access_token = ""
    credential.refresh_token = ""
    credential.save(update_fields=["state", "access_token", "refresh_token"])
    audit_record(
        action="oauth_credential.disconnect",
        obj=credential,
        actor=actor,
        ip_address=ip_address,
        changes={
            "provider": credential.provider.name,
            "account_label": credential.account_label,
            "state": [previous, credential.state],
        },
    )
    logger.info(
        "oauth credential disconnected provider=%s credential=%s",
        credential.provider.name,
        credential.pk,
    )
    return credential
