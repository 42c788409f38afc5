"""Alert channels and their deliveries: a tenant's under /tenants/{slug}/alert-channels
(owners and admins; members and viewers are refused), the organisation's under
/alert-channels (staff). A webhook's signing secret is in the answer that creates the
channel and nowhere else; targets are shown as ``target_display`` (a URL's scheme, host
and last four characters: a Slack URL is a credential)."""

import datetime as dt
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate

from aipk_site.infra.access import require_staff
from tenants_app import selectors
from tenants_app.api.audit import BoundedLimitOffset
from tenants_app.api.schemas import Strict, patch_field
from tenants_app.auth import tenant_access, who
from tenants_app.models import AlertChannel, Role, Tenant
from tenants_app.services.alerts import (
    alert_channel_create,
    alert_channel_delete,
    alert_channel_test,
    alert_channel_update,
    target_display,
)

router = Router(tags=["alerts"])

ChannelKindChoice = Literal["webhook", "slack", "email"]
EventChoice = Literal[
    "budget.threshold",
    "credential.reauth_required",
    "provider.degraded",
    "provider.recovered",
    "key_rotation.grace_ending",
]


class ChannelOut(Schema):
    id: int
    tenant: str | None
    name: str
    kind: ChannelKindChoice
    target_display: str
    signing_secret_last4: str | None
    enabled: bool
    events: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime


class ChannelCreatedOut(Schema):
    channel: ChannelOut
    signing_secret: str | None = Field(
        description="webhooks only: shown once; verify x-aipk-signature with it"
    )


class ChannelIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    kind: ChannelKindChoice
    target: str = Field(
        min_length=1,
        max_length=1000,
        description="an http(s) URL (webhook, slack) or comma-separated email addresses",
    )
    events: list[EventChoice] = Field(
        default_factory=list, description="the kinds this channel receives; empty: every kind"
    )
    enabled: bool = True


class ChannelPatch(Strict):
    name: str = patch_field(min_length=1, max_length=100)
    target: str = patch_field(min_length=1, max_length=1000)
    events: list[EventChoice] = patch_field()
    enabled: bool = patch_field()


class DeliveryOut(Schema):
    id: int
    kind: str
    subject: str
    payload: dict[str, Any]
    status: str
    attempts: int
    last_error: str
    response_status: int | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


def channel_out(channel: AlertChannel) -> dict[str, Any]:
    return {
        "id": channel.pk,
        "tenant": channel.tenant.slug if channel.tenant is not None else None,
        "name": channel.name,
        "kind": channel.kind,
        "target_display": target_display(channel),
        "signing_secret_last4": channel.secret_last4 or None,
        "enabled": channel.enabled,
        "events": channel.events,
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
    }


def _tenant(request: HttpRequest, slug: str) -> Tenant:
    return tenant_access(request, slug, Role.ADMIN).tenant


def _create(request: HttpRequest, tenant: Tenant | None, payload: ChannelIn) -> Status:
    channel, secret = alert_channel_create(tenant=tenant, **payload.model_dump(), **who(request))
    return Status(201, {"channel": channel_out(channel), "signing_secret": secret})


def _update(request: HttpRequest, channel: AlertChannel, payload: ChannelPatch) -> dict[str, Any]:
    fields = payload.model_dump(exclude_unset=True)
    return channel_out(alert_channel_update(channel=channel, **fields, **who(request)))


# --- a tenant's channels -------------------------------------------------------------------


