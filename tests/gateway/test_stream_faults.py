"""Faults end streams cleanly: Redis lost mid-stream, a hung upstream before the first byte.

A real aipk server (daphne in a child process) uses a redis-server this test started
itself; the test kills it, or freezes it with SIGSTOP, while streams are open. Every
stream must then end within seconds with an error event in its own format, a log line
must say why, and each request must have one usage row whose status and tokens tell
what happened (every token the provider sent was delivered, so they are counted; the
row must not claim the client went away).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from tests.gateway.processes import (
    AipkServer,
    aipk_servers,  # noqa: F401 -- fixture
    chat_body,
    make_world,
    redis_server,  # noqa: F401 -- fixture
    server_env,
    shared_database,  # noqa: F401 -- fixture
    sqlite_file_url,  # noqa: F401 -- fixture
)

STREAMS = 6
# 40 words, one every 150 ms: a stream runs ~6 s, long enough to break Redis under it
SLOW_MODEL = "gpt-4o-mini-delay-150ms-words-40"
# what "within seconds" means here: generous, yet far below a hang
END_WITHIN_SECONDS = 20


async def _open_stream(client: httpx.AsyncClient, url: str, secret: str, body: dict, opened):
    """Read one OpenAI SSE stream to its end: (events, ended_at, error_event or None)."""
    events: list[dict | str] = []
    error = None
    headers = {"authorization": f"Bearer {secret}"}
    async with client.stream("POST", url, json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        request_id = response.headers["x-request-id"]
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                events.append("[DONE]")
                continue
            event = json.loads(data)
            events.append(event)
            if "error" in event:
                error = event["error"]
            elif not opened.done():
                opened.set_result(True)
    return request_id, events, time.monotonic(), error


async def _streams_across_a_fault(server_url: str, secret: str, model: str, fault) -> list:
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10)) as client:
        loop = asyncio.get_running_loop()
        opened = [loop.create_future() for _ in range(STREAMS)]
        tasks = [
            asyncio.create_task(
                _open_stream(
                    client, server_url + "/v1/chat/completions", secret, chat_body(model), o
                )
            )
            for o in opened
        ]
        await asyncio.wait_for(asyncio.gather(*opened), 30)  # every stream sends content
        fault()
        faulted_at = time.monotonic()
        finished, pending = await asyncio.wait(tasks, timeout=60)
        for task in pending:
            task.cancel()
        assert not pending, f"{len(pending)} of {STREAMS} streams still open 60 s after the fault"
        done = [task.result() for task in tasks]
        return [(rid, events, ended - faulted_at, error) for rid, events, ended, error in done]


def _rows_by_request(database, slug: str, expected: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = database.usage_rows(slug)
        if len(rows) >= expected or time.monotonic() > deadline:
            return {row["request_id"]: row for row in rows}
        time.sleep(0.5)


@pytest.mark.parametrize("fault", ["killed", "paused"])
def test_it_ends_open_streams_with_an_error_event_when_redis_is_lost(
    fault, simulator, redis_server, shared_database, aipk_servers, tmp_path
):
    slug = f"redis-{fault}-{uuid.uuid4().hex[:6]}"
    world = make_world(shared_database, slug, simulator.url)
    server = AipkServer(server_env(shared_database.url, redis_server.url))
    aipk_servers.append(server)
    server.start(tmp_path / "server.log")

    breaks = redis_server.kill if fault == "killed" else redis_server.pause
    results = asyncio.run(
        _streams_across_a_fault(server.url, world.secret, world.model(SLOW_MODEL), breaks)
    )

    for request_id, events, seconds_after_fault, error in results:
        assert seconds_after_fault < END_WITHIN_SECONDS, (request_id, seconds_after_fault)
        assert error is not None, f"{request_id} ended without an error event: {events[-3:]}"
        assert error["code"] == "service_unavailable", error
        assert "[DONE]" not in events  # an error event is the stream's last word
    log = server.logs()
    assert log.count("infrastructure fault") >= STREAMS, log[-4000:]
    assert "sk-sim-faults-key-0001" not in log and world.secret not in log

    rows = _rows_by_request(shared_database, slug, STREAMS)
    for request_id, events, _, _ in results:
        row = rows[request_id]
        delivered = "".join(
            choice["delta"].get("content") or ""
            for event in events
            if isinstance(event, dict)
            for choice in event.get("choices", [])
        )
        # the provider finished (every word was relayed); only aipk's own bookkeeping
        # failed, so the request succeeded and is charged for what was delivered
        assert len(delivered.split()) == 40, delivered
        assert row["status"] == "success", row
        assert row["error_type"] == "redis_unavailable", row
        assert row["completion_tokens"] >= 40 and row["prompt_tokens"] > 0, row
