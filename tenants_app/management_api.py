"""The management API: tenants, members, virtual keys, routes, pricing, usage,
invoices, audit log and admin tokens. Operations stay thin: check who may act
(tenants_app.auth), call a service or selector, render. Secrets go out exactly
once, in the answer that creates them; hashes never.

Mounted in aipk_site/urls.py; documented in docs/API.md.
"""

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from asgiref.sync import async_to_sync
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import AuthorizationError
from ninja.pagination import LimitOffsetPagination, paginate
from pydantic import ConfigDict, field_validator

from aipk_site.gateway.admission import usage_now
from aipk_site.infra.client_ip import client_ip
from aipk_site.infra.errors import InvalidRequest
from providers_app.models import Provider, ProviderType
from tenants_app import selectors
from tenants_app.auth import (
    by_token,
    management_auth,
    require_key_manager,
    require_membership_change,
    require_staff,
    tenant_access,
)
from tenants_app.models import (
    AdminToken,
    Invoice,
    Membership,
    ModelRoute,
    Pricing,
    Role,
    RouteStrategy,
    Tenant,
    VirtualKey,
)
from tenants_app.services import billing
from tenants_app.services.keys import (
    admin_token_create,
    admin_token_revoke,
    virtual_key_create,
    virtual_key_revoke,
    virtual_key_update,
)
from tenants_app.services.pricing import pricing_delete, pricing_set
from tenants_app.services.routes import route_create, route_delete, route_update
from tenants_app.services.tenants import (
    member_add,
    member_remove,
    member_update,
    tenant_create,
    tenant_delete,
    tenant_invoice_generate,
    tenant_update,
)

tenants_router = Router(tags=["tenants"], auth=management_auth)
routes_router = Router(tags=["routes"], auth=management_auth)
pricing_router = Router(tags=["pricing"], auth=management_auth)
tokens_router = Router(tags=["admin tokens"], auth=management_auth)

# PostgreSQL integer columns (PositiveIntegerField)
MAX_INT = 2_147_483_647
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


# --- schemas -------------------------------------------------------------------------------
# Optional fields of the Patch schemas default to None but are typed without None
# where the column cannot be null: an explicit null is then a 422 naming the
# field, while an absent field is simply left alone (exclude_unset).


def patch_field(**kwargs: Any) -> Any:
    """``Field(default=None, **kwargs)`` for such a field. Typed ``Any``: the default
    (never validated, never read: the operations take ``model_dump(exclude_unset=True)``)
    is not of the field's type, which is what keeps an explicit null a 422."""
    return Field(default=None, **kwargs)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


# The range of instants both databases (and Python, once a time is in UTC) can hold:
# 9999-12-31T23:59:59-14:00 is in year 10000 in UTC (a 500 on SQLite; on PostgreSQL a
# row that could not be read back).
EARLIEST_TIME = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
LATEST_TIME = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def _storable_time(value: dt.datetime) -> bool:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    try:
        return EARLIEST_TIME <= aware.astimezone(dt.UTC) < LATEST_TIME
    except OverflowError:
        return False


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")

    # PostgreSQL cannot store NUL in text (SQLite can): refuse it up front, the same on both
    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain NUL (\\u0000) characters")
        if isinstance(value, dt.datetime) and not _storable_time(value):
            raise ValueError(
                f"must be after {EARLIEST_TIME:%Y-%m-%d} and before {LATEST_TIME:%Y-%m-%d} (UTC)"
            )
        return value


class TenantOut(Schema):
    slug: str
    name: str
    active: bool
    monthly_budget_usd: Decimal | None
    default_rpm: int | None
    default_tpm: int | None
    pii_redaction: bool
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
    allowed_providers: list[str] = Field(default_factory=list, max_length=200)


class TenantPatch(Strict):
    name: str = patch_field(min_length=1, max_length=100)
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    default_rpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    default_tpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    pii_redaction: bool = patch_field()
    # organisation policy, so staff only
    active: bool = patch_field(description="staff only")
    allowed_providers: list[str] = patch_field(
        max_length=200, description="staff only; empty = every enabled provider"
    )


STAFF_ONLY_TENANT_FIELDS = ("active", "allowed_providers")


class MemberOut(Schema):
    username: str
    role: Role
    created_at: dt.datetime


