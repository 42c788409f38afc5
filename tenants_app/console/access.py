"""Who may see which tenant page: the management API's answers (tenants_app/auth.py),
shown as the console shows refusals. A tenant someone does not belong to is a 404,
exactly like one that does not exist; a role too low for an action is a 403 naming the
role needed (Django's 403 page, templates/403.html, shows the message)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as PageForbidden
from django.http import Http404, HttpRequest, HttpResponse

from aipk_site.infra import errors
from tenants_app.auth import TenantAccess, user_tenant_access
from tenants_app.models import Role


def console_tenant(request: HttpRequest, slug: str, role: Role = Role.VIEWER) -> TenantAccess:
    """The tenant behind ``slug`` for the signed-in user, with at least ``role``."""
    return user_tenant_access(request.user, slug, role)


def console_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in; the family's refusals raised by the shared rule helpers
    (``console_tenant``, ``require_key_manager``, ``require_staff``...) become Django's
    404 and 403 pages with the same message the API would answer."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except errors.PermissionDenied as exc:
            raise PageForbidden(exc.message) from exc
        except errors.NotFound as exc:
            raise Http404(exc.message) from exc

    return wrapped
