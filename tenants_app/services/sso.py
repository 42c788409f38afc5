"""Single sign-on accounts: who an OpenID Connect subject is here, and what its groups
grant. Runs after authlib has validated the id_token (aipk_site/console/sso_views.py).

On every sign-in the groups claim decides, grant and revoke alike:
- staff (``OIDC_STAFF_GROUPS``) and superuser (``OIDC_SUPERUSER_GROUPS``, implies staff);
  SSO takes away only what SSO gave (``SsoIdentity.granted_*``): a user made staff by
  hand stays staff;
- tenant roles from groups matching ``OIDC_TENANT_ROLE_PATTERN`` (default
  ``aipk:<tenant-slug>:<owner|admin|member|viewer>``; several for one tenant: the
  highest). SSO creates and updates memberships it marks ``sso_managed`` and deletes
  them when the group is gone; a hand-made membership is left as it is. Tenants are
  never created from a group: a slug that names no tenant is ignored (and audited).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from aipk_site.infra.audit import audit_record
from aipk_site.infra.errors import PermissionDenied
from tenants_app.models import Membership, Role, SsoIdentity, Tenant

ACTOR_LABEL = "sso"
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


@dataclass(frozen=True)
class SsoGrants:
    """What one sign-in's groups grant."""

    staff: bool = False
    superuser: bool = False
    roles: dict[str, str] = field(default_factory=dict)  # tenant slug -> role


