"""The request path's shared state on Redis: asyncio I/O on the server's own event loop.

Every Redis command a /v1 request sends (admission, breaker, key pool, rate-limit
tracker, routing, settle) goes through a ``redis.asyncio`` client on the thread
that runs the server's loop: no ``asyncio.to_thread`` hop to the sync client.
These tests watch the commands redis-py sends (the real client, the real server).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
import redis.asyncio

from aipk_site.infra.state import RedisStateStore, state_store

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="shared state goes to Redis only with REDIS_URL"
)


class Commands:
    """Every command sent by a sync or an asyncio Redis client, with its thread."""

    def __init__(self) -> None:
        self.on_loop: list[tuple[str, int]] = []  # (command, thread id) via redis.asyncio
        self.blocking: list[tuple[str, str]] = []  # (command, thread name) via sync redis

    def clear(self) -> None:
        self.on_loop.clear()
        self.blocking.clear()


@pytest.fixture
def commands(monkeypatch) -> Iterator[Commands]:
    seen = Commands()
    sync_execute = redis.client.Redis.execute_command
    async_execute = redis.asyncio.client.Redis.execute_command

    def sync_spy(self, *args, **options):
        seen.blocking.append((str(args[0]), threading.current_thread().name))
        return sync_execute(self, *args, **options)

    async def async_spy(self, *args, **options):
        seen.on_loop.append((str(args[0]), threading.get_ident()))
        return await async_execute(self, *args, **options)

    monkeypatch.setattr(redis.client.Redis, "execute_command", sync_spy)
    monkeypatch.setattr(redis.asyncio.client.Redis, "execute_command", async_spy)
    yield seen


def chat(world, gateway_server) -> httpx.Response:
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={"model": world.model("openai"), "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    )


@pytest.mark.django_db(transaction=True)
def test_it_does_a_requests_shared_state_io_on_the_server_loop_thread(
    world, gateway_server, commands
):
    assert chat(world, gateway_server).status_code == 200  # warm: snapshots, seeds, scripts
    server_threads = {t.ident: t.name for t in threading.enumerate()}
    commands.clear()

    reply = chat(world, gateway_server)

    assert reply.status_code == 200, reply.text
    # the accounting after the reply (settle, latency) may still be under way: wait
    # until the commands stop coming
    for _ in range(50):
        count = len(commands.on_loop)
        time.sleep(0.2)
        if len(commands.on_loop) == count:
            break
    sent = [name for name, _ in commands.on_loop]
    assert sent.count("EVALSHA") >= 2, sent  # at least admit and settle, each one script
    threads = {server_threads.get(ident, ident) for _, ident in commands.on_loop}
    assert threads == {"daphne"}, threads  # the server's event loop thread, and only it
    assert commands.blocking == []  # nothing went through the sync client in a worker thread


def test_it_gives_each_event_loop_its_own_client_and_the_same_keys(commands):
    store = state_store()
    assert isinstance(store, RedisStateStore)
    clients = []

    async def round_trip(n: int) -> dict | None:
        clients.append(store.aclient())
        await store.set(f"test:loops:{n}", {"n": n}, ttl=30)
        return await store.get(f"test:loops:{n}")

    # two loops one after the other, and one in another thread at the same time
    first = asyncio.run(round_trip(1))
    second = asyncio.run(round_trip(2))
    in_thread: list[dict | None] = []
    thread = threading.Thread(target=lambda: in_thread.append(asyncio.run(round_trip(3))))
    thread.start()
    thread.join(10)

    assert (first, second, in_thread) == ({"n": 1}, {"n": 2}, [{"n": 3}])
    assert len({id(c) for c in clients}) == 3
    # the async client writes the very key (prefix, version) the Django cache's client reads
    assert store.client().get(store.full_key("test:loops:3")) == b'{"n": 3}'
    assert commands.blocking == [("GET", threading.current_thread().name)]
