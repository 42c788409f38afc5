"""The request path's shared state on Redis: asyncio I/O on the server's own event loop.

Every Redis command a /v1 request sends (admission, breaker, key pool, rate-limit
tracker, routing, settle) goes through the loop's pipelined connection
(``aipk_site.infra.redis_wire``) on the thread that runs the server's loop: no
``asyncio.to_thread`` hop to the sync client. These tests watch the commands sent
(the real clients, the real server).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from aipk_site.infra.redis_wire import PipelinedRedis
from aipk_site.infra.state import RedisStateStore, state_store
from providers_app.kit.errors import ServerError
from providers_app.kit.resilience import CircuitBreaker, CircuitOpenError, KeyPool
from providers_app.kit.resilience.failover import call_with_failover
from providers_app.services.shared_state import provider_state_store

NEEDS_REDIS = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="shared state goes to Redis only with REDIS_URL"
)


class Commands:
    """Every command sent by a sync or an asyncio Redis client, with its thread."""

    def __init__(self) -> None:
        self.on_loop: list[tuple[str, int]] = []  # (command, thread id) via the loop's client
        self.blocking: list[tuple[str, str]] = []  # (command, thread name) via sync redis

    def clear(self) -> None:
        self.on_loop.clear()
        self.blocking.clear()


@pytest.fixture
def commands(monkeypatch) -> Iterator[Commands]:
    seen = Commands()
    sync_execute = redis.client.Redis.execute_command
    async_execute = PipelinedRedis.execute

    def sync_spy(self, *args, **options):
        seen.blocking.append((str(args[0]), threading.current_thread().name))
        return sync_execute(self, *args, **options)

    async def async_spy(self, *args, **options):
        seen.on_loop.append((str(args[0]), threading.get_ident()))
        return await async_execute(self, *args, **options)

    monkeypatch.setattr(redis.client.Redis, "execute_command", sync_spy)
    monkeypatch.setattr(PipelinedRedis, "execute", async_spy)
    yield seen


def chat(world, gateway_server) -> httpx.Response:
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={"model": world.model("openai"), "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {world.secret}"},
        timeout=30,
    )


@NEEDS_REDIS
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


@NEEDS_REDIS
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


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def pool_and_breaker(clock: Clock) -> tuple[KeyPool, CircuitBreaker]:
    name = f"test-{uuid.uuid4().hex[:8]}"  # entries outlive a test run on Redis
    store = provider_state_store()
    pool = KeyPool(store, name, clock=clock)
    return pool, CircuitBreaker(store, name, failure_threshold=1, reset_timeout=30, clock=clock)


async def test_it_lets_exactly_one_of_many_requests_probe_a_half_open_provider():
    clock = Clock()
    pool, breaker = pool_and_breaker(clock)
    await breaker.record_failure()  # open
    clock.now += 31  # half-open: one probe may go
    answered: list[str] = []
    refused: list[CircuitOpenError] = []
    everyone_asked = asyncio.Event()  # the probe answers once the others were turned away

    async def request() -> str:
        async def operation(credential: str) -> str:
            answered.append(credential)
            await asyncio.wait_for(everyone_asked.wait(), 10)
            return "ok"

        try:
            return await call_with_failover(
                pool=pool, candidates=["key:1", "key:2"], operation=operation, breaker=breaker
            )
        except CircuitOpenError as error:
            refused.append(error)
            if len(refused) == 19:
                everyone_asked.set()
            return "refused"

    outcomes = await asyncio.gather(*(request() for _ in range(20)))

    assert sorted(outcomes) == ["ok"] + ["refused"] * 19
    assert len(answered) == 1
    assert all(error.retry_after is not None for error in refused)
    assert await breaker.state() == "closed"  # the probe's success closed it


async def test_it_keeps_counting_failures_and_clearing_them_on_success():
    clock = Clock()
    pool, breaker = pool_and_breaker(clock)
    breaker.failure_threshold = 3

    async def fail(credential: str) -> str:
        raise ServerError("upstream 500")

    for _ in range(2):
        with pytest.raises(ServerError):
            await call_with_failover(
                pool=pool, candidates=["key:1"], operation=fail, breaker=breaker, max_attempts=1
            )
    assert (await pool.health("key:1")).consecutive_failures == 2

    async def succeed(credential: str) -> str:
        return "ok"

    assert (
        await call_with_failover(
            pool=pool, candidates=["key:1"], operation=succeed, breaker=breaker
        )
        == "ok"
    )

    assert (await pool.health("key:1")).consecutive_failures == 0
    assert await breaker.state() == "closed"
    assert await breaker.store.get(breaker.key) is None  # no failures left to count


@NEEDS_REDIS
async def test_it_sends_a_quiet_successful_calls_breaker_and_pool_steps_in_one_round_trip(
    commands,
):
    pool, breaker = pool_and_breaker(Clock())

    async def operation(credential: str) -> str:
        return "ok"

    commands.clear()
    result = await call_with_failover(
        pool=pool, candidates=["key:1"], operation=operation, breaker=breaker
    )

    assert result == "ok"
    # one script: breaker allow + pool read; a success on a healthy key and a closed
    # breaker changes nothing, so nothing is written after it
    # (tests/providers/test_resilience_bookkeeping.py: a success that resets does write)
    assert [name for name, _ in commands.on_loop] == ["EVALSHA"]
    assert commands.blocking == []


async def test_it_folds_a_latency_into_the_shared_average_in_one_step():
    store = state_store()
    key = f"test:average:{uuid.uuid4().hex[:8]}"

    await store.fold_average(key, 100.0, alpha=0.2, ttl=60)
    await store.fold_average(key, 200.0, alpha=0.2, ttl=60)
    await asyncio.gather(*(store.fold_average(key, 50.0, alpha=0.5, ttl=60) for _ in range(10)))

    stored = await store.get(key)
    assert stored is not None
    assert stored["samples"] == 12  # none lost to a concurrent read-then-write
    expected = 0.2 * 200.0 + 0.8 * 100.0
    for _ in range(10):
        expected = 0.5 * 50.0 + 0.5 * expected
    assert stored["ewma"] == pytest.approx(expected)
