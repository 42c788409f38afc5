"""Admission through the real stores: local memory always, Redis when ``REDIS_URL`` is set.

Each test gets a cache nobody else uses (a private LocMemCache, the embedded mode's
FastLocMemCache whose live objects the steps update in place, or Redis under a
private key prefix whose keys are deleted afterwards) and a clock it moves by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.db import connections
from django.test import override_settings

from aipk_site.gateway import admission
from aipk_site.gateway.admission import Admission, Limits, admit, settle, usage_now
from aipk_site.gateway.admission import store as admission_store
from aipk_site.infra.errors import LimitExceeded
from aipk_site.infra.state import LockedCacheStateStore, RedisStateStore, state_store
from tenants_app.models import Tenant, UsageRecord, VirtualKey

REDIS_URL = os.environ.get("REDIS_URL", "")
NEEDS_REDIS = pytest.mark.skipif(
    not REDIS_URL, reason="needs Redis: set REDIS_URL (CI=true .ci/run does) to run it"
)
BACKENDS = ["locmem", "embedded", pytest.param("redis", marks=NEEDS_REDIS)]
LOCAL_CACHES = {
    "locmem": "django.core.cache.backends.locmem.LocMemCache",
    "embedded": "aipk_site.infra.local_cache.FastLocMemCache",
}

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_thread")]

# 10.25 s into a minute window, 2026-02-25 20:01:10.25 UTC
START = 1_772_049_660.0 + 10.25
MONTH_END = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
TENANT = 1
KEY = 11


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def db_thread():
    """Close sync_to_async's worker-thread connection, so the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


def _redis_keys(prefix: str) -> dict[bytes, int]:
    client = caches["default"]._cache.get_client(None, write=True)
    return {key: client.pttl(key) for key in client.scan_iter(match=f"{prefix}:*")}


def _forget(prefix: str, backend: str) -> None:
    """Lose every counter, as a cache restart would."""
    if backend in LOCAL_CACHES:
        caches["default"].clear()
        return
    client = caches["default"]._cache.get_client(None, write=True)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


@pytest.fixture(params=BACKENDS)
def backend(request):
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
        yield request.param, prefix
        if request.param == "redis":
            _forget(prefix, "redis")
            for pool in caches["default"]._cache._pools.values():
                pool.disconnect()


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(admission, "clock", fake)
    return fake


@pytest.fixture
def forget(backend):
    return lambda: _forget(backend[1], backend[0])


async def go(
    request_id: str | None = None,
    *,
    key_id: int = KEY,
    tenant_id: int = TENANT,
    key: Limits | None = None,
    tenant: Limits | None = None,
    tokens: int = 0,
    cost: int = 0,
    stream: bool = False,
) -> Admission:
    return await admit(
        request_id=request_id or uuid.uuid4().hex,
        key_id=key_id,
        tenant_id=tenant_id,
        key_limits=key or Limits(),
        tenant_limits=tenant or Limits(),
        estimated_tokens=tokens,
        estimated_cost_micro=cost,
        stream=stream,
    )


async def refused(**kw) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        await go(**kw)
    return info.value


async def outcomes(n: int, **kw) -> tuple[list[Admission], list[LimitExceeded]]:
    results = await asyncio.gather(*(go(**kw) for _ in range(n)), return_exceptions=True)
    for r in results:
        if not isinstance(r, Admission | LimitExceeded):
            raise r
    return (
        [r for r in results if isinstance(r, Admission)],
        [r for r in results if isinstance(r, LimitExceeded)],
    )


async def usage(key_id: int | None = KEY, tenant_id: int = TENANT) -> dict:
    return await usage_now(key_id=key_id, tenant_id=tenant_id)


async def test_it_picks_the_store_by_cache_backend(backend):
    expected = RedisStateStore if backend[0] == "redis" else LockedCacheStateStore
    assert isinstance(state_store(), expected)
    expected_admission = {
        "redis": admission_store.RedisAdmissionStore,
        "locmem": admission_store.LockedAdmissionStore,
        "embedded": admission_store.ObjectAdmissionStore,
    }[backend[0]]
    assert type(admission_store.admission_store()) is expected_admission
    assert admission_store.admission_store() is admission_store.admission_store()


