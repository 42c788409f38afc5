"""Retention: usage records and audit events past their period are deleted, in batches,
by a daily Celery task whose beat schedule a migration creates."""

from __future__ import annotations

import importlib
import uuid
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from tenants_app.models import AuditEvent, StoredResponse, Tenant, UsageRecord
from tenants_app.services.retention import (
    audit_prune,
    responses_prune,
    retention_prune,
    usage_prune,
)
from tenants_app.tasks import prune_retention


@pytest.fixture
def tenant(db) -> Tenant:
    return Tenant.objects.create(name="Acme", slug="acme")


def usage(tenant: Tenant, days_ago: float) -> UsageRecord:
    return UsageRecord.objects.create(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        tenant=tenant,
        status="success",
        created_at=timezone.now() - timedelta(days=days_ago),
    )


def audit(days_ago: float) -> AuditEvent:
    event = AuditEvent.objects.create(action="tenant.update", object_type="tenant")
    # created_at is auto_now_add: backdate it the way old rows would look
    AuditEvent.objects.filter(pk=event.pk).update(
        created_at=timezone.now() - timedelta(days=days_ago)
    )
    return event


def test_it_deletes_usage_older_than_the_retention_period(tenant, settings):
    settings.USAGE_RETENTION_DAYS = 30
    old = [usage(tenant, 31), usage(tenant, 400)]
    kept = [usage(tenant, 29), usage(tenant, 0)]

    assert usage_prune() == 2

    remaining = set(UsageRecord.objects.values_list("pk", flat=True))
    assert remaining == {r.pk for r in kept}
    assert not remaining & {r.pk for r in old}


def test_it_deletes_audit_events_older_than_the_retention_period(db, settings):
    settings.AUDIT_RETENTION_DAYS = 10
    audit(11)
    kept = audit(9)

    assert audit_prune() == 1

    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [kept.pk]


def stored(tenant: Tenant, days_ago: float) -> StoredResponse:
    return StoredResponse.objects.create(
        response_id=f"resp_{uuid.uuid4().hex}",
        tenant=tenant,
        items=[{"role": "user", "content": "hi"}],
        response={"id": "x", "object": "response"},
        created_at=timezone.now() - timedelta(days=days_ago),
    )


def test_it_deletes_stored_responses_older_than_their_retention_period(tenant, settings):
    settings.RESPONSES_RETENTION_DAYS = 30
    stored(tenant, 31)
    kept = stored(tenant, 29)

    assert responses_prune() == 1
    assert retention_prune()["stored_responses"] == 0

    assert list(StoredResponse.objects.values_list("pk", flat=True)) == [kept.pk]


def test_it_keeps_stored_responses_30_days_by_default(tenant, settings):
    del settings.RESPONSES_RETENTION_DAYS
    stored(tenant, 31)
    kept = stored(tenant, 1)

    assert retention_prune()["stored_responses"] == 1
    assert list(StoredResponse.objects.values_list("pk", flat=True)) == [kept.pk]


def test_it_deletes_in_batches(tenant, settings):
    settings.USAGE_RETENTION_DAYS = 30
    for _ in range(7):
        usage(tenant, 60)
    kept = usage(tenant, 1)

    with CaptureQueriesContext(connection) as queries:
        assert usage_prune(batch_size=3) == 7

    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 3 + 3 + 1 rows, each batch its own statement
    assert list(UsageRecord.objects.values_list("pk", flat=True)) == [kept.pk]


def test_it_keeps_everything_when_retention_is_zero(tenant, settings):
    settings.USAGE_RETENTION_DAYS = 0
    settings.AUDIT_RETENTION_DAYS = 0
    usage(tenant, 5000)
    audit(5000)

    assert retention_prune() == {
        "usage_records": 0,
        "audit_events": 0,
        "stored_responses": 0,
        "request_bodies": 0,
    }
    assert UsageRecord.objects.count() == 1
    assert AuditEvent.objects.count() == 1


def test_it_defaults_to_400_days(tenant, settings):
    del settings.USAGE_RETENTION_DAYS
    del settings.AUDIT_RETENTION_DAYS
    usage(tenant, 401)
    kept = usage(tenant, 399)
    audit(401)

    assert retention_prune() == {
        "usage_records": 1,
        "audit_events": 1,
        "stored_responses": 0,
        "request_bodies": 0,
    }
    assert list(UsageRecord.objects.values_list("pk", flat=True)) == [kept.pk]


def test_it_runs_from_the_celery_task(tenant, settings):
    settings.USAGE_RETENTION_DAYS = 400
    settings.AUDIT_RETENTION_DAYS = 400
    usage(tenant, 500)
    audit(500)

    assert prune_retention.run() == {
        "usage_records": 1,
        "audit_events": 1,
        "stored_responses": 0,
        "request_bodies": 0,
    }


def test_it_schedules_the_retention_task_daily(db):
    # run the migration's own code: a transactional test elsewhere may have flushed its row
    schedule = importlib.import_module("tenants_app.migrations.0005_retention_schedule")
    schedule.create_schedule(django_apps, None)
    schedule.create_schedule(django_apps, None)  # idempotent

    task = PeriodicTask.objects.get(name="tenants: prune old usage and audit rows")
    assert task.task == prune_retention.name
    assert (task.interval.every, task.interval.period, task.enabled) == (1, "days", True)
    assert PeriodicTask.objects.filter(task=prune_retention.name).count() == 1