class MemberIn(Strict):
    username: str = Field(min_length=1, max_length=150)
    role: Role = Role.MEMBER


class MemberPatch(Strict):
    role: Role


class KeyOut(Schema):
    id: int
    name: str
    prefix: str
    allowed_models: list[str]
    rpm: int | None
    tpm: int | None
    max_concurrent_streams: int | None
    monthly_budget_usd: Decimal | None
    cache_enabled: bool
    cache_ttl_seconds: int
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    created_by: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None


class KeyCreatedOut(Schema):
    key: KeyOut
    secret: str = Field(description="shown once; aipk stores only its hash")


class KeyIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    allowed_models: list[str] = Field(default_factory=list, max_length=500)
    rpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    tpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    max_concurrent_streams: int | None = Field(default=None, ge=1, le=MAX_INT)
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    cache_enabled: bool = False
    cache_ttl_seconds: int = Field(default=300, ge=1, le=30 * 24 * 3600)
    expires_at: dt.datetime | None = None


class KeyPatch(Strict):
    name: str = patch_field(min_length=1, max_length=100)
    allowed_models: list[str] = patch_field(max_length=500)
    rpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    tpm: int | None = Field(default=None, ge=1, le=MAX_INT)
    max_concurrent_streams: int | None = Field(default=None, ge=1, le=MAX_INT)
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    cache_enabled: bool = patch_field()
    cache_ttl_seconds: int = patch_field(ge=1, le=30 * 24 * 3600)
    expires_at: dt.datetime | None = None


class Candidate(Strict):
    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=200)


class RouteOut(Schema):
    alias: str
    strategy: RouteStrategy
    candidates: list[dict[str, str]]
    tenant: str | None = Field(description="tenant slug; null for a global route")
    created_at: dt.datetime
    updated_at: dt.datetime


class RouteIn(Strict):
    alias: str = Field(min_length=1, max_length=100, pattern=r"^[^/]+$")
    strategy: RouteStrategy = RouteStrategy.FAILOVER
    candidates: list[Candidate] = Field(min_length=1, max_length=50)


class RoutePatch(Strict):
    strategy: RouteStrategy = patch_field()
    candidates: list[Candidate] = patch_field(min_length=1, max_length=50)


class PricingOut(Schema):
    id: int
    provider_type: str
    provider: str | None
    model: str
    input_per_million: Decimal
    output_per_million: Decimal
    source: str
    updated_at: dt.datetime


class PricingIn(Strict):
    provider_type: ProviderType
    provider: str | None = Field(default=None, description="one provider account; null = type")
    model: str = Field(min_length=1, max_length=200)
    input_per_million: Decimal = Field(ge=0, lt=1_000_000, max_digits=12, decimal_places=6)
    output_per_million: Decimal = Field(ge=0, lt=1_000_000, max_digits=12, decimal_places=6)


class UsageQuery(Schema):
    group_by: Literal["day", "model", "provider", "key"] = "day"
    start: dt.date | None = Field(default=None, alias="from", description="default: 1st of month")
    end: dt.date | None = Field(default=None, alias="to", description="inclusive; default today")


class UsageRow(Schema):
    group: str | None
    key_id: int | None = None
    key_name: str | None = None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal


class UsageTotals(Schema):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal


class UsageOut(Schema):
    group_by: str
    start: dt.date = Field(serialization_alias="from")
    end: dt.date = Field(serialization_alias="to")
    rows: list[UsageRow]
    totals: UsageTotals


class DateRange(Schema):
    start: dt.date | None = Field(default=None, alias="from")
    end: dt.date | None = Field(default=None, alias="to")


class InvoiceOut(Schema):
    period: str = Field(description="YYYY-MM")
    total_usd: Decimal
    lines: list[dict[str, Any]]
    final: bool
    generated_at: dt.datetime


class InvoiceIn(Strict):
    period: str = Field(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")


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
    def resolve_actor(event) -> str:
        return event.actor_label or (event.actor.get_username() if event.actor else "")


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=100)


class TokenCreatedOut(Schema):
    token: TokenOut
    secret: str = Field(description="shown once; aipk stores only its hash")


# --- rendering -----------------------------------------------------------------------------


def _tenant_out(tenant: Tenant, role: str | None) -> dict:
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
                "created_at",
                "updated_at",
            )
        },
        "allowed_providers": [p.name for p in tenant.allowed_providers.all()],
        "role": role,
    }