async def test_it_admits_and_reports_headers_for_the_tighter_limit(backend, clock):
    got = await go(
        key=Limits(rpm=10, tpm=1000), tenant=Limits(rpm=5, tpm=5000), tokens=100, cost=30
    )

    assert got.headers == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "50s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "50s",
    }
    assert (await go(key=Limits(budget_micro_usd=10**6))).headers == {}
    now = await usage()
    assert now["key"] == {"requests": 2, "tokens": 100, "spend_micro_usd": 30, "streams": 0}
    assert now["tenant"] == now["key"]
    assert (now["month"], now["window_resets_in"]) == ("2026-02", 50)
    assert now["month_resets_in"] == math.ceil(MONTH_END - START)


async def test_it_refuses_over_the_key_rpm_until_the_window_resets(backend, clock):
    limits = Limits(rpm=2)
    await go(key=limits)
    await go(key=limits)

    error = await refused(key=limits)

    assert error.code == "key_rpm" and error.status == 429
    assert error.message == "key rate limit of 2 requests per minute reached; resets in 50s"
    assert error.retry_after == 50
    assert error.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "50s",
        "retry-after": "50",
    }
    clock.advance(49.75)  # the next window
    assert (await go(key=limits)).headers["x-ratelimit-remaining-requests"] == "1"


async def test_it_counts_every_key_of_a_tenant_against_the_tenant_rpm(backend, clock):
    tenant = Limits(rpm=3)
    await go(key_id=1, tenant=tenant)
    await go(key_id=2, tenant=tenant)
    await go(key_id=3, tenant=tenant)

    error = await refused(key_id=4, tenant=tenant)

    assert error.code == "tenant_rpm"
    assert error.message.startswith("tenant rate limit of 3 requests per minute reached")
    assert (await go(key_id=4, tenant_id=TENANT + 1, tenant=tenant)).request_id


async def test_it_reserves_nothing_when_refused(backend, clock):
    key = Limits(rpm=5, tpm=1000, max_concurrent=1)
    tenant = Limits(budget_micro_usd=100)
    await go(key=key, tenant=tenant, tokens=10, cost=60)

    error = await refused(key=key, tenant=tenant, tokens=500, cost=60, stream=True)

    assert error.code == "tenant_budget"
    now = await usage()
    assert now["key"] == {"requests": 1, "tokens": 10, "spend_micro_usd": 60, "streams": 0}
    assert now["tenant"] == now["key"]
    # the refused stream took no slot
    assert (await go(key=key, tokens=10, stream=True)).stream


async def test_it_frees_unused_tokens_when_settled(backend, clock):
    limits = Limits(tpm=1000)
    first = await go(key=limits, tokens=800)
    error = await refused(key=limits, tokens=300)
    assert error.code == "key_tpm"
    assert error.message == "key token limit of 1000 tokens per minute reached; resets in 50s"

    await settle(first, tokens=200, cost_micro=0)

    second = await go(key=limits, tokens=300)
    assert second.headers["x-ratelimit-remaining-tokens"] == "500"
    assert (await usage())["key"]["tokens"] == 500


async def test_it_charges_more_tokens_when_the_request_used_more(backend, clock):
    first = await go(tokens=100, cost=10)
    await settle(first, tokens=400, cost_micro=25)
    now = await usage()
    assert (now["key"]["tokens"], now["key"]["spend_micro_usd"]) == (400, 25)
    assert (now["tenant"]["tokens"], now["tenant"]["spend_micro_usd"]) == (400, 25)


async def test_it_frees_a_stream_slot_when_settled(backend, clock):
    limits = Limits(max_concurrent=1)
    running = await go(key=limits, stream=True)
    assert (await usage())["key"]["streams"] == 1

    error = await refused(key=limits, stream=True)
    assert error.code == "key_concurrency"
    assert error.retry_after == 1
    assert error.message.startswith("key limit of 1 concurrent streams reached")
    await go(key=limits, stream=False)  # plain requests take no slot

    await settle(running, tokens=0, cost_micro=0)

    assert (await usage())["key"]["streams"] == 0
    await go(key=limits, stream=True)


