"""Usage rows: exactly one per gateway request, written in batches off the hot path.

``usage_record`` only appends a dict to an in-process queue under a lock, so a
stream (or its ``finally`` after a client disconnect) never waits for the
database. A daemon writer thread, started on first use, bulk-inserts batches of
``USAGE_BATCH_SIZE`` rows or whatever has waited ``USAGE_FLUSH_INTERVAL_SECONDS``,
whichever comes first.

Why a daemon thread plus an atexit drain: Python joins non-daemon threads
*before* it runs atexit hooks, so a non-daemon writer would have to be told to
stop by something that runs before that join, and nothing public does. A
daemon thread is not joined; it keeps running while atexit hooks run and is
frozen only afterwards. So the hook (1) stops the writer from taking new
batches, (2) waits for the batch it already holds to be stored, then (3) writes
what is left in the exiting thread itself. A KeyboardInterrupt (SIGINT) ends the
process the same way. SIGKILL, or SIGTERM without a handler, skip atexit: up to
one interval of rows can be lost then (daphne and celery turn SIGTERM into a
clean exit).

Duplicates: ``request_id`` is unique. ``bulk_create(ignore_conflicts=True)``
is not used because it hides which rows were dropped, and on SQLite it becomes
``INSERT OR IGNORE``, which also silently drops rows that break NOT NULL or
CHECK constraints (e.g. negative token counts). Instead each batch is inserted
with a plain INSERT; only when that fails with an IntegrityError does the writer
ask which of its request ids are already stored, log and skip those, and insert
the rest at once. (Asking before every batch cost a query per batch for what is
rare: a replayed spool, a row recorded twice.) When none was stored, a row is bad
and the row-by-row pass below finds it; a row inserted by another process after
that question makes the retry fail too, and the row-by-row pass then tells that
duplicate apart from a real failure.

Failures: a batch that failed otherwise than on an integrity error (a lock
timeout, a failover) is retried once after ``RETRY_DELAY_SECONDS``; then it goes
row by row, so one bad row cannot take its batch-mates with it. Rows that still
fail are logged by request id only (never field values) and dropped.

An unreachable database is not a bad row: when a batch fails with a connection
error its rows go to the *spool* (``usage_spool``), durable on local disk, and
the writer thread replays them every ``USAGE_SPOOL_RETRY_SECONDS`` through the
same ``_store`` that skips request ids already stored, so exactly once still holds.
"""

from __future__ import annotations

import atexit
import logging
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    transaction,
)
from django.utils import timezone

from aipk_site.gateway.usage.spool import usage_spool
from tenants_app.models import UsageRecord
from tenants_app.services.alerts import budget_spend_observe
from tenants_app.services.keys import virtual_keys_mark_used

logger = logging.getLogger(__name__)

USAGE_FIELDS = frozenset(f.attname for f in UsageRecord._meta.concrete_fields if not f.primary_key)
REQUIRED_FIELDS = frozenset({"request_id", "tenant_id", "status"})
# a failed batch is tried again once after this pause (a lock timeout, a failover)
RETRY_DELAY_SECONDS = 0.5
# how long the atexit drain waits for the batch the writer thread is holding
EXIT_WAIT_SECONDS = 10.0


def _batch_size() -> int:
    return max(1, int(getattr(settings, "USAGE_BATCH_SIZE", 200)))


def _interval() -> float:
    return max(0.0, float(getattr(settings, "USAGE_FLUSH_INTERVAL_SECONDS", 0.5)))


def _spool_retry() -> float:
    return max(0.05, float(getattr(settings, "USAGE_SPOOL_RETRY_SECONDS", 5.0)))


# Errors that say "the database cannot be reached now", not "this row is bad": the
# rows wait in the spool instead of being dropped.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)

# SQLite in shared-cache mode (Django's in-memory test database) answers "database
# table is locked" at once, without its busy timeout, while another connection reads
# the table. That is a moment's contention, not a database gone: the batch is tried
# again after a short wait (10 waits, 0.55 s in all) before it counts as a failed
# attempt that may send it to the spool. ("database is locked", from a file database,
# comes only after the busy timeout has been waited out: a real failed attempt.)
LOCK_WAITS = 10
LOCK_WAIT_SECONDS = 0.01


def _lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "table is locked" in str(exc)


