"""Tenants and their members. Every write is audited under the tenant, and every
change that the gateway caches per key (limits, budget, providers, PII filter,
active) drops those cache entries so the change applies at once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from aipk_site.infra.audit import audit_record, audit_value
from aipk_site.infra.errors import InvalidRequest
from providers_app.models import Provider
from tenants_app.models import Invoice, Membership, Role, Tenant, VirtualKey
from tenants_app.services import billing
from tenants_app.signals import announce, keys_changed, tenant_changed

TENANT_FIELDS = (
    "name",
    "active",
    "monthly_budget_usd",
    "default_rpm",
    "default_tpm",
    "pii_redaction",
    "capture_bodies",
)


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(TENANT_FIELDS) - {"allowed_providers"}
    if unknown:
        field = sorted(unknown)[0]
        raise InvalidRequest(f"unknown field {field!r}", param=field)
    cleaned = dict(fields)
    if "name" in cleaned:
        name = (cleaned["name"] or "").strip()
        if not name or len(name) > 100:
            raise InvalidRequest("name must be 1 to 100 characters", param="name")
        cleaned["name"] = name
    for flag in ("active", "pii_redaction", "capture_bodies"):
        if flag in cleaned and not isinstance(cleaned[flag], bool):
            raise InvalidRequest(f"{flag} must be true or false", param=flag)
    for limit in ("default_rpm", "default_tpm"):
        value = cleaned.get(limit)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidRequest(f"{limit} must be a positive whole number", param=limit)
    budget = cleaned.get("monthly_budget_usd")
    if budget is not None and Decimal(budget) < 0:
        raise InvalidRequest("monthly_budget_usd must not be negative", param="monthly_budget_usd")
    return cleaned


def _providers_named(names: list[str]) -> list[Provider]:
    names = list(dict.fromkeys(names))
    found = {p.name: p for p in Provider.objects.filter(name__in=names)}
    missing = [n for n in names if n not in found]
    if missing:
        raise InvalidRequest(f"unknown provider {missing[0]!r}", param="allowed_providers")
    return [found[n] for n in names]


def _forget_tenant_now_and_on_commit(tenant_id: int) -> None:
    announce(tenant_changed, tenant_id=tenant_id)


@transaction.atomic
def tenant_create(
    *,
    name: str,
    slug: str = "",
    owner: Any = None,
    actor: Any,
    ip_address: str | None = None,
    allowed_providers: list[str] | None = None,
    **fields: Any,
) -> Tenant:
    """A new tenant; ``owner`` (a user) becomes its first owner when given."""
    cleaned = _clean({"name": name, **fields})
    slug = (slug or slugify(cleaned["name"]))[:50]
    if not slug or slugify(slug) != slug:
        raise InvalidRequest("slug must be lower-case letters, digits, '-' or '_'", param="slug")
    if Tenant.objects.filter(slug=slug).exists():
        raise InvalidRequest(f"a tenant with slug {slug!r} already exists", param="slug")
    providers = _providers_named(allowed_providers or [])
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(slug=slug, **cleaned)
    except IntegrityError:
        # lost a race with a concurrent create of the same slug
        raise InvalidRequest(f"a tenant with slug {slug!r} already exists", param="slug") from None
    tenant.allowed_providers.set(providers)
    if owner is not None:
        Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
    audit_record(
        action="tenant.create",
        obj=tenant,
        actor=actor,
        tenant=tenant,
        ip_address=ip_address,
        changes={
            "slug": slug,
            **{k: audit_value(v) for k, v in cleaned.items()},
            "allowed_providers": [p.name for p in providers],
            "owner": owner.get_username() if owner is not None else None,
        },
    )
    return tenant


@transaction.atomic
def tenant_update(
    *, tenant: Tenant, actor: Any, ip_address: str | None = None, **fields: Any
) -> Tenant:
    cleaned = _clean(fields)
    changes: dict[str, Any] = {}
    if "allowed_providers" in cleaned:
        providers = _providers_named(cleaned.pop("allowed_providers") or [])
        before = sorted(tenant.allowed_providers.values_list("name", flat=True))
        after = sorted(p.name for p in providers)
        if before != after:
            tenant.allowed_providers.set(providers)
            changes["allowed_providers"] = {"from": before, "to": after}
    for field, value in cleaned.items():
        if getattr(tenant, field) != value:
            changes[field] = {"from": audit_value(getattr(tenant, field)), "to": audit_value(value)}
        setattr(tenant, field, value)
    if cleaned:
        tenant.save(update_fields=[*cleaned, "updated_at"])
    if changes:
        audit_record(
            action="tenant.update",
            obj=tenant,
            actor=actor,
            tenant=tenant,
            ip_address=ip_address,
            changes=changes,
        )
    _forget_tenant_now_and_on_commit(tenant.pk)
    return tenant


@transaction.atomic
def tenant_delete(*, tenant: Tenant, actor: Any, ip_address: str | None = None) -> None:
    """Deletes the tenant with its keys, routes, usage and invoices. The audit
    event outlives it (its tenant link becomes null; slug and id stay in it)."""
    hashes = list(VirtualKey.objects.filter(tenant=tenant).values_list("key_hash", flat=True))
    audit_record(
        action="tenant.delete",
        obj=tenant,
        actor=actor,
        ip_address=ip_address,
        changes={"slug": tenant.slug, "name": tenant.name, "keys": len(hashes)},
    )
    tenant.delete()
    announce(keys_changed, key_hashes=hashes)


def _owners_locked(tenant: Tenant) -> list[int]:
    # locking the owner rows serialises concurrent demotions, so two owners
    # demoting each other cannot leave the tenant with none
    return list(
        Membership.objects.select_for_update()
        .filter(tenant=tenant, role=Role.OWNER)
        .values_list("pk", flat=True)
    )


@transaction.atomic
def member_add(
    *, tenant: Tenant, user: Any, role: Role | str, actor: Any, ip_address: str | None = None
) -> Membership:
    if role not in Role.values:
        raise InvalidRequest(f"unknown role {role!r}", param="role")
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise InvalidRequest(
            f"{user.get_username()!r} is already a member of this tenant", param="username"
        )
    try:
        with transaction.atomic():
            membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    except IntegrityError:
        raise InvalidRequest(
            f"{user.get_username()!r} is already a member of this tenant", param="username"
        ) from None
    audit_record(
        action="member.add",
        obj=membership,
        actor=actor,
        tenant=tenant,
        ip_address=ip_address,
        changes={"username": user.get_username(), "role": str(role)},
    )
    return membership


@transaction.atomic
def member_update(
    *, membership: Membership, role: Role | str, actor: Any, ip_address: str | None = None
) -> Membership:
    if role not in Role.values:
        raise InvalidRequest(f"unknown role {role!r}", param="role")
    before = membership.role
    if before == role:
        return membership
    if before == Role.OWNER and _owners_locked(membership.tenant) == [membership.pk]:
        raise InvalidRequest("a tenant must keep at least one owner", param="role")
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        action="member.update",
        obj=membership,
        actor=actor,
        tenant=membership.tenant,
        ip_address=ip_address,
        changes={"username": membership.user.get_username(), "role": {"from": before, "to": role}},
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, actor: Any, ip_address: str | None = None) -> None:
    if membership.role == Role.OWNER and _owners_locked(membership.tenant) == [membership.pk]:
        raise InvalidRequest("a tenant must keep at least one owner", param="username")
    username = membership.user.get_username()
    object_id = str(membership.pk)
    membership.delete()
    audit_record(
        action="member.remove",
        object_type=Membership._meta.label,
        object_id=object_id,
        actor=actor,
        tenant=membership.tenant,
        ip_address=ip_address,
        changes={"username": username, "role": membership.role},
    )


@transaction.atomic
def tenant_invoice_generate(
    *, tenant: Tenant, period: dt.date, actor: Any, ip_address: str | None = None
) -> Invoice:
    """billing.invoice_generate on someone's request, which the audit log should show
    (the hourly task regenerates drafts without an audit entry)."""
    invoice = billing.invoice_generate(tenant=tenant, period=period)
    audit_record(
        action="invoice.generate",
        obj=invoice,
        actor=actor,
        tenant=tenant,
        ip_address=ip_address,
        changes={
            "period": f"{invoice.period:%Y-%m}",
            "total_usd": str(invoice.total_usd),
            "final": invoice.final,
        },
    )
    return invoice
