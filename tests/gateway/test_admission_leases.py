"""Reservations and stream slots are leases: what a killed process held comes back.

A request admitted by a process that is then killed never settles. Its reserved cost
and its stream slot are leases that expire ``ADMISSION_LEASE_SECONDS`` after admission;
the next admit or usage read in the scope reclaims them. Every store (local memory --
pickled, and the embedded mode's live objects -- always, Redis when ``REDIS_URL`` is
set) behaves alike; a clock moved by hand stands in for time.
tests/gateway/test_killed_server_leases.py does the same with a real server process
killed with SIGKILL.
"""

from __future__ import annotations

import os
import random
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.db import connections
from django.test import override_settings

from aipk_site.gateway import admission
from aipk_site.gateway.admission import Admission, Limits, admit, settle, usage_now
from aipk_site.infra.errors import LimitExceeded

REDIS_URL = os.environ.get("REDIS_URL", "")
NEEDS_REDIS = pytest.mark.skipif(
    not REDIS_URL, reason="needs Redis: set REDIS_URL (CI=true .ci/run does) to run it"
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_thread")]

START = 1_772_049_660.0 + 10.25  # 2026-02-25, 10.25 s into a minute window
LEASE = 30.0
TENANT, KEY, OTHER_KEY = 1, 11, 12
BUDGET = Limits(budget_micro_usd=1000)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def db_thread():
    yield
    await sync_to_async(connections.close_all)()


LOCAL_CACHES = {
    "locmem": "django.core.cache.backends.locmem.LocMemCache",
    "embedded": "aipk_site.infra.local_cache.FastLocMemCache",
}


@pytest.fixture(params=["locmem", "embedded", pytest.param("redis", marks=NEEDS_REDIS)])
def backend(request, settings):
    settings.ADMISSION_LEASE_SECONDS = LEASE
    prefix = f"aipk-test-{uuid.uuid4().hex}"
    if request.param in LOCAL_CACHES:
        cache = {"BACKEND": LOCAL_CACHES[request.param], "LOCATION": prefix}
    else:
        cache = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    with override_settings(CACHES={"default": cache}):
        yield request.param
        if request.param == "redis":
            client = caches["default"]._cache.get_client(None, write=True)
            for key in client.scan_iter(match=f"{prefix}:*"):
                client.delete(key)
            for pool in caches["default"]._cache._pools.values():
                pool.disconnect()


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(admission, "clock", fake)
    return fake


async def go(
    *,
    cost: int = 0,
    tokens: int = 0,
    key_id: int = KEY,
    key: Limits = BUDGET,
    tenant: Limits | None = None,
    stream: bool = False,
) -> Admission:
    return await admit(
        request_id=uuid.uuid4().hex,
        key_id=key_id,
        tenant_id=TENANT,
        key_limits=key,
        tenant_limits=tenant or Limits(),
        estimated_tokens=tokens,
        estimated_cost_micro=cost,
        stream=stream,
    )


async def spend(key_id: int | None = KEY) -> tuple[int, int]:
    now = await usage_now(key_id=key_id, tenant_id=TENANT)
    return now["key"]["spend_micro_usd"], now["tenant"]["spend_micro_usd"]


async def test_it_gives_a_killed_requests_reservation_back_when_its_lease_expires(backend, clock):
    await go(cost=600)  # never settled: its process was killed
    with pytest.raises(LimitExceeded) as refused:
        await go(cost=600)
    assert refused.value.code == "key_budget"

    clock.advance(LEASE - 0.5)
    assert await spend() == (600, 600)  # still held while the lease runs
    clock.advance(0.5)

    assert await spend() == (0, 0)
    await go(cost=1000)  # the whole budget is there again


async def test_it_keeps_the_real_cost_of_settled_requests_and_drops_only_the_killed_hold(
    backend, clock
):
    done = await go(cost=400)
    await go(cost=500)  # killed
    await settle(done, tokens=0, cost_micro=300)
    assert await spend() == (800, 800)

    clock.advance(LEASE)

    assert await spend() == (300, 300)  # exactly what the settled request cost
    await go(cost=700)
    with pytest.raises(LimitExceeded):
        await go(cost=1)


async def test_it_reclaims_on_admit_without_a_read_first(backend, clock):
    await go(cost=900)  # killed
    clock.advance(LEASE)

    await go(cost=1000)  # the admit itself reclaims, in the same atomic step

    assert await spend() == (1000, 1000)


async def test_it_charges_a_request_that_outlived_its_lease_its_whole_real_cost(backend, clock):
    slow = await go(cost=600)
    clock.advance(LEASE + 5)
    assert await spend() == (0, 0)  # reclaimed: taken for dead

    await settle(slow, tokens=0, cost_micro=250)  # ...but it was only slow

    assert await spend() == (250, 250)
    await settle(slow, tokens=0, cost_micro=250)
    assert await spend() == (250, 250)  # once


async def test_it_frees_a_killed_streams_slot_for_key_and_tenant(backend, clock):
    key, tenant = Limits(max_concurrent=1), Limits(max_concurrent=1)
    await go(key=key, tenant=tenant, stream=True)  # killed mid-stream
    with pytest.raises(LimitExceeded) as refused:
        await go(key=key, tenant=tenant, stream=True)
    assert refused.value.code == "key_concurrency"

    clock.advance(LEASE)

    now = await usage_now(key_id=KEY, tenant_id=TENANT)
    assert (now["key"]["streams"], now["tenant"]["streams"]) == (0, 0)
    await go(key=key, tenant=tenant, stream=True)


async def test_it_reclaims_the_tenants_share_when_another_key_admits(backend, clock):
    tenant_budget = Limits(budget_micro_usd=1000)
    await go(cost=800, key=Limits(), tenant=tenant_budget)  # killed
    clock.advance(LEASE)

    await go(cost=1000, key_id=OTHER_KEY, key=Limits(), tenant=tenant_budget)

    assert (await spend(OTHER_KEY))[1] == 1000
    assert await spend() == (0, 1000)  # key 11's own counter is reclaimed on its read


async def test_it_holds_a_longer_lease_for_a_request_with_a_longer_deadline(backend, clock):
    await admit(
        request_id="long-deadline",
        key_id=KEY,
        tenant_id=TENANT,
        key_limits=BUDGET,
        tenant_limits=Limits(),
        estimated_tokens=0,
        estimated_cost_micro=700,
        stream=False,
        lease_seconds=LEASE * 3,  # e.g. a provider whose total deadline is longer
    )
    await go(cost=100)  # killed too, with the shortest lease (ADMISSION_LEASE_SECONDS)

    clock.advance(LEASE)
    assert await spend() == (700, 700)
    clock.advance(LEASE * 2)
    assert await spend() == (0, 0)


async def test_it_reclaims_exactly_the_unsettled_leases_among_many_in_flight(backend, clock):
    # Settled leases leave the stores' books lazily (a heap on local memory, a sorted set
    # on Redis); what expires must still be exactly the requests that never settled, in
    # the order they expire, however the others settled around them.
    budget = Limits(budget_micro_usd=100_000)
    admitted = []
    for i in range(200):  # below LocMemCache's 300 entries, past which it culls keys
        clock.now = START + i / 100  # staggered: leases expire 10 ms apart
        admitted.append(await go(cost=10, key=budget))
    killed = admitted[::40]  # admitted at +0, +0.4, ... +1.6 s
    settled = [a for a in admitted if a not in killed]
    random.Random(7).shuffle(settled)
    for a in settled:
        await settle(a, tokens=0, cost_micro=3)
    held = 5 * 10 + 195 * 3
    assert await spend() == (held, held)

    clock.now = START + LEASE + 0.9  # the first three killed leases have expired
    assert await spend() == (held - 30, held - 30)
    clock.now = START + LEASE + 1.65
    assert await spend() == (195 * 3, 195 * 3)  # all of them: the real costs remain
    await go(cost=100_000 - 195 * 3, key=budget)  # and the rest of the budget is free