def _spool_rows(rows: list[dict[str, Any]]) -> None:
    """Rows the database could not take now: to the spool, or (full, unwritable) lost."""
    if not rows:
        return
    try:
        refused = usage_spool().put(rows)
    except Exception as error:  # noqa: BLE001 -- reported below, by request id only
        logger.error(
            "usage: the spool could not take %d rows (%s); lost: request ids %s",
            len(rows),
            type(error).__name__,
            ", ".join(r["request_id"] for r in rows),
        )
        return
    kept = len(rows) - len(refused)
    if kept:
        _writer.spool_soon()
        logger.warning(
            "usage: database unavailable; %d rows wait in the spool until it returns", kept
        )
    if refused:
        logger.error(
            "usage: the spool is full (USAGE_SPOOL_MAX_ROWS); lost: request ids %s",
            ", ".join(refused),
        )


@dataclass(eq=False)
class _Batch:
    rows: list[dict[str, Any]]
    written: int = 0
    done: threading.Event = field(default_factory=threading.Event)


def _release_connection() -> None:
    """Give back a broken or (CONN_MAX_AGE) expired connection, but never one inside
    a caller's transaction (a test case, an atomic view): closing it would doom it."""
    connection = connections[DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def _stored_request_ids(request_ids: list[str]) -> set[str]:
    return set(
        UsageRecord.objects.filter(request_id__in=request_ids).values_list("request_id", flat=True)
    )


def _existing_request_ids(request_ids: list[str]) -> set[str]:
    try:
        return _stored_request_ids(request_ids)
    except DatabaseError:
        # the insert below will fail the same way and take the retry path
        _release_connection()
        return set()


def _insert_one(row: dict[str, Any]) -> str:
    """'ok', 'duplicate', 'unavailable' (the database, not the row) or 'failed'."""
    try:
        with transaction.atomic():
            UsageRecord(**row).save(force_insert=True)
        return "ok"
    except IntegrityError:
        _release_connection()
        if _existing_request_ids([row["request_id"]]):
            return "duplicate"
        return "failed"
    except UNAVAILABLE_ERRORS:
        _release_connection()
        return "unavailable"
    except Exception:  # noqa: BLE001 -- a bad value must not stop the other rows
        _release_connection()
        return "failed"


# The columns a row is inserted with, in order: every field but the primary key.
_INSERT_FIELDS = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]
_MISSING = object()


Check = Callable[[Any], bool]
Convert = Callable[[Any], Any]


def _aware(value: datetime) -> bool:
    return value.utcoffset() is not None


def _naive_text(zone: tzinfo) -> Convert:
    """SQLite's adapt_datetimefield_value for an aware datetime (USE_TZ): naive text in
    the connection's zone. Used only where ``_column`` found it equal to the field's own
    conversion for every probe."""

    def convert(value: datetime) -> str:
        return str(value.astimezone(zone).replace(tzinfo=None))

    return convert


# Types whose conversion by a field's ``get_db_prep_save`` depends on the type alone
# (``str`` for text, ``int(v)``, ``float(v)``, ``bool(v)``, None): when the probe comes
# back unchanged, every value of that exact type does.
_FREE_PROBES: tuple[tuple[type, Any], ...] = (
    (str, "probe"),
    (int, 1_234_567_891),
    (float, 1234.5678),
    (bool, True),
    (type(None), None),
)
_INT_PROBES = (1_234_567_891, 0, 7, -3)
_DECIMAL_PROBES = (Decimal("1234.56780000"), Decimal("0"), Decimal("-0.00000001"))
_DATETIME_PROBES = (
    datetime(2001, 2, 3, 4, 5, 6, 789, tzinfo=UTC),
    datetime(2001, 2, 3, 23, 59, 59, tzinfo=dt_timezone(timedelta(hours=5, minutes=30))),
    datetime(2024, 12, 31, 20, 0, 0, 1, tzinfo=dt_timezone(timedelta(hours=-8))),
)


def _same(prepared: Any, expected: Any) -> bool:
    # a copy counts (Decimal(d)): equal value, type and digits
    return prepared is expected or (
        type(prepared) is type(expected)
        and prepared == expected
        and repr(prepared) == repr(expected)
    )