def _key_out(key: VirtualKey) -> dict:
    fields = [f for f in KeyOut.model_fields if f != "created_by"]
    return {
        **{f: getattr(key, f) for f in fields},
        "created_by": key.created_by.get_username() if key.created_by else None,
    }


def _member_out(membership: Membership) -> dict:
    return {
        "username": membership.user.get_username(),
        "role": membership.role,
        "created_at": membership.created_at,
    }


def _route_out(route: ModelRoute) -> dict:
    return {
        "alias": route.alias,
        "strategy": route.strategy,
        "candidates": route.candidates,
        "tenant": route.tenant.slug if route.tenant_id else None,
        "created_at": route.created_at,
        "updated_at": route.updated_at,
    }


def _pricing_out(price: Pricing) -> dict:
    return {
        **{f: getattr(price, f) for f in PricingOut.model_fields if f != "provider"},
        "provider": price.provider.name if price.provider_id else None,
    }


def _invoice_out(invoice: Invoice) -> dict:
    return {
        "period": f"{invoice.period:%Y-%m}",
        "total_usd": invoice.total_usd,
        "lines": invoice.lines,
        "final": invoice.final,
        "generated_at": invoice.generated_at,
    }


def _who(request) -> dict:
    return {"actor": request.auth, "ip_address": client_ip(request)}


def _date_range(start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    today = timezone.now().date()
    end = end or today
    start = start or end.replace(day=1)
    if end < start:
        raise InvalidRequest("to: must not be before 'from'", param="to")
    return start, end


def _period(value: str) -> dt.date:
    try:
        period = dt.datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise InvalidRequest("period must look like 2025-01", param="period") from None
    return billing.period_check(period)


def _user_named(username: str):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise InvalidRequest(f"no active user {username!r}", param="username")
    return user


# --- tenants -------------------------------------------------------------------------------


@tenants_router.get("/", response=list[TenantOut])
def list_tenants(request):
    """The tenants you belong to (staff: all tenants)."""
    roles = selectors.tenant_roles(request.auth)
    tenants = selectors.tenants_visible_to(request.auth).prefetch_related("allowed_providers")
    return [_tenant_out(t, roles.get(t.pk)) for t in tenants.distinct()]


@tenants_router.post("/", response={201: TenantOut})
def create_tenant(request, payload: TenantIn):
    """Staff only."""
    require_staff(request)
    data = payload.model_dump()
    owner_name = data.pop("owner")
    owner = _user_named(owner_name) if owner_name else None
    tenant = tenant_create(owner=owner, **data, **_who(request))
    return Status(201, _tenant_out(tenant, Role.OWNER if owner == request.auth else None))


def _access_role(access) -> str | None:
    return None if access.is_staff and not _is_member(access) else access.role


def _is_member(access) -> bool:
    return Membership.objects.filter(tenant=access.tenant, user=access.user).exists()


@tenants_router.get("/{slug}", response=TenantOut)
def get_tenant(request, slug: str):
    access = tenant_access(request, slug)
    return _tenant_out(access.tenant, _access_role(access))


@tenants_router.patch("/{slug}", response=TenantOut)
def update_tenant(request, slug: str, payload: TenantPatch):
    """Admin: name, limits, budget, PII filter. Staff: also active, allowed_providers."""
    access = tenant_access(request, slug, Role.ADMIN)
    fields = payload.model_dump(exclude_unset=True)
    staff_fields = [f for f in STAFF_ONLY_TENANT_FIELDS if f in fields]
    if staff_fields and not access.is_staff:
        raise AuthorizationError(message=f"staff only: {staff_fields[0]}")
    tenant = tenant_update(tenant=access.tenant, **fields, **_who(request))
    return _tenant_out(tenant, _access_role(access))


@tenants_router.delete("/{slug}", response={204: None})
def delete_tenant(request, slug: str):
    """Owner: deletes the tenant with its keys, routes, usage and invoices."""
    access = tenant_access(request, slug, Role.OWNER)
    tenant_delete(tenant=access.tenant, **_who(request))
    return Status(204, None)


# --- members -------------------------------------------------------------------------------


def _membership(tenant: Tenant, username: str) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user", "tenant"), tenant=tenant, user__username=username
    )


