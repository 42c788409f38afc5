"""Staff run the organisation: providers, credentials, pricing, global routes, every
tenant. That question has one answer for the console and the management API of both
apps, so it lives below them; what a member may do inside a tenant is the tenants'
business (tenants_app/auth.py).

Two ways to refuse, one per presentation: the API raises the error family's
``PermissionDenied`` (rendered once by the API's error handler), a console page
Django's own (its 403 page), and a visitor who is not signed in is sent to log in.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied as PageForbidden
from django.http import HttpRequest

from aipk_site.infra import errors

__all__ = ["STAFF_ONLY", "STAFF_ONLY_PAGE", "require_staff", "staff_required"]

STAFF_ONLY = "staff only"
STAFF_ONLY_PAGE = "this page is for staff (organisation administrators)"


def require_staff(user: Any) -> None:
    """For API operations, with the authenticated caller (``request.auth``)."""
    if not user.is_staff:
        raise errors.PermissionDenied(STAFF_ONLY)


def staff_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Organisation-wide console pages: the login page for visitors, 403 for signed-in
    non-staff. Wraps sync and ``async def`` views alike."""
    if iscoroutinefunction(view):

        @wraps(view)
        async def wrapped_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            user = await request.auser()
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user.is_staff:
                raise PageForbidden(STAFF_ONLY_PAGE)
            # the resolved user: templates and services never load it again from async code
            request.user = user
            return await view(request, *args, **kwargs)

        return wrapped_async

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if not request.user.is_staff:
            raise PageForbidden(STAFF_ONLY_PAGE)
        return view(request, *args, **kwargs)

    signed_in: Callable[..., Any] = login_required(wrapped)
    return signed_in
