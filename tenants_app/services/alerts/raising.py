"""Who hears of an event, and the delivery rows that say so.

An event belongs to at most one tenant (its key, its budget, its own credential) or to
the organisation (a shared provider or credential). It goes to the enabled channels
subscribed to its kind of: the tenant it belongs to; the tenants in ``also_tenant_ids``
(a provider event reaches the tenants that hold their own credential on that provider);
and always the organisation's channels (staff see everything). Never to another
tenant's channels.

Deduplication: ``dedup_key`` names the occurrence ("budget:key:7:2026-05:80"); a delivery
row is unique per (channel, dedup_key), so the same occurrence is sent once per
channel however many times, or in however many processes, it is detected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from tenants_app.models import AlertChannel, AlertDelivery, AlertKind, Tenant

logger = logging.getLogger(__name__)


def _subscribed(channel: AlertChannel, kind: str) -> bool:
    return kind == AlertKind.TEST or not channel.events or kind in channel.events


def alert_deliveries_enqueue(delivery_ids: list[int]) -> None:
    """Queue the delivery task for each row once the rows are committed (the worker must
    see them). With Celery eager (embedded mode) the task runs here, after the commit."""
    if not delivery_ids:
        return
    from tenants_app.tasks import deliver_alert

    def enqueue() -> None:
        for delivery_id in delivery_ids:
            deliver_alert.delay(delivery_id)

    transaction.on_commit(enqueue)


def alert_raise(
    *,
    kind: str,
    subject: str,
    payload: dict[str, Any],
    dedup_key: str,
    tenant: Tenant | None = None,
    also_tenant_ids: Iterable[int] = (),
) -> list[int]:
    """One pending delivery per channel that should hear of this event and has not yet;
    returns the new deliveries' ids (already queued). ``payload`` holds ids, names and
    labels only: never a secret."""
    tenant_ids = {t for t in also_tenant_ids if t is not None}
    if tenant is not None:
        tenant_ids.add(tenant.pk)
    channels = AlertChannel.objects.filter(enabled=True).filter(
        Q(tenant__isnull=True) | Q(tenant_id__in=tenant_ids)
    )
    created = []
    for channel in channels:
        if not _subscribed(channel, kind):
            continue
        try:
            with transaction.atomic():
                delivery = AlertDelivery.objects.create(
                    channel=channel,
                    tenant_id=channel.tenant_id or (tenant.pk if tenant is not None else None),
                    kind=kind,
                    dedup_key=dedup_key[:200],
                    subject=subject[:300],
                    payload=payload,
                )
        except IntegrityError:
            continue  # this occurrence already reached this channel
        created.append(delivery.pk)
    if created:
        logger.info(
            "alert raised kind=%s occurrence=%s deliveries=%d", kind, dedup_key, len(created)
        )
    alert_deliveries_enqueue(created)
    return created
