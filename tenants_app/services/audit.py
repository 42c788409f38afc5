"""Writing the audit log. Callers pass changes already free of secrets; as a last
guard, values under secret-looking keys are masked here too. ``tenant`` files the
event under a tenant, so that tenant's admins can read it in their audit log."""

from __future__ import annotations

from typing import Any

from django.db import models

from tenants_app.models import AuditEvent, Tenant

# keys whose values are never stored, whatever the caller passes
SECRET_KEYS = frozenset(
    {
        "secret",
        "api_key",
        "access_token",
        "refresh_token",
        "client_secret",
        "code_verifier",
        "device_code",
        "password",
        "key_hash",
        "token_hash",
    }
)


def _masked(changes: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (
            "***"
            if key in SECRET_KEYS and value
            else _masked(value)
            if isinstance(value, dict)
            else value
        )
        for key, value in changes.items()
    }


def audit_record(
    *,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    actor: Any = None,
    actor_label: str = "",
    changes: dict[str, Any] | None = None,
    ip_address: str | None = None,
    tenant: Tenant | None = None,
) -> AuditEvent:
    if obj is not None:
        object_type = object_type or obj._meta.label
        object_id = object_id or str(obj.pk)
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        actor=user,
        tenant=tenant,
        actor_label=actor_label or (user.get_username() if user else "system"),
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=str(obj)[:200] if obj is not None else "",
        changes=_masked(changes or {}),
        ip_address=ip_address,
    )
