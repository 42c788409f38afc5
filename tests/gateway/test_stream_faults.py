"""Faults end streams cleanly: Redis lost mid-stream, a hung upstream before the first byte.

A real aipk server (daphne in a child process) uses a redis-server this test started
itself; the test kills it, or freezes it with SIGSTOP, while streams are open. Every
stream must then end within seconds (the provider finished, so with its normal end: an
infrastructure error before the provider's last word ends it with an error event), a
log line must say why, and each request must have one usage row whose status and tokens
tell what happened (every token the provider sent was delivered, so they are counted;
the row must not claim the client went away).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
import uuid

import httpx
import pytest
import websockets

from tests.gateway.processes import (
    PROJECT,
    AipkServer,
    aipk_servers_fixture,  # noqa: F401 -- fixture
    chat_body,
    child_env,
    make_world,
    redis_server_fixture,  # noqa: F401 -- fixture
    server_env,
    shared_database_fixture,  # noqa: F401 -- fixture
    sqlite_file_url_fixture,  # noqa: F401 -- fixture
)

STREAMS = 6
# 40 words, one every 150 ms: a stream runs ~6 s, long enough to break Redis under it
SLOW_MODEL = "gpt-4o-mini-delay-150ms-words-40"
# what "within seconds" means here: generous, yet far below a hang
END_WITHIN_SECONDS = 20


def _body(model: str, n: int) -> tuple[str, dict]:
    """Every other stream in Anthropic's format: (path, body)."""
    if n % 2:
        return "/v1/messages", {
            "model": model,
            "max_tokens": 200,
            "stream": True,
            "messages": [{"role": "user", "content": "hello there"}],
        }
    return "/v1/chat/completions", chat_body(model)


def _text(events: list) -> str:
    """What the client received, in either format."""
    text = ""
    for event in events:
        if not isinstance(event, dict):
            continue
        for choice in event.get("choices", []):
            text += choice["delta"].get("content") or ""
        if event.get("type") == "content_block_delta":
            text += event["delta"].get("text", "")
        if event.get("type") == "chat.delta":
            text += event["text"]
    return text


async def _chat_turn(server_url: str, secret: str, model: str, opened):
    """One websocket chat turn read to its end, in the shape of ``_open_stream``."""
    url = server_url.replace("http://", "ws://") + "/ws/chat/"
    events: list[dict] = []
    error = None
    request_id = ""
    async with websockets.connect(
        url, subprotocols=["aipk.chat.v1"], additional_headers={"authorization": f"Bearer {secret}"}
    ) as socket:
        request = {"type": "chat.request", "id": 1, "model": model}
        request["messages"] = [{"role": "user", "content": "hello there"}]
        await socket.send(json.dumps(request))
        while True:
            event = json.loads(await socket.recv())
            events.append(event)
            if event["type"] == "chat.delta" and not opened.done():
                opened.set_result(True)
            if event["type"] in ("chat.error", "chat.done"):
                request_id = event.get("request_id", "")
                if event["type"] == "chat.error":
                    error = event
                break
    return request_id, events, time.monotonic(), error


async def _open_stream(client: httpx.AsyncClient, url: str, secret: str, body: dict, opened):
    """Read one SSE stream (OpenAI or Anthropic) to its end: (request id, events,
    ended_at, error or None)."""
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
            if "error" in event:  # OpenAI's {"error": ...}, Anthropic's type "error"
                error = event["error"]
            elif _text([event]) and not opened.done():
                opened.set_result(True)
    return request_id, events, time.monotonic(), error