@tenants_router.get("/{slug}/members", response=list[MemberOut])
def list_members(request, slug: str):
    access = tenant_access(request, slug)
    return [_member_out(m) for m in selectors.tenant_members(access.tenant)]


@tenants_router.post("/{slug}/members", response={201: MemberOut})
def add_member(request, slug: str, payload: MemberIn):
    """Admin; only owners add owners."""
    access = tenant_access(request, slug)
    require_membership_change(access, current=None, new=payload.role)
    membership = member_add(
        tenant=access.tenant,
        user=_user_named(payload.username),
        role=payload.role,
        **_who(request),
    )
    return Status(201, _member_out(membership))


@tenants_router.patch("/{slug}/members/{username}", response=MemberOut)
def change_member(request, slug: str, username: str, payload: MemberPatch):
    """Admin; only owners promote to or demote from owner."""
    access = tenant_access(request, slug)
    membership = _membership(access.tenant, username)
    require_membership_change(access, current=Role(membership.role), new=payload.role)
    return _member_out(member_update(membership=membership, role=payload.role, **_who(request)))


@tenants_router.delete("/{slug}/members/{username}", response={204: None})
def remove_member(request, slug: str, username: str):
    """Admin; only owners remove owners; anyone may leave. The last owner stays."""
    access = tenant_access(request, slug)
    membership = _membership(access.tenant, username)
    if membership.user_id != request.auth.pk:
        require_membership_change(access, current=Role(membership.role), new=None)
    member_remove(membership=membership, **_who(request))
    return Status(204, None)


# --- virtual keys --------------------------------------------------------------------------


def _key(tenant: Tenant, key_id: int) -> VirtualKey:
    return get_object_or_404(
        VirtualKey.objects.select_related("tenant", "created_by"), pk=key_id, tenant=tenant
    )


@tenants_router.get("/{slug}/keys", response=list[KeyOut])
def list_keys(request, slug: str):
    """Every key of the tenant, shown by prefix; never a secret or hash."""
    access = tenant_access(request, slug)
    return [_key_out(k) for k in selectors.tenant_keys(access.tenant)]


@tenants_router.post("/{slug}/keys", response={201: KeyCreatedOut})
def create_key(request, slug: str, payload: KeyIn):
    """Member. The answer holds the secret: the only time aipk shows it."""
    access = tenant_access(request, slug, Role.MEMBER)
    key, secret = virtual_key_create(tenant=access.tenant, **payload.model_dump(), **_who(request))
    return Status(201, {"key": _key_out(key), "secret": secret})


@tenants_router.get("/{slug}/keys/{key_id}", response=KeyOut)
def get_key(request, slug: str, key_id: int):
    access = tenant_access(request, slug)
    return _key_out(_key(access.tenant, key_id))


@tenants_router.patch("/{slug}/keys/{key_id}", response=KeyOut)
def update_key(request, slug: str, key_id: int, payload: KeyPatch):
    """Admin, or the member who created the key."""
    access = tenant_access(request, slug, Role.MEMBER)
    key = _key(access.tenant, key_id)
    require_key_manager(access, key)
    fields = payload.model_dump(exclude_unset=True)
    return _key_out(virtual_key_update(key=key, **fields, **_who(request)))


@tenants_router.post("/{slug}/keys/{key_id}/revoke", response=KeyOut)
def revoke_key(request, slug: str, key_id: int):
    """Admin, or the member who created the key. Takes effect on the next request."""
    access = tenant_access(request, slug, Role.MEMBER)
    key = _key(access.tenant, key_id)
    require_key_manager(access, key)
    return _key_out(virtual_key_revoke(key=key, **_who(request)))


# --- routes (tenant) -----------------------------------------------------------------------


def _route(tenant: Tenant | None, alias: str) -> ModelRoute:
    return get_object_or_404(
        ModelRoute.objects.select_related("tenant"), tenant=tenant, alias=alias
    )


@tenants_router.get("/{slug}/routes", response=list[RouteOut])
def list_tenant_routes(request, slug: str):
    access = tenant_access(request, slug)
    return [_route_out(r) for r in selectors.routes_for(access.tenant)]


@tenants_router.post("/{slug}/routes", response={201: RouteOut})
def create_tenant_route(request, slug: str, payload: RouteIn):
    access = tenant_access(request, slug, Role.ADMIN)
    route = route_create(tenant=access.tenant, **payload.model_dump(), **_who(request))
    return Status(201, _route_out(route))


