"""Deleting usage records, audit events and stored /v1/responses older than their
retention period, and the request log's captured bodies past their ``expires_at``.

Rows go in batches of ``RETENTION_BATCH_SIZE``, each its own short
transaction (a primary-key range picked first, then deleted), so pruning a
year of backlog never holds a long lock on a table the gateway writes to all
the time. The cut-off is fixed when a run starts: rows that age past it while
the run goes on wait for the next run.

A retention of 0 (or less) keeps that table's rows forever. Usage must be
kept at least as long as invoicing needs it -- this month and last
(services/billing.py) -- so the settings' comment asks for 62 days or more.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from tenants_app.models import AuditEvent, RequestBody, StoredResponse, UsageRecord

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 400
DEFAULT_BATCH_SIZE = 5000
# OpenAI keeps a stored response for 30 days; so does aipk unless told otherwise
DEFAULT_RESPONSES_RETENTION_DAYS = 30


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def delete_older_than(
    model: type[models.Model], *, days: int, batch_size: int | None = None
) -> int:
    """Delete ``model`` rows whose ``created_at`` is more than ``days`` old, batch by batch."""
    if days <= 0:
        return 0
    batch_size = max(1, batch_size or _setting("RETENTION_BATCH_SIZE", DEFAULT_BATCH_SIZE))
    cutoff = timezone.now() - timedelta(days=days)
    return _delete_in_batches(model, model.objects.filter(created_at__lt=cutoff), batch_size)


def _delete_in_batches(
    model: type[models.Model], rows: models.QuerySet[Any], batch_size: int
) -> int:
    old = rows.order_by("pk")
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(old.values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            count, _ = model.objects.filter(pk__in=ids).delete()
        deleted += count
    return deleted


def usage_prune(*, older_than_days: int | None = None, batch_size: int | None = None) -> int:
    """Usage records older than USAGE_RETENTION_DAYS (default 400)."""
    days = (
        older_than_days
        if older_than_days is not None
        else _setting("USAGE_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    )
    return delete_older_than(UsageRecord, days=days, batch_size=batch_size)


def audit_prune(*, older_than_days: int | None = None, batch_size: int | None = None) -> int:
    """Audit events older than AUDIT_RETENTION_DAYS (default 400)."""
    days = (
        older_than_days
        if older_than_days is not None
        else _setting("AUDIT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    )
    return delete_older_than(AuditEvent, days=days, batch_size=batch_size)


def responses_prune(*, older_than_days: int | None = None, batch_size: int | None = None) -> int:
    """Stored /v1/responses conversations older than RESPONSES_RETENTION_DAYS (default 30)."""
    days = (
        older_than_days
        if older_than_days is not None
        else _setting("RESPONSES_RETENTION_DAYS", DEFAULT_RESPONSES_RETENTION_DAYS)
    )
    return delete_older_than(StoredResponse, days=days, batch_size=batch_size)


def request_bodies_prune(*, batch_size: int | None = None) -> int:
    """Captured request bodies whose ``expires_at`` has passed. Each row's expiry was set
    when it was captured (REQUEST_LOG_BODY_RETENTION_DAYS then, default 7), so a body
    never outlives what its tenant was told at the time; its usage row stays."""
    batch_size = max(1, batch_size or _setting("RETENTION_BATCH_SIZE", DEFAULT_BATCH_SIZE))
    expired = RequestBody.objects.filter(expires_at__lte=timezone.now())
    return _delete_in_batches(RequestBody, expired, batch_size)


def retention_prune() -> dict[str, int]:
    """Every table with a retention, with the configured periods:
    {"usage_records": n, "audit_events": m, "stored_responses": k, "request_bodies": b}."""
    result = {
        "usage_records": usage_prune(),
        "audit_events": audit_prune(),
        "stored_responses": responses_prune(),
        "request_bodies": request_bodies_prune(),
    }
    if any(result.values()):
        logger.info(
            "retention: deleted usage_records=%d audit_events=%d stored_responses=%d "
            "request_bodies=%d",
            result["usage_records"],
            result["audit_events"],
            result["stored_responses"],
            result["request_bodies"],
            extra=result,
        )
    return result
