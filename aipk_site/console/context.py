"""Template context every console page needs: the navigation."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tenants_app.selectors import tenants_visible_to


def console_nav(request: HttpRequest) -> dict[str, Any]:
    # the path first: pages outside the console (the OAuth callback, rendered from
    # async code) must not load the user here
    if not request.path.startswith("/console/"):
        return {}
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "nav_is_staff": user.is_staff,
        "nav_tenants": list(tenants_visible_to(user).only("name", "slug")[:50]),
    }
