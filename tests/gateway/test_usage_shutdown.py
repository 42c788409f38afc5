"""No usage row is lost when a process ends cleanly: real processes, real exits.

The other process is a fresh ``python -c`` with the project's settings. With
SQLite it gets a migrated file database in a tmp dir (the test database lives in
memory, private to this process); with PostgreSQL (DATABASE_URL set) it uses the
test database pytest-django created, which this test reads through the ORM.
The flush interval is an hour, so only full batches and the exit drain can
write anything.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from tenants_app.models import UsageRecord

PROJECT = Path(__file__).resolve().parents[2]

RECORDER = textwrap.dedent(
    """
    import os, sys, time
    import django

    django.setup()

    from tenants_app.models import Tenant
    from aipk_site.gateway.usage import usage_record

    mode, count, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    tenant, _ = Tenant.objects.get_or_create(slug=tag, defaults={"name": tag})
    for n in range(count):
        usage_record(
            request_id=f"{tag}-{n}",
            tenant_id=tenant.pk,
            status="success",
            model="gpt-4o-mini",
            prompt_tokens=n,
            completion_tokens=1,
        )
    if mode == "idle":
        print("ready", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture(scope="module")
def sqlite_file_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('usage-shutdown') / 'db.sqlite3'}"
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=PROJECT,
        env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "aipk_site.settings"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr
    return url


class SharedDatabase:
    """A database this process and a child process both reach."""

    def __init__(self, url: str, count_rows):
        self.url = url
        self.count_rows = count_rows


@pytest.fixture
def shared_database(request) -> SharedDatabase:
    if connection.vendor == "postgresql":
        # the child must see committed rows
        request.getfixturevalue("transactional_db")
        s = connection.settings_dict
        url = (
            f"postgres://{quote(s['USER'] or '', safe='')}:{quote(s['PASSWORD'] or '', safe='')}"
            f"@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
        )

        def count_rows(tag: str) -> int:
            return UsageRecord.objects.filter(request_id__startswith=f"{tag}-").count()

        return SharedDatabase(url, count_rows)

    url = request.getfixturevalue("sqlite_file_url")
    path = url.removeprefix("sqlite:///")

    def count_rows(tag: str) -> int:
        with sqlite3.connect(path) as db:
            (count,) = db.execute(
                "SELECT count(DISTINCT request_id) FROM tenants_app_usagerecord "
                "WHERE request_id LIKE ?",
                (f"{tag}-%",),
            ).fetchone()
        return count

    return SharedDatabase(url, count_rows)


def recorder(database: SharedDatabase, mode: str, count: int, tag: str, batch_size: int):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aipk_site.settings",
        "DATABASE_URL": database.url,
        "USAGE_BATCH_SIZE": str(batch_size),
        "USAGE_FLUSH_INTERVAL_SECONDS": "3600",
    }
    return subprocess.Popen(
        [sys.executable, "-c", RECORDER, mode, str(count), tag],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_it_stores_every_row_when_the_process_exits_normally(shared_database):
    tag = f"exit-{uuid.uuid4().hex[:8]}"
    # 64 a batch: the writer thread stores full batches (maybe one is in its hands at
    # exit), the exit drain the last 40
    process = recorder(shared_database, "exit", 1000, tag, batch_size=64)
    out, err = process.communicate(timeout=120)

    assert process.returncode == 0, err
    assert "lost" not in err and "did not finish" not in err, err
    assert shared_database.count_rows(tag) == 1000


def test_it_stores_every_row_when_an_idle_process_gets_sigint(shared_database):
    tag = f"sigint-{uuid.uuid4().hex[:8]}"
    process = recorder(shared_database, "idle", 150, tag, batch_size=1000)
    try:
        assert process.stdout.readline().strip() == "ready"
        assert shared_database.count_rows(tag) == 0  # nothing written before the signal
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert "KeyboardInterrupt" in err
    assert "lost" not in err, err
    assert shared_database.count_rows(tag) == 150
