"""The console's tenant pages: the list, and one tenant's tabs (overview, members,
keys, routes, usage, invoices).

Who may do what is decided exactly as in the management API (tenants_app/auth.py,
tenants_app/management_api.py), with the same helpers; writes go through the same
services with the signed-in user and their address, so each one is audited. The
pages hide what a role may not do, and every POST checks it again.

A new virtual key's secret exists only in the response to the POST that created
it: never in the session, a message, a redirect or a later page.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from ninja.errors import AuthorizationError

from aipk_site.console import charts
from aipk_site.console.access import TenantAccess, console_tenant
from aipk_site.infra.client_ip import client_ip
from aipk_site.infra.errors import InvalidRequest
from tenants_app import selectors
from tenants_app.auth import require_key_manager, require_membership_change
from tenants_app.console_forms import (
    InvoiceGenerateForm,
    KeyForm,
    MemberAddForm,
    MemberRoleForm,
    RouteForm,
    TenantCreateForm,
    TenantSettingsForm,
    UsageRangeForm,
)
from tenants_app.models import Membership, ModelRoute, Role, VirtualKey
from tenants_app.services.keys import virtual_key_create, virtual_key_revoke, virtual_key_update
from tenants_app.services.routes import route_create, route_delete, route_update
from tenants_app.services.tenants import (
    member_add,
    member_remove,
    member_update,
    tenant_create,
    tenant_invoice_generate,
    tenant_update,
)

TABS = (
    ("overview", "Overview", "console:tenant"),
    ("members", "Members", "console:tenant_members"),
    ("keys", "Keys", "console:tenant_keys"),
    ("routes", "Routes", "console:tenant_routes"),
    ("usage", "Usage", "console:tenant_usage"),
    ("invoices", "Invoices", "console:tenant_invoices"),
)
# pages that sit under a tab without being one
EDIT_PAGE_TABS = {"key_edit": "keys", "route_edit": "routes"}
INVALID = 422  # a form re-rendered with its errors (htmx swaps it too)


def console_view(view):
    """Signed in; the API's own rule helpers (require_key_manager, ...) refuse with
    ninja's AuthorizationError, which becomes a PermissionDenied: Django's 403 page
    (templates/403.html) then names the role needed, as for every console refusal."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except AuthorizationError as exc:
            raise PermissionDenied(str(exc)) from exc

    return wrapped


def _who(request: HttpRequest) -> dict[str, Any]:
    return {"actor": request.user, "ip_address": client_ip(request)}


def _this_month() -> tuple[dt.date, dt.date]:
    today = timezone.now().date()
    return today.replace(day=1), today


def _budget_use(spent: Decimal, budget: Decimal | None) -> dict[str, Any]:
    """Spend against a budget as a share and a badge state (none without a budget)."""
    percent = None
    if budget is not None and budget > 0:
        share = (Decimal(spent) * 100 / budget).quantize(Decimal(1), ROUND_HALF_UP)
        percent = min(999, int(share))
    elif budget is not None:
        percent = 100  # a zero budget is used up from the start: the gateway refuses all
    if percent is None:
        state = "muted"
    elif percent >= 100:
        state = "bad"
    elif percent >= 80:
        state = "warn"
    else:
        state = "ok"
    return {"spent": spent, "budget": budget, "percent": percent, "state": state}


