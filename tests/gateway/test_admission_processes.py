"""Two OS processes admitting against one key over Redis never exceed its limit together.

The other processes are fresh ``python -c`` runs with the project's settings and
``REDIS_URL``; they share nothing with this one but Redis. Every participant reads
the same fixed clock (passed on the command line), so the test cannot straddle a
minute window. Skipped without ``REDIS_URL`` (``CI=true .ci/run`` sets it).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.db import connections

from aipk_site.gateway import admission
from aipk_site.gateway.admission import Limits, admit, usage_now
from aipk_site.infra.errors import LimitExceeded

REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = [
    pytest.mark.skipif(
        not REDIS_URL,
        reason="needs Redis: set REDIS_URL (CI=true .ci/run does) to share state between processes",
    ),
    pytest.mark.django_db(transaction=True),
]

PROJECT = Path(__file__).resolve().parents[2]
NOW = 1_772_049_660.0 + 10.25

OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from collections import Counter
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aipk_site.settings")
    django.setup()

    from django.core.cache import caches
    from aipk_site.infra.state import RedisStateStore, state_store
    from aipk_site.gateway import admission
    from aipk_site.gateway.admission import Limits, admit
    from aipk_site.infra.errors import LimitExceeded

    tenant_id, key_id, rpm, count, now, tag, n = sys.argv[1:8]
    assert isinstance(state_store(), RedisStateStore), type(state_store())
    admission.clock = lambda: float(now)

    async def one(number):
        try:
            await admit(
                request_id=f"{tag}-{n}-{number}", key_id=int(key_id), tenant_id=int(tenant_id),
                key_limits=Limits(rpm=int(rpm)), tenant_limits=Limits(),
                estimated_tokens=10, estimated_cost_micro=5, stream=False,
            )
            return "admitted"
        except LimitExceeded as refused:
            return refused.code

    async def main():
        # a barrier: everyone starts together, so the processes really race
        redis = caches["default"]._cache.get_client(None, write=True)
        redis.incr(f"{tag}:ready")
        redis.expire(f"{tag}:ready", 120)
        while not redis.get(f"{tag}:go"):
            time.sleep(0.002)
        print(json.dumps(Counter(await asyncio.gather(*(one(i) for i in range(int(count)))))))

    asyncio.run(main())
    """
)


def other_process(*args: str | int | float) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "aipk_site.settings"}
    return subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, *map(str, args)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> Counter:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return Counter(json.loads(out))


@pytest.fixture
def tenant_id(monkeypatch):
    """A tenant id nobody else uses, on the real cache; its keys are deleted afterwards."""
    monkeypatch.setattr(admission, "clock", lambda: NOW)
    tenant_id = random.randrange(10**9, 2 * 10**9)
    yield tenant_id
    client = caches["default"]._cache.get_client(None, write=True)
    for key in client.scan_iter(match=f"*adm:{{t{tenant_id}}}:*"):
        client.delete(key)
    connections.close_all()


async def test_it_admits_exactly_the_rpm_across_processes(tenant_id):
    # the other two processes between them try for more than the parent leaves them
    rpm, key_id, each, mine = 150, 7, 120, 60

    async def one(n: int) -> str:
        try:
            await admit(
                request_id=f"main-{n}",
                key_id=key_id,
                tenant_id=tenant_id,
                key_limits=Limits(rpm=rpm),
                tenant_limits=Limits(),
                estimated_tokens=10,
                estimated_cost_micro=5,
                stream=False,
            )
            return "admitted"
        except LimitExceeded as refused:
            return refused.code

    # The first admit seeds the month counters from this test's database, which
    # the other processes cannot see.
    totals = Counter([await one(-1)])
    barrier = f"aipk-test-barrier-{tenant_id}"
    others = [other_process(tenant_id, key_id, rpm, each, NOW, barrier, n) for n in range(2)]
    redis = caches["default"]._cache.get_client(None, write=True)
    try:
        while int(redis.get(f"{barrier}:ready") or 0) < len(others):
            assert all(p.poll() is None for p in others), [p.communicate() for p in others]
            await asyncio.sleep(0.01)
        redis.set(f"{barrier}:go", 1, ex=60)
        totals += Counter(await asyncio.gather(*(one(n) for n in range(mine))))
        for counts in await asyncio.gather(*(asyncio.to_thread(finish, p) for p in others)):
            assert sum(counts.values()) == each, counts
            totals += counts
    finally:
        redis.delete(f"{barrier}:ready", f"{barrier}:go")
        for p in others:
            p.kill()

    assert totals == {"admitted": rpm, "key_rpm": 2 * each + mine + 1 - rpm}
    now = await usage_now(key_id=key_id, tenant_id=tenant_id)
    assert now["key"] == {
        "requests": rpm,
        "tokens": 10 * rpm,
        "spend_micro_usd": 5 * rpm,
        "streams": 0,
    }
    await sync_to_async(connections.close_all)()
