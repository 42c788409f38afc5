"""Reads for the management API and the console. Usage sums are computed by the
database (values + annotate), never by loading rows into Python.

The one-object lookups (``tenant_key``, ``model_route``, ``tenant_membership``) are
what both the API and the console find under a tenant the caller may see: a 404 for
anything outside it, whatever the object's id or name."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.shortcuts import get_object_or_404

from aipk_site.infra.errors import InvalidRequest
from providers_app.models import ApiKey, OAuthCredential, Provider
from tenants_app.models import (
    AdminToken,
    AlertChannel,
    AlertDelivery,
    AuditEvent,
    Invoice,
    Membership,
    ModelRoute,
    Pricing,
    RequestBody,
    Role,
    Tenant,
    UsageRecord,
    UsageStatus,
    VirtualKey,
)

UsageGroup = Literal["day", "model", "provider", "key", "user"]


def day_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00 UTC, the day after ``end`` 00:00 UTC): both dates inclusive.

    Any date a query can name is accepted: 9999-12-31 has no day after it in Python,
    so that end is the last representable instant instead (its final microsecond is
    the only one left out).
    """
    if end >= dt.date.max:
        until = dt.datetime.max.replace(tzinfo=dt.UTC)
    else:
        until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    return dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC), until


def tenants_visible_to(user: Any) -> QuerySet[Tenant]:
    if user.is_staff:
        return Tenant.objects.all()
    return Tenant.objects.filter(memberships__user=user)


def tenant_roles(user: Any) -> dict[int, str]:
    return dict(Membership.objects.filter(user=user).values_list("tenant_id", "role"))


def tenant_members(tenant: Tenant) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")
    )


def is_member(tenant: Tenant, user: Any) -> bool:
    return Membership.objects.filter(tenant=tenant, user=user).exists()


def tenant_membership(tenant: Tenant, username: str) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user", "tenant"), tenant=tenant, user__username=username
    )


def active_user_named(username: str) -> Any:
    """The user a membership or a new tenant's owner names; an unknown or inactive name
    is the caller's mistake in that field."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise InvalidRequest(f"no active user {username!r}", param="username")
    return user


def tenant_keys(tenant: Tenant) -> QuerySet[VirtualKey]:
    return VirtualKey.objects.filter(tenant=tenant).select_related("created_by")


def tenant_key(tenant: Tenant, key_id: int) -> VirtualKey:
    return get_object_or_404(
        VirtualKey.objects.select_related("tenant", "created_by"), pk=key_id, tenant=tenant
    )


def routes_for(tenant: Tenant | None) -> QuerySet[ModelRoute]:
    """A tenant's own routes, or the global ones for ``None``."""
    return ModelRoute.objects.filter(tenant=tenant).select_related("tenant")


def model_route(tenant: Tenant | None, alias: str) -> ModelRoute:
    """A tenant's route, or a global one for ``None``."""
    return get_object_or_404(
        ModelRoute.objects.select_related("tenant"), tenant=tenant, alias=alias
    )


def pricing_list() -> QuerySet[Pricing]:
    return Pricing.objects.select_related("provider")


def tenant_invoices(tenant: Tenant) -> QuerySet[Invoice]:
    return Invoice.objects.filter(tenant=tenant)


def user_admin_tokens(user: Any) -> QuerySet[AdminToken]:
    return AdminToken.objects.filter(user=user).order_by("-created_at", "-id")


def user_admin_token(user: Any, token_id: int) -> AdminToken | None:
    """One of ``user``'s own tokens; someone else's is as absent as an unknown one."""
    return AdminToken.objects.filter(pk=token_id, user=user).first()


def _usage_in(tenant: Tenant, start: dt.date, end: dt.date) -> QuerySet[UsageRecord]:
    since, until = day_bounds(start, end)
    return UsageRecord.objects.filter(tenant=tenant, created_at__gte=since, created_at__lt=until)


