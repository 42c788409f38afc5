"""Recording an audit event, for every app: ``audit_record(action=..., obj=..., ...)``.

Both apps record what their services change, but the event's table belongs to tenant
management (``tenants_app.AuditEvent``: tenant admins read their own audit log), and
providers_app must not import tenants_app. So this layer owns the call and the last
guard against secrets, and tenants_app plugs in the store when Django starts
(``tenants_app/services/audit.py``, connected in its ``AppConfig.ready``). Recording
before that store is connected is a programming error and raises, rather than
silently losing an event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypedDict

from django.db import models

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


class AuditFields(TypedDict):
    """One event as the store receives it: every field resolved, secrets masked."""

    action: str
    object_type: str
    object_id: str
    object_repr: str
    actor: Any  # the user, or None for the system
    actor_label: str
    changes: dict[str, Any]
    ip_address: str | None
    tenant: Any  # the tenant the event is filed under, or None


# writes one event and returns it
AuditStore = Callable[[AuditFields], Any]


_store: AuditStore | None = None


def audit_store_connect(store: AuditStore) -> None:
    """Where events are written; called once at start-up by the app owning the table."""
    global _store
    _store = store


def audit_value(value: Any) -> Any:
    """A field's value as the audit log stores it: JSON's own types as they are, times in
    ISO 8601, decimals and model rows as text."""
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


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
    tenant: Any = None,
) -> Any:
    """Records who changed what. Callers pass ``changes`` already free of secrets; as a
    last guard, values under secret-looking keys are masked here too. ``tenant`` files
    the event under a tenant, so that tenant's admins can read it. Returns the stored
    event."""
    if _store is None:
        raise RuntimeError("no audit store is connected (tenants_app is not ready)")
    if obj is not None:
        object_type = object_type or obj._meta.label
        object_id = object_id or str(obj.pk)
    user = actor if getattr(actor, "is_authenticated", False) else None
    return _store(
        AuditFields(
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_repr=str(obj)[:200] if obj is not None else "",
            actor=user,
            actor_label=actor_label or (user.get_username() if user else "system"),
            changes=_masked(changes or {}),
            ip_address=ip_address,
            tenant=tenant,
        )
    )
