"""The request path's in-memory snapshots follow every change at once.

Across processes: a real aipk server (daphne child) with a private redis-server and
the test database; a change is made by another process (a Django child running the
management services), and the server refuses the revoked key, serves the new route and
stops using the disabled credential on its next requests. The server's safety TTLs are
set to ten minutes, so only the change event can explain it.

In one process, without Redis: the embedded case, where the changing process is the
serving one. And a snapshot hit costs no database query at all.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aipk_site.infra.errors import AuthenticationFailed, PermissionDenied
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

# far longer than any wait below: a change seen in time was seen through its event
SAFETY_TTL = "600"
# how long a change may take to reach the other process before the test gives up
# (pub/sub delivers in milliseconds; the margin is for a loaded machine)
PROPAGATION_BOUND = 15.0

CHANGE = textwrap.dedent(
    """
    import sys
    import django
    django.setup()
    from providers_app.models import ApiKey
    from providers_app.services.credentials import api_key_set_state
    from tenants_app.models import Tenant, VirtualKey
    from tenants_app.services.keys import virtual_key_revoke
    from tenants_app.services.routes import route_create

    action, slug = sys.argv[1], sys.argv[2]
    if action == "revoke-key":
        virtual_key_revoke(key=VirtualKey.objects.get(tenant__slug=slug), actor=None)
    elif action == "add-route":
        alias, provider, model = sys.argv[3:6]
        route_create(
            tenant=Tenant.objects.get(slug=slug), alias=alias,
            candidates=[{"provider": provider, "model": model}], actor=None,
        )
    elif action == "disable-credentials":
        for key in ApiKey.objects.filter(provider__name=sys.argv[3]):
            api_key_set_state(key=key, state=ApiKey.State.DISABLED, actor=None)
    else:
        raise SystemExit(f"unknown action {action}")
    """
)


def change_elsewhere(database_url: str, redis_url: str, *args: str) -> None:
    """Make a change in another Django process, which publishes it through Redis."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", CHANGE, *args],
        cwd=PROJECT,
        env=child_env(DATABASE_URL=database_url, REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def post(server: AipkServer, secret: str, model: str) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


def wait_for_listeners(redis_url: str, count: int) -> None:
    """Until ``count`` processes listen for change events (each subscribes on its first
    snapshot load, and drops what it loaded before)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + PROPAGATION_BOUND
    try:
        while True:
            [(_, listening)] = client.pubsub_numsub("aipk:changes:0")
            if listening >= count:
                return
            assert time.monotonic() < deadline, f"{listening} of {count} listeners subscribed"
            time.sleep(0.05)
    finally:
        client.close()


def eventually(check: Callable[[], httpx.Response], accept: Callable[[httpx.Response], bool]):
    deadline = time.monotonic() + PROPAGATION_BOUND
    while True:
        response = check()
        if accept(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


@pytest.fixture
def served(simulator, shared_database, redis_server, aipk_servers, tmp_path):  # noqa: F811
    """A world, and an aipk server on Redis that has it in its snapshots."""
    world = make_world(shared_database, f"changes-{uuid.uuid4().hex[:8]}", simulator.url)
    env = server_env(
        shared_database.url,
        redis_server.url,
        VIRTUAL_KEY_CACHE_SECONDS=SAFETY_TTL,
        ROUTING_CACHE_SECONDS=SAFETY_TTL,
    )
    server = AipkServer(env=env).start(tmp_path / "server.log")
    aipk_servers.append(server)
    first = post(server, world.secret, world.model("gpt-4o-mini"))
    assert first.status_code == 200, first.text
    wait_for_listeners(redis_server.url, 1)
    # loaded again after the subscription's reset: now held in the server's memory
    again = post(server, world.secret, world.model("gpt-4o-mini"))
    assert again.status_code == 200, again.text
    return world, server, shared_database, redis_server


def test_it_refuses_a_key_revoked_in_another_process_at_once(served):
    world, server, database, redis_server = served

    change_elsewhere(database.url, redis_server.url, "revoke-key", world.slug)

    refused = eventually(
        lambda: post(server, world.secret, world.model("gpt-4o-mini")),
        lambda r: r.status_code != 200,
    )
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "api_key_revoked"


def test_it_serves_a_route_created_in_another_process_at_once(served):
    world, server, database, redis_server = served
    missing = post(server, world.secret, "smart")
    assert missing.status_code == 404, missing.text  # the server now holds "no such alias"

    change_elsewhere(
        database.url, redis_server.url, "add-route", world.slug, "smart", world.provider, "gpt-4o"
    )

    served_now = eventually(lambda: post(server, world.secret, "smart"), lambda r: r.is_success)
    assert served_now.status_code == 200, served_now.text


def test_it_stops_using_a_credential_disabled_in_another_process_at_once(served):
    world, server, database, redis_server = served

    change_elsewhere(
        database.url, redis_server.url, "disable-credentials", world.slug, world.provider
    )

    refused = eventually(
        lambda: post(server, world.secret, world.model("gpt-4o-mini")),
        lambda r: r.status_code != 200,
    )
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "no_available_credential"


# --- one process, no Redis needed ------------------------------------------------------


def test_it_refuses_a_key_revoked_in_the_same_process_at_once(world, gateway_server, settings):
    from tenants_app.services.keys import virtual_key_revoke

    settings.VIRTUAL_KEY_CACHE_SECONDS = 600
    url = f"{gateway_server.url}/v1/chat/completions"
    body = {"model": world.model("openai"), "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {world.secret}"}
    assert httpx.post(url, json=body, headers=headers, timeout=30).status_code == 200

    virtual_key_revoke(key=world.key, actor=None)

    refused = httpx.post(url, json=body, headers=headers, timeout=30)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "api_key_revoked"


# --- what a hit costs -----------------------------------------------------------------


@pytest.fixture
def key_secret(db, make_key):
    from aipk_site.gateway.key_auth import key_auth_cache_clear
    from tenants_app.models import Tenant

    key_auth_cache_clear()
    tenant = Tenant.objects.create(name="Hits", slug=f"hits-{uuid.uuid4().hex[:6]}")
    key, secret = make_key(tenant)
    yield key, secret
    key_auth_cache_clear()


def authenticate(secret: str):
    from aipk_site.gateway.key_auth import authenticate_virtual_key

    return async_to_sync(authenticate_virtual_key)(secret)


def test_it_authenticates_a_known_key_from_memory_without_a_query(key_secret):
    key, secret = key_secret
    with CaptureQueriesContext(connection) as first:
        assert authenticate(secret).key_id == key.pk
    assert len(first.captured_queries) >= 1  # the miss read the database

    with CaptureQueriesContext(connection) as hit:
        for _ in range(5):
            assert authenticate(secret).key_id == key.pk
    assert hit.captured_queries == []


def test_it_answers_a_repeated_unknown_key_without_a_query_until_that_key_exists(
    key_secret, make_key
):
    from tenants_app.models import VirtualKey
    from tenants_app.services.secrets import VIRTUAL_KEY_PREFIX, new_secret

    key, _ = key_secret
    secret, key_hash, prefix = new_secret(VIRTUAL_KEY_PREFIX)
    with pytest.raises(AuthenticationFailed):
        authenticate(secret)
    with CaptureQueriesContext(connection) as repeated:
        with pytest.raises(AuthenticationFailed):
            authenticate(secret)
    assert repeated.captured_queries == []

    # created a moment later: it works at once, the remembered miss is dropped
    created = VirtualKey.objects.create(
        tenant=key.tenant, name="late", prefix=prefix, key_hash=key_hash
    )
    assert authenticate(secret).key_id == created.pk


def test_it_refuses_a_held_key_at_once_when_its_tenant_is_deactivated(key_secret):
    from tenants_app.services.tenants import tenant_update

    key, secret = key_secret
    assert authenticate(secret).tenant_active
    tenant_update(tenant=key.tenant, active=False, actor=None)
    with pytest.raises(PermissionDenied):
        authenticate(secret)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_it_refuses_a_request_made_after_a_revocation_while_an_older_read_runs(
    make_key, monkeypatch
):
    import asyncio
    import threading

    from asgiref.sync import sync_to_async

    from aipk_site.gateway import key_auth
    from tenants_app.models import Tenant
    from tenants_app.services.keys import virtual_key_revoke

    key_auth.key_auth_cache_clear()
    tenant = await Tenant.objects.acreate(name="Race", slug=f"race-{uuid.uuid4().hex[:6]}")
    key, secret = await sync_to_async(make_key)(tenant)
    real = key_auth._context_for
    read, go_on = threading.Event(), threading.Event()

    def slow_read(key_hash: str):
        ctx = real(key_hash)  # the row as it was before the revocation
        read.set()
        go_on.wait(5)
        return ctx

    monkeypatch.setattr(key_auth, "_context_for", slow_read)
    early = asyncio.ensure_future(key_auth.authenticate_virtual_key(secret))
    assert await asyncio.to_thread(read.wait, 5)
    # the database thread is busy with the old read: revoke from another thread
    await sync_to_async(virtual_key_revoke, thread_sensitive=False)(key=key, actor=None)
    late = asyncio.ensure_future(key_auth.authenticate_virtual_key(secret))
    await asyncio.sleep(0.01)
    go_on.set()
    assert (await early).key_id == key.pk  # it started before the revocation
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await late
    key_auth.key_auth_cache_clear()