def tenant_usage_rows(*, tenant: Tenant, start: dt.date, end: dt.date) -> QuerySet[UsageRecord]:
    """Oldest first, for exports."""
    return _usage_in(tenant, start, end).order_by("created_at", "id")


_SUMS = {
    "requests": Count("id"),
    "errors": Count("id", filter=~Q(status=UsageStatus.SUCCESS)),
    "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
    "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
    # parts of the two above billed at their own rates (cache reads/writes, reasoning)
    "cached_tokens": Coalesce(Sum("cached_tokens"), 0),
    "cache_write_tokens": Coalesce(Sum("cache_write_tokens"), 0),
    "reasoning_tokens": Coalesce(Sum("reasoning_tokens"), 0),
    "cost_usd": Sum("cost_usd"),
}


def usage_summary(
    *, tenant: Tenant, group_by: UsageGroup, start: dt.date, end: dt.date
) -> list[dict[str, Any]]:
    """One row per day / model / provider / key / end user with request, error, token and cost
    totals. Key rows carry ``key_id`` and ``key_name`` (None for deleted keys)."""
    rows = _usage_in(tenant, start, end)
    if group_by == "day":
        grouped = rows.annotate(group=TruncDate("created_at", tzinfo=dt.UTC)).values("group")
    elif group_by == "model":
        grouped = rows.annotate(group=F("model")).values("group")
    elif group_by == "provider":
        grouped = rows.annotate(group=F("provider_name")).values("group")
    elif group_by == "user":  # the callers' end-user ids ("" for requests without one)
        grouped = rows.annotate(group=F("end_user")).values("group")
    elif group_by == "key":
        grouped = rows.annotate(
            group=Coalesce(F("virtual_key__prefix"), Value("")),
            key_id=F("virtual_key_id"),
            key_name=F("virtual_key__name"),
        ).values("group", "key_id", "key_name")
    else:
        raise ValueError(f"unknown grouping {group_by!r}")
    # order_by() first: the model's default ordering would otherwise join the GROUP BY
    result = list(grouped.order_by().annotate(**_SUMS).order_by("group"))
    for row in result:
        row["group"] = row["group"].isoformat() if group_by == "day" else row["group"]
        row["cost_usd"] = row["cost_usd"] or 0
    return result


def usage_totals(*, tenant: Tenant, start: dt.date, end: dt.date) -> dict[str, Any]:
    totals = _usage_in(tenant, start, end).order_by().aggregate(**_SUMS)
    totals["cost_usd"] = totals["cost_usd"] or 0
    return totals


def tenant_audit_events(
    *,
    tenant: Tenant,
    action: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> QuerySet[AuditEvent]:
    """Newest first; filters as ``filter_audit_events``."""
    events = AuditEvent.objects.filter(tenant=tenant).select_related("actor")
    return filter_audit_events(events, action=action or "", start=start, end=end)


def spend_by_tenant(*, tenants: Any, start: dt.date, end: dt.date) -> dict[int, Any]:
    """{tenant id: USD spent from ``start`` to ``end``} in one query, for lists that
    show several tenants' spend side by side (tenants with no usage are absent)."""
    since, until = day_bounds(start, end)
    rows = (
        UsageRecord.objects.filter(tenant__in=tenants, created_at__gte=since, created_at__lt=until)
        .order_by()
        .values("tenant_id")
        .annotate(spent=Sum("cost_usd"))
    )
    return {row["tenant_id"]: row["spent"] or 0 for row in rows}


# --- the console's playground and audit log ------------------------------------------------
# The playground offers exactly what the websocket chat will accept (docs/WEBSOCKET.md):
# a console user chats as a tenant they are a member of, with a role above viewer, in an
# active tenant; being staff adds nothing there. The models it lists are the ones
# ``GET /v1/models`` would list for that tenant, computed by the same routing code.
# The audit log follows the management API's rule: reading a tenant's audit log needs the
# admin role in it; staff (owners everywhere) read everything, including the events that
# belong to no tenant (providers, credentials).

CHAT_ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER)
AUDIT_ROLES = (Role.OWNER, Role.ADMIN)