@dataclass(frozen=True, slots=True)
class _Column:
    field: Any
    # value types sent to the driver as they are
    free: frozenset[type]
    # value types with a check (a Decimal must be finite, a datetime aware: otherwise the
    # field refuses or changes it) and, for those passing it, a conversion found equal to
    # the field's own on this backend (None: sent as they are)
    rules: dict[type, tuple[Check | None, Convert | None]]

    def prepare(self, values: tuple[Any, ...], connection: Any) -> Sequence[Any]:
        """This column's values as the field's ``get_db_prep_save`` gives them, calling
        it only for values the rules above do not cover. A column of one type (the
        usual case) is checked and converted with ``map``, not Python code per value."""
        kinds = set(map(type, values))
        if kinds <= self.free:
            return values
        if len(kinds) == 1 and (rule := self.rules.get(next(iter(kinds)))) is not None:
            check, convert = rule
            if check is None or all(map(check, values)):
                return values if convert is None else list(map(convert, values))
        return [self.one(value, connection) for value in values]

    def one(self, value: Any, connection: Any) -> Any:
        kind = type(value)
        if kind in self.free:
            return value
        rule = self.rules.get(kind)
        if rule is not None and (rule[0] is None or rule[0](value)):
            return value if rule[1] is None else rule[1](value)
        return self.field.get_db_prep_save(value, connection)


def _prepared(field: Any, value: Any, connection: Any) -> Any:
    try:
        return field.get_db_prep_save(value, connection)
    except Exception:  # noqa: BLE001 -- a type the field refuses: no shortcut for it
        return _MISSING


def _column(field: Any, connection: Any) -> _Column:
    """What this field does to each value type on this backend, found by asking it."""
    free = frozenset(
        kind for kind, probe in _FREE_PROBES if _same(_prepared(field, probe, connection), probe)
    )
    rules: dict[type, tuple[Check | None, Convert | None]] = {}
    candidates: list[tuple[type, tuple[Any, ...], Check | None, list[Convert | None]]] = [
        (Decimal, _DECIMAL_PROBES, Decimal.is_finite, [None]),
        (datetime, _DATETIME_PROBES, _aware, [None]),
    ]
    if connection.vendor == "sqlite" and settings.USE_TZ:
        candidates[1][3].append(_naive_text(connection.timezone))
    wrapped = type(_prepared(field, _INT_PROBES[0], connection))
    if int not in free and issubclass(wrapped, int) and wrapped is not bool:
        # psycopg's Int4/Int8: PostgreSQL's integer columns are bound with their size
        candidates.append((int, _INT_PROBES, None, [wrapped]))
    for kind, probes, check, converts in candidates:
        expected = [_prepared(field, probe, connection) for probe in probes]
        for convert in converts:
            if all(
                _same(probe if convert is None else convert(probe), want)
                for probe, want in zip(probes, expected, strict=True)
            ):
                rules[kind] = (check, convert)
                break
    return _Column(field, free, rules)


@dataclass(frozen=True, slots=True)
class _Plan:
    names: tuple[str, ...]
    columns: tuple[_Column, ...]
    getter: Callable[[dict[str, Any]], tuple[Any, ...]]


# per backend and connection time zone, computed on first use
_plans: dict[tuple[type, str], _Plan] = {}


def _plan(connection: Any) -> _Plan:
    key = (type(connection.ops), connection.timezone_name)
    plan = _plans.get(key)
    if plan is None:
        names = tuple(f.attname for f in _INSERT_FIELDS)
        plan = _Plan(
            names=names,
            columns=tuple(_column(f, connection) for f in _INSERT_FIELDS),
            getter=operator.itemgetter(*names),
        )
        _plans[key] = plan
    return plan


def _column_params(rows: list[dict[str, Any]], connection: Any) -> list[Sequence[Any]]:
    """The INSERT parameters of these rows, a sequence per column: what each field's
    ``get_db_prep_save`` gives, without calling it for the values it would hand back
    unchanged on this backend (calling it for every value was most of the writer's CPU).
    Column by column, so that the common case -- a column of one type -- is a type
    check in C rather than Python code per value."""
    plan = _plan(connection)
    try:
        values = list(map(plan.getter, rows))
    except KeyError:  # a row without some fields: their defaults
        values = [
            tuple(
                row[name] if name in row else column.field.get_default()
                for name, column in zip(plan.names, plan.columns, strict=True)
            )
            for row in rows
        ]
    return [
        column.prepare(column_values, connection)
        for column, column_values in zip(plan.columns, zip(*values, strict=True), strict=True)
    ]


def _row_params(rows: list[dict[str, Any]], connection: Any) -> list[tuple[Any, ...]]:
    """``_column_params`` as a tuple per row."""
    if not rows:
        return []
    return list(zip(*_column_params(rows, connection), strict=True))