@tenants_router.get("/{slug}/routes/{alias}", response=RouteOut)
def get_tenant_route(request, slug: str, alias: str):
    access = tenant_access(request, slug)
    return _route_out(_route(access.tenant, alias))


@tenants_router.patch("/{slug}/routes/{alias}", response=RouteOut)
def update_tenant_route(request, slug: str, alias: str, payload: RoutePatch):
    access = tenant_access(request, slug, Role.ADMIN)
    route = _route(access.tenant, alias)
    fields = payload.model_dump(exclude_unset=True)
    return _route_out(route_update(route=route, **fields, **_who(request)))


@tenants_router.delete("/{slug}/routes/{alias}", response={204: None})
def delete_tenant_route(request, slug: str, alias: str):
    access = tenant_access(request, slug, Role.ADMIN)
    route_delete(route=_route(access.tenant, alias), **_who(request))
    return Status(204, None)


# --- routes (global) -----------------------------------------------------------------------


@routes_router.get("/", response=list[RouteOut])
def list_global_routes(request):
    """Every signed-in user may read them: they are the aliases all tenants can call."""
    return [_route_out(r) for r in selectors.routes_for(None)]


@routes_router.post("/", response={201: RouteOut})
def create_global_route(request, payload: RouteIn):
    require_staff(request)
    route = route_create(tenant=None, **payload.model_dump(), **_who(request))
    return Status(201, _route_out(route))


@routes_router.get("/{alias}", response=RouteOut)
def get_global_route(request, alias: str):
    return _route_out(_route(None, alias))


@routes_router.patch("/{alias}", response=RouteOut)
def update_global_route(request, alias: str, payload: RoutePatch):
    require_staff(request)
    fields = payload.model_dump(exclude_unset=True)
    return _route_out(route_update(route=_route(None, alias), **fields, **_who(request)))


@routes_router.delete("/{alias}", response={204: None})
def delete_global_route(request, alias: str):
    require_staff(request)
    route_delete(route=_route(None, alias), **_who(request))
    return Status(204, None)


# --- pricing -------------------------------------------------------------------------------


@pricing_router.get("/", response=list[PricingOut])
def list_pricing(request):
    """USD per million tokens; a provider's own row beats its type's row."""
    return [_pricing_out(p) for p in selectors.pricing_list()]


@pricing_router.post("/", response=PricingOut)
def set_pricing(request, payload: PricingIn):
    """Staff. Creates or replaces the price for (provider or provider_type, model)."""
    require_staff(request)
    provider = None
    if payload.provider:
        provider = Provider.objects.filter(name=payload.provider).first()
        if provider is None:
            raise InvalidRequest(f"unknown provider {payload.provider!r}", param="provider")
    price = pricing_set(
        provider_type=payload.provider_type,
        provider=provider,
        model=payload.model,
        input_per_million=payload.input_per_million,
        output_per_million=payload.output_per_million,
        actor=request.auth,
    )
    return _pricing_out(price)


@pricing_router.delete("/{pricing_id}", response={204: None})
def delete_pricing(request, pricing_id: int):
    require_staff(request)
    pricing_delete(pricing=get_object_or_404(Pricing, pk=pricing_id), actor=request.auth)
    return Status(204, None)


# --- usage ---------------------------------------------------------------------------------


@tenants_router.get("/{slug}/usage", response=UsageOut, by_alias=True)
def usage_summary(request, slug: str, query: Query[UsageQuery]):
    """Totals grouped by day, model, provider or key, for whole UTC days from..to."""
    access = tenant_access(request, slug)
    start, end = _date_range(query.start, query.end)
    return {
        "group_by": query.group_by,
        "start": start,
        "end": end,
        "rows": selectors.usage_summary(
            tenant=access.tenant, group_by=query.group_by, start=start, end=end
        ),
        "totals": selectors.usage_totals(tenant=access.tenant, start=start, end=end),
    }


@tenants_router.get("/{slug}/usage/now", response=dict[str, Any])
def usage_right_now(request, slug: str, key_id: int | None = None):
    """The admission counters as the gateway sees them: this rate window's requests
    and tokens, the month's spend (micro-USD) and running streams, for the tenant
    and optionally one of its keys."""
    access = tenant_access(request, slug)
    if key_id is not None:
        _key(access.tenant, key_id)
    return async_to_sync(usage_now)(key_id=key_id, tenant_id=access.tenant.pk)


