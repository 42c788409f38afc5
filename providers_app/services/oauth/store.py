"""OAuth rows: storing a credential a flow produced, recording a failed or used-up
flow, and disconnecting an account.

Tokens are Fernet-encrypted on the OAuthCredential row and never appear in logs,
audit records, exceptions or pages: only labels and last four characters.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from django.db import transaction

from aipk_site.infra.audit import audit_record
from providers_app.kit import oauth as wire
from providers_app.models import OAuthCredential, OAuthFlow, Provider

from . import clock
from .config import oauth_endpoints

logger = logging.getLogger("providers_app.services.oauth")


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
def credential_store(*, flow: OAuthFlow, tokens: wire.OAuthTokens) -> OAuthCredential:
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
        expires_at=clock.from_unix(tokens.expires_at),
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


def flow_record_failure(*, flow: OAuthFlow, error: str) -> None:
    OAuthFlow.objects.filter(pk=flow.pk).update(
        used_at=flow.used_at or clock.now(), error=error[:200]
    )
    audit_record(
        action="oauth_flow.failed",
        obj=flow,
        actor=flow.created_by,
        changes={"provider": flow.provider.name, "flow": flow.kind, "error": error[:200]},
    )
    logger.info(
        "oauth flow failed provider=%s flow=%s error=%s", flow.provider.name, flow.pk, error[:200]
    )


async def claim(flow: OAuthFlow) -> bool:
    """Mark the flow used, atomically: only one callback can win a state."""
    now = clock.now()
    claimed = await OAuthFlow.objects.filter(pk=flow.pk, used_at__isnull=True).aupdate(used_at=now)
    if claimed:
        flow.used_at = now
    return bool(claimed)


def user_or_none(actor: Any) -> Any:
    """The user who started a flow, for its ``created_by`` (anonymous: nobody)."""
    return actor if getattr(actor, "is_authenticated", False) else None


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
