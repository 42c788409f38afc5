"""Two OS processes sharing Redis agree on key health and breaker state.

The other process is a fresh ``python -c`` with the project's settings and
``REDIS_URL``: it reaches the pool only through the shared store, so
anything this process sees came through Redis. Skipped without ``REDIS_URL``
(``CI=true .ci/run`` sets it): a local-memory cache is private to a process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from aipk_site.infra.state import RedisStateStore, state_store
from providers_app.kit.errors import ServerError
from providers_app.kit.resilience import CircuitBreaker, KeyPool
from providers_app.services.shared_state import provider_state_store

REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = pytest.mark.skipif(
    not REDIS_URL,
    reason="needs Redis: set REDIS_URL (CI=true .ci/run does) to share state between processes",
)

PROJECT = Path(__file__).resolve().parents[2]

OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, os, sys
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aipk_site.settings")
    django.setup()

    from providers_app.kit import errors
    from providers_app.kit.resilience import CircuitBreaker, KeyPool
    from providers_app.services.shared_state import RedisProviderStateStore, provider_state_store

    pool_id, action, credential, count = sys.argv[1:5]
    store = provider_state_store()
    assert isinstance(store, RedisProviderStateStore), type(store)
    # a minute's backoff: this process must still see it after the other one has exited,
    # which takes longer than the default 1 s on a loaded machine
    pool = KeyPool(store, pool_id, base_backoff=60.0)

    async def main():
        if action == "fail":
            failures = [errors.ServerError() for _ in range(int(count))]
            await asyncio.gather(*(pool.report_failure(credential, e) for e in failures))
        elif action == "revoke":
            await pool.report_failure(credential, errors.AuthenticationError())
        elif action == "trip":
            breaker = CircuitBreaker(store, pool_id, failure_threshold=int(count))
            for _ in range(int(count)):
                await breaker.record_failure()
        print((await pool.health(credential)).state)

    asyncio.run(main())
    """
)


def other_process(*args: str | int) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "aipk_site.settings"}
    return subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, *map(str, args)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out.strip()


@pytest.fixture
def pool_id():
    pool_id = f"test-{uuid.uuid4().hex}"
    yield pool_id
    store = state_store()
    for key in [f"pool:{pool_id}:cred:key:1", f"pool:{pool_id}:cred:key:2", f"breaker:{pool_id}"]:
        asyncio.run(store.delete(key))


def test_it_uses_redis_for_the_shared_store():
    assert isinstance(state_store(), RedisStateStore)


async def test_it_sees_a_key_revoked_in_another_process(pool_id):
    pool = KeyPool(provider_state_store(), pool_id)
    assert await pool.acquire(["key:1"]) == "key:1"

    answer = await asyncio.to_thread(finish, other_process(pool_id, "revoke", "key:1", 1))
    assert answer == "invalid"

    health = await pool.health("key:1")
    assert (health.state, health.last_error_type) == ("invalid", "authentication_error")
    assert await pool.acquire(["key:1", "key:2"]) == "key:2"


async def test_it_sees_a_key_backing_off_after_failures_in_another_process(pool_id):
    pool = KeyPool(provider_state_store(), pool_id)

    assert await asyncio.to_thread(finish, other_process(pool_id, "fail", "key:1", 3)) == "backoff"

    health = await pool.health("key:1")
    assert (health.state, health.consecutive_failures) == ("backoff", 3)
    assert await pool.acquire(["key:1", "key:2"]) == "key:2"


async def test_it_counts_failures_from_several_processes_at_once_exactly(pool_id):
    pool = KeyPool(provider_state_store(), pool_id, failure_threshold=1000)
    others = [other_process(pool_id, "fail", "key:1", 300) for _ in range(2)]

    await asyncio.gather(*(pool.report_failure("key:1", ServerError()) for _ in range(100)))
    await asyncio.gather(*(asyncio.to_thread(finish, other) for other in others))

    assert (await pool.health("key:1")).consecutive_failures == 700


async def test_it_sees_a_breaker_opened_in_another_process(pool_id):
    breaker = CircuitBreaker(provider_state_store(), pool_id, failure_threshold=3)
    assert await breaker.allow()

    await asyncio.to_thread(finish, other_process(pool_id, "trip", "key:1", 3))

    assert await breaker.state() == "open"
    assert not await breaker.allow()
