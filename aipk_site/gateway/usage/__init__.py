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
CHECK constraints (e.g. negative token counts). Instead each batch first asks
which of its request ids are already stored, logs and skips those, and inserts
the rest with a plain INSERT. A row inserted by another process in between makes
the batch fail, and the row-by-row pass then tells that duplicate apart from a
real failure.

Failures: a failed batch is retried once after ``RETRY_DELAY_SECONDS``, then
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
import os
import threading
import time
from dataclasses import dataclass, field
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


def _existing_request_ids(request_ids: list[str]) -> set[str]:
    try:
        return set(
            UsageRecord.objects.filter(request_id__in=request_ids).values_list(
                "request_id", flat=True
            )
        )
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


def _insert_rows(rows: list[dict[str, Any]]) -> None:
    """Multi-row INSERTs of rows that are already column values.

    Not ``bulk_create``: building a model instance per row and compiling the INSERT
    through the ORM was about a tenth of aipk's CPU per gateway request at a few
    hundred requests a second (docs/BENCHMARKS.md "Data plane"). Each value still goes
    through its field's ``get_db_prep_save``, and rows are split as ``bulk_create``
    splits them (``bulk_batch_size``: SQLite's parameter limit), so the database
    receives the same statements' values and refuses the same bad ones.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in _INSERT_FIELDS)
    one_row = "(" + ", ".join(["%s"] * len(_INSERT_FIELDS)) + ")"
    head = f"INSERT INTO {quote(UsageRecord._meta.db_table)} ({columns}) VALUES "
    per_statement = max(1, connection.ops.bulk_batch_size(_INSERT_FIELDS, rows))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            params = [
                f.get_db_prep_save(
                    row[f.attname] if f.attname in row else f.get_default(), connection
                )
                for row in part
                for f in _INSERT_FIELDS
            ]
            cursor.execute(head + ", ".join([one_row] * len(part)), params)


def _store(rows: list[dict[str, Any]], *, spool: bool = True) -> int:
    """Insert one batch; returns how many rows were stored now. Rows the database could
    not take because it is unreachable go to the spool (``spool=False``: are returned
    by ``_store_or_defer`` instead)."""
    written, deferred = _store_or_defer(rows)
    if spool:
        _spool_rows(deferred)
    return written


def _store_or_defer(rows: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """(rows stored now, rows deferred because the database is unavailable)."""
    unique: dict[str, dict[str, Any]] = {}
    duplicates: list[str] = []
    for row in rows:
        if row["request_id"] in unique:
            duplicates.append(row["request_id"])
        else:
            unique[row["request_id"]] = row
    stored_before = _existing_request_ids(list(unique))
    duplicates.extend(stored_before)
    todo = [row for request_id, row in unique.items() if request_id not in stored_before]

    written = 0
    unavailable = False
    for attempt in (1, 2):
        if not todo:
            break
        try:
            with transaction.atomic():
                _insert_rows(todo)
            written, todo = len(todo), []
        except Exception as exc:  # noqa: BLE001 -- retried, then row by row
            _release_connection()
            unavailable = isinstance(exc, UNAVAILABLE_ERRORS)
            logger.warning(
                "usage: batch of %d rows failed (attempt %d, %s)",
                len(todo),
                attempt,
                type(exc).__name__,
            )
            if attempt == 1:
                time.sleep(RETRY_DELAY_SECONDS)

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
                    # per batch, as Django does per request: honours CONN_MAX_AGE
                    # (0 under ASGI) and drops a connection that broke
                    connections[DEFAULT_DB_ALIAS].close_if_unusable_or_obsolete()
        finally:
            connections.close_all()

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
    unknown = fields.keys() - USAGE_FIELDS
    if unknown:
        raise TypeError(f"usage_record: unknown fields {sorted(unknown)}")
    missing = REQUIRED_FIELDS - {name for name, value in fields.items() if value is not None}
    if missing:
        raise TypeError(f"usage_record: missing fields {sorted(missing)}")
    fields.setdefault("created_at", timezone.now())
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
