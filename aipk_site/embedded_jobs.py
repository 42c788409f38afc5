"""Scheduled jobs in embedded mode: Celery beat in a thread of the server process.

In production a Celery worker and beat run the django-celery-beat schedules
(health checks, model discovery, token refresh, key retirement, credential
state, invoices, retention). Embedded mode has no broker, and tasks run eagerly
(CELERY_TASK_ALWAYS_EAGER), so beat applying a due task runs it right there.

Why a thread of the *server* process and not a separate `celery beat`: embedded
mode keeps key-pool health, breakers and counters in the local-memory cache,
which is per process. A task such as the credential-state sync reads that
state; in another process it would see an empty cache and copy "healthy, no
failures" onto every key.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.beat import Service
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)


def embedded_scheduling_applies() -> bool:
    """True when there is no broker: tasks run in-process, so beat must too."""
    return bool(getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False))


class EmbeddedBeat(threading.Thread):
    """Celery's beat service in a daemon thread (what ``celery worker -B`` runs with
    threads), closing the thread's database connections when it stops so none
    is left open behind it."""

    def __init__(self, app: Any) -> None:
        super().__init__(name="beat", daemon=True)
        # a short max interval so stop() is quick; schedules are in the database
        self.service = Service(app, max_interval=1, scheduler_cls=settings.CELERY_BEAT_SCHEDULER)

    def run(self) -> None:
        try:
            self.service.start()
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.service.stop(wait=True)
        self.join(timeout=10)


def start_embedded_scheduler() -> EmbeddedBeat | None:
    """Start beat (django-celery-beat's database schedules) in a daemon thread of
    this process; returns the thread, or None when a real worker is expected."""
    if not embedded_scheduling_applies():
        return None
    from aipk_site.celery import app

    # what `celery beat` does at start: import every app's tasks module, so a due
    # schedule finds its task registered (and runs it eagerly) instead of sending
    # it to a broker no one reads
    app.loader.import_default_modules()
    beat = EmbeddedBeat(app)
    beat.start()
    logger.info("scheduled jobs: running in this process (embedded mode)")
    return beat
