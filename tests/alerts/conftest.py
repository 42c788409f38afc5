"""Alert tests: the shared cast (tests/cast.py), the gateway's ``world`` (a tenant wired to
the simulator, for tests through the real server) and a real HTTP receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.alerts.receiver import Receiver, start_receiver
from tests.cast import *  # noqa: F403 -- the shared cast
from tests.gateway.conftest import make_key, world  # noqa: F401 -- the gateway's fixtures


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running, server = start_receiver()
    yield running
    server.shutdown()
    server.server_close()


@pytest.fixture
def eager_celery(monkeypatch):
    """Tasks run in the test's process, whichever mode the suite runs in (with REDIS_URL
    Celery would queue them for a worker; test_alert_worker.py runs one)."""
    from aipk_site.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


@pytest.fixture(autouse=True)
def _fresh_alert_state(request, settings):
    from django.core.cache import cache

    from tenants_app.services.alerts import budget_watch_reset

    settings.ALERT_BUDGET_RESYNC_SECONDS = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    if "worker" not in request.fixturenames:  # test_alert_worker.py: a real worker
        request.getfixturevalue("eager_celery")
    cache.clear()
    budget_watch_reset()
    yield
    budget_watch_reset()
