"""Tenants: the list you may see, and one tenant's settings. Creating a tenant and its
organisation fields (active, allowed providers) are staff's; limits, budget and the PII
filter are the tenant admins'."""

import datetime as dt
from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from aipk_site.infra.access import require_staff
from aipk_site.infra.errors import PermissionDenied
from tenants_app import selectors
from tenants_app.api.schemas import MAX_INT, SLUG_PATTERN, Strict, patch_field
from tenants_app.auth import TenantAccess, tenant_access, who
from tenants_app.models import Role, Tenant
from tenants_app.services.tenants import tenant_create, tenant_delete, tenant_update

router = Router(tags=["tenants"])


class TenantOut(Schema):
    slug: str
    name: str
    active: bool
    monthly_budget_usd: Decimal | None
    default_rpm: int | None
    default_tpm: int | None
    pii_redaction: bool
    capture_bodies: bool = Field(
        description="the request log keeps request and response bodies (redacted, capped)"
    )
    allowed_providers: list[str]
    role: str | None = Field(description="your role in the tenant; null for staff non-members")
    created_at: dt.datetime
    updated_at: dt.datetime


class TenantIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    slug: str = Field(default="", max_length=50, pattern=r"^$|" + SLUG_PATTERN)
    owner: str | None = Field(default=None, description="username of the first owner")
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    default_rpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    default_tpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    pii_redaction: bool = False
    capture_bodies: bool = False
    allowed_providers: list[str] = Field(default_factory=list, max_length=200)


class TenantPatch(Strict):
    name: str = patch_field(min_length=1, max_length=100)
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    default_rpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    default_tpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    pii_redaction: bool = patch_field()
    capture_bodies: bool = patch_field()
    # organisation policy, so staff only
    active: bool = patch_field(description="staff only")
    allowed_providers: list[str] = patch_field(
        max_length=200, description="staff only; empty = every enabled provider"
    )


STAFF_ONLY_TENANT_FIELDS = ("active", "allowed_providers")


def tenant_out(tenant: Tenant, role: str | None) -> dict[str, Any]:
    return {
        **{
            f: getattr(tenant, f)
            for f in (
                "slug",
                "name",
                "active",
                "monthly_budget_usd",
                "default_rpm",
                "default_tpm",
                "pii_redaction",
                "capture_bodies",
                "created_at",
                "updated_at",
            )
        },
        "allowed_providers": [p.name for p in tenant.allowed_providers.all()],
        "role": role,
    }


def _access_role(access: TenantAccess) -> str | None:
    if access.is_staff and not selectors.is_member(access.tenant, access.user):
        return None
    return access.role


@router.get("/", response=list[TenantOut])
def list_tenants(request: HttpRequest) -> list[dict[str, Any]]:
    """The tenants you belong to (staff: all tenants)."""
    roles = selectors.tenant_roles(request.auth)
    tenants = selectors.tenants_visible_to(request.auth).prefetch_related("allowed_providers")
    return [tenant_out(t, roles.get(t.pk)) for t in tenants.distinct()]


@router.post("/", response={201: TenantOut})
def create_tenant(request: HttpRequest, payload: TenantIn) -> Status:
    """Staff only."""
    require_staff(request.auth)
    data = payload.model_dump()
    owner_name = data.pop("owner")
    owner = selectors.active_user_named(owner_name) if owner_name else None
    tenant = tenant_create(owner=owner, **data, **who(request))
    return Status(201, tenant_out(tenant, Role.OWNER if owner == request.auth else None))


@router.get("/{slug}", response=TenantOut)
def get_tenant(request: HttpRequest, slug: str) -> dict[str, Any]:
    access = tenant_access(request, slug)
    return tenant_out(access.tenant, _access_role(access))


@router.patch("/{slug}", response=TenantOut)
def update_tenant(request: HttpRequest, slug: str, payload: TenantPatch) -> dict[str, Any]:
    """Admin: name, limits, budget, PII filter. Staff: also active, allowed_providers."""
    access = tenant_access(request, slug, Role.ADMIN)
    fields = payload.model_dump(exclude_unset=True)
    staff_fields = [f for f in STAFF_ONLY_TENANT_FIELDS if f in fields]
    if staff_fields and not access.is_staff:
        raise PermissionDenied(f"staff only: {staff_fields[0]}")
    tenant = tenant_update(tenant=access.tenant, **fields, **who(request))
    return tenant_out(tenant, _access_role(access))


@router.delete("/{slug}", response={204: None})
def delete_tenant(request: HttpRequest, slug: str) -> Status:
    """Owner: deletes the tenant with its keys, routes, usage and invoices."""
    access = tenant_access(request, slug, Role.OWNER)
    tenant_delete(tenant=access.tenant, **who(request))
    return Status(204, None)
