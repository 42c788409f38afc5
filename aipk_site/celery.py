"""Celery application. Configuration comes from Django settings named CELERY_*.

Embedded mode (no REDIS_URL) runs tasks eagerly in-process; with REDIS_URL the
broker and result backend are Redis and a separate worker (+ beat) runs them.
"""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aipk_site.settings")

app = Celery("aipk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _trace_worker(**kwargs: object) -> None:
    """Traces from the OTEL_* environment, as the server's (prefork children inherit it:
    the SDK restarts its export thread after a fork)."""
    from aipk_site.infra.tracing import tracing_setup

    tracing_setup()
