"""The audit log's store: events are rows of ``AuditEvent``, which tenant management
owns so a tenant's admins can read their own log. Every app records through
``aipk_site.infra.audit.audit_record``; ``connect`` plugs this store in at start-up."""

from __future__ import annotations

from typing import Any

from aipk_site.infra.audit import audit_store_connect
from tenants_app.models import AuditEvent


def audit_event_store(
    *,
    action: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    actor: Any,
    actor_label: str,
    changes: dict[str, Any],
    ip_address: str | None,
    tenant: Any,
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor,
        tenant=tenant,
        actor_label=actor_label,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        changes=changes,
        ip_address=ip_address,
    )


def connect() -> None:
    audit_store_connect(audit_event_store)
