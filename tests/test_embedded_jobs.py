"""Scheduled jobs in embedded mode: beat runs in a thread of the server process and
applies due django-celery-beat schedules there (tasks run eagerly, no broker)."""

import datetime as dt
import time

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from aipk_site.embedded_jobs import start_embedded_scheduler
from tenants_app.models import Tenant, UsageRecord, UsageStatus


def _old_usage(tenant, request_id: str, days_ago: int) -> UsageRecord:
    return UsageRecord.objects.create(
        request_id=request_id,
        tenant=tenant,
        status=UsageStatus.SUCCESS,
        created_at=timezone.now() - dt.timedelta(days=days_ago),
    )


@pytest.fixture
def embedded_mode(settings):
    """Embedded mode whatever the suite runs on: no broker, tasks run eagerly."""
    from aipk_site.celery import app

    # read before changing the Django setting: the first read loads the app's config
    # from Django settings, and must load the suite's own value
    was_eager = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = was_eager


def test_it_runs_a_due_schedule_in_this_process(transactional_db, settings, embedded_mode):
    settings.USAGE_RETENTION_DAYS = 30
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    _old_usage(tenant, "old", days_ago=90)
    _old_usage(tenant, "recent", days_ago=1)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.update_or_create(
        name="tenants: retention",
        defaults={
            "task": "tenants.prune_retention",
            "interval": every_second,
            "enabled": True,
            "last_run_at": timezone.now() - dt.timedelta(minutes=1),
        },
    )

    beat = start_embedded_scheduler()
    assert beat is not None
    try:
        deadline = time.monotonic() + 20
        while UsageRecord.objects.filter(request_id="old").exists():
            assert time.monotonic() < deadline, "the due retention job did not run within 20 s"
            time.sleep(0.2)
    finally:
        beat.stop()

    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["recent"]
    assert PeriodicTask.objects.get(name="tenants: retention").total_run_count >= 1


@pytest.mark.django_db
def test_it_leaves_scheduling_to_celery_when_a_broker_is_configured(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False

    assert start_embedded_scheduler() is None
