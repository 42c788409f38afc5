"""Across server processes sharing Redis, tenant B's request-level failures in other
processes leave the shared key and the provider's breaker alone for tenant A here.

The other processes are fresh ``python -c`` runs with the project's settings, the same
``REDIS_URL`` and this test's PostgreSQL database; they share nothing with this one but
those. A key-level fault (an invalid key) in another process is seen here: the state
really is shared, so the untouched key below is not an accident of separate memories.
Skipped without ``REDIS_URL`` and PostgreSQL (``CI=true .ci/run`` sets both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from providers_app.kit.types import ChatRequest, Message
from providers_app.models import ApiKey
from providers_app.services.chat import credentials_forget, provider_chat, resilience_for
from providers_app.services.credentials import api_key_add
from providers_app.services.pools import credential_id
from providers_app.services.providers import provider_create
from tenants_app.models import Tenant

REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = [
    pytest.mark.skipif(
        not REDIS_URL or "postgres" not in os.environ.get("DATABASE_URL", ""),
        reason="needs Redis and PostgreSQL (REDIS_URL, DATABASE_URL; CI=true .ci/run sets them)",
    ),
    pytest.mark.django_db(transaction=True),
]

PROJECT = Path(__file__).resolve().parents[2]

OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, json, os, sys
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aipk_site.settings")
    django.setup()

    from providers_app.kit.errors import ProviderError
    from providers_app.kit.types import ChatRequest, Message
    from providers_app.models import Provider
    from providers_app.services.chat import provider_chat
    from aipk_site.infra.state import RedisStateStore, state_store

    provider_id, tenant_id, models = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    assert isinstance(state_store(), RedisStateStore), type(state_store())

    async def one(provider, model):
        request = ChatRequest(model=model, messages=[Message(role="user", content="hi")])
        try:
            await provider_chat(provider, request, tenant_id=tenant_id)
            return "served"
        except ProviderError as error:
            return error.type

    async def main():
        provider = await Provider.objects.aget(pk=provider_id)
        outcomes = await asyncio.gather(*(one(provider, m) for m in models))
        print("RESULT " + json.dumps(outcomes))  # log lines go to stdout too

    asyncio.run(main())
    """
)


def other_process(provider_id: int, tenant_id: int, *models: str) -> subprocess.Popen:
    database = connection.settings_dict
    url = (
        f"postgres://{database['USER']}:{database['PASSWORD'] or ''}@{database['HOST']}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "aipk_site.settings",
    }
    return subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, str(provider_id), str(tenant_id), *models],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> list[str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture
def shared(simulator):
    """An openai provider on the simulator with one shared key, tenants A and B."""
    from django.core.cache import cache

    cache.clear()
    credentials_forget()
    provider = provider_create(
        name="shared",
        type="openai",
        base_url=simulator.url + "/openai/v1",
        settings={"timeouts": {"first_byte": 1}},
    )
    key = api_key_add(provider=provider, label="shared key", secret="sk-sim-shared-key-0001")
    a = Tenant.objects.create(name="A", slug="tenant-a")
    b = Tenant.objects.create(name="B", slug="tenant-b")
    yield provider, key, a, b
    cache.clear()
    credentials_forget()


def ask(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message(role="user", content="hi")])


def test_it_keeps_the_key_and_breaker_for_tenant_a_while_other_processes_serve_tenant_b(shared):
    provider, key, a, b = shared
    # 403s for a model (as a generic 403 and as OpenAI's model_not_found 403), and
    # generations slower than the provider's 1 s first-byte deadline
    faults = ["gpt-4o-fail-permission"] * 2 + ["gpt-4o-fail-model_permission"] * 2
    faults += ["gpt-4o-mini-gen-6s"] * 4
    others = [other_process(provider.pk, b.pk, *faults) for _ in range(2)]
    results = [finish(p) for p in others]

    for outcome in results:  # tenant B saw its own failures...
        assert sorted(set(outcome)) == ["permission_error", "timeout_error"], outcome
    res = resilience_for(provider)
    # ...and nothing of them reached the shared state this process reads
    assert async_to_sync(res.pool.health)(credential_id(key)).state == "active"
    assert async_to_sync(res.breaker.state)() == "closed"
    assert ApiKey.objects.get(pk=key.pk).state == ApiKey.State.ACTIVE
    for _ in range(4):
        reply = async_to_sync(provider_chat)(provider, ask("gpt-4o-mini"), tenant_id=a.pk)
        assert reply.text == "Simulated reply to: hi"


def test_it_sees_a_key_found_invalid_in_another_process(shared):
    provider, _, _, b = shared
    bad = api_key_add(provider=provider, label="revoked", secret="sk-sim-fail-auth-0001")
    ApiKey.objects.filter(pk=bad.pk).update(retire_at=None)
    ApiKey.objects.exclude(pk=bad.pk).filter(provider=provider).update(state=ApiKey.State.DISABLED)

    assert finish(other_process(provider.pk, b.pk, "gpt-4o-mini")) == ["authentication_error"]

    res = resilience_for(provider)
    assert async_to_sync(res.pool.health)(credential_id(bad)).state == "invalid"
    assert ApiKey.objects.get(pk=bad.pk).state == ApiKey.State.INVALID
