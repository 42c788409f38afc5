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


@pytest.fixture(autouse=True)
def _fresh_alert_state(settings):
    from django.core.cache import cache

    from tenants_app.services.alerts import budget_watch_reset

    settings.ALERT_BUDGET_RESYNC_SECONDS = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    cache.clear()
    budget_watch_reset()
    yield
    budget_watch_reset()