def _csv_response(content: Any, filename: str) -> HttpResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if isinstance(content, str | bytes):
        return HttpResponse(content, content_type="text/csv; charset=utf-8", headers=headers)
    return StreamingHttpResponse(content, content_type="text/csv; charset=utf-8", headers=headers)


@tenants_router.get("/{slug}/usage/csv")
def usage_csv(request, slug: str, query: Query[DateRange]):
    """One line per request in the range, streamed."""
    access = tenant_access(request, slug)
    start, end = _date_range(query.start, query.end)
    rows = selectors.tenant_usage_rows(tenant=access.tenant, start=start, end=end)
    return _csv_response(
        billing.usage_csv(rows.iterator(chunk_size=2000)),
        f"usage-{access.tenant.slug}-{start}-{end}.csv",
    )


# --- invoices ------------------------------------------------------------------------------


def _invoice(tenant: Tenant, period: str) -> Invoice:
    return get_object_or_404(Invoice, tenant=tenant, period=_period(period))


@tenants_router.get("/{slug}/invoices", response=list[InvoiceOut])
def list_invoices(request, slug: str):
    access = tenant_access(request, slug)
    return [_invoice_out(i) for i in selectors.tenant_invoices(access.tenant)]


@tenants_router.post("/{slug}/invoices", response={201: InvoiceOut})
def generate_invoice(request, slug: str, payload: InvoiceIn):
    """Admin. (Re)generates the month's invoice; an ended month's is final."""
    access = tenant_access(request, slug, Role.ADMIN)
    invoice = tenant_invoice_generate(
        tenant=access.tenant, period=_period(payload.period), **_who(request)
    )
    return Status(201, _invoice_out(invoice))


@tenants_router.get("/{slug}/invoices/{period}", response=InvoiceOut)
def get_invoice(request, slug: str, period: str):
    access = tenant_access(request, slug)
    return _invoice_out(_invoice(access.tenant, period))


@tenants_router.get("/{slug}/invoices/{period}/csv")
def invoice_csv(request, slug: str, period: str):
    access = tenant_access(request, slug)
    invoice = _invoice(access.tenant, period)
    return _csv_response(billing.invoice_csv(invoice), f"invoice-{access.tenant.slug}-{period}.csv")


# --- audit log -----------------------------------------------------------------------------


class BoundedLimitOffset(LimitOffsetPagination):
    """ninja's limit/offset, both bounded: an offset of 10**20 reached the database as
    an integer it cannot hold (a 500)."""

    class Input(Schema):
        limit: int = Field(100, ge=1, le=1000)
        offset: int = Field(0, ge=0, le=MAX_INT)


@tenants_router.get("/{slug}/audit", response=list[AuditOut])
@paginate(BoundedLimitOffset)
def audit_log(request, slug: str, query: Query[AuditQuery]):
    """Admin. Newest first; ``action`` matches exactly, or by prefix when it ends in '.'."""
    access = tenant_access(request, slug, Role.ADMIN)
    events = selectors.tenant_audit_events(
        tenant=access.tenant, action=query.action, start=query.start, end=query.end
    )
    return events


# --- admin tokens --------------------------------------------------------------------------


@tokens_router.get("/", response=list[TokenOut])
def list_tokens(request):
    """Your own admin tokens, shown by prefix."""
    return list(selectors.user_admin_tokens(request.auth))


@tokens_router.post("/", response={201: TokenCreatedOut})
def create_token(request, payload: TokenIn):
    """Needs a console session: a token cannot mint tokens, so a leaked one cannot
    outlive its own revocation."""
    if by_token(request):
        raise AuthorizationError(message="admin tokens are created from a console session")
    token, secret = admin_token_create(user=request.auth, name=payload.name, **_who(request))
    return Status(201, {"token": token, "secret": secret})


@tokens_router.post("/{token_id}/revoke", response=TokenOut)
def revoke_token(request, token_id: int):
    token = AdminToken.objects.filter(pk=token_id, user=request.auth).first()
    if token is None:
        raise Http404("admin token not found")
    return admin_token_revoke(token=token, **_who(request))
