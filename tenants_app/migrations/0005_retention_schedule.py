# The daily retention run as a django-celery-beat row, editable (or switched off) in
# /admin/ (Periodic tasks) without a deploy. Periods: USAGE_RETENTION_DAYS,
# AUDIT_RETENTION_DAYS.

from django.db import migrations
from django.utils import timezone

SCHEDULE = {
    "name": "tenants: prune old usage and audit rows",
    "task": "tenants.prune_retention",
    "every": 1,
    "period": "days",
    # a run that could not start within 12 hours is dropped: the next one catches up
    "expire_seconds": 12 * 60 * 60,
    "description": "Delete usage records and audit events older than USAGE_RETENTION_DAYS / "
    "AUDIT_RETENTION_DAYS, in batches (tenants_app.tasks.prune_retention).",
}


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=SCHEDULE["every"], period=SCHEDULE["period"]
    )
    PeriodicTask.objects.get_or_create(
        name=SCHEDULE["name"],
        defaults={
            "task": SCHEDULE["task"],
            "interval": interval,
            "expire_seconds": SCHEDULE["expire_seconds"],
            "description": SCHEDULE["description"],
            "enabled": True,
        },
    )
    # tell a running beat (DatabaseScheduler) that its schedule changed
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=SCHEDULE["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tenants_app", "0004_invoice_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_schedule, delete_schedule),
    ]
