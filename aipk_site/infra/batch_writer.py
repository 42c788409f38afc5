"""A daemon thread that inserts queued rows in batches, off the event loop.

The request path must never wait for the database to keep something that is not needed
to answer (a stored response, a captured body): it appends to a queue and returns; this
thread wakes every ``interval()`` seconds (or as soon as a batch is full), builds the
rows and bulk-inserts them, and one by one when the batch fails, so one bad row keeps no
other out. ``flush`` also runs at exit.

Written here rather than taken from a library: what is needed is a queue drained by a
thread into ``bulk_create`` with Django's connection handling around it (close a broken
connection, never leave the thread dead), which no queueing library does without a
broker. The usage ledger has its own writer (aipk_site/gateway/usage), because usage
rows must never be lost: it spools to disk, this one does not."""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, connections
from django.db.models import Model

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Row = dict[str, Any]


class BatchWriter(Generic[Item]):
    """``add`` queues an item; the thread turns each into a row with ``build`` (on the
    thread: serialising and redaction stay off the event loop) and inserts ``model``
    rows. ``describe`` names an item or row in a log line -- an id, never content."""

    def __init__(
        self,
        *,
        name: str,
        model: type[Model],
        interval: Callable[[], float],
        build: Callable[[Item], Row],
        describe: Callable[[Item], str],
        batch_size: int = 100,
    ) -> None:
        self.name = name
        self.model = model
        self.interval = interval
        self.build = build
        self.describe = describe
        self.batch_size = batch_size
        self.lock = threading.Lock()
        self.pending: list[Item] = []
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        # held while a batch is written, so ``flush`` returns only once it is stored
        self.writing = threading.Lock()
        atexit.register(self.flush)

    def add(self, item: Item) -> None:
        with self.lock:
            self.pending.append(item)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._run, name=f"aipk-{self.name}-writer", daemon=True
                )
                self.thread.start()
            full = len(self.pending) >= self.batch_size
        if full:
            self.wake.set()

    def drop(self, unwanted: Callable[[Item], bool]) -> None:
        """Forget queued items not written yet (one deleted before it was stored)."""
        with self.lock:
            self.pending = [item for item in self.pending if not unwanted(item)]

    def flush(self) -> int:
        """Write whatever is queued now; the number of rows written."""
        with self.writing:
            with self.lock:
                taken, self.pending = self.pending, []
            rows: list[tuple[Item, Row]] = []
            for item in taken:
                try:
                    rows.append((item, self.build(item)))
                except Exception as error:  # noqa: BLE001 -- one odd item, not the batch
                    logger.error(
                        "%s: %s not kept (%s)", self.name, self.describe(item), type(error).__name__
                    )
            if rows:
                self._insert(rows)
            return len(rows)

    def _run(self) -> None:
        while True:
            self.wake.wait(max(0.0, self.interval()))
            self.wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 -- the writer must outlive one bad batch
                logger.exception("%s: the writer failed on a batch", self.name)
            try:
                close_old_connections()
            except Exception as error:  # noqa: BLE001 -- nor a connection that will not close
                # (a database that went away): the thread dying would lose every later row
                logger.error(
                    "%s: closing the writer's connection failed (%s)",
                    self.name,
                    type(error).__name__,
                )

    def _insert(self, rows: list[tuple[Item, Row]]) -> None:
        try:
            self.model.objects.bulk_create([self.model(**row) for _item, row in rows])
            return
        except DatabaseError:
            _release_connection()
        for item, row in rows:
            try:
                self.model(**row).save(force_insert=True)
            except DatabaseError as error:
                _release_connection()
                logger.error(
                    "%s: could not store %s (%s)",
                    self.name,
                    self.describe(item),
                    type(error).__name__,
                )


def _release_connection() -> None:
    """After a failed statement outside a transaction: a connection the database broke
    is closed, so the next batch opens a fresh one."""
    connection = connections[DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()
