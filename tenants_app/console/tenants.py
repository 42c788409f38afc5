"""The tenant list (with this month's spend against each budget) and a tenant's
overview tab (its limits and budget, edited by admins; its organisation fields by
staff)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from aipk_site.infra.access import require_staff
from aipk_site.infra.errors import InvalidRequest, PermissionDenied
from tenants_app import selectors
from tenants_app.auth import who
from tenants_app.console.access import console_tenant, console_view
from tenants_app.console.pages import INVALID, budget_use, tab_page, this_month
from tenants_app.console_forms import TenantCreateForm, TenantSettingsForm
from tenants_app.models import Role, VirtualKey
from tenants_app.services.tenants import tenant_create, tenant_update


@console_view
def tenant_list(request: HttpRequest) -> HttpResponse:
    """GET: the tenants you may see; POST: create one (staff only, as in the API)."""
    form = None
    status = 200
    if request.method == "POST":
        require_staff(request.user)
        form = TenantCreateForm(request.POST)
        if form.is_valid():
            data = dict(form.cleaned_data)
            try:
                tenant = tenant_create(**data, **who(request))
            except InvalidRequest as error:
                form.add_service_error(error)
            else:
                messages.success(request, f"Tenant {tenant.name} created.")
                return redirect("console:tenant", tenant.slug)
        status = INVALID
    elif request.user.is_staff:
        form = TenantCreateForm()

    tenants = list(selectors.tenants_visible_to(request.user).distinct())
    roles = selectors.tenant_roles(request.user)
    start, end = this_month()
    spend = selectors.spend_by_tenant(tenants=tenants, start=start, end=end)
    rows = [
        {
            "tenant": t,
            "role": roles.get(t.pk),
            "use": budget_use(spend.get(t.pk, Decimal(0)), t.monthly_budget_usd),
        }
        for t in tenants
    ]
    return render(
        request,
        "console/tenants/list.html",
        {"nav_section": "tenants", "rows": rows, "form": form, "month": start},
        status=status,
    )


@console_view
def tenant_overview(request: HttpRequest, slug: str) -> HttpResponse:
    """Limits, budget and this month's spend; admins edit them, staff also the
    organisation's fields (active, allowed providers)."""
    access = console_tenant(request, slug)
    tenant = access.tenant
    form = None
    status = 200
    if request.method == "POST":
        access.require(Role.ADMIN)
        staff_fields = [f for f in TenantSettingsForm.STAFF_FIELDS if f in request.POST]
        if staff_fields and not access.is_staff:
            raise PermissionDenied(f"staff only: {staff_fields[0]}")
        form = TenantSettingsForm(request.POST, staff=access.is_staff)
        if form.is_valid():
            try:
                tenant_update(tenant=tenant, **form.cleaned_data, **who(request))
            except InvalidRequest as error:
                form.add_service_error(error)
            else:
                messages.success(request, "Settings saved.")
                return redirect("console:tenant", tenant.slug)
        status = INVALID
        tenant.refresh_from_db()
    elif access.has(Role.ADMIN):
        form = TenantSettingsForm(
            initial=TenantSettingsForm.initial_for(tenant), staff=access.is_staff
        )

    start, end = this_month()
    totals = selectors.usage_totals(tenant=tenant, start=start, end=end)
    return tab_page(
        request,
        access,
        "overview",
        {
            "form": form,
            "month": start,
            "totals": totals,
            "use": budget_use(totals["cost_usd"], tenant.monthly_budget_usd),
            "allowed_providers": [p.name for p in tenant.allowed_providers.all()],
            "key_count": VirtualKey.objects.filter(tenant=tenant, revoked_at=None).count(),
        },
        status=status,
    )