async def test_it_forgets_a_stream_whose_process_died(backend, clock, settings):
    settings.ADMISSION_LEASE_SECONDS = 30
    limits = Limits(max_concurrent=1)
    await go(key=limits, stream=True)  # never settled: its process "crashed"

    clock.advance(29)
    assert (await refused(key=limits, stream=True)).code == "key_concurrency"
    clock.advance(1)

    assert (await usage())["key"]["streams"] == 0
    await go(key=limits, stream=True)


async def test_it_ignores_a_second_settle(backend, clock):
    first = await go(tokens=100, cost=100)
    copy = dataclasses.replace(first)

    await settle(first, tokens=40, cost_micro=40)
    await settle(first, tokens=40, cost_micro=40)
    await settle(copy, tokens=10, cost_micro=10)  # another copy: the store remembers

    assert first.settled
    now = await usage()
    assert (now["key"]["tokens"], now["key"]["spend_micro_usd"]) == (40, 40)
    assert (now["tenant"]["tokens"], now["tenant"]["spend_micro_usd"]) == (40, 40)


async def test_it_adjusts_only_the_spend_when_settled_in_a_later_window(backend, clock):
    limits = Limits(tpm=1000)
    first = await go(key=limits, tokens=900, cost=500)
    clock.advance(60)
    await go(key=limits, tokens=300)

    await settle(first, tokens=100, cost_micro=200)

    now = await usage()
    assert now["key"]["tokens"] == 300  # the old window reset; the new one is left alone
    assert now["key"]["spend_micro_usd"] == 200
    assert now["tenant"]["spend_micro_usd"] == 200


async def test_it_admits_exactly_what_the_budget_allows_under_a_race(backend, clock):
    budget = Limits(budget_micro_usd=1000)

    admitted, refusals = await outcomes(50, key=budget, cost=100)

    assert len(admitted) == 10
    assert {r.code for r in refusals} == {"key_budget"}
    assert (await usage())["key"]["spend_micro_usd"] == 1000

    # each really cost 60: the difference is free for further requests
    spent_history = []
    while admitted:
        await asyncio.gather(*(settle(a, tokens=0, cost_micro=60) for a in admitted))
        spent = (await usage())["key"]["spend_micro_usd"]
        spent_history.append(spent)
        admitted, _ = await outcomes(50, key=budget, cost=100)
        reserved = (await usage())["key"]["spend_micro_usd"]
        assert reserved <= 1000

    assert spent_history == [600, 840, 900, 960]
    error = await refused(key=budget, cost=100)
    assert error.code == "key_budget"
    assert error.message == "key monthly budget of $0.001 reached; resets in 3d3h"
    assert error.retry_after == math.ceil(MONTH_END - START)
    assert error.headers == {"retry-after": str(error.retry_after)}
    # a request that fits what is left still gets in, up to the budget and no further
    last = await go(key=budget, cost=40)
    await settle(last, tokens=0, cost_micro=40)
    assert (await usage())["key"]["spend_micro_usd"] == 1000
    assert (await refused(key=budget, cost=0)).code == "key_budget"


async def test_it_seeds_the_month_spend_from_usage_records_after_the_cache_is_lost(
    backend, clock, forget
):
    tenant_id, key_id, other_key_id = await sync_to_async(_usage_rows)()
    tenant_limits = Limits(budget_micro_usd=1_000_000)

    first = await go(tenant_id=tenant_id, key_id=key_id, tenant=tenant_limits, cost=50_000)

    now = await usage(key_id=key_id, tenant_id=tenant_id)
    assert now["key"]["spend_micro_usd"] == 250_001 + 50_000
    assert now["tenant"]["spend_micro_usd"] == 850_001 + 50_000
    await settle(first, tokens=0, cost_micro=50_000)

    forget()  # the cache restarted: counters gone, the records remain
    # read from the records, and not yet written to the cache
    assert (await usage(key_id=other_key_id, tenant_id=tenant_id))["key"]["spend_micro_usd"] == (
        600_000
    )

    error = await refused(
        tenant_id=tenant_id, key_id=other_key_id, tenant=tenant_limits, cost=150_000
    )

    assert error.code == "tenant_budget"
    assert error.message.startswith("tenant monthly budget of $1.00 reached")
    now = await usage(key_id=other_key_id, tenant_id=tenant_id)
    assert now["key"]["spend_micro_usd"] == 600_000
    assert now["tenant"]["spend_micro_usd"] == 850_001
    await go(tenant_id=tenant_id, key_id=other_key_id, tenant=tenant_limits, cost=149_999)