@router.get("/tenants/{slug}/alert-channels", response=list[ChannelOut])
def list_alert_channels(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    """Admin."""
    return [channel_out(c) for c in selectors.alert_channels(_tenant(request, slug))]


@router.post("/tenants/{slug}/alert-channels", response={201: ChannelCreatedOut})
def create_alert_channel(request: HttpRequest, slug: str, payload: ChannelIn) -> Status:
    """Admin. A webhook's signing secret is in this answer only."""
    return _create(request, _tenant(request, slug), payload)


@router.get("/tenants/{slug}/alert-channels/{channel_id}", response=ChannelOut)
def get_alert_channel(request: HttpRequest, slug: str, channel_id: int) -> dict[str, Any]:
    return channel_out(selectors.alert_channel(_tenant(request, slug), channel_id))


@router.patch("/tenants/{slug}/alert-channels/{channel_id}", response=ChannelOut)
def update_alert_channel(
    request: HttpRequest, slug: str, channel_id: int, payload: ChannelPatch
) -> dict[str, Any]:
    return _update(request, selectors.alert_channel(_tenant(request, slug), channel_id), payload)


@router.delete("/tenants/{slug}/alert-channels/{channel_id}", response={204: None})
def delete_alert_channel(request: HttpRequest, slug: str, channel_id: int) -> Status:
    channel = selectors.alert_channel(_tenant(request, slug), channel_id)
    alert_channel_delete(channel=channel, **who(request))
    return Status(204, None)


@router.post("/tenants/{slug}/alert-channels/{channel_id}/test", response={202: DeliveryOut})
def test_alert_channel(request: HttpRequest, slug: str, channel_id: int) -> Status:
    """Send a test alert to this channel; the answer is the delivery as it stands."""
    channel = selectors.alert_channel(_tenant(request, slug), channel_id)
    return Status(202, alert_channel_test(channel=channel, **who(request)))


@router.get("/tenants/{slug}/alert-channels/{channel_id}/deliveries", response=list[DeliveryOut])
@paginate(BoundedLimitOffset)
def list_alert_deliveries(request: HttpRequest, slug: str, channel_id: int) -> Any:
    """Newest first: every alert sent (or tried) to this channel."""
    return selectors.alert_deliveries(selectors.alert_channel(_tenant(request, slug), channel_id))


# --- the organisation's channels (staff) ---------------------------------------------------


@router.get("/alert-channels", response=list[ChannelOut])
def list_global_alert_channels(request: HttpRequest) -> list[dict[str, Any]]:
    require_staff(request.auth)
    return [channel_out(c) for c in selectors.alert_channels(None)]


@router.post("/alert-channels", response={201: ChannelCreatedOut})
def create_global_alert_channel(request: HttpRequest, payload: ChannelIn) -> Status:
    require_staff(request.auth)
    return _create(request, None, payload)


@router.get("/alert-channels/{channel_id}", response=ChannelOut)
def get_global_alert_channel(request: HttpRequest, channel_id: int) -> dict[str, Any]:
    require_staff(request.auth)
    return channel_out(selectors.alert_channel(None, channel_id))


@router.patch("/alert-channels/{channel_id}", response=ChannelOut)
def update_global_alert_channel(
    request: HttpRequest, channel_id: int, payload: ChannelPatch
) -> dict[str, Any]:
    require_staff(request.auth)
    return _update(request, selectors.alert_channel(None, channel_id), payload)


@router.delete("/alert-channels/{channel_id}", response={204: None})
def delete_global_alert_channel(request: HttpRequest, channel_id: int) -> Status:
    require_staff(request.auth)
    alert_channel_delete(channel=selectors.alert_channel(None, channel_id), **who(request))
    return Status(204, None)


@router.post("/alert-channels/{channel_id}/test", response={202: DeliveryOut})
def test_global_alert_channel(request: HttpRequest, channel_id: int) -> Status:
    require_staff(request.auth)
    channel = selectors.alert_channel(None, channel_id)
    return Status(202, alert_channel_test(channel=channel, **who(request)))


@router.get("/alert-channels/{channel_id}/deliveries", response=list[DeliveryOut])
@paginate(BoundedLimitOffset)
def list_global_alert_deliveries(request: HttpRequest, channel_id: int) -> Any:
    require_staff(request.auth)
    return selectors.alert_deliveries(selectors.alert_channel(None, channel_id))
