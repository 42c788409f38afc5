"""The periodic provider tasks exist as django-celery-beat rows after migrate."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

import providers_app.tasks  # noqa: F401 - registers the tasks
from aipk_site.celery import app

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("task", "every", "period"),
    [
        ("providers.run_health_checks", 5, "minutes"),
        ("providers.discover_all_models", 24, "hours"),
        ("providers.refresh_expiring_tokens", 1, "minutes"),
        ("providers.retire_rotated_keys", 1, "minutes"),
        ("providers.sync_credential_state", 1, "minutes"),
    ],
)
def test_it_schedules_the_monitoring_tasks_with_beat(task, every, period):
    scheduled = PeriodicTask.objects.select_related("interval").get(task=task)
    assert scheduled.enabled
    assert (scheduled.interval.every, scheduled.interval.period) == (every, period)
    assert (
        scheduled.expire_seconds
        and scheduled.expire_seconds < scheduled.interval.schedule.run_every.total_seconds()
    )
    # the row names a task the worker knows
    assert task in app.tasks


def test_the_schedule_is_editable_like_any_beat_row():
    scheduled = PeriodicTask.objects.get(task="providers.run_health_checks")
    scheduled.enabled = False
    scheduled.save()
    assert not PeriodicTask.objects.get(pk=scheduled.pk).enabled
