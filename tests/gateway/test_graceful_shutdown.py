"""SIGTERM drains requests in flight and flushes usage: 0 rows lost.

A real aipk server (``daphne aipk_site.asgi:application`` in a child process, the
production command) gets SIGTERM while slow streams and slow replies are running.
Each one must finish (or, past SHUTDOWN_DRAIN_SECONDS, end with an error event in its
own format), new requests must be refused with a 503 meanwhile, the process must exit
by itself, and every request must have exactly one usage row.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import httpx
import pytest

from tests.gateway.processes import (
    AipkServer,
    aipk_servers_fixture,  # noqa: F401 -- fixture
    chat_body,
    make_world,
    server_env,
    shared_database_fixture,  # noqa: F401 -- fixture
    sqlite_file_url_fixture,  # noqa: F401 -- fixture
)

STREAMS = 5
REPLIES = 2


class Call(threading.Thread):
    """One request read to its end in a thread: status, request id, SSE events."""

    def __init__(self, url: str, secret: str, body: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.secret, self.body = url, secret, body
        self.status: int | None = None
        self.request_id = ""
        self.events: list = []
        self.text = ""
        self.started = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        headers = {"authorization": f"Bearer {self.secret}"}
        try:
            with httpx.stream(
                "POST", self.url, json=self.body, headers=headers, timeout=120
            ) as response:
                self.status = response.status_code
                self.request_id = response.headers.get("x-request-id", "")
                if not self.body.get("stream"):
                    self.started.set()
                for line in response.iter_lines():
                    self.text += line + "\n"
                    if line.startswith("data: "):
                        data = line[6:]
                        self.events.append(data if data == "[DONE]" else json.loads(data))
                        self.started.set()
        except BaseException as error:  # noqa: BLE001 -- reported by the test
            self.error = error
        finally:
            self.started.set()

    def words(self) -> int:
        text = "".join(
            choice["delta"].get("content") or ""
            for event in self.events
            if isinstance(event, dict)
            for choice in event.get("choices", [])
        )
        return len(text.split())


def _start(server: AipkServer, secret: str, bodies: list[dict]) -> list[Call]:
    calls = [Call(server.url + "/v1/chat/completions", secret, body) for body in bodies]
    for call in calls:
        call.start()
    return calls


def _server(database, tmp_path, drain_seconds: str, command: str = "daphne") -> AipkServer:
    env = server_env(
        database.url,
        os.environ.get("REDIS_URL") or None,
        SHUTDOWN_DRAIN_SECONDS=drain_seconds,
        USAGE_SPOOL_DIR=str(tmp_path / "spool"),
    )
    return AipkServer(env, command=command)


@pytest.mark.parametrize("command", ["daphne", "run_embedded"])
def test_it_lets_requests_in_flight_finish_on_sigterm_and_loses_no_usage_row(
    command, simulator, shared_database, aipk_servers, tmp_path
):
    slug = f"drain-{uuid.uuid4().hex[:6]}"
    world = make_world(shared_database, slug, simulator.url)
    server = _server(shared_database, tmp_path, drain_seconds="30", command=command)
    aipk_servers.append(server)
    server.start(tmp_path / "server.log")

    # streams of 30 words, one every 150 ms (~4.5 s); replies that take 3 s
    bodies = [chat_body(world.model("gpt-4o-mini-delay-150ms-words-30")) for _ in range(STREAMS)]
    bodies += [
        chat_body(world.model("gpt-4o-mini-delay-3000ms"), stream=False) for _ in range(REPLIES)
    ]
    calls = _start(server, world.secret, bodies)
    for call in calls:
        assert call.started.wait(30)
    time.sleep(0.3)  # the replies are in the server's hands too

    server.process.send_signal(15)
    time.sleep(0.5)
    refused = httpx.post(
        server.url + "/v1/chat/completions",
        json=chat_body(world.model("gpt-4o-mini"), stream=False),
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=10,
    )
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "server_shutting_down"

    for call in calls:
        call.join(60)
    assert server.process.wait(60) == 0, server.logs()[-3000:]

    for call in calls:
        assert call.error is None, (call.request_id, call.error)
        assert call.status == 200, call.text
        if call.body.get("stream"):
            assert call.words() == 30 and call.events[-1] == "[DONE]", call.text[-500:]
    rows = shared_database.usage_rows(slug)
    ids = [row["request_id"] for row in rows]
    assert sorted(ids) == sorted(call.request_id for call in calls)  # one each, none lost
    assert all(row["status"] == "success" for row in rows), rows
    assert "shutdown: drained" in server.logs()


def test_it_ends_streams_still_running_at_the_drain_deadline_with_an_error_event(
    simulator, shared_database, aipk_servers, tmp_path
):
    slug = f"deadline-{uuid.uuid4().hex[:6]}"
    world = make_world(shared_database, slug, simulator.url)
    server = _server(shared_database, tmp_path, drain_seconds="2")
    aipk_servers.append(server)
    server.start(tmp_path / "server.log")

    # 60 words, one every 500 ms: 30 s, far past a 2 s drain
    calls = _start(
        server,
        world.secret,
        [chat_body(world.model("gpt-4o-mini-delay-500ms-words-60")) for _ in range(3)],
    )
    for call in calls:
        assert call.started.wait(30)
    signalled = time.monotonic()
    server.process.send_signal(15)
    for call in calls:
        call.join(60)
    assert server.process.wait(60) == 0, server.logs()[-3000:]
    assert time.monotonic() - signalled < 20  # the drain deadline, not the streams' 30 s

    for call in calls:
        last = call.events[-1]
        assert isinstance(last, dict) and "error" in last, call.text[-500:]
        assert last["error"]["code"] == "server_shutting_down"
    rows = {row["request_id"]: row for row in shared_database.usage_rows(slug)}
    assert sorted(rows) == sorted(call.request_id for call in calls)
    for call in calls:
        row = rows[call.request_id]
        assert row["status"] == "error" and row["error_type"] == "server_shutdown", row
        assert row["completion_tokens"] >= call.words() > 0, row


# -- servers with the ASGI lifespan protocol (uvicorn, granian, hypercorn) -------------


@pytest.fixture
def fresh_shutdown_state():
    from aipk_site.gateway import shutdown

    shutdown.reset()
    yield shutdown
    shutdown.reset()


async def test_it_drains_on_lifespan_shutdown_and_refuses_new_requests_meanwhile(
    fresh_shutdown_state,
):
    """What a lifespan server does on SIGTERM, played against the application itself:
    startup, a slow request in flight, shutdown; the shutdown completes only after the
    request, and a request arriving meanwhile gets a 503 in the JSON error shape."""
    import asyncio

    from aipk_site.gateway.shutdown import ShutdownMiddleware

    release = asyncio.Event()
    finished = []

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        finished.append(scope["path"])

    app = ShutdownMiddleware(slow_app)
    lifespan_in: asyncio.Queue = asyncio.Queue()
    lifespan_out: list[dict] = []

    async def lifespan_send(message):
        lifespan_out.append(message)

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_in.get, lifespan_send)
    )
    await lifespan_in.put({"type": "lifespan.startup"})
    await asyncio.sleep(0.05)
    assert lifespan_out == [{"type": "lifespan.startup.complete"}]

    def http(path):
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "path": path, "method": "POST", "headers": []}
        return asyncio.create_task(app(scope, receive, send)), sent

    in_flight, in_flight_sent = http("/v1/chat/completions")
    await asyncio.sleep(0.05)
    await lifespan_in.put({"type": "lifespan.shutdown"})
    await asyncio.sleep(0.2)
    assert fresh_shutdown_state.is_draining()
    assert lifespan_out[-1]["type"] == "lifespan.startup.complete"  # still waiting

    late, late_sent = http("/v1/messages")
    await late
    assert late_sent[0]["status"] == 503
    body = json.loads(late_sent[1]["body"])
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"

    release.set()
    await in_flight
    await asyncio.wait_for(lifespan, 10)
    assert in_flight_sent[0]["status"] == 200 and finished == ["/v1/chat/completions"]
    assert lifespan_out[-1] == {"type": "lifespan.shutdown.complete"}