def _array_type(field: Any, connection: Any) -> str:
    """The column's type without its modifier: ``varchar(64)`` → ``varchar``,
    ``numeric(14, 8)`` → ``numeric``. The array is cast to that; the INSERT's own
    assignment to the column then refuses a string too long, as a one-row INSERT does
    (an explicit cast to ``varchar(64)`` would cut it short silently)."""
    return str(field.db_type(connection)).split("(", 1)[0].strip()


def _server_binding_cursor(connection: Any) -> Any:
    """A Django cursor (its error translation, query log and execute wrappers) over
    psycopg's server-side binding cursor: the arrays go as parameters, dumped in binary
    by psycopg, instead of being written into the statement as text literals by the
    client-side binding Django uses by default -- that quoting, element by element in
    Python, was most of the writer's CPU."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()  # what connection.cursor() does first
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(ServerBindingCursor(connection.connection))


def _insert_rows(rows: list[dict[str, Any]]) -> None:
    """Insert rows that are already column values, in one transaction (the caller's), so
    that a bad row fails its batch as before. Each value is what its field's
    ``get_db_prep_save`` makes of it (``_column_params``).

    Not ``bulk_create``: building a model instance per row and compiling the INSERT
    through the ORM was about a tenth of aipk's CPU per gateway request at a few
    hundred requests a second (docs/BENCHMARKS.md "Data plane").

    PostgreSQL: one statement per batch, ``INSERT ... SELECT * FROM unnest(%b::type[],
    ...)`` with one array parameter per column, bound on the server and sent in binary
    (``_server_binding_cursor``). Django's psycopg cursor binds on the client, so an
    ``executemany`` of a one-row INSERT sent the server a new statement text per row,
    parsed and planned each time (half the server's CPU per row went there), and text
    arrays would be quoted element by element in Python. Not a multi-row VALUES: psycopg
    parses a statement longer than 4 KB, or with more than 50 parameters, again at
    every execution, in Python. Constraints, NULLs and lengths are checked by the
    INSERT as for one row, so a bad row still fails its batch with the same error.

    SQLite: multi-row ``INSERT ... VALUES (...), (...)``, as many rows per statement as
    SQLite's limit on parameters allows. Not ``executemany`` of a one-row INSERT: the
    sqlite3 module lets go of the GIL around every row's step and must take it back
    for the next, and while the event loop's thread is busy each take waits for its
    switch interval (5 ms) -- under load the writer stored ~350 rows a second while the
    gateway answered 1,400, and the rows waiting for it grew without bound (RSS +82 %
    over 200,000 requests). One statement per few dozen rows takes the GIL back a few
    times a batch.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name
    table = quote(UsageRecord._meta.db_table)
    columns = ", ".join(quote(f.column) for f in _INSERT_FIELDS)
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%b::{_array_type(f, connection)}[]" for f in _INSERT_FIELDS)
        with _server_binding_cursor(connection) as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})",
                [list(values) for values in _column_params(rows, connection)],
            )
        return
    params = _row_params(rows, connection)
    row_sql = "(" + ", ".join(["%s"] * len(_INSERT_FIELDS)) + ")"
    per_statement = max(1, _sqlite_max_params(connection) // len(_INSERT_FIELDS))
    with connection.cursor() as cursor:
        for start in range(0, len(params), per_statement):
            chunk = params[start : start + per_statement]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([row_sql] * len(chunk)),
                [value for row in chunk for value in row],
            )


def _sqlite_max_params(connection: Any) -> int:
    """The most parameters one SQLite statement may take (SQLITE_LIMIT_VARIABLE_NUMBER:
    32,766 since SQLite 3.32, 999 before), as this connection reports it."""
    connection.ensure_connection()
    try:
        return int(connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):  # an older sqlite3 module: the old default
        return 999


def _store(rows: list[dict[str, Any]], *, spool: bool = True) -> int:
    """Insert one batch; returns how many rows were stored now. Rows the database could
    not take because it is unreachable go to the spool (``spool=False``: are returned
    by ``_store_or_defer`` instead)."""
    written, deferred = _store_or_defer(rows)
    if spool:
        _spool_rows(deferred)
    if written:
        # Budget alerts are detected here, in the writer's thread, after the rows are
        # stored: off the event loop, and at no query per batch in the steady state
        # (tenants_app/services/alerts/events.py says why and how).
        waiting = {row["request_id"] for row in deferred} if deferred else ()
        budget_spend_observe(row for row in rows if row["request_id"] not in waiting)
        _mark_keys_used(row for row in rows if row["request_id"] not in waiting)
    return written


