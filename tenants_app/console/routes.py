"""A tenant's routes tab: its aliases, added, edited and deleted by its admins."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from aipk_site.infra.errors import InvalidRequest
from tenants_app import selectors
from tenants_app.auth import who
from tenants_app.console.access import console_tenant, console_view
from tenants_app.console.pages import INVALID, tab_page
from tenants_app.console_forms import RouteForm
from tenants_app.models import ModelRoute, Role
from tenants_app.services.routes import route_create, route_delete, route_update


@console_view
def tenant_routes(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the tenant's aliases; POST: add one (admin)."""
    access = console_tenant(request, slug)
    form = RouteForm() if access.has(Role.ADMIN) else None
    status = 200
    if request.method == "POST":
        access.require(Role.ADMIN)
        form = RouteForm(request.POST)
        if form.is_valid():
            try:
                route = route_create(tenant=access.tenant, **form.cleaned_data, **who(request))
            except InvalidRequest as error:
                form.add_service_error(error)
            else:
                messages.success(request, f"Route {route.alias} created.")
                return redirect("console:tenant_routes", access.tenant.slug)
        status = INVALID
    routes = list(selectors.routes_for(access.tenant))
    return tab_page(request, access, "routes", {"routes": routes, "form": form}, status=status)


def route_edit_step(request: HttpRequest, route: ModelRoute) -> tuple[RouteForm, bool]:
    """A route's edit form (tenant or global route alike): on POST, the change made
    through ``route_update`` -- (the form, True) once saved, else the form with its
    errors; on GET the form filled from the route."""
    if request.method != "POST":
        initial = {
            "strategy": route.strategy,
            "candidates": RouteForm.candidates_text(route.candidates),
        }
        return RouteForm(initial=initial, editing=True), False
    form = RouteForm(request.POST, editing=True)
    if form.is_valid():
        try:
            route_update(route=route, **form.cleaned_data, **who(request))
        except InvalidRequest as error:
            form.add_service_error(error)
        else:
            return form, True
    route.refresh_from_db()
    return form, False


@console_view
def tenant_route_edit(request: HttpRequest, slug: str, alias: str) -> HttpResponse:
    access = console_tenant(request, slug, Role.ADMIN)
    route = selectors.model_route(access.tenant, alias)
    form, saved = route_edit_step(request, route)
    if saved:
        messages.success(request, f"Route {route.alias} saved.")
        return redirect("console:tenant_routes", access.tenant.slug)
    status = INVALID if request.method == "POST" else 200
    return tab_page(request, access, "route_edit", {"route": route, "form": form}, status=status)


@console_view
@require_POST
def tenant_route_delete(request: HttpRequest, slug: str, alias: str) -> HttpResponse:
    access = console_tenant(request, slug, Role.ADMIN)
    route = selectors.model_route(access.tenant, alias)
    route_delete(route=route, **who(request))
    messages.success(request, f"Route {alias} deleted.")
    return redirect("console:tenant_routes", access.tenant.slug)
