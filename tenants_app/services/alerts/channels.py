"""Alert channels: a tenant's (owners and admins manage them) or the organisation's
(tenant None; staff manage them). Every change is audited without the target or the
secret: a target is shown as ``target_display`` (scheme, host and its last four
characters for a URL, the addresses for email)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import transaction

from aipk_site.infra.audit import audit_record
from aipk_site.infra.errors import InvalidRequest
from tenants_app.models import AlertChannel, AlertDelivery, AlertKind, ChannelKind, Tenant
from tenants_app.services.alerts.raising import alert_deliveries_enqueue

SIGNING_SECRET_PREFIX = "whsec_"
MAX_RECIPIENTS = 20
CHANNEL_FIELDS = ("name", "target", "events", "enabled")
# kinds a channel may subscribe to (a test send reaches every channel)
SUBSCRIBABLE = tuple(k for k in AlertKind.values if k != AlertKind.TEST)

_url = URLValidator(schemes=["http", "https"])


def target_display(channel: AlertChannel) -> str:
    if channel.kind == ChannelKind.EMAIL:
        return channel.target
    parts = urlsplit(channel.target)
    # the host without any "user:password@" the URL may carry: that part is a credential
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}/…{channel.target[-4:]}"


def _clean_target(kind: str, target: Any) -> str:
    if not isinstance(target, str) or not target.strip():
        raise InvalidRequest("target must not be empty", param="target")
    target = target.strip()
    if kind == ChannelKind.EMAIL:
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        if not 1 <= len(addresses) <= MAX_RECIPIENTS:
            raise InvalidRequest(
                f"target must hold 1 to {MAX_RECIPIENTS} email addresses", param="target"
            )
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise InvalidRequest(
                    f"target: {address!r} is not an email address", param="target"
                ) from None
        return ", ".join(addresses)
    if len(target) > 1000:
        raise InvalidRequest("target must be a URL of at most 1000 characters", param="target")
    try:
        _url(target)
    except ValidationError:
        raise InvalidRequest("target must be an http or https URL", param="target") from None
    return target


def alert_target_clean(*, kind: str, target: Any) -> str:
    """The target as a channel of ``kind`` stores it (trimmed; email addresses joined by
    ", "), or InvalidRequest: lets configuration as code check a file before writing."""
    return _clean_target(kind, target)


def _clean(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(CHANNEL_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidRequest(f"unknown field {name!r}", param=name)
    cleaned = dict(fields)
    if "name" in cleaned:
        name = (cleaned["name"] or "").strip()
        if not name or len(name) > 100:
            raise InvalidRequest("name must be 1 to 100 characters", param="name")
        cleaned["name"] = name
    if "target" in cleaned:
        cleaned["target"] = _clean_target(kind, cleaned["target"])
    if "events" in cleaned:
        events = cleaned["events"] or []
        if not isinstance(events, list) or any(e not in SUBSCRIBABLE for e in events):
            raise InvalidRequest(
                f"events must be a list of: {', '.join(SUBSCRIBABLE)} (empty: every kind)",
                param="events",
            )
        cleaned["events"] = list(dict.fromkeys(events))
    if "enabled" in cleaned and not isinstance(cleaned["enabled"], bool):
        raise InvalidRequest("enabled must be true or false", param="enabled")
    return cleaned


def _described(channel: AlertChannel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "kind": channel.kind,
        "target": target_display(channel),
        "events": channel.events,
        "enabled": channel.enabled,
    }


@transaction.atomic
def alert_channel_create(
    *,
    tenant: Tenant | None,
    name: str,
    kind: str,
    target: str,
    events: list[str] | None = None,
    enabled: bool = True,
    actor: Any = None,
    ip_address: str | None = None,
) -> tuple[AlertChannel, str | None]:
    """(the channel, its signing secret): a webhook's secret is returned here once and
    only shown by its last four characters after; other kinds have none."""
    if kind not in ChannelKind.values:
        raise InvalidRequest(f"kind must be one of {', '.join(ChannelKind.values)}", param="kind")
    fields = _clean(
        kind, {"name": name, "target": target, "events": events or [], "enabled": enabled}
    )
    secret = (
        SIGNING_SECRET_PREFIX + secrets.token_urlsafe(32) if kind == ChannelKind.WEBHOOK else ""
    )
    channel = AlertChannel.objects.create(
        tenant=tenant,
        kind=kind,
        signing_secret=secret,
        secret_last4=secret[-4:],
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        **fields,
    )
    audit_record(
        action="alert_channel.create",
        obj=channel,
        actor=actor,
        ip_address=ip_address,
        tenant=tenant,
        changes=_described(channel),
    )
    return channel, secret or None


@transaction.atomic
def alert_channel_update(
    *, channel: AlertChannel, actor: Any = None, ip_address: str | None = None, **fields: Any
) -> AlertChannel:
    cleaned = _clean(channel.kind, fields)
    before = _described(channel)
    for name, value in cleaned.items():
        setattr(channel, name, value)
    channel.save()
    after = _described(channel)
    audit_record(
        action="alert_channel.update",
        obj=channel,
        actor=actor,
        ip_address=ip_address,
        tenant=channel.tenant,
        changes={k: [before[k], after[k]] for k in after if before[k] != after[k]},
    )
    return channel


@transaction.atomic
def alert_channel_delete(
    *, channel: AlertChannel, actor: Any = None, ip_address: str | None = None
) -> None:
    audit_record(
        action="alert_channel.delete",
        obj=channel,
        actor=actor,
        ip_address=ip_address,
        tenant=channel.tenant,
        changes=_described(channel),
    )
    channel.delete()


def alert_channel_test(
    *, channel: AlertChannel, actor: Any = None, ip_address: str | None = None
) -> AlertDelivery:
    """Send a test alert to this channel alone (switched off or not subscribed: it goes
    anyway, that is the point of a test); returns the delivery row, as it stands after
    the task ran (embedded mode) or was queued (a worker)."""
    with transaction.atomic():
        delivery = AlertDelivery.objects.create(
            channel=channel,
            tenant=channel.tenant,
            kind=AlertKind.TEST,
            dedup_key=f"test:{uuid.uuid4().hex}",
            subject=f"Test alert for channel {channel.name!r}",
            payload={"channel": channel.name, "requested_by": getattr(actor, "username", "")},
        )
        audit_record(
            action="alert_channel.test",
            obj=channel,
            actor=actor,
            ip_address=ip_address,
            tenant=channel.tenant,
            changes={"delivery": delivery.pk},
        )
        alert_deliveries_enqueue([delivery.pk])
    delivery.refresh_from_db()
    return delivery
