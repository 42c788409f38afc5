"""Usage rows: recorded without touching the database, written in batches, each once."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from datetime import UTC
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aipk_site.gateway import usage
from aipk_site.gateway.usage import ausage_flush, usage_flush, usage_pending, usage_record
from tenants_app.models import Tenant, UsageRecord


@pytest.fixture(autouse=True)
def writer_waits(settings, monkeypatch):
    """By default the background thread never fires on its own here, so tests that
    run inside a transaction write only through usage_flush (in their own thread)."""
    settings.USAGE_BATCH_SIZE = 100_000
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 3600
    monkeypatch.setattr(usage, "RETRY_DELAY_SECONDS", 0)
    usage._writer.discard_pending()
    yield
    usage._writer.discard_pending()


@pytest.fixture
def tenant(db):
    return Tenant.objects.create(name="Acme", slug=f"acme-{uuid.uuid4().hex[:8]}")


def row(tenant, **fields):
    values = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "tenant_id": tenant.pk,
        "status": "success",
        "provider_name": "openai-a",
        "model": "gpt-4o-mini",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": Decimal("0.00000450"),
    }
    values.update(fields)
    return values


def wait_until(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_it_rejects_an_unknown_field_name_in_the_caller(tenant):
    with pytest.raises(TypeError, match="prompt_tokenz"):
        usage_record(**row(tenant, prompt_tokenz=3))
    assert usage_pending() == 0


def test_it_rejects_a_missing_request_id_or_tenant_or_status(tenant):
    fields = row(tenant)
    del fields["status"]
    with pytest.raises(TypeError, match="status"):
        usage_record(**fields)
    with pytest.raises(TypeError, match="tenant_id"):
        usage_record(**row(tenant, tenant_id=None))


def test_it_does_not_touch_the_database_when_recording(tenant, django_assert_num_queries):
    with django_assert_num_queries(0):
        for _ in range(50):
            usage_record(**row(tenant))
    assert usage_pending() == 50


def test_it_returns_the_number_flushed_and_stores_every_field(tenant):
    first = row(tenant, ttft_ms=12.5, latency_ms=40.0, streamed=True, cached=False)
    usage_record(**first)
    usage_record(**row(tenant))
    usage_record(**row(tenant))

    assert usage_flush() == 3
    assert usage_flush() == 0
    stored = UsageRecord.objects.get(request_id=first["request_id"])
    assert stored.tenant_id == tenant.pk
    assert stored.cost_usd == Decimal("0.00000450")
    assert (stored.ttft_ms, stored.latency_ms, stored.streamed) == (12.5, 40.0, True)
    assert abs((timezone.now() - stored.created_at).total_seconds()) < 60


def test_it_keeps_a_given_created_at(tenant):
    when = timezone.now() - timezone.timedelta(days=3)
    fields = row(tenant, created_at=when)
    usage_record(**fields)
    usage_flush()
    assert UsageRecord.objects.get(request_id=fields["request_id"]).created_at == when


def test_it_writes_many_records_with_few_inserts(tenant, settings):
    for _ in range(120):
        usage_record(**row(tenant))
    # set after recording, so the writer thread (whose connection cannot see this
    # test's transaction) is not woken by a full batch
    settings.USAGE_BATCH_SIZE = 40

    with CaptureQueriesContext(connection) as queries:
        assert usage_flush() == 120

    sql = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    inserts = [q for q in sql if "INSERT" in q]
    if connection.vendor == "postgresql":
        # one statement per batch, its 40 rows sent as one array per column
        assert len(inserts) == 3 and all("UNNEST(" in q for q in inserts)
    else:
        # one multi-row statement per batch, not a statement stepped once per row (whose
        # GIL hand-offs starved the writer while the event loop was busy)
        assert len(inserts) == 3 and not any("TIMES:" in q.split("INSERT")[0] for q in inserts)
        assert all(q.count("), (") == 39 for q in inserts)
    assert UsageRecord.objects.filter(tenant=tenant).count() == 120


def test_it_does_not_lose_the_batch_mates_of_a_bad_row(tenant, caplog):
    good = [row(tenant) for _ in range(5)]
    bad = row(tenant, prompt_tokens=-1)  # breaks the column's CHECK (>= 0)
    for fields in [*good[:2], bad, *good[2:]]:
        usage_record(**fields)

    with caplog.at_level(logging.WARNING, logger="aipk_site.gateway.usage"):
        assert usage_flush() == 5

    stored = set(UsageRecord.objects.values_list("request_id", flat=True))
    assert stored == {fields["request_id"] for fields in good}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert bad["request_id"] in errors[0]
    # request ids only: no other field value reaches the log
    assert "gpt-4o-mini" not in caplog.text and "openai-a" not in caplog.text


def test_it_writes_a_request_id_once_and_logs_the_duplicate(tenant, caplog):
    fields = row(tenant)
    usage_record(**fields)
    usage_flush()

    usage_record(**fields)  # again, after it was stored
    usage_record(**{**fields, "status": "error"})  # and twice in one batch
    other = row(tenant)
    usage_record(**other)
    with caplog.at_level(logging.WARNING, logger="aipk_site.gateway.usage"):
        assert usage_flush() == 1

    assert UsageRecord.objects.filter(request_id=fields["request_id"]).count() == 1
    assert UsageRecord.objects.get(request_id=fields["request_id"]).status == "success"
    assert UsageRecord.objects.filter(request_id=other["request_id"]).exists()
    assert "duplicate" in caplog.text and fields["request_id"] in caplog.text


def test_it_asks_which_request_ids_are_stored_only_when_an_insert_fails(tenant):
    for _ in range(30):
        usage_record(**row(tenant))

    with CaptureQueriesContext(connection) as queries:
        assert usage_flush() == 30

    sql = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    # (the budget alerts' watch may read the tenant's budget after the batch: its own
    # queries are tests/alerts/test_budget_watch.py's business)
    assert not [q for q in sql if q.startswith("SELECT") and "TENANTS_APP_USAGERECORD" in q]
    assert UsageRecord.objects.filter(tenant=tenant).count() == 30


def test_it_skips_a_stored_row_and_isolates_a_bad_one_in_the_same_batch(tenant, caplog):
    stored = row(tenant)
    usage_record(**stored)
    usage_flush()

    good = [row(tenant) for _ in range(3)]
    bad = row(tenant, completion_tokens=-5)  # breaks the column's CHECK (>= 0)
    for fields in [good[0], stored, bad, *good[1:]]:
        usage_record(**fields)
    with caplog.at_level(logging.WARNING, logger="aipk_site.gateway.usage"):
        assert usage_flush() == 3

    ids = set(UsageRecord.objects.filter(tenant=tenant).values_list("request_id", flat=True))
    assert ids == {stored["request_id"], *(fields["request_id"] for fields in good)}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("duplicate" in m and stored["request_id"] in m for m in warnings)
    assert len(errors) == 1 and bad["request_id"] in errors[0]


def test_it_refuses_a_cost_that_is_not_a_number_as_the_field_does(tenant, caplog):
    good = row(tenant)
    bad = row(tenant, cost_usd=Decimal("NaN"))
    usage_record(**good)
    usage_record(**bad)

    with caplog.at_level(logging.WARNING, logger="aipk_site.gateway.usage"):
        assert usage_flush() == 1

    assert UsageRecord.objects.filter(request_id=good["request_id"]).exists()
    assert not UsageRecord.objects.filter(request_id=bad["request_id"]).exists()
    assert bad["request_id"] in caplog.text


def test_it_hands_the_database_what_each_fields_own_conversion_gives(tenant):
    """The writer skips ``get_db_prep_save`` where it would change nothing: whatever the
    backend, the parameters must be the ones it would have given, value for value."""
    from datetime import timedelta
    from datetime import timezone as dt_timezone

    from tenants_app.models import UsageStatus

    zones = [UTC, dt_timezone(timedelta(hours=5, minutes=30))]
    rows = [
        row(tenant, status=UsageStatus.SUCCESS, created_at=timezone.now().astimezone(zones[0])),
        row(
            tenant,
            status="error",
            ttft_ms=3.25,
            latency_ms=7,  # an int in a float column
            cached=1,  # and in a boolean one
            cost_usd="0.00000100",  # text in a decimal one
            cost_saved_usd=Decimal("1E-8"),
            created_at=timezone.now().astimezone(zones[1]).replace(microsecond=0),
            virtual_key_id=None,
            provider_name="",
        ),
        {"request_id": "minimal", "tenant_id": str(tenant.pk), "status": "cancelled"},
    ]
    fields = usage._INSERT_FIELDS
    expected = [
        f.get_db_prep_save(r[f.attname] if f.attname in r else f.get_default(), connection)
        for r in rows
        for f in fields
    ]

    def typed(value):
        # psycopg's Jsonb (a JSONField on PostgreSQL) has no equality: compare what it wraps
        return (
            type(value),
            getattr(value, "obj", value) if type(value).__name__ == "Jsonb" else value,
        )

    def flat(rows):
        return [typed(value) for values in usage._row_params(rows, connection) for value in values]

    width = len(fields)
    for start in range(len(rows)):
        # a row alone: a column of one type takes the shortcuts, a mixed one does not
        want = expected[start * width : (start + 1) * width]
        assert flat(rows[start : start + 1]) == [typed(w) for w in want]
    assert flat(rows) == [typed(w) for w in expected]


def test_it_stores_a_batch_exactly_as_the_orm_stores_each_row(tenant):
    """A batch goes in one statement (PostgreSQL: one array per column); what is stored
    must be what the ORM's own one-row save stores, value for value: NULLs, text that
    needs quoting, decimals to the last digit, instants in any zone, booleans."""
    from datetime import timedelta
    from datetime import timezone as dt_timezone

    zone = dt_timezone(timedelta(hours=-3, minutes=-30))
    odd = ["", 'a "quoted", {braced} \\ back\'slash', "NULL", "ünïcødé ✓", " spaced "]
    rows = [
        row(
            tenant,
            model=text,
            provider_name=text[:64],
            error_type=text[:64],
            alias=text[:100],
            virtual_key_id=None,
            provider_id=None,
            ttft_ms=None if n % 2 else 1e-300 * (n + 1),
            latency_ms=float(n) * 123456.789,
            cost_usd=Decimal("123456.12345678") if n % 2 else Decimal("-0.00000001"),
            cost_saved_usd=Decimal(n),
            prompt_tokens=2_147_483_647 if n == 0 else n,
            cached=bool(n % 2),
            streamed=not n % 2,
            tokens_estimated=n == 3,
            created_at=timezone.now().astimezone(zone if n % 2 else UTC),
        )
        for n, text in enumerate(odd)
    ]
    assert usage._store(rows) == len(rows)
    one_by_one = [{**r, "request_id": r["request_id"] + "-orm"} for r in rows]
    for fields in one_by_one:
        UsageRecord(**fields).save(force_insert=True)

    names = [f.attname for f in usage._INSERT_FIELDS if f.attname != "request_id"]

    def stored(request_id):
        return UsageRecord.objects.filter(request_id=request_id).values(*names).get()

    for batched, single in zip(rows, one_by_one, strict=True):
        assert stored(batched["request_id"]) == stored(single["request_id"])


def test_it_never_stores_a_value_too_long_for_its_column_cut_short(tenant):
    good = row(tenant)
    long = row(tenant, model="m" * 201)  # the column holds 200
    usage_record(**good)
    usage_record(**long)

    usage_flush()

    assert UsageRecord.objects.filter(request_id=good["request_id"]).exists()
    # PostgreSQL refuses it (and the row-by-row pass loses that one row only); SQLite,
    # which does not check lengths, keeps it whole, as the ORM's own save does
    assert not UsageRecord.objects.filter(model="m" * 200).exists()


def test_it_tries_a_failed_batch_again_before_going_row_by_row(tenant, monkeypatch):
    import aipk_site.gateway.usage as usage

    calls = []
    real_insert_rows = usage._insert_rows

    def flaky_insert_rows(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            from django.db import OperationalError

            raise OperationalError("simulated lock timeout")
        return real_insert_rows(rows)

    monkeypatch.setattr(usage, "_insert_rows", flaky_insert_rows)
    for _ in range(4):
        usage_record(**row(tenant))

    assert usage_flush() == 4
    assert calls == [4, 4]


# -- the background thread ---------------------------------------------------------


@pytest.fixture
def committed_tenant(transactional_db):
    return Tenant.objects.create(name="Threads", slug=f"threads-{uuid.uuid4().hex[:8]}")


def test_it_writes_a_full_batch_without_a_flush(committed_tenant, settings):
    settings.USAGE_BATCH_SIZE = 10
    for _ in range(30):
        usage_record(**row(committed_tenant))

    assert wait_until(lambda: usage_pending() == 0)
    assert UsageRecord.objects.filter(tenant=committed_tenant).count() == 30


def test_it_writes_a_partial_batch_after_the_interval(committed_tenant, settings):
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 0.1
    usage_record(**row(committed_tenant))
    usage_record(**row(committed_tenant))

    assert wait_until(lambda: UsageRecord.objects.filter(tenant=committed_tenant).count() == 2)
    # the batch counts as pending until the writer is done with it (the budget alerts'
    # watch runs after the insert), a moment after its rows are visible
    assert wait_until(lambda: usage_pending() == 0)


def test_it_stores_records_from_many_threads_exactly_once(committed_tenant, settings):
    settings.USAGE_BATCH_SIZE = 25
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 0.05
    ids: list[str] = []
    ids_lock = threading.Lock()

    def producer():
        for _ in range(60):
            fields = row(committed_tenant)
            with ids_lock:
                ids.append(fields["request_id"])
            usage_record(**fields)

    threads = [threading.Thread(target=producer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert wait_until(lambda: usage_pending() == 0)
    usage_flush()
    stored = list(
        UsageRecord.objects.filter(tenant=committed_tenant).values_list("request_id", flat=True)
    )
    assert len(stored) == 480
    assert sorted(stored) == sorted(ids)


@pytest.mark.django_db(transaction=True)
async def test_it_stores_records_from_many_coroutines_exactly_once(settings):
    settings.USAGE_BATCH_SIZE = 30
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 0.05
    tenant = await Tenant.objects.acreate(name="Async", slug=f"async-{uuid.uuid4().hex[:8]}")

    async def producer(n: int) -> list[str]:
        ids = []
        for _ in range(n):
            fields = row(tenant)
            usage_record(**fields)
            ids.append(fields["request_id"])
            await asyncio.sleep(0)
        return ids

    batches = await asyncio.gather(*(producer(10) for _ in range(40)))
    await ausage_flush()

    stored = [
        request_id
        async for request_id in UsageRecord.objects.filter(tenant=tenant).values_list(
            "request_id", flat=True
        )
    ]
    assert sorted(stored) == sorted(i for batch in batches for i in batch)
    assert len(stored) == 400
    await sync_to_async(connections.close_all)()  # the async ORM's worker thread's


def test_it_gives_back_the_writer_threads_connection(committed_tenant, settings, monkeypatch):
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("Django never closes an in-memory SQLite connection (it would drop the db)")
    seen = []
    real_store = usage._store

    def store_and_note_connection(rows):
        seen.append(connections["default"])
        return real_store(rows)

    monkeypatch.setattr(usage, "_store", store_and_note_connection)
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 0.05
    usage_record(**row(committed_tenant))

    assert wait_until(lambda: seen and seen[0].connection is None)
    assert seen[0] is not connections["default"]  # it was the writer thread's own


def test_it_keeps_writing_when_giving_back_its_connection_fails(
    committed_tenant, settings, monkeypatch, caplog
):
    """A database that went away fails even the writer's connection check after a batch
    (seen as a thread exception in the suite): the thread logs it and goes on, so the
    next rows are written without waiting for a new request to restart it."""
    calls = []

    def broken_check(self):
        calls.append(1)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(usage.UsageWriter, "_after_batch", broken_check)
    settings.USAGE_FLUSH_INTERVAL_SECONDS = 0.05
    usage_record(**row(committed_tenant))
    assert wait_until(lambda: calls)
    thread = usage._writer._thread

    usage_record(**row(committed_tenant))

    assert wait_until(lambda: UsageRecord.objects.filter(tenant=committed_tenant).count() == 2)
    assert usage._writer._thread is thread and thread.is_alive()
    assert "releasing the writer's connection failed (RuntimeError)" in caplog.text
