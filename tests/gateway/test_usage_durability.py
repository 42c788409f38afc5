"""Usage rows survive a database outage: they wait on local disk and are written once.

A real aipk server (daphne in a child process) reaches PostgreSQL through a TCP
proxy the test cuts for 60 s (PostgreSQL itself is shared, so it is never stopped).
Requests are served during the outage from the server's caches; their rows cannot be
written, so they wait in the spool (USAGE_SPOOL_DIR). The server is restarted during
the outage: what it held in memory must reach the disk, and the new process must pick
the spool up. When the database returns, every row is there exactly once.

SQLite has no outage of that kind; its "database is locked" takes the same path and
is tested with a lock held by this test on the server's database file.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.gateway.processes import (
    AipkServer,
    TcpProxy,
    aipk_servers_fixture,  # noqa: F401 -- fixture
    chat_body,
    make_world,
    server_env,
    shared_database_fixture,  # noqa: F401 -- fixture
    sqlite_file_url_fixture,  # noqa: F401 -- fixture
)

OUTAGE_SECONDS = 60
# the server's caches outlive the outage, so requests are served without the database
CACHED = {
    "VIRTUAL_KEY_CACHE_SECONDS": "600",
    "ROUTING_CACHE_SECONDS": "600",
    "USAGE_SPOOL_RETRY_SECONDS": "1",
}


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _call(server: AipkServer, secret: str, model: str, *, stream: bool) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"}
    body = chat_body(model, stream=stream)
    response = httpx.post(
        server.url + "/v1/chat/completions", json=body, headers=headers, timeout=60
    )
    if stream and response.status_code == 200:
        assert response.text.rstrip().endswith("data: [DONE]"), response.text[-300:]
    return response


def _wait_for_rows(database, slug: str, expected: set[str], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = database.usage_rows(slug)
        if expected <= {row["request_id"] for row in rows} or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def test_it_keeps_usage_rows_through_a_database_outage_and_a_restart(
    simulator, shared_database, aipk_servers, tmp_path
):
    if shared_database.vendor != "postgresql":
        pytest.skip("a database outage needs PostgreSQL (SQLite: see the locked-file test)")
    database_host = urlsplit(shared_database.url)
    proxy = TcpProxy(database_host.hostname or "127.0.0.1", database_host.port or 5432)
    slug = f"outage-{uuid.uuid4().hex[:6]}"
    world = make_world(shared_database, slug, simulator.url)
    model = world.model("gpt-4o-mini")
    env = server_env(
        _through(shared_database.url, proxy.port),
        None,
        USAGE_SPOOL_DIR=str(tmp_path / "spool"),
        **CACHED,
    )
    try:
        first = AipkServer(env)
        aipk_servers.append(first)
        first.start(tmp_path / "first.log")
        served: list[str] = []
        for stream in (False, True):  # warm the caches; written at once
            response = _call(first, world.secret, model, stream=stream)
            assert response.status_code == 200, response.text
            served.append(response.headers["x-request-id"])

        proxy.cut()
        cut_at = time.monotonic()
        for n in range(10):
            response = _call(first, world.secret, model, stream=n % 2 == 0)
            assert response.status_code == 200, response.text
            served.append(response.headers["x-request-id"])
        time.sleep(2)  # the writer has tried, failed and spooled them

        assert first.terminate() == 0, first.logs()[-3000:]
        second = AipkServer(env)
        aipk_servers.append(second)
        second.start(tmp_path / "second.log")
        # still down: a fresh process has no cached key, so it cannot serve anyone yet,
        # and must say so (a 503), not hang
        refused = _call(second, world.secret, model, stream=False)
        assert refused.status_code == 503, refused.text

        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - cut_at)))
        proxy.restore()

        rows = _wait_for_rows(shared_database, slug, set(served), timeout=60)
        stored = [row["request_id"] for row in rows]
        assert sorted(set(served) - set(stored)) == [], "rows lost:\n" + second.logs()[-3000:]
        assert len(stored) == len(set(stored))  # none twice
        assert set(stored) == set(served)
        assert all(row["status"] == "success" for row in rows), rows
        logs = first.logs() + second.logs()
        assert "wait in the spool" in logs
        assert "lost" not in logs, logs[-3000:]
    finally:
        proxy.close()


def test_it_keeps_usage_rows_while_the_sqlite_file_is_locked(
    simulator, shared_database, aipk_servers, tmp_path
):
    if shared_database.vendor != "sqlite":
        pytest.skip("SQLite's own fault")
    slug = f"locked-{uuid.uuid4().hex[:6]}"
    world = make_world(shared_database, slug, simulator.url)
    model = world.model("gpt-4o-mini")
    server = AipkServer(
        server_env(shared_database.url, None, USAGE_SPOOL_DIR=str(tmp_path / "spool"), **CACHED)
    )
    aipk_servers.append(server)
    server.start(tmp_path / "server.log")
    served = []
    response = _call(server, world.secret, model, stream=False)  # warm the caches
    served.append(response.headers["x-request-id"])

    path = shared_database.url.removeprefix("sqlite:///")
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # every writer gets "database is locked"
    try:
        for n in range(6):
            response = _call(server, world.secret, model, stream=n % 2 == 0)
            assert response.status_code == 200, response.text
            served.append(response.headers["x-request-id"])
        # SQLite waits 5 s for a lock, twice per batch, then the rows are spooled
        deadline = time.monotonic() + 40
        while "wait in the spool" not in server.logs() and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    rows = _wait_for_rows(shared_database, slug, set(served), timeout=60)
    stored = [row["request_id"] for row in rows]
    assert "wait in the spool" in server.logs(), server.logs()[-3000:]
    assert sorted(set(served) - set(stored)) == [], server.logs()[-3000:]
    assert len(stored) == len(set(stored)) == len(served)
    assert "lost" not in server.logs(), server.logs()[-3000:]
