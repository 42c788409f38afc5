"""Virtual keys (what apps call the gateway with) and admin tokens (what scripts call
the management API with). Both are random secrets stored only as a SHA-256 hash:
the create functions hand the secret back once, and nothing can show it again.
Audit entries name a key by its prefix, never by secret or hash."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from aipk_site.infra.audit import audit_record, audit_value
from aipk_site.infra.errors import InvalidRequest
from tenants_app.models import AdminToken, Tenant, UnsupportedParams, VirtualKey
from tenants_app.services.secrets import ADMIN_TOKEN_PREFIX, VIRTUAL_KEY_PREFIX, new_secret
from tenants_app.signals import announce, keys_changed

# fields a key's owner may change after creation (name included: it is only a label)
KEY_FIELDS = (
    "name",
    "allowed_models",
    "rpm",
    "tpm",
    "max_concurrent_streams",
    "monthly_budget_usd",
    "cache_enabled",
    "cache_ttl_seconds",
    "unsupported_params",
    "capture_bodies",
    "expires_at",
)


def _clean_key_fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(KEY_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {sorted(unknown)[0]!r}", param=sorted(unknown)[0])
    cleaned = dict(fields)
    if "name" in cleaned:
        name = (cleaned["name"] or "").strip()
        if not name or len(name) > 100:
            raise InvalidRequest("name must be 1 to 100 characters", param="name")
        cleaned["name"] = name
    if "allowed_models" in cleaned:
        models = cleaned["allowed_models"] or []
        if not isinstance(models, list) or not all(
            isinstance(m, str) and 0 < len(m.strip()) <= 200 for m in models
        ):
            raise InvalidRequest(
                "allowed_models must be a list of model names", param="allowed_models"
            )
        # order kept, duplicates dropped: the list is shown back to people
        cleaned["allowed_models"] = list(dict.fromkeys(m.strip() for m in models))
    for limit in ("rpm", "tpm", "max_concurrent_streams", "cache_ttl_seconds"):
        value = cleaned.get(limit)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidRequest(f"{limit} must be a positive whole number", param=limit)
    if "cache_ttl_seconds" in cleaned and cleaned["cache_ttl_seconds"] is None:
        raise InvalidRequest("cache_ttl_seconds cannot be empty", param="cache_ttl_seconds")
    if "unsupported_params" in cleaned and cleaned["unsupported_params"] not in UnsupportedParams:
        raise InvalidRequest(
            f"unsupported_params must be one of {', '.join(UnsupportedParams.values)}",
            param="unsupported_params",
        )
    capture = cleaned.get("capture_bodies")
    if capture is not None and not isinstance(capture, bool):
        raise InvalidRequest(
            "capture_bodies must be true, false or null (the tenant's choice)",
            param="capture_bodies",
        )
    budget = cleaned.get("monthly_budget_usd")
    if budget is not None and Decimal(budget) < 0:
        raise InvalidRequest("monthly_budget_usd must not be negative", param="monthly_budget_usd")
    expires_at = cleaned.get("expires_at")
    if expires_at is not None:
        if timezone.is_naive(expires_at):
            expires_at = timezone.make_aware(expires_at, dt.UTC)
        if expires_at <= timezone.now():
            raise InvalidRequest("expires_at must be in the future", param="expires_at")
        cleaned["expires_at"] = expires_at
    return cleaned


@transaction.atomic
def virtual_key_create(
    *,
    tenant: Tenant,
    name: str,
    actor: Any,
    ip_address: str | None = None,
    **fields: Any,
) -> tuple[VirtualKey, str]:
    """(the key, its secret). The secret exists only in this return value."""
    cleaned = _clean_key_fields({"name": name, **fields})
    secret, key_hash, prefix = new_secret(VIRTUAL_KEY_PREFIX)
    key = VirtualKey.objects.create(
        tenant=tenant,
        prefix=prefix,
        key_hash=key_hash,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        **cleaned,
    )
    audit_record(
        action="virtual_key.create",
        obj=key,
        actor=actor,
        tenant=tenant,
        ip_address=ip_address,
        changes={"prefix": prefix, **{k: audit_value(v) for k, v in cleaned.items()}},
    )
    return key, secret


@transaction.atomic
def virtual_key_update(
    *, key: VirtualKey, actor: Any, ip_address: str | None = None, **fields: Any
) -> VirtualKey:
    if key.revoked_at is not None:
        raise InvalidRequest("this key is revoked and cannot be changed", param="key")
    cleaned = _clean_key_fields(fields)
    changes = {
        field: {"from": audit_value(getattr(key, field)), "to": audit_value(value)}
        for field, value in cleaned.items()
        if getattr(key, field) != value
    }
    for field, value in cleaned.items():
        setattr(key, field, value)
    if cleaned:
        key.save(update_fields=[*cleaned])
    if changes:
        audit_record(
            action="virtual_key.update",
            obj=key,
            actor=actor,
            tenant=key.tenant,
            ip_address=ip_address,
            changes={"prefix": key.prefix, **changes},
        )
    _forget_now_and_on_commit(key.key_hash)
    return key


@transaction.atomic
def virtual_key_revoke(*, key: VirtualKey, actor: Any, ip_address: str | None = None) -> VirtualKey:
    """Revoking twice is not an error; the first revocation time stands."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            action="virtual_key.revoke",
            obj=key,
            actor=actor,
            tenant=key.tenant,
            ip_address=ip_address,
            changes={"prefix": key.prefix},
        )
    _forget_now_and_on_commit(key.key_hash)
    return key


def virtual_keys_mark_used(*, last_used: dict[int, dt.datetime]) -> None:
    """Move each key's ``last_used_at`` forward to the time given (its newest request in
    a usage batch): one UPDATE per key, and never backwards -- batches from several
    processes or a replayed spool arrive out of order. ``update()`` on purpose: no
    signal, so the gateway's key snapshots are not invalidated by mere use."""
    for key_id, moment in last_used.items():
        VirtualKey.objects.filter(pk=key_id).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=moment)
        ).update(last_used_at=moment)


def _forget_now_and_on_commit(key_hash: str) -> None:
    announce(keys_changed, key_hashes=[key_hash])


@transaction.atomic
def admin_token_create(
    *, user: Any, name: str, actor: Any = None, ip_address: str | None = None
) -> tuple[AdminToken, str]:
    """(the token, its secret) for ``user``. The secret exists only in this return value."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidRequest("name must be 1 to 100 characters", param="name")
    secret, token_hash, prefix = new_secret(ADMIN_TOKEN_PREFIX)
    token = AdminToken.objects.create(user=user, name=name, prefix=prefix, token_hash=token_hash)
    audit_record(
        action="admin_token.create",
        obj=token,
        actor=actor or user,
        ip_address=ip_address,
        changes={"name": name, "prefix": prefix, "user": user.get_username()},
    )
    return token, secret


@transaction.atomic
def admin_token_revoke(
    *, token: AdminToken, actor: Any = None, ip_address: str | None = None
) -> AdminToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            action="admin_token.revoke",
            obj=token,
            actor=actor or token.user,
            ip_address=ip_address,
            changes={"name": token.name, "prefix": token.prefix},
        )
    return token
