"""`manage.py serve` (`make serve`): the production server, as a real child process.

One worker on SQLite (local memory) and two workers on PostgreSQL + Redis each serve
/health, a chat completion through the simulator and a websocket chat turn; SIGTERM
lets a stream in flight finish, records its usage row and exits 0. Two workers without
Redis are refused before anything starts. The PostgreSQL + Redis case needs the suite
to run with DATABASE_URL (PostgreSQL) and REDIS_URL, as CI does.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.gateway.processes import (
    PROJECT,
    SharedDatabase,
    World,
    child_env,
    free_port,
    make_world,
    shared_database_fixture,  # noqa: F401 -- fixture
    sqlite_file_url_fixture,  # noqa: F401 -- fixture
)

SLOW_MODEL = "gpt-4o-mini-delay-300ms"  # a word every 300 ms: the stream stays in flight
TIMEOUT = 30


class Serve:
    """``manage.py serve`` in a child process, its output in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "serve"],
                cwd=PROJECT,
                env={**env, "HOST": "127.0.0.1", "PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self) -> httpx.Response:
        deadline = time.monotonic() + 90  # two workers import Django twice on a busy machine
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited at start:\n{self.logs()}")
            try:
                return httpx.get(self.url + "/health", timeout=5)
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"serve did not answer:\n{self.logs()}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(name="serving")
def serving_fixture() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for server in started:
        server.stop()


def serve_env(database_url: str, redis_url: str | None, workers: int) -> dict[str, str]:
    return child_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WEB_CONCURRENCY=str(workers),
        USAGE_FLUSH_INTERVAL_SECONDS="0.2",
        LOG_LEVEL="INFO",
    )


async def websocket_turn(server: Serve, secret: str, model: str) -> list[dict]:
    url = server.url.replace("http://", "ws://", 1) + "/ws/chat/"
    request = {
        "type": "chat.request",
        "id": "w1",
        "model": model,
        "messages": [{"role": "user", "content": "Hello there"}],
    }
    events: list[dict] = []
    async with aiohttp.ClientSession() as session:
        headers = {"authorization": f"Bearer {secret}"}
        async with session.ws_connect(url, headers=headers) as ws:
            await ws.send_json(request)
            while not events or events[-1]["type"] not in ("chat.done", "chat.error"):
                message = await ws.receive(timeout=TIMEOUT)
                assert message.type == aiohttp.WSMsgType.TEXT, (message.type, message.data)
                events.append(json.loads(message.data))
    return events


async def stream_across_sigterm(server: Serve, secret: str, model: str) -> tuple[str, str]:
    """Open a stream, send SIGTERM once its first chunk arrived, read it to the end:
    its request id and its whole text."""
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": True,
    }
    headers = {"authorization": f"Bearer {secret}"}
    lines: list[str] = []
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        url = server.url + "/v1/chat/completions"
        async with client.stream("POST", url, json=payload, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if line.startswith("data: ") and not lines:
                    server.process.send_signal(signal.SIGTERM)
                if line:
                    lines.append(line)
            request_id = response.headers["x-request-id"]
    return request_id, "\n".join(lines)


def usage_rows(database: SharedDatabase, slug: str) -> list[dict]:
    return database.usage_rows(slug)


def new_world(database: SharedDatabase, simulator_url: str) -> World:
    # made before the server starts: with local memory no change event reaches it
    return make_world(database, f"serve-{uuid.uuid4().hex[:8]}", simulator_url)


def exercise(server: Serve, database: SharedDatabase, world: World) -> None:
    health = server.wait_healthy()
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text

    headers = {"authorization": f"Bearer {world.secret}"}

    reply = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": world.model("gpt-4o-mini"), "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
        timeout=TIMEOUT,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "Simulated reply to: hi"

    events = asyncio.run(websocket_turn(server, world.secret, world.model("gpt-4o-mini")))
    assert [e["type"] for e in events[-2:]] == ["chat.usage", "chat.done"], events
    assert "".join(e["text"] for e in events[:-2]) == "Simulated reply to: Hello there"

    request_id, text = asyncio.run(
        stream_across_sigterm(server, world.secret, world.model(SLOW_MODEL))
    )
    # the stream that was in flight at SIGTERM ran to its end
    assert text.endswith("data: [DONE]"), text
    assert server.process.wait(60) == 0, server.logs()

    rows = {row["request_id"]: row for row in usage_rows(database, world.slug)}
    assert rows[request_id]["status"] == "success" and rows[request_id]["streamed"], rows
    assert len(rows) == 3, rows  # the completion, the websocket turn and the stream


def test_it_serves_one_worker_on_sqlite_and_drains_on_sigterm(
    simulator, sqlite_file_url, serving, tmp_path
):
    database = SharedDatabase(sqlite_file_url, "sqlite")
    world = new_world(database, simulator.url)
    server = Serve(serve_env(sqlite_file_url, None, workers=1), tmp_path / "serve.log")
    serving.append(server)
    server.wait_healthy()
    assert_idle_connection_kept(server)
    exercise(server, database, world)
    assert "1 worker (uvicorn)" in server.logs()


def assert_idle_connection_kept(server: Serve) -> None:
    """An idle keep-alive connection outlives uvicorn's own 5 s default
    (SERVER_KEEP_ALIVE_SECONDS): a proxy in front reusing it is not refused."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/health")
        first = connection.getresponse()
        first.read()
        assert first.status == 200
        time.sleep(6.5)
        # the same socket: http.client raises RemoteDisconnected if the server closed it
        connection.request("GET", "/health")
        again = connection.getresponse()
        again.read()
        assert again.status == 200
    finally:
        connection.close()


def test_it_serves_two_workers_on_postgresql_and_redis_and_drains_on_sigterm(
    simulator, request, serving, tmp_path
):
    redis_url = os.environ.get("REDIS_URL", "")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not redis_url:
        pytest.skip("needs the suite on PostgreSQL and Redis (DATABASE_URL and REDIS_URL)")
    database: SharedDatabase = request.getfixturevalue("shared_database")
    assert database.vendor == "postgresql"
    world = new_world(database, simulator.url)
    server = Serve(serve_env(database.url, redis_url, workers=2), tmp_path / "serve.log")
    serving.append(server)
    exercise(server, database, world)
    assert "2 workers (uvicorn)" in server.logs()


def test_it_refuses_two_workers_on_local_memory(tmp_path):
    done = subprocess.run(
        [sys.executable, "manage.py", "serve"],
        cwd=PROJECT,
        env=serve_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", None, workers=2),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: 2 workers (WEB_CONCURRENCY") and "need REDIS_URL" in line
    assert "aipk: serving" not in done.stdout  # nothing started
