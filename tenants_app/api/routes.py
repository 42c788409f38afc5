"""Model routes: an alias and the candidates it tries. One resource at two addresses:
a tenant's own routes under /tenants/{slug}/routes (the tenant's admins write them) and
the global ones under /routes (every signed-in user reads them, staff write them)."""

import datetime as dt
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from aipk_site.infra.access import require_staff
from tenants_app import selectors
from tenants_app.api.schemas import Strict, patch_field
from tenants_app.auth import tenant_access, who
from tenants_app.models import ModelRoute, Role, RouteStrategy
from tenants_app.services.routes import route_create, route_delete, route_update

# mounted at the API's root: its paths name both addresses
router = Router(tags=["routes"])
TENANT_TAGS = ["tenants"]


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


def route_out(route: ModelRoute) -> dict[str, Any]:
    return {
        "alias": route.alias,
        "strategy": route.strategy,
        "candidates": route.candidates,
        "tenant": route.tenant.slug if route.tenant_id else None,
        "created_at": route.created_at,
        "updated_at": route.updated_at,
    }


# --- a tenant's routes ---------------------------------------------------------------------


@router.get("/tenants/{slug}/routes", response=list[RouteOut], tags=TENANT_TAGS)
def list_tenant_routes(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    access = tenant_access(request, slug)
    return [route_out(r) for r in selectors.routes_for(access.tenant)]


@router.post("/tenants/{slug}/routes", response={201: RouteOut}, tags=TENANT_TAGS)
def create_tenant_route(request: HttpRequest, slug: str, payload: RouteIn) -> Status:
    access = tenant_access(request, slug, Role.ADMIN)
    route = route_create(tenant=access.tenant, **payload.model_dump(), **who(request))
    return Status(201, route_out(route))


@router.get("/tenants/{slug}/routes/{alias}", response=RouteOut, tags=TENANT_TAGS)
def get_tenant_route(request: HttpRequest, slug: str, alias: str) -> dict[str, Any]:
    access = tenant_access(request, slug)
    return route_out(selectors.model_route(access.tenant, alias))


@router.patch("/tenants/{slug}/routes/{alias}", response=RouteOut, tags=TENANT_TAGS)
def update_tenant_route(
    request: HttpRequest, slug: str, alias: str, payload: RoutePatch
) -> dict[str, Any]:
    access = tenant_access(request, slug, Role.ADMIN)
    route = selectors.model_route(access.tenant, alias)
    fields = payload.model_dump(exclude_unset=True)
    return route_out(route_update(route=route, **fields, **who(request)))


@router.delete("/tenants/{slug}/routes/{alias}", response={204: None}, tags=TENANT_TAGS)
def delete_tenant_route(request: HttpRequest, slug: str, alias: str) -> Status:
    access = tenant_access(request, slug, Role.ADMIN)
    route_delete(route=selectors.model_route(access.tenant, alias), **who(request))
    return Status(204, None)


# --- global routes -------------------------------------------------------------------------


@router.get("/routes/", response=list[RouteOut])
def list_global_routes(request: HttpRequest) -> list[dict[str, Any]]:
    """Every signed-in user may read them: they are the aliases all tenants can call."""
    return [route_out(r) for r in selectors.routes_for(None)]


@router.post("/routes/", response={201: RouteOut})
def create_global_route(request: HttpRequest, payload: RouteIn) -> Status:
    require_staff(request.auth)
    route = route_create(tenant=None, **payload.model_dump(), **who(request))
    return Status(201, route_out(route))


@router.get("/routes/{alias}", response=RouteOut)
def get_global_route(request: HttpRequest, alias: str) -> dict[str, Any]:
    return route_out(selectors.model_route(None, alias))


@router.patch("/routes/{alias}", response=RouteOut)
def update_global_route(request: HttpRequest, alias: str, payload: RoutePatch) -> dict[str, Any]:
    require_staff(request.auth)
    fields = payload.model_dump(exclude_unset=True)
    route = selectors.model_route(None, alias)
    return route_out(route_update(route=route, **fields, **who(request)))


@router.delete("/routes/{alias}", response={204: None})
def delete_global_route(request: HttpRequest, alias: str) -> Status:
    require_staff(request.auth)
    route_delete(route=selectors.model_route(None, alias), **who(request))
    return Status(204, None)
