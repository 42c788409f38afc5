"""A tenant's members and their roles. Admins manage members, only owners make, unmake
or remove owners, anyone may leave, and the last owner stays (the service's rule)."""

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from tenants_app import selectors
from tenants_app.api.schemas import Strict
from tenants_app.auth import require_membership_change, tenant_access, who
from tenants_app.models import Membership, Role
from tenants_app.services.tenants import member_add, member_remove, member_update

router = Router(tags=["tenants"])


class MemberOut(Schema):
    username: str
    role: Role
    created_at: dt.datetime


class MemberIn(Strict):
    username: str = Field(min_length=1, max_length=150)
    role: Role = Role.MEMBER


class MemberPatch(Strict):
    role: Role


def member_out(membership: Membership) -> dict[str, Any]:
    return {
        "username": membership.user.get_username(),
        "role": membership.role,
        "created_at": membership.created_at,
    }


@router.get("/{slug}/members", response=list[MemberOut])
def list_members(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    access = tenant_access(request, slug)
    return [member_out(m) for m in selectors.tenant_members(access.tenant)]


@router.post("/{slug}/members", response={201: MemberOut})
def add_member(request: HttpRequest, slug: str, payload: MemberIn) -> Status:
    """Admin; only owners add owners."""
    access = tenant_access(request, slug)
    require_membership_change(access, current=None, new=payload.role)
    membership = member_add(
        tenant=access.tenant,
        user=selectors.active_user_named(payload.username),
        role=payload.role,
        **who(request),
    )
    return Status(201, member_out(membership))


@router.patch("/{slug}/members/{username}", response=MemberOut)
def change_member(
    request: HttpRequest, slug: str, username: str, payload: MemberPatch
) -> dict[str, Any]:
    """Admin; only owners promote to or demote from owner."""
    access = tenant_access(request, slug)
    membership = selectors.tenant_membership(access.tenant, username)
    require_membership_change(access, current=Role(membership.role), new=payload.role)
    return member_out(member_update(membership=membership, role=payload.role, **who(request)))


@router.delete("/{slug}/members/{username}", response={204: None})
def remove_member(request: HttpRequest, slug: str, username: str) -> Status:
    """Admin; only owners remove owners; anyone may leave. The last owner stays."""
    access = tenant_access(request, slug)
    membership = selectors.tenant_membership(access.tenant, username)
    if membership.user_id != request.auth.pk:
        require_membership_change(access, current=Role(membership.role), new=None)
    member_remove(membership=membership, **who(request))
    return Status(204, None)