# --- playground ----------------------------------------------------------------------------


def chat_memberships(user: Any) -> QuerySet[Membership]:
    """The memberships a console user may chat through, by tenant name."""
    return (
        Membership.objects.filter(user=user, role__in=CHAT_ROLES, tenant__active=True)
        .select_related("tenant")
        .order_by("tenant__name")
    )


def memberships_without_chat(user: Any) -> QuerySet[Membership]:
    """Tenants the user belongs to but cannot chat as (viewer, or tenant deactivated),
    so the page can say why they are missing from the picker."""
    return (
        Membership.objects.filter(user=user)
        .filter(Q(role=Role.VIEWER) | Q(tenant__active=False))
        .select_related("tenant")
        .order_by("tenant__name")
    )


# --- audit log -----------------------------------------------------------------------------


def audit_tenants(user: Any) -> QuerySet[Tenant]:
    """The tenants whose audit events ``user`` may read."""
    if user.is_staff:
        return Tenant.objects.order_by("name")
    return Tenant.objects.filter(
        memberships__user=user, memberships__role__in=AUDIT_ROLES
    ).order_by("name")


def may_read_audit(user: Any) -> bool:
    return user.is_staff or audit_tenants(user).exists()


def audit_events_for(user: Any) -> QuerySet[AuditEvent]:
    """Every event ``user`` may read, newest first."""
    events = AuditEvent.objects.select_related("actor", "tenant")
    if user.is_staff:
        return events
    return events.filter(tenant__in=audit_tenants(user))


