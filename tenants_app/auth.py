"""Who may call the management API, and what they may do in a tenant.

Two ways in, for every router of the API (aipk_site/api.py mounts them all with
``management_auth``): a console session (cookie, CSRF-checked by ninja) or an admin
token (``Authorization: Bearer aipkadm-…``) that acts as the user who made it.
Either way ``request.auth`` is the user.

Inside a tenant the roles rank viewer < member < admin < owner; staff users
(``is_staff``) run the organisation and count as owners everywhere. Someone
with no membership gets 404 for anything under a tenant, exactly as for a
tenant that does not exist, so slugs cannot be probed; a member whose role is
too low gets 403 naming the role needed. The console asks the same helpers: the
refusals are the error family's (NotFound, PermissionDenied), which the API renders
in its error shape and the console as its 404 and 403 pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer, django_auth

from aipk_site.infra.client_ip import client_ip
from aipk_site.infra.errors import AuthenticationFailed, NotFound, PermissionDenied
from tenants_app.models import AdminToken, Membership, Role, Tenant, VirtualKey
from tenants_app.services.secrets import ADMIN_TOKEN_PREFIX, secret_hash

ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}

TENANT_NOT_FOUND = "tenant not found"


class AdminTokenAuth(HttpBearer):
    """A bearer admin token. A token that is unknown or revoked is refused outright
    (401) rather than falling back to the session: a script sending a dead token
    should learn so, not silently act as whoever is logged in in the same browser."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        if not token.startswith(ADMIN_TOKEN_PREFIX):
            return None
        row = (
            AdminToken.objects.select_related("user").filter(token_hash=secret_hash(token)).first()
        )
        if row is None or row.revoked_at is not None or not row.user.is_active:
            raise AuthenticationFailed("invalid or revoked admin token", code="unauthenticated")
        AdminToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
        request.user = row.user
        request.admin_token = row
        return row.user


# token first: a request carrying a token is judged by the token alone
management_auth = [AdminTokenAuth(), django_auth]


def by_token(request: HttpRequest) -> bool:
    return getattr(request, "admin_token", None) is not None


def who(request: HttpRequest) -> dict[str, Any]:
    """The actor and address a write records in the audit log. ``request.user`` is the
    caller on every path: the console's session user, the API's session user, or the
    user an admin token acts as (``AdminTokenAuth`` sets it)."""
    return {"actor": request.user, "ip_address": client_ip(request)}


@dataclass(frozen=True)
class TenantAccess:
    """The caller's standing in one tenant. ``role`` is the membership role, or
    owner for staff (who may have no membership at all)."""

    tenant: Tenant
    user: Any
    role: Role
    is_staff: bool

    def has(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def require(self, role: Role) -> None:
        if not self.has(role):
            raise PermissionDenied(f"this needs the {role.value} role in the tenant")


def tenant_access(request: HttpRequest, slug: str, role: Role = Role.VIEWER) -> TenantAccess:
    """The tenant behind ``slug`` if the caller may see it, with at least ``role``."""
    return user_tenant_access(request.auth, slug, role)


def user_tenant_access(user: Any, slug: str, role: Role = Role.VIEWER) -> TenantAccess:
    """``tenant_access`` for a known user: the API (``request.auth``) and the
    console (``request.user``) decide who may see a tenant the same way."""
    if user.is_staff:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise NotFound(TENANT_NOT_FOUND)
        access = TenantAccess(tenant=tenant, user=user, role=Role.OWNER, is_staff=True)
    else:
        membership = (
            Membership.objects.select_related("tenant").filter(tenant__slug=slug, user=user).first()
        )
        if membership is None:
            raise NotFound(TENANT_NOT_FOUND)
        access = TenantAccess(
            tenant=membership.tenant, user=user, role=Role(membership.role), is_staff=False
        )
    access.require(role)
    return access


def require_key_manager(access: TenantAccess, key: VirtualKey) -> None:
    """Admins manage every key; a member only the keys they created."""
    if access.has(Role.ADMIN):
        return
    if access.role == Role.MEMBER and key.created_by_id == access.user.pk:
        return
    raise PermissionDenied(
        "this needs the admin role in the tenant (members manage only their own keys)"
    )


def require_membership_change(
    access: TenantAccess, *, current: Role | None, new: Role | None
) -> None:
    """Admins manage members, but only owners make, unmake or remove owners.
    ``current`` is None when adding someone, ``new`` is None when removing."""
    access.require(Role.ADMIN)
    if Role.OWNER in (current, new):
        access.require(Role.OWNER)
