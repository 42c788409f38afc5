"""A tenant's audit log, for its admins: newest first, paginated, filtered by action
and UTC days."""

import datetime as dt
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.pagination import LimitOffsetPagination, paginate

from tenants_app import selectors
from tenants_app.api.schemas import MAX_INT
from tenants_app.auth import tenant_access
from tenants_app.models import AuditEvent, Role

router = Router(tags=["tenants"])


class AuditQuery(Schema):
    action: str | None = Field(default=None, max_length=100)
    start: dt.date | None = Field(default=None, alias="from")
    end: dt.date | None = Field(default=None, alias="to")


class AuditOut(Schema):
    id: int
    created_at: dt.datetime
    action: str
    actor: str
    object_type: str
    object_id: str
    object_repr: str
    changes: dict[str, Any]
    ip_address: str | None

    @staticmethod
    def resolve_actor(event: AuditEvent) -> str:
        return event.actor_label or (event.actor.get_username() if event.actor else "")


class BoundedLimitOffset(LimitOffsetPagination):
    """ninja's limit/offset, both bounded: an offset of 10**20 reached the database as
    an integer it cannot hold (a 500)."""

    class Input(Schema):
        limit: int = Field(100, ge=1, le=1000)
        offset: int = Field(0, ge=0, le=MAX_INT)


@router.get("/{slug}/audit", response=list[AuditOut])
@paginate(BoundedLimitOffset)
def audit_log(request: HttpRequest, slug: str, query: Query[AuditQuery]) -> QuerySet[AuditEvent]:
    """Admin. Newest first; ``action`` matches exactly, or by prefix when it ends in '.'."""
    access = tenant_access(request, slug, Role.ADMIN)
    return selectors.tenant_audit_events(
        tenant=access.tenant, action=query.action, start=query.start, end=query.end
    )
