"""A virtual key's "last used": set by the usage writer from the batch it stores (off
the event loop, one UPDATE per key per batch), through a real gateway request on the
simulator, and never moved backwards by an older row arriving late."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aipk_site.gateway.usage import usage_flush, usage_record
from tenants_app.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def chat(gateway_server, secret: str, model: str) -> httpx.Response:
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json={"model": model, "messages": HELLO},
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_it_sets_last_used_at_when_a_key_makes_a_request(world, gateway_server):
    assert world.key.last_used_at is None
    reply = chat(gateway_server, world.secret, world.model("openai"))
    assert reply.status_code == 200, reply.text
    usage_flush()

    record = UsageRecord.objects.get(request_id=reply.headers["x-request-id"])
    world.key.refresh_from_db()
    assert world.key.last_used_at == record.created_at


def test_it_moves_last_used_at_forward_with_each_request(world, gateway_server):
    first = chat(gateway_server, world.secret, world.model("openai"))
    usage_flush()
    world.key.refresh_from_db()
    after_first = world.key.last_used_at

    second = chat(gateway_server, world.secret, world.model("openai"))
    usage_flush()
    world.key.refresh_from_db()
    newest = UsageRecord.objects.get(request_id=second.headers["x-request-id"])
    assert first.status_code == second.status_code == 200
    assert world.key.last_used_at == newest.created_at
    assert world.key.last_used_at >= after_first


def test_it_never_moves_last_used_at_backwards(world, gateway_server):
    reply = chat(gateway_server, world.secret, world.model("openai"))
    assert reply.status_code == 200, reply.text
    usage_flush()
    world.key.refresh_from_db()
    current = world.key.last_used_at

    # a row from a day ago, as a replayed spool or a slower process delivers it
    usage_record(
        request_id=uuid.uuid4().hex,
        tenant_id=world.tenant.pk,
        virtual_key_id=world.key.pk,
        status="success",
        created_at=current - dt.timedelta(days=1),
    )
    usage_flush()
    world.key.refresh_from_db()
    assert world.key.last_used_at == current


def test_it_updates_each_key_once_per_batch(world, make_key):
    other, _secret = make_key(world.tenant)
    now = timezone.now()
    for n in range(6):
        usage_record(
            request_id=uuid.uuid4().hex,
            tenant_id=world.tenant.pk,
            virtual_key_id=(world.key if n % 2 else other).pk,
            status="success",
            created_at=now - dt.timedelta(seconds=n),
        )

    with CaptureQueriesContext(connection) as queries:
        assert usage_flush() == 6

    updates = [
        q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")
    ]
    key_updates = [sql for sql in updates if "virtualkey" in sql.lower()]
    assert len(key_updates) == 2
    world.key.refresh_from_db()
    other.refresh_from_db()
    # each key's newest row: n=1 for the first key, n=0 for the other
    assert world.key.last_used_at == now - dt.timedelta(seconds=1)
    assert other.last_used_at == now
