"""Who may see which console page.

The console asks the same questions as the management API (tenants_app/auth.py)
and gets the same answers: staff run the organisation (providers, credentials,
every tenant); everyone else sees the tenants they belong to, with what their
role allows. A tenant someone does not belong to is a 404, exactly like one that
does not exist; a role too low for an action is a 403 naming the role needed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja.errors import AuthorizationError

from tenants_app.auth import TenantAccess, user_tenant_access
from tenants_app.models import Role

__all__ = ["console_tenant", "staff_required", "TenantAccess", "Role"]


STAFF_ONLY = "this page is for staff (organisation administrators)"


def staff_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Organisation-wide pages (providers, credentials): the login page for visitors,
    403 for signed-in non-staff. Wraps sync and ``async def`` views alike."""
    if iscoroutinefunction(view):

        @wraps(view)
        async def wrapped_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            user = await request.auser()
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user.is_staff:
                raise PermissionDenied(STAFF_ONLY)
            # the resolved user: templates and services never load it again from async code
            request.user = user
            return await view(request, *args, **kwargs)

        return wrapped_async

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if not request.user.is_staff:
            raise PermissionDenied(STAFF_ONLY)
        return view(request, *args, **kwargs)

    return wrapped


def console_tenant(request: HttpRequest, slug: str, role: Role = Role.VIEWER) -> TenantAccess:
    """The tenant behind ``slug`` for the signed-in user, with at least ``role``:
    Http404 if they may not see it, PermissionDenied if their role is too low."""
    try:
        return user_tenant_access(request.user, slug, role)
    except AuthorizationError as exc:
        raise PermissionDenied(str(exc)) from exc