def _tab_page(
    request: HttpRequest,
    access: TenantAccess,
    tab: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HttpResponse:
    slug = access.tenant.slug
    return render(
        request,
        f"console/tenants/{tab}.html",
        {
            "nav_section": "tenants",
            "access": access,
            "tenant": access.tenant,
            "role": access.role,
            "is_admin": access.has(Role.ADMIN),
            "current_tab": EDIT_PAGE_TABS.get(tab, tab),
            "tabs": [(name, label, reverse(url, args=[slug])) for name, label, url in TABS],
            **context,
        },
        status=status,
    )


# --- the list ------------------------------------------------------------------------------


@console_view
def tenant_list(request: HttpRequest) -> HttpResponse:
    """GET: the tenants you may see; POST: create one (staff only, as in the API)."""
    form = None
    status = 200
    if request.method == "POST":
        if not request.user.is_staff:
            raise PermissionDenied("staff only")
        form = TenantCreateForm(request.POST)
        if form.is_valid():
            data = dict(form.cleaned_data)
            try:
                tenant = tenant_create(**data, **_who(request))
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
    start, end = _this_month()
    spend = selectors.spend_by_tenant(tenants=tenants, start=start, end=end)
    rows = [
        {
            "tenant": t,
            "role": roles.get(t.pk),
            "use": _budget_use(spend.get(t.pk, Decimal(0)), t.monthly_budget_usd),
        }
        for t in tenants
    ]
    return render(
        request,
        "console/tenants/list.html",
        {"nav_section": "tenants", "rows": rows, "form": form, "month": start},
        status=status,
    )


# --- overview ------------------------------------------------------------------------------


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
                tenant_update(tenant=tenant, **form.cleaned_data, **_who(request))
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

    start, end = _this_month()
    totals = selectors.usage_totals(tenant=tenant, start=start, end=end)
    return _tab_page(
        request,
        access,
        "overview",
        {
            "form": form,
            "month": start,
            "totals": totals,
            "use": _budget_use(totals["cost_usd"], tenant.monthly_budget_usd),
            "allowed_providers": [p.name for p in tenant.allowed_providers.all()],
            "key_count": VirtualKey.objects.filter(tenant=tenant, revoked_at=None).count(),
        },
        status=status,
    )


# --- members -------------------------------------------------------------------------------


def _members_page(
    request: HttpRequest,
    access: TenantAccess,
    *,
    add_form: MemberAddForm | None = None,
    row_errors: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    may_grant_owner = access.has(Role.OWNER)
    rows = []
    for membership in selectors.tenant_members(access.tenant):
        is_owner_row = membership.role == Role.OWNER
        may_change = access.has(Role.ADMIN) and (may_grant_owner or not is_owner_row)
        rows.append(
            {
                "membership": membership,
                "username": membership.user.get_username(),
                "is_you": membership.user_id == request.user.pk,
                "may_change": may_change,
                "error": (row_errors or {}).get(membership.user.get_username()),
            }
        )
    if add_form is None and access.has(Role.ADMIN):
        add_form = MemberAddForm(may_grant_owner=may_grant_owner)
    role_choices = [c for c in Role.choices if may_grant_owner or c[0] != Role.OWNER]
    return _tab_page(
        request,
        access,
        "members",
        {"rows": rows, "add_form": add_form, "role_choices": role_choices},
        status=status,
    )


@console_view
def tenant_members(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: who belongs and with which role; POST: add someone (admin; owners for owners)."""
    access = console_tenant(request, slug)
    if request.method != "POST":
        return _members_page(request, access)
    access.require(Role.ADMIN)
    form = MemberAddForm(request.POST, may_grant_owner=access.has(Role.OWNER))
    if form.is_valid():
        role = Role(form.cleaned_data["role"])
        require_membership_change(access, current=None, new=role)
        try:
            member_add(
                tenant=access.tenant, user=form.cleaned_data["username"], role=role, **_who(request)
            )
        except InvalidRequest as error:
            form.add_service_error(error)
        else:
            username = form.cleaned_data["username"].get_username()
            messages.success(request, f"{username} added as {role.value}.")
            return redirect("console:tenant_members", access.tenant.slug)
    return _members_page(request, access, add_form=form, status=INVALID)


def _membership(access: TenantAccess, username: str) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user", "tenant"),
        tenant=access.tenant,
        user__username=username,
    )


@console_view
@require_POST
def tenant_member_role(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    access = console_tenant(request, slug)
    membership = _membership(access, username)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        access.require(Role.ADMIN)
        return _members_page(
            request, access, row_errors={username: "Pick a role from the list."}, status=INVALID
        )
    role = Role(form.cleaned_data["role"])
    require_membership_change(access, current=Role(membership.role), new=role)
    try:
        member_update(membership=membership, role=role, **_who(request))
    except InvalidRequest as error:
        return _members_page(request, access, row_errors={username: error.message}, status=INVALID)
    messages.success(request, f"{username} is now {role.value}.")
    return redirect("console:tenant_members", access.tenant.slug)


@console_view
@require_POST
def tenant_member_remove(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    """Admins remove members (owners remove owners); anyone may leave."""
    access = console_tenant(request, slug)
    membership = _membership(access, username)
    leaving = membership.user_id == request.user.pk
    if not leaving:
        require_membership_change(access, current=Role(membership.role), new=None)
    try:
        member_remove(membership=membership, **_who(request))
    except InvalidRequest as error:
        return _members_page(request, access, row_errors={username: error.message}, status=INVALID)
    if leaving:
        messages.success(request, f"You left {access.tenant.name}.")
        return redirect("console:tenants")
    messages.success(request, f"{username} removed.")
    return redirect("console:tenant_members", access.tenant.slug)


# --- virtual keys --------------------------------------------------------------------------


def _may_manage(access: TenantAccess, key: VirtualKey) -> bool:
    try:
        require_key_manager(access, key)
    except AuthorizationError:
        return False
    return True


def _key_state(key: VirtualKey, now: dt.datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _keys_page(
    request: HttpRequest,
    access: TenantAccess,
    *,
    form: KeyForm | None = None,
    created: VirtualKey | None = None,
    secret: str | None = None,
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    """The keys tab: the whole page, or for htmx only its panel (#keys-panel), so a
    new key's secret arrives in a swap and the address bar never changes."""
    now = timezone.now()
    rows = [
        {"key": key, "state": _key_state(key, now), "may_manage": _may_manage(access, key)}
        for key in selectors.tenant_keys(access.tenant)
    ]
    if form is None and access.has(Role.MEMBER):
        form = KeyForm()
    context = {
        "rows": rows,
        "form": form,
        "created": created,
        "secret": secret,
        "notice": notice,
        "may_create": access.has(Role.MEMBER),
    }
    if request.htmx:
        return render(
            request,
            "console/tenants/_keys_panel.html",
            {"tenant": access.tenant, **context},
            status=status,
        )
    return _tab_page(request, access, "keys", context, status=status)


@never_cache  # no copy of a page holding a secret in any cache or the back/forward cache
@console_view
def tenant_keys(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the keys by prefix; POST: create one (member) and show its secret once."""
    access = console_tenant(request, slug)
    if request.method != "POST":
        return _keys_page(request, access)
    access.require(Role.MEMBER)
    form = KeyForm(request.POST)
    if form.is_valid():
        try:
            key, secret = virtual_key_create(
                tenant=access.tenant, **form.cleaned_data, **_who(request)
            )
        except InvalidRequest as error:
            form.add_service_error(error)
        else:
            return _keys_page(request, access, created=key, secret=secret, status=201)
    return _keys_page(request, access, form=form, status=INVALID)


def _key(access: TenantAccess, key_id: int) -> VirtualKey:
    return get_object_or_404(
        VirtualKey.objects.select_related("tenant", "created_by"), pk=key_id, tenant=access.tenant
    )


@never_cache
@console_view
def tenant_key_edit(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    """Change a key's name, limits, models or expiry (admin, or the member who made it)."""
    access = console_tenant(request, slug, Role.MEMBER)
    key = _key(access, key_id)
    require_key_manager(access, key)
    status = 200
    if request.method == "POST":
        form = KeyForm(request.POST, initial=KeyForm.initial_for(key))
        if form.is_valid():
            # only what was changed, as a PATCH would: an untouched expiry that has
            # passed since must not block a change of name or limits
            changed = {field: form.cleaned_data[field] for field in form.changed_data}
            try:
                virtual_key_update(key=key, **changed, **_who(request))
            except InvalidRequest as error:
                form.add_service_error(error)
            else:
                messages.success(request, f"Key {key.name} saved.")
                return redirect("console:tenant_keys", access.tenant.slug)
        status = INVALID
        key.refresh_from_db()
    else:
        form = KeyForm(initial=KeyForm.initial_for(key))
    return _tab_page(request, access, "key_edit", {"key": key, "form": form}, status=status)


@never_cache
@console_view
@require_POST
def tenant_key_revoke(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    access = console_tenant(request, slug, Role.MEMBER)
    key = _key(access, key_id)
    require_key_manager(access, key)
    virtual_key_revoke(key=key, **_who(request))
    notice = f"Key {key.name} ({key.prefix}…) revoked: it stops working on its next request."
    if request.htmx:
        return _keys_page(request, access, notice=notice)
    messages.success(request, notice)
    return redirect("console:tenant_keys", access.tenant.slug)


# --- routes --------------------------------------------------------------------------------


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
                route = route_create(tenant=access.tenant, **form.cleaned_data, **_who(request))
            except InvalidRequest as error:
                form.add_service_error(error)
            else:
                messages.success(request, f"Route {route.alias} created.")
                return redirect("console:tenant_routes", access.tenant.slug)
        status = INVALID
    routes = list(selectors.routes_for(access.tenant))
    return _tab_page(request, access, "routes", {"routes": routes, "form": form}, status=status)


def _route(access: TenantAccess, alias: str) -> ModelRoute:
    return get_object_or_404(ModelRoute, tenant=access.tenant, alias=alias)


@console_view
def tenant_route_edit(request: HttpRequest, slug: str, alias: str) -> HttpResponse:
    access = console_tenant(request, slug, Role.ADMIN)
    route = _route(access, alias)
    status = 200
    if request.method == "POST":
        form = RouteForm(request.POST, editing=True)
        if form.is_valid():
            try:
                route_update(route=route, **form.cleaned_data, **_who(request))
            except InvalidRequest as error:
                form.add_service_error(error)
            else:
                messages.success(request, f"Route {route.alias} saved.")
                return redirect("console:tenant_routes", access.tenant.slug)
        status = INVALID
        route.refresh_from_db()
    else:
        form = RouteForm(
            initial={
                "strategy": route.strategy,
                "candidates": RouteForm.candidates_text(route.candidates),
            },
            editing=True,
        )
    return _tab_page(request, access, "route_edit", {"route": route, "form": form}, status=status)


@console_view
@require_POST
def tenant_route_delete(request: HttpRequest, slug: str, alias: str) -> HttpResponse:
    access = console_tenant(request, slug, Role.ADMIN)
    route = _route(access, alias)
    route_delete(route=route, **_who(request))
    messages.success(request, f"Route {alias} deleted.")
    return redirect("console:tenant_routes", access.tenant.slug)


# --- usage ---------------------------------------------------------------------------------


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def _usage_charts(by_day: list[dict[str, Any]], start: dt.date, end: dt.date) -> dict[str, str]:
    """One bar per day of the range, days without usage at zero."""
    rows = {row["group"]: row for row in by_day}
    days = _days(start, end)
    # "Nov 1", "2", "3"…: the month only where it starts, so 31 labels fit under the bars
    labels = [
        f"{day:%b} {day.day}" if day.day == 1 or day == start else str(day.day) for day in days
    ]
    empty = {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0}
    per_day = [rows.get(day.isoformat(), empty) for day in days]
    return {
        "requests": charts.bar_chart(
            "Requests per day",
            labels,
            {
                "ok": [r["requests"] - r["errors"] for r in per_day],
                "error": [r["errors"] for r in per_day],
            },
            stacked=True,
        ),
        "tokens": charts.bar_chart(
            "Tokens per day",
            labels,
            {
                "prompt": [r["prompt_tokens"] for r in per_day],
                "completion": [r["completion_tokens"] for r in per_day],
            },
            stacked=True,
        ),
        "spend": charts.bar_chart(
            "Spend per day (USD)",
            labels,
            {"spend": [r["cost_usd"] for r in per_day]},
            value_format="${:,.4f}",
        ),
    }


@console_view
def tenant_usage(request: HttpRequest, slug: str) -> HttpResponse:
    """Charts and tables for whole UTC days from..to (default: this month so far)."""
    access = console_tenant(request, slug)
    form = UsageRangeForm(request.GET)
    if not form.is_valid():
        return _tab_page(request, access, "usage", {"form": form}, status=INVALID)
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    tenant = access.tenant

    def summary(group_by: selectors.UsageGroup) -> list[dict[str, Any]]:
        return selectors.usage_summary(tenant=tenant, group_by=group_by, start=start, end=end)

    csv_url = reverse("api-1:usage_csv", kwargs={"slug": tenant.slug})
    return _tab_page(
        request,
        access,
        "usage",
        {
            # the picker shows the days in effect, defaults included
            "form": UsageRangeForm(initial={"from": start, "to": end}),
            "start": start,
            "end": end,
            "totals": selectors.usage_totals(tenant=tenant, start=start, end=end),
            "charts": _usage_charts(summary("day"), start, end),
            "by_model": summary("model"),
            "by_provider": summary("provider"),
            "by_key": summary("key"),
            "csv_url": f"{csv_url}?from={start}&to={end}",
        },
    )


# --- invoices ------------------------------------------------------------------------------


@console_view
def tenant_invoices(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the invoices, newest first; POST: (re)generate a month's (admin)."""
    access = console_tenant(request, slug)
    form = InvoiceGenerateForm(initial={"period": f"{timezone.now():%Y-%m}"})
    status = 200
    if request.method == "POST":
        access.require(Role.ADMIN)
        form = InvoiceGenerateForm(request.POST)
        if form.is_valid():
            invoice = tenant_invoice_generate(
                tenant=access.tenant, period=form.cleaned_data["period"], **_who(request)
            )
            messages.success(request, f"Invoice for {invoice.period:%Y-%m} generated.")
            return redirect("console:tenant_invoices", access.tenant.slug)
        status = INVALID
    invoices = [
        {
            "invoice": invoice,
            "period": f"{invoice.period:%Y-%m}",
            "csv_url": reverse(
                "api-1:invoice_csv",
                kwargs={"slug": access.tenant.slug, "period": f"{invoice.period:%Y-%m}"},
            ),
        }
        for invoice in selectors.tenant_invoices(access.tenant)
    ]
    return _tab_page(
        request,
        access,
        "invoices",
        {"invoices": invoices, "form": form if access.has(Role.ADMIN) else None},
        status=status,
    )
