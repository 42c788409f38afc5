"""The audit log's store: events are rows of ``AuditEvent``, which tenant management
owns so a tenant's admins can read their own log. Every app records through
``aipk_site.infra.audit.audit_record``; ``connect`` plugs this store in at start-up."""

from __future__ import annotations

from aipk_site.infra.audit import AuditFields, audit_store_connect
from tenants_app.models import AuditEvent


def audit_event_store(fields: AuditFields) -> AuditEvent:
    return AuditEvent.objects.create(**fields)


def connect() -> None:
    audit_store_connect(audit_event_store)
