"""Keeping OAuth access tokens fresh: one refresh per credential at a time.

A refresh lock in Django's cache makes concurrent refreshes of one credential
-- in one process or many -- use its refresh token exactly once; the others
wait for the new token in the database. A permanent failure takes the
credential out of the pool until someone re-authorises it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.core.cache import cache
from django.db import transaction

from aipk_site.infra.audit import audit_record
from providers_app.announcements import credential_needs_reauth
from providers_app.kit import oauth as wire
from providers_app.kit.oauth import OAuthError
from providers_app.models import OAuthCredential
from providers_app.services.provider_metrics import record_refresh

from . import clock
from .config import OAuthCredentialUnusable, oauth_endpoints, refresh_buffer, require, setting
from .transport import post, token_reply

logger = logging.getLogger("providers_app.services.oauth")

LOCK_POLL_SECONDS = 0.05


def _refresh_lock_key(credential_id: int) -> str:
    return f"aipk:oauth:refresh-lock:{credential_id}"


async def _load_credential(credential_id: int) -> OAuthCredential:
    return await OAuthCredential.objects.select_related("provider").aget(pk=credential_id)


def _usable(credential: OAuthCredential) -> OAuthCredential:
    if credential.state != OAuthCredential.State.ACTIVE:
        raise OAuthCredentialUnusable(credential)
    return credential


def _expiring(credential: OAuthCredential) -> bool:
    return (
        credential.expires_at is not None
        and credential.expires_at - refresh_buffer() <= clock.now()
    )


async def fresh_credential(credential: OAuthCredential) -> OAuthCredential:
    """The request path's way in: ``credential`` as this process's snapshot holds it
    (services/chat.py), itself, while its token is not about to expire -- no query, no
    lock. Only a token expiring within OAUTH_REFRESH_BUFFER_SECONDS takes
    ``ensure_fresh_token``'s path (lock, reload, refresh). A refresh made anywhere else
    (another process, the refresh job, the console's "Refresh now") saves the row, and
    that save's change event drops every process's snapshot (providers_app/signals.py),
    so the next request reads the new token."""
    if not _expiring(_usable(credential)):
        return credential
    return await ensure_fresh_token(credential.pk)


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
    lock_seconds = setting("OAUTH_REFRESH_LOCK_SECONDS", 30)
    deadline = time.monotonic() + setting("OAUTH_REFRESH_WAIT_SECONDS", 20)
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
            require(endpoints.token_url, "oauth_token_url", "a token URL"),
            credential.client_id or endpoints.client_id,
            credential.refresh_token,
            credential.client_secret or endpoints.client_secret or None,
        )
        status, body = await post(url, provider=provider.name, form=form)
        tokens = token_reply(
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
    credential.expires_at = clock.from_unix(tokens.expires_at)
    if tokens.scope:
        credential.scopes = tokens.scope[:500]
    if tokens.resource_url:
        credential.resource_url = tokens.resource_url[:255]
    credential.refresh_count += 1
    credential.last_refresh_at = clock.now()
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
        if previous != OAuthCredential.State.NEEDS_REAUTH:
            # alerting (tenants_app) listens; only the transition is news
            transaction.on_commit(
                lambda: credential_needs_reauth.send(sender=OAuthCredential, credential=credential)
            )


def oauth_refresh_expiring() -> dict[str, list[int]]:
    """Refresh every active credential expiring within the buffer (the Celery task's work)."""
    cutoff = clock.now() + refresh_buffer()
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
