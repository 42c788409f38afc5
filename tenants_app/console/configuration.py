"""The organisation's configuration pages: global routes, prices and the model catalogue.

Who may do what is the management API's answer (tenants_app/api/routes.py and
pricing.py): every signed-in user reads the global routes and the prices (they are what
every tenant's keys may call and are charged), staff change them. The catalogue lists
providers' discovered models, and providers are staff-only (providers_app's pages and
API), so the catalogue is staff-only too."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from aipk_site.infra.access import require_staff, staff_required
from aipk_site.infra.errors import InvalidRequest
from tenants_app import config_selectors, selectors
from tenants_app.auth import who
from tenants_app.console.access import console_view
from tenants_app.console.pages import INVALID
from tenants_app.console.routes import route_edit_step
from tenants_app.console_forms import CatalogueFilterForm, PriceForm, RouteForm
from tenants_app.services.pricing import pricing_set
from tenants_app.services.routes import route_create, route_delete


def _page(
    request: HttpRequest, template: str, section: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    context = {"nav_section": section, "is_staff": request.user.is_staff, **context}
    return render(request, f"console/configuration/{template}", context, status=status)


# --- global routes ---------------------------------------------------------------------


@console_view
def global_routes(request: HttpRequest) -> HttpResponse:
    """GET: the global routes and the tenant routes that shadow them; POST: add one (staff)."""
    form = RouteForm() if request.user.is_staff else None
    status = 200
    if request.method == "POST":
        require_staff(request.user)
        form = RouteForm(request.POST)
        if form.is_valid():
            try:
                route = route_create(tenant=None, **form.cleaned_data, **who(request))
            except InvalidRequest as error:
                form.add_service_error(error)
            else:
                messages.success(request, f"Global route {route.alias} created.")
                return redirect("console:global_routes")
        status = INVALID
    rows = config_selectors.global_routes_with_overrides(request.user)
    return _page(request, "routes.html", "config_routes", {"rows": rows, "form": form}, status)


@console_view
def global_route_edit(request: HttpRequest, alias: str) -> HttpResponse:
    require_staff(request.user)
    route = selectors.model_route(None, alias)
    form, saved = route_edit_step(request, route)
    if saved:
        messages.success(request, f"Global route {route.alias} saved.")
        return redirect("console:global_routes")
    status = INVALID if request.method == "POST" else 200
    context = {"route": route, "form": form}
    return _page(request, "route_edit.html", "config_routes", context, status)


@console_view
@require_POST
def global_route_delete(request: HttpRequest, alias: str) -> HttpResponse:
    require_staff(request.user)
    route_delete(route=selectors.model_route(None, alias), **who(request))
    messages.success(request, f"Global route {alias} deleted.")
    return redirect("console:global_routes")


# --- prices ------------------------------------------------------------------------------


def _set_price(request: HttpRequest, form: PriceForm, **identity: Any) -> bool:
    """Hands a valid form to the service; False (with the refusal on the form) if not."""
    if not form.is_valid():
        return False
    data = {**form.cleaned_data, **identity}
    try:
        price = pricing_set(**data, **who(request))
    except InvalidRequest as error:
        form.add_service_error(error)
        return False
    messages.success(request, f"Price of {price.model} saved.")
    return True


@console_view
def pricing(request: HttpRequest) -> HttpResponse:
    """GET: every price and where it came from, and the models used without one;
    POST: set a price (staff)."""
    form = PriceForm() if request.user.is_staff else None
    status = 200
    if request.method == "POST":
        require_staff(request.user)
        form = PriceForm(request.POST)
        if _set_price(request, form):
            return redirect("console:pricing")
        status = INVALID
    context = {
        "prices": config_selectors.price_rows(),
        "source_labels": config_selectors.SOURCE_LABELS,
        "unpriced": config_selectors.unpriced_traffic(request.user),
        "unpriced_days": config_selectors.UNPRICED_TRAFFIC_DAYS,
        "form": form,
    }
    return _page(request, "pricing.html", "config_pricing", context, status)


@console_view
def pricing_edit(request: HttpRequest, pricing_id: int) -> HttpResponse:
    require_staff(request.user)
    price = config_selectors.price_row(pricing_id)
    if price is None:
        raise Http404("no such price")
    status = 200
    if request.method == "POST":
        form = PriceForm(request.POST, editing=True)
        identity = {
            "provider_type": price.provider_type,
            "provider": price.provider,
            "model": price.model,
        }
        if _set_price(request, form, **identity):
            return redirect("console:pricing")
        status = INVALID
    else:
        form = PriceForm(
            initial={
                "input_per_million": price.input_per_million,
                "output_per_million": price.output_per_million,
                "cached_input_per_million": price.cached_input_per_million,
                "cache_write_per_million": price.cache_write_per_million,
            },
            editing=True,
        )
    context = {"price": price, "form": form, "source_labels": config_selectors.SOURCE_LABELS}
    return _page(request, "pricing_edit.html", "config_pricing", context, status)


# --- the model catalogue -----------------------------------------------------------------


@staff_required
def model_catalogue(request: HttpRequest) -> HttpResponse:
    providers = list(config_selectors.catalogue_providers())
    form = CatalogueFilterForm(
        request.GET, providers=providers, capabilities=config_selectors.CAPABILITIES
    )
    rows: list[config_selectors.CatalogueRow] = []
    status = 200
    if form.is_valid():
        data = form.cleaned_data
        rows = config_selectors.model_catalogue(
            query=data["q"],
            provider=form.providers_by_pk.get(data["provider"]),
            capability=data["capability"],
        )
    else:
        status = INVALID
    context = {"form": form, "rows": rows, "capabilities": config_selectors.CAPABILITIES}
    # htmx asks for the same page and swaps only its results (hx-select)
    return _page(request, "models.html", "config_models", context, status)