def filter_audit_events(
    events: QuerySet[AuditEvent],
    *,
    tenant: Tenant | None = None,
    without_tenant: bool = False,
    action: str = "",
    actor: str = "",
    object_type: str = "",
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> QuerySet[AuditEvent]:
    """``action`` matches exactly ("member.add") or, ending in ".", by prefix ("member."),
    as on the management API. ``actor`` is a username (case-insensitive), also matched
    against the label kept when the user has since been deleted. Dates are inclusive
    UTC days."""
    if without_tenant:
        events = events.filter(tenant__isnull=True)
    elif tenant is not None:
        events = events.filter(tenant=tenant)
    if action:
        events = (
            events.filter(action__startswith=action)
            if action.endswith(".")
            else events.filter(action=action)
        )
    if actor:
        events = events.filter(Q(actor__username__iexact=actor) | Q(actor_label__iexact=actor))
    if object_type:
        events = events.filter(object_type__iexact=object_type)
    if start is not None:
        events = events.filter(created_at__gte=day_bounds(start, start)[0])
    if end is not None:
        events = events.filter(created_at__lt=day_bounds(end, end)[1])
    return events


def audit_vocabulary(events: QuerySet[AuditEvent]) -> dict[str, list[str]]:
    """The distinct actions, object types and actors among ``events``: the filter's
    suggestions and choices. An actor is the username at the time of the event (its
    label), or the user's current username when it has changed since."""
    plain = events.order_by()
    labels = set(plain.exclude(actor_label="").values_list("actor_label", flat=True).distinct())
    usernames = set(
        plain.filter(actor__isnull=False).values_list("actor__username", flat=True).distinct()
    )
    return {
        "actions": list(plain.values_list("action", flat=True).distinct().order_by("action")),
        "object_types": list(
            plain.values_list("object_type", flat=True).distinct().order_by("object_type")
        ),
        "actors": sorted(labels | usernames, key=str.casefold),
    }


# the objects an audit event can name, by its object_type (the model's label), with what
# its description needs loaded alongside
_AUDIT_OBJECT_QUERIES: dict[str, Any] = {
    "tenants_app.Tenant": lambda: Tenant.objects.all(),
    "tenants_app.VirtualKey": lambda: VirtualKey.objects.select_related("tenant"),
    "tenants_app.ModelRoute": lambda: ModelRoute.objects.select_related("tenant"),
    "tenants_app.Membership": lambda: Membership.objects.select_related("tenant", "user"),
    "tenants_app.Invoice": lambda: Invoice.objects.select_related("tenant"),
    "tenants_app.AdminToken": lambda: AdminToken.objects.select_related("user"),
    "tenants_app.AlertChannel": lambda: AlertChannel.objects.select_related("tenant"),
    "tenants_app.Pricing": lambda: Pricing.objects.select_related("provider"),
    "providers_app.Provider": lambda: Provider.objects.all(),
    "providers_app.ApiKey": lambda: ApiKey.objects.select_related("provider", "tenant"),
    "providers_app.OAuthCredential": (
        lambda: OAuthCredential.objects.select_related("provider", "tenant")
    ),
    "auth.User": lambda: get_user_model().objects.all(),
}


def audit_objects(events: list[AuditEvent]) -> dict[tuple[str, str], Any]:
    """The objects ``events`` are about that still exist, by (object_type, object_id):
    one query per object type, whatever the number of events."""
    ids: dict[str, set[int]] = {}
    for event in events:
        if event.object_type in _AUDIT_OBJECT_QUERIES and event.object_id.isdigit():
            ids.setdefault(event.object_type, set()).add(int(event.object_id))
    found: dict[tuple[str, str], Any] = {}
    for object_type, pks in ids.items():
        for obj in _AUDIT_OBJECT_QUERIES[object_type]().filter(pk__in=pks):
            found[(object_type, str(obj.pk))] = obj
    return found


def alert_channels(tenant: Tenant | None) -> QuerySet[AlertChannel]:
    """A tenant's alert channels, or the organisation's (tenant None)."""
    return AlertChannel.objects.filter(tenant=tenant).select_related("tenant")


def alert_channel(tenant: Tenant | None, channel_id: int) -> AlertChannel:
    """One channel of exactly that owner: another tenant's (or a global one) is a 404."""
    return get_object_or_404(alert_channels(tenant), pk=channel_id)


def alert_deliveries(channel: AlertChannel) -> QuerySet[AlertDelivery]:
    return AlertDelivery.objects.filter(channel=channel).order_by("-created_at", "-id")


def alert_channel_rows(tenant: Tenant | None) -> QuerySet[AlertChannel]:
    """``alert_channels`` with each one's latest delivery (``last_delivery_status``,
    ``_at``, ``_kind``, ``_error``; None before the first), for the console's list."""
    latest = AlertDelivery.objects.filter(channel=OuterRef("pk")).order_by("-created_at", "-id")
    return alert_channels(tenant).annotate(
        last_delivery_status=Subquery(latest.values("status")[:1]),
        last_delivery_at=Subquery(latest.values("created_at")[:1]),
        last_delivery_kind=Subquery(latest.values("kind")[:1]),
        last_delivery_error=Subquery(latest.values("last_error")[:1]),
    )


def recent_alert_deliveries(channel: AlertChannel, limit: int = 20) -> list[AlertDelivery]:
    return list(alert_deliveries(channel)[:limit])


# -- the request log ------------------------------------------------------------------
# One entry per gateway request is its usage row (UsageRecord); a captured body, when the
# tenant or key keeps them, is the RequestBody of the same request id.


def request_log(
    *,
    tenant: Tenant | None = None,
    tenants: QuerySet[Tenant] | None = None,
    request_id: str | None = None,
    key: str | None = None,
    model: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    provider_id: int | None = None,
    error_type: str | None = None,
    cached: bool | None = None,
    after_id: int | None = None,
) -> QuerySet[UsageRecord]:
    """Requests newest first: of ``tenant``, or of ``tenants`` (the console's viewer's),
    or -- neither given -- of every tenant (staff). ``key`` is a key's id (digits) or the
    start of its prefix; ``model`` matches the model called or the alias asked for;
    ``until`` is exclusive; ``after_id`` keeps the rows stored after that one (the
    console's live tail: the writer stores rows later than their ``created_at``)."""
    rows = UsageRecord.objects.select_related("virtual_key", "tenant")
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    elif tenants is not None:
        rows = rows.filter(tenant__in=tenants)
    if request_id:
        rows = rows.filter(request_id=request_id)
    if key:
        if key.isdigit():
            rows = rows.filter(virtual_key_id=int(key))
        else:
            rows = rows.filter(virtual_key__prefix__startswith=key)
    if model:
        rows = rows.filter(Q(model=model) | Q(alias=model))
    if status:
        rows = rows.filter(status=status)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    if provider_id is not None:
        rows = rows.filter(provider_id=provider_id)
    if error_type:
        rows = rows.filter(error_type=error_type)
    if cached is not None:
        rows = rows.filter(cached=cached)
    if after_id is not None:
        rows = rows.filter(id__gt=after_id)
    return rows.order_by("-created_at", "-id")


def request_log_entry(
    *, request_id: str, tenant: Tenant | None = None, tenants: QuerySet[Tenant] | None = None
) -> tuple[UsageRecord, Any] | None:
    """One request of the tenant's (or of one of ``tenants``; neither: any tenant's) and
    its captured body (or None), or None when there is no such request there -- another
    tenant's reads the same as an unknown one."""
    record = request_log(tenant=tenant, tenants=tenants, request_id=request_id).first()
    if record is None:
        return None
    body = RequestBody.objects.filter(tenant_id=record.tenant_id, request_id=request_id).first()
    return record, body


def request_log_choices(
    *, tenants: QuerySet[Tenant] | None, since: dt.datetime | None = None
) -> dict[str, Any]:
    """What the console's request filters offer someone who sees ``tenants`` (None: every
    tenant): their keys, and the models, providers and error types their rows since
    ``since`` hold -- never a value from a tenant they cannot see. ``since`` bounds the
    distinct scans to an indexed window: over a whole usage table of millions of rows
    each would read every row."""
    from providers_app.models import Provider

    rows = UsageRecord.objects.all()
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    keys = VirtualKey.objects.select_related("tenant").order_by("tenant__name", "name", "id")
    if tenants is not None:
        rows = rows.filter(tenant__in=tenants)
        keys = keys.filter(tenant__in=tenants)
    models = set(rows.exclude(model="").values_list("model", flat=True).distinct())
    models |= set(rows.exclude(alias="").values_list("alias", flat=True).distinct())
    provider_ids = rows.exclude(provider=None).values("provider_id").distinct()
    return {
        "keys": list(keys),
        "models": sorted(models),
        "providers": list(Provider.objects.filter(pk__in=provider_ids).order_by("name")),
        "error_types": sorted(
            rows.exclude(error_type="").values_list("error_type", flat=True).distinct()
        ),
    }


def credential_labels(credential_ids: list[str]) -> dict[str, str]:
    """``"key:<id>"`` / ``"oauth:<id>"`` (as usage rows and their attempts name
    credentials) -> "label …last4": what a page may show of a credential, never its
    secret. Deleted credentials are left out (the caller shows the bare id)."""
    from providers_app.models import ApiKey, OAuthCredential

    wanted: dict[str, set[int]] = {"key": set(), "oauth": set()}
    for credential_id in credential_ids:
        kind, _, pk = (credential_id or "").partition(":")
        if kind in wanted and pk.isdigit():
            wanted[kind].add(int(pk))
    labels = {}
    for api_key in ApiKey.objects.filter(pk__in=wanted["key"]).only("label", "last4"):
        labels[f"key:{api_key.pk}"] = f"{api_key.label} …{api_key.last4}"
    for oauth in OAuthCredential.objects.filter(pk__in=wanted["oauth"]).only(
        "account_label", "last4"
    ):
        last4 = f" …{oauth.last4}" if oauth.last4 else ""
        labels[f"oauth:{oauth.pk}"] = f"{oauth.account_label}{last4}"
    return labels
