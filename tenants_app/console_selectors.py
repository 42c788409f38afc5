"""Reads for the console's playground and audit log.

The playground offers exactly what the websocket chat will accept (docs/WEBSOCKET.md):
a console user chats as a tenant they are a member of, with a role above viewer, in an
active tenant; being staff adds nothing there. The models it lists are the ones
``GET /v1/models`` would list for that tenant, computed by the same routing code.

The audit log follows the management API's rule: reading a tenant's audit log needs the
admin role in it; staff (owners everywhere) read everything, including the events that
belong to no tenant (providers, credentials).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import Q, QuerySet

from tenants_app.models import AuditEvent, Membership, Role, Tenant
from tenants_app.selectors import day_bounds
from tenants_app.services.routing import models_for

CHAT_ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER)
AUDIT_ROLES = (Role.OWNER, Role.ADMIN)


# --- playground ----------------------------------------------------------------------------


def chat_memberships(user: Any) -> QuerySet[Membership]:
    """The memberships a console user may chat through, by tenant name."""
    return (
        Membership.objects.filter(user=user, role__in=CHAT_ROLES, tenant__active=True)
        .select_related("tenant")
        .order_by("tenant__name")
    )


def memberships_without_chat(user: Any) -> QuerySet[Membership]:
    """Tenants the user belongs to but cannot chat as (viewer, or tenant deactivated),
    so the page can say why they are missing from the picker."""
    return (
        Membership.objects.filter(user=user)
        .filter(Q(role=Role.VIEWER) | Q(tenant__active=False))
        .select_related("tenant")
        .order_by("tenant__name")
    )


def tenant_chat_models(tenant: Tenant) -> list[dict]:
    """What a member of ``tenant`` may call on the chat: its route aliases with a usable
    candidate, then "<provider>/<model>" ids (``{"id", "owned_by", "kind"}`` each).

    A console user has no key, so no key-level model list applies; the tenant's
    provider allow-list does (empty = every provider), as in the socket's own check."""
    allowed = frozenset(tenant.allowed_providers.values_list("id", flat=True))
    return async_to_sync(models_for)(
        tenant_id=tenant.pk, allowed_models=(), allowed_provider_ids=allowed or None
    )


# --- audit log -----------------------------------------------------------------------------


def audit_tenants(user: Any) -> QuerySet[Tenant]:
    """The tenants whose audit events ``user`` may read."""
    if user.is_staff:
        return Tenant.objects.order_by("name")
    return Tenant.objects.filter(
        memberships__user=user, memberships__role__in=AUDIT_ROLES
    ).order_by("name")


def may_read_audit(user: Any) -> bool:
    return user.is_staff or audit_tenants(user).exists()


def audit_events_for(user: Any) -> QuerySet[AuditEvent]:
    """Every event ``user`` may read, newest first."""
    events = AuditEvent.objects.select_related("actor", "tenant")
    if user.is_staff:
        return events
    return events.filter(tenant__in=audit_tenants(user))


def filter_audit_events(
    events: QuerySet[AuditEvent],
    *,
    tenant: Tenant | None = None,
    without_tenant: bool = False,
    action: str = "",
    actor: str = "",
    object_type: str = "",
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> QuerySet[AuditEvent]:
    """``action`` matches exactly ("member.add") or, ending in ".", by prefix ("member."),
    as on the management API. ``actor`` is a username (case-insensitive), also matched
    against the label kept when the user has since been deleted. Dates are inclusive
    UTC days."""
    if without_tenant:
        events = events.filter(tenant__isnull=True)
    elif tenant is not None:
        events = events.filter(tenant=tenant)
    if action:
        events = (
            events.filter(action__startswith=action)
            if action.endswith(".")
            else events.filter(action=action)
        )
    if actor:
        events = events.filter(Q(actor__username__iexact=actor) | Q(actor_label__iexact=actor))
    if object_type:
        events = events.filter(object_type__iexact=object_type)
    if start is not None:
        events = events.filter(created_at__gte=day_bounds(start, start)[0])
    if end is not None:
        events = events.filter(created_at__lt=day_bounds(end, end)[1])
    return events


def audit_vocabulary(events: QuerySet[AuditEvent]) -> dict[str, list[str]]:
    """The distinct actions and object types among ``events``, for the filter's suggestions."""
    plain = events.order_by()
    return {
        "actions": list(plain.values_list("action", flat=True).distinct().order_by("action")),
        "object_types": list(
            plain.values_list("object_type", flat=True).distinct().order_by("object_type")
        ),
    }
