"""A tenant's members tab: who belongs with which role; admins add, change and remove
members (owners for owners), anyone may leave."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from aipk_site.infra.errors import InvalidRequest
from tenants_app import selectors
from tenants_app.auth import TenantAccess, require_membership_change, who
from tenants_app.console.access import console_tenant, console_view
from tenants_app.console.pages import INVALID, tab_page
from tenants_app.console_forms import MemberAddForm, MemberRoleForm
from tenants_app.models import Role
from tenants_app.services.tenants import member_add, member_remove, member_update


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
    return tab_page(
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
                tenant=access.tenant, user=form.cleaned_data["username"], role=role, **who(request)
            )
        except InvalidRequest as error:
            form.add_service_error(error)
        else:
            username = form.cleaned_data["username"].get_username()
            messages.success(request, f"{username} added as {role.value}.")
            return redirect("console:tenant_members", access.tenant.slug)
    return _members_page(request, access, add_form=form, status=INVALID)


@console_view
@require_POST
def tenant_member_role(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    access = console_tenant(request, slug)
    membership = selectors.tenant_membership(access.tenant, username)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        access.require(Role.ADMIN)
        return _members_page(
            request, access, row_errors={username: "Pick a role from the list."}, status=INVALID
        )
    role = Role(form.cleaned_data["role"])
    require_membership_change(access, current=Role(membership.role), new=role)
    try:
        member_update(membership=membership, role=role, **who(request))
    except InvalidRequest as error:
        return _members_page(request, access, row_errors={username: error.message}, status=INVALID)
    messages.success(request, f"{username} is now {role.value}.")
    return redirect("console:tenant_members", access.tenant.slug)


@console_view
@require_POST
def tenant_member_remove(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    """Admins remove members (owners remove owners); anyone may leave."""
    access = console_tenant(request, slug)
    membership = selectors.tenant_membership(access.tenant, username)
    leaving = membership.user_id == request.user.pk
    if not leaving:
        require_membership_change(access, current=Role(membership.role), new=None)
    try:
        member_remove(membership=membership, **who(request))
    except InvalidRequest as error:
        return _members_page(request, access, row_errors={username: error.message}, status=INVALID)
    if leaving:
        messages.success(request, f"You left {access.tenant.name}.")
        return redirect("console:tenants")
    messages.success(request, f"{username} removed.")
    return redirect("console:tenant_members", access.tenant.slug)
