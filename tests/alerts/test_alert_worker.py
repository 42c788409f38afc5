"""Retries under a real Celery worker with a Redis broker (not eager): the delivery task
is queued, fails twice against the receiver, is retried with backoff by the worker and
then delivered. Needs REDIS_URL and a database a second process can share (PostgreSQL);
skipped otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tenants_app.models import AlertDelivery
from tenants_app.services.alerts import alert_channel_create, alert_raise

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (a broker)"),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker():
    if connection.vendor != "postgresql":
        pytest.skip("the worker must share the test database: needs PostgreSQL")
    from aipk_site.celery import app

    app.control.purge()  # this run's Redis database: nothing of anyone else's
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "ALERT_RETRY_BACKOFF_SECONDS": "1",
        "ALERT_RETRY_MAX_SECONDS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "aipk_site", "worker", "--pool=solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning",
         "-n", f"alerts-test-{os.getpid()}@%h"],
        env=env, cwd=ROOT,
    )  # fmt: skip
    yield process
    process.terminate()
    process.wait(timeout=20)


def test_it_retries_a_failing_receiver_under_a_real_worker(tenant, receiver, worker):
    receiver.fail_first = 2
    alert_channel_create(tenant=tenant, name="ops", kind="webhook", target=receiver.url)

    (delivery_id,) = alert_raise(
        kind="budget.threshold", subject="acme at 50%", payload={}, dedup_key="w", tenant=tenant
    )

    deadline = time.monotonic() + 60
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    while delivery.status == "pending" and time.monotonic() < deadline:
        assert worker.poll() is None, "the worker died"
        time.sleep(0.2)
        delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 3)
    assert len(receiver) == 3
