# Periodic provider tasks as django-celery-beat rows, so an admin can change
# their interval or switch them off in /admin/ (Periodic tasks) without a deploy.

from django.db import migrations
from django.utils import timezone

SCHEDULES = [
    {
        "name": "providers: health checks",
        "task": "providers.run_health_checks",
        "every": 5,
        "period": "minutes",
        # a check that could not start within 4 minutes is dropped, not piled up
        "expire_seconds": 4 * 60,
        "description": "Probe every enabled provider and each of its credentials "
        "(providers_app.tasks.monitoring.run_health_checks).",
    },
    {
        "name": "providers: model discovery",
        "task": "providers.discover_all_models",
        "every": 24,
        "period": "hours",
        "expire_seconds": 60 * 60,
        "description": "Refresh the model list of every enabled provider "
        "(providers_app.tasks.monitoring.discover_all_models).",
    },
    {
        "name": "providers: OAuth token refresh",
        "task": "providers.refresh_expiring_tokens",
        "every": 1,
        "period": "minutes",
        "expire_seconds": 50,
        "description": "Refresh OAuth tokens expiring within OAUTH_REFRESH_BUFFER_SECONDS "
        "(providers_app.tasks.oauth.refresh_expiring_tokens).",
    },
    {
        "name": "providers: retire rotated keys",
        "task": "providers.retire_rotated_keys",
        "every": 1,
        "period": "minutes",
        "expire_seconds": 50,
        "description": "Retire API keys whose rotation grace period has ended "
        "(providers_app.tasks.credentials.retire_rotated_keys).",
    },
    {
        "name": "providers: credential state",
        "task": "providers.sync_credential_state",
        "every": 1,
        "period": "minutes",
        "expire_seconds": 50,
        "description": "Copy key-pool health and request counters onto the credential rows "
        "(providers_app.tasks.credentials.sync_credential_state).",
    },
]


def create_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for spec in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=spec["every"], period=spec["period"])
        PeriodicTask.objects.get_or_create(
            name=spec["name"],
            defaults={
                "task": spec["task"],
                "interval": interval,
                "expire_seconds": spec["expire_seconds"],
                "description": spec["description"],
                "enabled": True,
            },
        )
    # Tell a running beat (DatabaseScheduler) that its schedule changed.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedules(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[spec["name"] for spec in SCHEDULES]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("providers_app", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_schedules, delete_schedules),
    ]
