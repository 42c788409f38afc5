"""kill -9 under load: the killed server's reservations and stream slots come back.

Two real aipk servers (daphne child processes) share a redis-server this test started
and the test database. Server A admits streams on a key with a budget and a limit of
three concurrent streams, then is killed with SIGKILL while they are in flight: it
never settles them. Their reservations and stream slots are leases (as long as the
provider's total deadline plus a margin, made short here); once those expire, the key's
spend counter equals exactly what the usage rows recorded, and the surviving server B
admits up to the full budget and all three stream slots again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import httpx
import pytest

from tests.gateway.processes import (
    PROJECT,
    AipkServer,
    aipk_servers_fixture,  # noqa: F401 -- fixture
    child_env,
    make_world,
    redis_server_fixture,  # noqa: F401 -- fixture
    server_env,
    shared_database_fixture,  # noqa: F401 -- fixture
    sqlite_file_url_fixture,  # noqa: F401 -- fixture
)

FAST_MODEL = "gpt-4o-mini"
SLOW_MODEL = "gpt-4o-mini-delay-1000ms"  # a word a second: streams stay in flight
TOTAL_DEADLINE = 4  # the provider's total deadline (s); the lease adds 10 s to it
BUDGET_MICRO = 10_000  # $0.01
STREAM_MAX_TOKENS = 2000  # each in-flight stream reserves ~2,100 micro-USD

PREPARE = textwrap.dedent(
    """
    import json, sys
    from decimal import Decimal
    import django
    django.setup()
    from providers_app.models import Provider
    from providers_app.services.providers import provider_update
    from tenants_app.models import Pricing, VirtualKey

    slug, provider_name, total, budget = sys.argv[1:5]
    provider = Provider.objects.get(name=provider_name)
    provider_update(provider=provider, settings={"timeouts": {"total": float(total)}})
    key = VirtualKey.objects.get(tenant__slug=slug)
    key.monthly_budget_usd = Decimal(budget) / 1_000_000
    key.max_concurrent_streams = 3
    key.save()
    for model in sys.argv[5:]:
        # one micro-dollar a token: every cost is a whole number of micro-dollars
        Pricing.objects.update_or_create(
            provider_type="openai", provider=None, model=model,
            defaults={"input_per_million": 1, "output_per_million": 1, "source": "manual"},
        )
    print(json.dumps({"key_id": key.pk, "tenant_id": key.tenant_id}))
    """
)

# What admission holds now (after reclaiming expired leases) and what the rows recorded.
COUNTERS = textwrap.dedent(
    """
    import asyncio, json, sys
    from decimal import Decimal
    import django
    django.setup()
    from django.db.models import Sum
    from tenants_app.models import UsageRecord
    from aipk_site.gateway.admission import usage_now

    key_id, tenant_id = int(sys.argv[1]), int(sys.argv[2])
    now = asyncio.run(usage_now(key_id=key_id, tenant_id=tenant_id))
    recorded = UsageRecord.objects.filter(virtual_key_id=key_id).aggregate(s=Sum("cost_usd"))
    print(json.dumps({
        "spend": now["key"]["spend_micro_usd"],
        "streams": now["key"]["streams"],
        "recorded": int((recorded["s"] or Decimal(0)) * 1_000_000),
        "rows": UsageRecord.objects.filter(virtual_key_id=key_id).count(),
    }))
    """
)


def counters(database_url: str, redis_url: str, key_id: int, tenant_id: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", COUNTERS, str(key_id), str(tenant_id)],
        cwd=PROJECT,
        env=child_env(DATABASE_URL=database_url, REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def body(model: str, *, stream: bool, max_tokens: int) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": stream,
        "max_tokens": max_tokens,
    }


async def streams_in_flight(url: str, secret: str, model: str, count: int) -> list:
    """Open ``count`` streams and return once each has sent its first content chunk."""
    client = httpx.AsyncClient(timeout=httpx.Timeout(60, connect=10))
    opened: list[asyncio.Future] = []

    async def one(ready: asyncio.Future) -> None:
        headers = {"authorization": f"Bearer {secret}"}
        payload = body(model, stream=True, max_tokens=STREAM_MAX_TOKENS)
        try:
            async with client.stream("POST", url, json=payload, headers=headers) as response:
                assert response.status_code == 200, await response.aread()
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and not ready.done():
                        ready.set_result(True)
        except httpx.HTTPError:
            pass  # the server was killed under it

    loop = asyncio.get_running_loop()
    opened = [loop.create_future() for _ in range(count)]
    tasks = [asyncio.create_task(one(ready)) for ready in opened]
    await asyncio.wait_for(asyncio.gather(*opened), 30)
    return [client, tasks]


def post(server: AipkServer, secret: str, payload: dict) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=payload,
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_it_reclaims_a_killed_servers_reservations_and_stream_slots(
    simulator,
    shared_database,  # noqa: F811 -- the fixture imported above
    redis_server,  # noqa: F811
    aipk_servers,  # noqa: F811
    tmp_path,
):
    slug = f"killed-{uuid.uuid4().hex[:8]}"
    world = make_world(shared_database, slug, simulator.url)
    ids = json.loads(
        shared_database.run(
            PREPARE,
            slug,
            world.provider,
            str(TOTAL_DEADLINE),
            str(BUDGET_MICRO),
            FAST_MODEL,
            SLOW_MODEL,
        )
    )
    key_id, tenant_id = ids["key_id"], ids["tenant_id"]
    env = server_env(shared_database.url, redis_server.url, ADMISSION_LEASE_SECONDS="1")
    doomed = AipkServer(env=env).start(tmp_path / "a.log")
    survivor = AipkServer(env=dict(env)).start(tmp_path / "b.log")
    aipk_servers.extend([doomed, survivor])

    # two requests finish and are recorded; three streams are then in flight on A
    for _ in range(2):
        done = post(
            doomed, world.secret, body(world.model(FAST_MODEL), stream=False, max_tokens=50)
        )
        assert done.status_code == 200, done.text

    async def kill_under_load() -> float:
        client, tasks = await streams_in_flight(
            doomed.url + "/v1/chat/completions", world.secret, world.model(SLOW_MODEL), 3
        )
        assert doomed.process is not None
        doomed.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        doomed.process.wait(10)
        await asyncio.gather(*tasks)
        await client.aclose()
        return killed_at

    killed_at = asyncio.run(kill_under_load())
    time.sleep(1)  # A's usage writer flushes every 0.2 s: rows it had are written

    held = counters(shared_database.url, redis_server.url, key_id, tenant_id)
    print("right after kill -9:", held)
    assert held["streams"] == 3
    assert held["spend"] > held["recorded"] + 3 * STREAM_MAX_TOKENS  # the killed holds
    # on the survivor meanwhile: the slots and the budget are still taken
    left = BUDGET_MICRO - held["recorded"]
    too_dear = post(
        survivor,
        world.secret,
        body(world.model(FAST_MODEL), stream=False, max_tokens=left - 200),
    )
    assert too_dear.status_code == 429 and too_dear.json()["error"]["code"] == "key_budget"
    refused = post(
        survivor, world.secret, body(world.model(FAST_MODEL), stream=True, max_tokens=50)
    )
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "key_concurrency"

    # lease: the provider's total deadline + 10 s, counted from admission (before the kill)
    time.sleep(max(0.0, killed_at + TOTAL_DEADLINE + 10 + 1 - time.monotonic()))

    after = counters(shared_database.url, redis_server.url, key_id, tenant_id)
    print("after the leases expired:", after)
    assert after["streams"] == 0
    assert after["spend"] == after["recorded"]  # exactly what the rows say was spent
    # the two finished requests and the survivor's two refusals; A's streams died with it
    assert after["rows"] == 4

    # the survivor admits up to the full budget again: a request reserving all that is
    # left, and three streams at once
    whole = post(
        survivor,
        world.secret,
        body(world.model(FAST_MODEL), stream=False, max_tokens=left - 200),
    )
    assert whole.status_code == 200, whole.text

    async def three_streams() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            replies = await asyncio.gather(
                *(
                    client.post(
                        survivor.url + "/v1/chat/completions",
                        json=body(world.model(FAST_MODEL), stream=True, max_tokens=10),
                        headers={"authorization": f"Bearer {world.secret}"},
                    )
                    for _ in range(3)
                )
            )
        return [r.status_code for r in replies]

    assert asyncio.run(three_streams()) == [200, 200, 200]


pytestmark = pytest.mark.django_db(transaction=True)