async def _streams_across_a_fault(server_url: str, secret: str, model: str, fault) -> list:
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10)) as client:
        loop = asyncio.get_running_loop()
        opened = [loop.create_future() for _ in range(STREAMS)]
        tasks = [
            asyncio.create_task(_open_stream(client, server_url + path, secret, body, o))
            for o, (path, body) in zip(
                opened[:-1], (_body(model, n) for n in range(STREAMS - 1)), strict=True
            )
        ]
        # and one turn on the websocket chat
        tasks.append(asyncio.create_task(_chat_turn(server_url, secret, model, opened[-1])))
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
def test_it_ends_open_streams_within_seconds_when_redis_is_lost(
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
        # the provider finished and every word went out: the stream ends as a whole
        # answer (an error event would make the SDKs raise and the app pay again)
        assert error is None, f"{request_id} ended with an error on a whole answer: {error}"
        assert "[DONE]" in events or any(
            isinstance(e, dict) and e.get("type") in ("message_stop", "chat.done") for e in events
        ), f"{request_id} ended without its normal end: {events[-3:]}"
    log = server.logs()
    assert log.count("infrastructure fault") >= STREAMS, log[-4000:]
    assert "sk-sim-faults-key-0001" not in log and world.secret not in log

    rows = _rows_by_request(shared_database, slug, STREAMS)
    for request_id, events, _, _ in results:
        row = rows[request_id]
        delivered = _text(events)
        # the provider finished (every word was relayed); only aipk's own bookkeeping
        # failed, so the request succeeded and is charged for what was delivered
        assert len(delivered.split()) == 40, delivered
        assert row["status"] == "success", row
        assert row["error_type"] == "redis_unavailable", row
        assert row["completion_tokens"] >= 40 and row["prompt_tokens"] > 0, row


# What the key's budget counter holds and what its usage rows recorded (micro-USD).
SPEND = textwrap.dedent(
    """
    import asyncio, json, sys
    from decimal import Decimal
    import django
    django.setup()
    from django.db.models import Sum
    from providers_app.models import Provider
    from providers_app.services.providers import provider_update
    from tenants_app.models import UsageRecord, VirtualKey
    from aipk_site.gateway.admission import usage_now

    key = VirtualKey.objects.get(tenant__slug=sys.argv[1])
    if len(sys.argv) > 2:  # a budget, so admission reserves and settles money, and a
        # price for the simulator's model ids (unpriced ones are refused under a budget)
        key.monthly_budget_usd = Decimal(sys.argv[2])
        key.save(update_fields=["monthly_budget_usd"])
        provider = Provider.objects.get(name=f"sim-{sys.argv[1]}"[:60])
        prices = {"fallback_input_per_million": "10", "fallback_output_per_million": "30"}
        provider_update(provider=provider, settings={**(provider.settings or {}), **prices})
    now = asyncio.run(usage_now(key_id=key.pk, tenant_id=key.tenant_id))
    rows = UsageRecord.objects.filter(virtual_key_id=key.pk)
    recorded = rows.aggregate(s=Sum("cost_usd"))["s"] or Decimal(0)
    print(json.dumps({
        "spend": now["key"]["spend_micro_usd"],
        "recorded": int(recorded * 1_000_000),
        "rows": rows.count(),
    }))
    """
)


def _spend(database, redis_url: str, slug: str, *budget: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SPEND, slug, *budget],
        cwd=PROJECT,
        env=child_env(DATABASE_URL=database.url, REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_it_settles_later_what_it_could_not_settle_while_redis_was_frozen(
    simulator, redis_server, shared_database, aipk_servers, tmp_path
):
    """Streams that end while Redis is frozen cannot swap their reservation for their
    real cost. Once Redis answers again the budget counter must hold exactly what the
    usage rows say was spent -- not the reservations, and not, once their leases are
    reclaimed, nothing at all (money the budget would never see)."""
    slug = f"settle-{uuid.uuid4().hex[:6]}"
    world = make_world(shared_database, slug, simulator.url)
    _spend(shared_database, redis_server.url, slug, "100")  # a $100 budget on the key
    server = AipkServer(server_env(shared_database.url, redis_server.url))
    aipk_servers.append(server)
    server.start(tmp_path / "server.log")

    results = asyncio.run(
        _streams_across_a_fault(
            server.url, world.secret, world.model(SLOW_MODEL), redis_server.pause
        )
    )
    assert all(error is None for _, _, _, error in results), results
    redis_server.resume()

    deadline = time.monotonic() + 30
    while True:
        now = _spend(shared_database, redis_server.url, slug)
        if (now["rows"] == STREAMS and now["spend"] == now["recorded"]) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(1)
    assert now["rows"] == STREAMS and now["recorded"] > 0, now
    assert now["spend"] == now["recorded"], now
    assert "settled request" in server.logs()


# -- a hung upstream: the caller still gets an answer, the request still gets its row ----


def _usage(request_id: str):
    from aipk_site.gateway.usage import usage_flush
    from tenants_app.models import UsageRecord

    usage_flush()
    return UsageRecord.objects.get(request_id=request_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", {"stream": True}),
        ("/messages", {"stream": True, "max_tokens": 50}),
    ],
    ids=["openai", "anthropic"],
)
@pytest.mark.parametrize("mode", ["hang", "stall"])
def test_it_answers_and_accounts_a_stream_whose_upstream_sends_no_first_byte(
    world, gateway_server, mode, path, body
):
    from providers_app.services.providers import provider_update

    provider_update(provider=world.providers["openai"], settings={"timeouts": {"first_byte": 1}})
    started = time.monotonic()
    reply = httpx.post(
        gateway_server.openai_base_url + path,
        headers={"authorization": f"Bearer {world.secret}"},
        json={
            "model": f"openai/gpt-4o-mini-fail-{mode}",
            "messages": [{"role": "user", "content": "hello"}],
            **body,
        },
        timeout=60,
    )
    # nothing was streamed yet, so the status says it: a 504 in the caller's own shape
    assert reply.status_code == 504, reply.text
    assert time.monotonic() - started < 10  # the 1 s first-byte deadline, not minutes
    error = reply.json()["error"]
    assert error["type"] in ("upstream_error", "timeout_error", "api_error"), error
    row = _usage(reply.headers["x-request-id"])
    assert (row.status, row.error_type, row.streamed) == ("error", "timeout_error", True)
    assert row.completion_tokens == 0


@pytest.mark.django_db(transaction=True)
def test_it_ends_and_accounts_a_stream_whose_upstream_goes_silent_midway(world, gateway_server):
    from providers_app.services.providers import provider_update

    provider_update(provider=world.providers["openai"], settings={"timeouts": {"idle": 1}})
    with httpx.stream(
        "POST",
        gateway_server.openai_base_url + "/chat/completions",
        headers={"authorization": f"Bearer {world.secret}"},
        json={
            "model": "openai/gpt-4o-mini-fail-stall_midstream",
            "messages": [{"role": "user", "content": "hello"}],
            "stream": True,
        },
        timeout=30,
    ) as reply:
        assert reply.status_code == 200
        request_id = reply.headers["x-request-id"]
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line[6:7] == "{"]
    assert "error" in events[-1], events[-3:]
    delivered = "".join(
        c["delta"].get("content") or "" for e in events for c in e.get("choices", [])
    )
    row = _usage(request_id)
    assert (row.status, row.error_type) == ("error", "timeout_error")
    assert delivered and row.completion_tokens >= len(delivered.split())  # what went out
