# The hourly invoice run as a django-celery-beat row, so an admin can change its
# interval or switch it off in /admin/ (Periodic tasks) without a deploy.

from django.db import migrations
from django.utils import timezone

SCHEDULE = {
    "name": "tenants: generate invoices",
    "task": "tenants.generate_invoices",
    "every": 1,
    "period": "hours",
    # a run that could not start within 50 minutes is dropped: the next one redoes it all
    "expire_seconds": 50 * 60,
    "description": "Refresh this month's draft invoices and finalise last month's "
    "(tenants_app.tasks.generate_invoices).",
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
        ("tenants_app", "0003_bundled_pricing"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_schedule, delete_schedule),
    ]