def _mark_keys_used(rows: Iterable[dict[str, Any]]) -> None:
    """Keys' "last used", from the batch just stored: here in the writer's thread, at
    most one UPDATE per distinct key per batch, never a query per request on the event
    loop. A failure only costs the hint, never the batch (its rows are stored)."""
    newest: dict[int, datetime] = {}
    for row in rows:
        key_id, moment = row.get("virtual_key_id"), row.get("created_at")
        if key_id is None or moment is None:
            continue
        if key_id not in newest or moment > newest[key_id]:
            newest[key_id] = moment
    if not newest:
        return
    try:
        virtual_keys_mark_used(last_used=newest)
    except Exception as error:  # noqa: BLE001 -- the rows are stored; the hint can wait
        _release_connection()
        logger.warning("usage: keys' last use not updated (%s)", type(error).__name__)


def _store_or_defer(rows: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """(rows stored now, rows deferred because the database is unavailable)."""
    unique: dict[str, dict[str, Any]] = {}
    duplicates: list[str] = []
    for row in rows:
        if row["request_id"] in unique:
            duplicates.append(row["request_id"])
        else:
            unique[row["request_id"]] = row
    todo = list(unique.values())

    written = 0
    unavailable = False
    looked_for_stored = False
    attempt = 1
    lock_waits = 0
    while todo and attempt <= 2:
        try:
            with transaction.atomic():
                _insert_rows(todo)
            written, todo = len(todo), []
        except IntegrityError:
            # A request id already stored (a replayed spool, another process) or a bad
            # row: only now ask which ids are stored, skip those and try the rest again
            # at once. Nothing stored: a bad row, which the row-by-row pass isolates.
            _release_connection()
            unavailable = False  # it answered: whatever failed before, it is back
            if looked_for_stored:
                break
            looked_for_stored = True
            try:
                stored = _stored_request_ids([row["request_id"] for row in todo])
            except UNAVAILABLE_ERRORS:
                _release_connection()
                unavailable = True
                break
            if not stored:
                break
            duplicates.extend(stored)
            todo = [row for row in todo if row["request_id"] not in stored]
        except Exception as exc:  # noqa: BLE001 -- retried, then row by row
            _release_connection()
            if _lock_conflict(exc) and lock_waits < LOCK_WAITS:
                # another connection holds the table for a moment: wait, not a failure
                lock_waits += 1
                time.sleep(LOCK_WAIT_SECONDS * lock_waits)
                continue
            unavailable = isinstance(exc, UNAVAILABLE_ERRORS)
            logger.warning(
                "usage: batch of %d rows failed (attempt %d, %s)",
                len(todo),
                attempt,
                type(exc).__name__,
            )
            if attempt == 1:
                time.sleep(RETRY_DELAY_SECONDS)
            attempt += 1

    deferred: list[dict[str, Any]] = []
    if unavailable:
        # the database, not a row, failed twice: no row-by-row pass against it
        deferred, todo = todo, []
    failed: list[str] = []
    for row in todo:
        outcome = _insert_one(row)
        if outcome == "ok":
            written += 1
        elif outcome == "duplicate":
            duplicates.append(row["request_id"])
        elif outcome == "unavailable":
            deferred.append(row)
        else:
            failed.append(row["request_id"])
    if duplicates:
        logger.warning(
            "usage: %d duplicate request ids not written again: %s",
            len(duplicates),
            ", ".join(duplicates),
        )
    if failed:
        logger.error(
            "usage: %d rows could not be stored and are lost: request ids %s",
            len(failed),
            ", ".join(failed),
        )
    return written, deferred


class UsageWriter:
    """The queue and its writer thread; one per process (``_writer`` below)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._first_pending_at: float | None = None
        self._in_flight: set[_Batch] = set()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._atexit_registered = False
        # when to try the spool next; 0: at once (a new process may find rows there)
        self._spool_due: float | None = 0.0

    # -- callers --------------------------------------------------------------------

    def record(self, row: dict[str, Any]) -> None:
        with self._cond:
            if not self._stopping:
                self._pending.append(row)
                if self._first_pending_at is None:
                    self._first_pending_at = time.monotonic()
                self._ensure_thread()
                if len(self._pending) == 1 or len(self._pending) >= _batch_size():
                    self._cond.notify_all()
                return
        # The process is exiting and the drain may already have run: store it here,
        # blocking is acceptable during interpreter shutdown.
        _store([row])

    def flush(self, timeout: float = 10) -> int:
        """Store everything recorded before the call; the number of rows this stored
        (including the batch the writer thread was holding)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            held_by_writer = set(self._in_flight)
            rows, self._pending, self._first_pending_at = self._pending, [], None
            mine = _Batch(rows)
            self._in_flight.add(mine)
        try:
            size = _batch_size()
            for start in range(0, len(rows), size):
                mine.written += _store(rows[start : start + size])
        finally:
            self._finish(mine)
        written = mine.written
        for batch in held_by_writer:
            if batch.done.wait(max(0.0, deadline - time.monotonic())):
                written += batch.written
            else:
                logger.warning("usage: flush timed out waiting for %d rows", len(batch.rows))
        return written

    def start(self) -> None:
        """Start the writer thread now (not at the first row), so rows a previous process
        left in the spool are written without waiting for new traffic."""
        with self._cond:
            if not self._stopping:
                self._ensure_thread()

    def spool_soon(self) -> None:
        with self._cond:
            if self._spool_due is None:
                self._spool_due = time.monotonic() + _spool_retry()
                self._cond.notify_all()

    def pending_count(self) -> int:
        with self._cond:
            return len(self._pending) + sum(len(batch.rows) for batch in self._in_flight)

    # -- writer thread --------------------------------------------------------------

    def _ensure_thread(self) -> None:
        # called with the lock held
        if self._thread is not None and self._thread.is_alive():
            return
        if not self._atexit_registered:
            atexit.register(self.drain_at_exit)
            self._atexit_registered = True
        self._thread = threading.Thread(target=self._run, name="aipk-usage-writer", daemon=True)
        self._thread.start()

    def _finish(self, batch: _Batch) -> None:
        with self._cond:
            self._in_flight.discard(batch)
            self._cond.notify_all()
        batch.done.set()

    def _take_batch(self) -> _Batch | None:
        """Wait for a full batch or an expired interval; None when stopping; an empty
        batch when the spool is due for another try."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                size = _batch_size()
                if len(self._pending) >= size:
                    break
                now = time.monotonic()
                if self._spool_due is not None and self._spool_due <= now:
                    self._spool_due = None
                    return _Batch([])
                spool_wait = None if self._spool_due is None else self._spool_due - now
                if self._pending:
                    assert self._first_pending_at is not None
                    wait = self._first_pending_at + _interval() - now
                    if wait <= 0:
                        break
                    self._cond.wait(wait if spool_wait is None else min(wait, spool_wait))
                else:
                    self._cond.wait(spool_wait)
            rows, self._pending = self._pending[:size], self._pending[size:]
            if not self._pending:
                self._first_pending_at = None
            # rows left over are at least as old as the deadline that just passed,
            # so they go out on the next turn without waiting again
            batch = _Batch(rows)
            self._in_flight.add(batch)
            return batch

    def _run(self) -> None:
        try:
            while (batch := self._take_batch()) is not None:
                if not batch.rows:
                    self._replay_spool()
                    continue
                try:
                    batch.written = _store(batch.rows)
                except Exception:  # noqa: BLE001 -- the thread must survive anything
                    logger.exception(
                        "usage: writer failed; request ids %s",
                        ", ".join(row["request_id"] for row in batch.rows),
                    )
                finally:
                    self._finish(batch)
                    try:
                        self._after_batch()
                    except Exception as error:  # noqa: BLE001 -- nor a connection check
                        # (a database that went away fails even that): the thread
                        # dying would leave later rows waiting for the next request
                        logger.error(
                            "usage: releasing the writer's connection failed (%s)",
                            type(error).__name__,
                        )
        finally:
            connections.close_all()

    def _after_batch(self) -> None:
        """Per batch, as Django does per request: honour CONN_MAX_AGE (0 under ASGI) and
        drop a connection that broke -- except while rows wait for the next batch and the
        connection has seen no error: then it is kept for that batch (a new connection per
        batch cost ~5 us of this process's CPU per row on PostgreSQL, plus a server
        backend). It is given back as soon as the queue is empty."""
        connection = connections[DEFAULT_DB_ALIAS]
        with self._cond:
            rows_waiting = bool(self._pending) and not self._stopping
        if rows_waiting and not connection.errors_occurred:
            return
        connection.close_if_unusable_or_obsolete()

    def _replay_spool(self) -> int:
        """Write what the spool holds, a batch at a time, until it is empty or the database
        is still unavailable (then try again in ``USAGE_SPOOL_RETRY_SECONDS``)."""
        written = 0
        try:
            spool = usage_spool()
            while rows := spool.take(_batch_size()):
                stored, deferred = _store_or_defer(rows)
                written += stored
                waiting = {row["request_id"] for row in deferred}
                if stored:
                    _mark_keys_used(row for row in rows if row["request_id"] not in waiting)
                spool.remove(
                    [row["request_id"] for row in rows if row["request_id"] not in waiting]
                )
                if deferred:
                    self.spool_soon()
                    break
            if written:
                logger.info("usage: %d spooled rows written to the database", written)
        except Exception as error:  # noqa: BLE001 -- try again later; the rows stay spooled
            logger.error("usage: replaying the spool failed (%s)", type(error).__name__)
            self.spool_soon()
        finally:
            connections[DEFAULT_DB_ALIAS].close_if_unusable_or_obsolete()
        return written

    # -- shutdown -------------------------------------------------------------------

    def drain_at_exit(self) -> None:
        deadline = time.monotonic() + EXIT_WAIT_SECONDS
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            while self._in_flight and (remaining := deadline - time.monotonic()) > 0:
                self._cond.wait(remaining)
            unfinished = [row for batch in self._in_flight for row in batch.rows]
            rows, self._pending, self._first_pending_at = self._pending, [], None
        if unfinished:
            # The writer may yet store them (or have just done so): spooled as well, they
            # are written once either way (the replay skips stored request ids).
            logger.warning(
                "usage: writer did not finish at exit; %d rows go to the spool", len(unfinished)
            )
            _spool_rows(unfinished)
        size = _batch_size()
        try:
            for start in range(0, len(rows), size):
                _store(rows[start : start + size])
        finally:
            connections.close_all()

    def discard_pending(self) -> int:
        """Forget queued rows (tests only: rows of a test whose data is gone)."""
        with self._cond:
            count = len(self._pending)
            self._pending, self._first_pending_at = [], None
            return count


_writer = UsageWriter()


def _reset_after_fork() -> None:
    # The child has no writer thread and a copy of the lock that may be held;
    # the parent's queued rows stay the parent's to write.
    global _writer
    _writer = UsageWriter()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def usage_record(**fields: Any) -> None:
    """Queue one usage row; never touches the database in the caller. Raises
    TypeError at once for unknown or missing field names."""
    # once per gateway request: the cheap subset test first, the message only on failure
    if not fields.keys() <= USAGE_FIELDS:
        raise TypeError(f"usage_record: unknown fields {sorted(fields.keys() - USAGE_FIELDS)}")
    get = fields.get
    if get("request_id") is None or get("tenant_id") is None or get("status") is None:
        missing = REQUIRED_FIELDS - {name for name, value in fields.items() if value is not None}
        raise TypeError(f"usage_record: missing fields {sorted(missing)}")
    if "created_at" not in fields:
        fields["created_at"] = timezone.now()
    _writer.record(fields)


def usage_flush(timeout: float = 10) -> int:
    """Store every row recorded so far, in this thread; the number stored."""
    return _writer.flush(timeout)


def _flush_and_release() -> int:
    try:
        return usage_flush()
    finally:
        # no request cycle closes this worker thread's connection for us
        _release_connection()


async def ausage_flush() -> int:
    """``usage_flush`` for async code (shutdown hooks, async tests)."""
    return await sync_to_async(_flush_and_release)()


def usage_pending() -> int:
    """Rows recorded but not yet stored (queued or being written)."""
    return _writer.pending_count()


def usage_start() -> None:
    """Start the writer now: a server calls it at startup, so rows a previous process
    spooled during a database outage are written without waiting for traffic."""
    _writer.start()


def usage_spool_has_rows() -> bool:
    """Whether rows wait in the spool (the database was unavailable)."""
    try:
        return usage_spool().count() > 0
    except Exception:  # noqa: BLE001 -- an unreadable spool is reported when written to
        return False


def usage_replay_spool() -> int:
    """Write spooled rows now, in this thread (shutdown hooks, tests); the number written."""
    return _writer._replay_spool()