def sso_groups(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The groups claim as a list of strings: identity providers send a list, some a
    single string; anything else counts as no groups."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [group for group in value if isinstance(group, str)]
    return []


def sso_grants_from_groups(
    *,
    groups: list[str],
    staff_groups: list[str],
    superuser_groups: list[str],
    tenant_role_pattern: str,
) -> SsoGrants:
    pattern = re.compile(tenant_role_pattern)
    roles: dict[str, str] = {}
    for group in groups:
        match = pattern.match(group)
        if match is None or match["role"] not in Role.values:
            continue
        slug, role = match["tenant"], match["role"]
        if slug not in roles or ROLE_RANK[Role(role)] > ROLE_RANK[Role(roles[slug])]:
            roles[slug] = role
    superuser = bool(set(groups) & set(superuser_groups))
    staff = superuser or bool(set(groups) & set(staff_groups))
    return SsoGrants(staff=staff, superuser=superuser, roles=roles)


def _free_username(claims: Mapping[str, Any], subject: str) -> str:
    user_model = get_user_model()
    wanted = claims.get("preferred_username") or str(claims.get("email") or "").split("@")[0]
    base = slugify(str(wanted or ""))[:140] or "sso-" + slugify(subject)[:130]
    candidate, n = base, 1
    while user_model.objects.filter(username=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _apply_flag(user: Any, identity: SsoIdentity, flag: str, wanted: bool) -> bool | None:
    """Grants or revokes ``user.<flag>``; revokes only a grant SSO made. Returns the
    change (True granted, False revoked) or None."""
    granted_attr = f"granted_{flag.removeprefix('is_')}"
    if wanted and not getattr(user, flag):
        setattr(user, flag, True)
        setattr(identity, granted_attr, True)
        return True
    if not wanted and getattr(identity, granted_attr):
        setattr(user, flag, False)
        setattr(identity, granted_attr, False)
        return False
    return None


def _apply_roles(
    *, user: Any, roles: dict[str, str], ip_address: str | None
) -> dict[str, list[str]]:
    tenants = {t.slug: t for t in Tenant.objects.filter(slug__in=list(roles))}
    memberships = {
        m.tenant_id: m
        for m in Membership.objects.select_for_update(of=("self",))
        .select_related("tenant")
        .filter(user=user)
    }
    granted, changed, revoked = [], [], []

    def audit(action: str, membership: Membership, tenant: Tenant, changes: dict) -> None:
        audit_record(
            action=action,
            object_type=Membership._meta.label,
            object_id=str(membership.pk),
            actor_label=ACTOR_LABEL,
            tenant=tenant,
            ip_address=ip_address,
            changes={"username": user.get_username(), "sso": True, **changes},
        )

    for slug, role in roles.items():
        tenant = tenants.get(slug)
        if tenant is None:
            continue
        membership = memberships.get(tenant.pk)
        if membership is None:
            membership = Membership.objects.create(
                user=user, tenant=tenant, role=role, sso_managed=True
            )
            audit("member.add", membership, tenant, {"role": role})
            granted.append(f"{slug}:{role}")
        elif membership.sso_managed and membership.role != role:
            before = membership.role
            membership.role = role
            membership.save(update_fields=["role"])
            audit("member.update", membership, tenant, {"role": {"from": before, "to": role}})
            changed.append(f"{slug}:{role}")
    for membership in memberships.values():
        if membership.sso_managed and membership.tenant.slug not in tenants:
            tenant, object_id = membership.tenant, membership.pk
            membership.delete()
            membership.pk = object_id
            audit("member.remove", membership, tenant, {"role": membership.role})
            revoked.append(f"{tenant.slug}:{membership.role}")
    return {
        "granted": granted,
        "changed": changed,
        "revoked": revoked,
        "unknown_tenants": sorted(set(roles) - set(tenants)),
    }


def _identity_create(
    *, issuer: str, subject: str, claims: Mapping[str, Any], email: str
) -> SsoIdentity:
    """A new account for a first sign-in. Two first sign-ins of one subject at once (two
    tabs) race to insert the identity; the loser takes the winner's."""
    try:
        with transaction.atomic():
            user = get_user_model()(username=_free_username(claims, subject), email=email)
            # no password: this account signs in through the identity provider only
            user.set_unusable_password()
            user.save()
            return SsoIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    except IntegrityError:
        return (
            SsoIdentity.objects.select_for_update(of=("self",))
            .select_related("user")
            .get(issuer=issuer, subject=subject)
        )


@transaction.atomic
def sso_user_sign_in(*, issuer: str, claims: Mapping[str, Any], ip_address: str | None) -> Any:
    """The user a validated id_token (plus userinfo) signs in as, created at the first
    sign-in and linked by (issuer, sub); its staff flags and SSO memberships brought in
    line with the groups claim. Raises PermissionDenied for a deactivated account."""
    subject = str(claims["sub"])
    email = str(claims.get("email") or "")[:254]
    grants = sso_grants_from_groups(
        groups=sso_groups(claims, settings.OIDC_GROUPS_CLAIM),
        staff_groups=settings.OIDC_STAFF_GROUPS,
        superuser_groups=settings.OIDC_SUPERUSER_GROUPS,
        tenant_role_pattern=settings.OIDC_TENANT_ROLE_PATTERN,
    )
    identity = (
        SsoIdentity.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(issuer=issuer, subject=subject)
        .first()
    )
    created = identity is None
    if identity is None:
        identity = _identity_create(issuer=issuer, subject=subject, claims=claims, email=email)
    user = identity.user
    if not user.is_active:
        raise PermissionDenied("this account is deactivated in aipk")
    staff = _apply_flag(user, identity, "is_staff", grants.staff)
    superuser = _apply_flag(user, identity, "is_superuser", grants.superuser)
    if email:
        user.email = email
    user.last_login = timezone.now()
    user.save()
    identity.email = email
    identity.last_sign_in_at = timezone.now()
    identity.save()
    memberships = _apply_roles(user=user, roles=grants.roles, ip_address=ip_address)
    audit_record(
        action="auth.sso_sign_in",
        obj=user,
        actor=user,
        ip_address=ip_address,
        changes={
            "issuer": issuer,
            "subject": subject,
            "email": email,
            "account_created": created,
            "is_staff": user.is_staff,
            "is_superuser": user.is_superuser,
            "staff_change": staff,
            "superuser_change": superuser,
            **memberships,
        },
    )
    return user
