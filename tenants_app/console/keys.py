"""A tenant's keys tab: keys by prefix and state; members create keys, admins manage
every key and a member the keys they made.

A new virtual key's secret exists only in the response to the POST that created it:
never in the session, a message, a redirect or a later page.
"""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from aipk_site.infra.errors import InvalidRequest, PermissionDenied
from tenants_app import selectors
from tenants_app.auth import TenantAccess, require_key_manager, who
from tenants_app.console.access import console_tenant, console_view
from tenants_app.console.pages import INVALID, tab_page
from tenants_app.console_forms import KeyForm
from tenants_app.models import Role, VirtualKey
from tenants_app.services.keys import virtual_key_create, virtual_key_revoke, virtual_key_update


def _may_manage(access: TenantAccess, key: VirtualKey) -> bool:
    try:
        require_key_manager(access, key)
    except PermissionDenied:
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
    return tab_page(request, access, "keys", context, status=status)


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
                tenant=access.tenant, **form.cleaned_data, **who(request)
            )
        except InvalidRequest as error:
            form.add_service_error(error)
        else:
            return _keys_page(request, access, created=key, secret=secret, status=201)
    return _keys_page(request, access, form=form, status=INVALID)


@never_cache
@console_view
def tenant_key_edit(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    """Change a key's name, limits, models or expiry (admin, or the member who made it)."""
    access = console_tenant(request, slug, Role.MEMBER)
    key = selectors.tenant_key(access.tenant, key_id)
    require_key_manager(access, key)
    status = 200
    if request.method == "POST":
        form = KeyForm(request.POST, initial=KeyForm.initial_for(key))
        if form.is_valid():
            # only what was changed, as a PATCH would: an untouched expiry that has
            # passed since must not block a change of name or limits
            changed = {field: form.cleaned_data[field] for field in form.changed_data}
            try:
                virtual_key_update(key=key, **changed, **who(request))
            except InvalidRequest as error:
                form.add_service_error(error)
            else:
                messages.success(request, f"Key {key.name} saved.")
                return redirect("console:tenant_keys", access.tenant.slug)
        status = INVALID
        key.refresh_from_db()
    else:
        form = KeyForm(initial=KeyForm.initial_for(key))
    return tab_page(request, access, "key_edit", {"key": key, "form": form}, status=status)


@never_cache
@console_view
@require_POST
def tenant_key_revoke(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    access = console_tenant(request, slug, Role.MEMBER)
    key = selectors.tenant_key(access.tenant, key_id)
    require_key_manager(access, key)
    virtual_key_revoke(key=key, **who(request))
    notice = f"Key {key.name} ({key.prefix}…) revoked: it stops working on its next request."
    if request.htmx:
        return _keys_page(request, access, notice=notice)
    messages.success(request, notice)
    return redirect("console:tenant_keys", access.tenant.slug)