def _usage_rows() -> tuple[int, int, int]:
    """This month: 0.250001 USD on one key and 0.6 on another; older rows do not count."""
    tenant = Tenant.objects.create(name="Acme", slug=f"acme-{uuid.uuid4().hex[:8]}")
    key = VirtualKey.objects.create(
        tenant=tenant, name="a", prefix="sk-a", key_hash=uuid.uuid4().hex
    )
    other = VirtualKey.objects.create(
        tenant=tenant, name="b", prefix="sk-b", key_hash=uuid.uuid4().hex
    )
    this_month = datetime.fromtimestamp(START, UTC)
    rows = [
        (key, Decimal("0.25"), this_month - timedelta(days=3)),
        (key, Decimal("0.00000050"), this_month),
        (key, Decimal("0.00000050"), this_month),
        (other, Decimal("0.6"), datetime(2026, 2, 1, tzinfo=UTC)),
        (key, Decimal("7"), datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)),  # last month
        (other, Decimal("9"), datetime(2026, 3, 1, tzinfo=UTC)),  # next month
    ]
    for n, (vkey, cost, at) in enumerate(rows):
        UsageRecord.objects.create(
            request_id=f"seed-{n}-{uuid.uuid4().hex}",
            tenant=tenant,
            virtual_key=vkey,
            cost_usd=cost,
            status="success",
            created_at=at,
        )
    return tenant.id, key.id, other.id


async def test_it_answers_usage_for_a_tenant_alone(backend, clock):
    await go(key_id=5, tokens=7, cost=3)
    await go(key_id=6, tokens=7, cost=3)

    now = await usage(key_id=None)

    assert now["key"] is None
    assert now["tenant"] == {"requests": 2, "tokens": 14, "spend_micro_usd": 6, "streams": 0}


async def test_it_rejects_negative_estimates(backend, clock):
    with pytest.raises(ValueError):
        await go(tokens=-1)


@NEEDS_REDIS
@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_it_keeps_every_redis_key_under_the_tenant_hash_tag_with_a_ttl(backend, clock):
    stream = await go(key=Limits(max_concurrent=2), tenant=Limits(max_concurrent=5), stream=True)
    await go(key=Limits(max_concurrent=2), tokens=5, cost=5)

    keys = _redis_keys(backend[1])

    names = {k.decode().split(":", 2)[2] for k in keys}  # without "<prefix>:<version>:"
    tag = f"adm:{{t{TENANT}}}"
    counters = {n for n in names if ":r:" not in n}
    assert counters == {
        f"{tag}:k{KEY}:w:29534161",
        f"{tag}:k{KEY}:m:202602",
        f"{tag}:k{KEY}:s",
        f"{tag}:k{KEY}:l",
        f"{tag}:t:w:29534161",
        f"{tag}:t:m:202602",
        f"{tag}:t:s",
        f"{tag}:t:l",
    }
    assert len(names - counters) == 2
    assert f"{tag}:r:{stream.request_id}" in names
    assert all(ttl > 0 for ttl in keys.values()), keys


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
async def test_it_keeps_one_live_object_per_scope_in_the_embedded_cache(backend, clock):
    objects = admission_store.admission_store().objects
    for _ in range(5):  # across windows and months (Feb 25 to Apr 6)
        done = await go(key=Limits(rpm=1, max_concurrent=2), stream=True, tokens=10, cost=5)
        await settle(done, tokens=10, cost_micro=5)
        clock.advance(10 * 86400)

    # the key's scope and the tenant's: nothing per window, month or settled request
    assert len(objects) == 2
    now = await usage()
    assert now["month"] == "2026-04"
    assert now["key"] == {"requests": 0, "tokens": 0, "spend_micro_usd": 5, "streams": 0}
    assert now["tenant"] == now["key"]
