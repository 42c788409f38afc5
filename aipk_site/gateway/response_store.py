"""The conversations ``POST /v1/responses`` keeps (``store``, true by default), per tenant.

Written off the event loop like the usage rows (usage/__init__.py): ``response_keep``
puts the response in an in-process table of recent responses and appends a row to a
queue; a daemon writer thread bulk-inserts the queue every
``RESPONSES_FLUSH_INTERVAL_SECONDS`` (and at exit). A request never waits for the
database to store a response.

Read by id only when a request names one (``previous_response_id``, ``GET`` /
``DELETE /v1/responses/{id}``): the recent table first -- so a client that continues
a response at once, before the writer has run, finds it in this process -- then one
database read on a thread. A response belongs to the tenant whose key created it:
another tenant's id reads as unknown (the 404 of an id that does not exist), so ids
cannot be probed across tenants.

Not spooled to disk as usage is: a response lost to a database outage only means a
later continuation of it gets a 404 naming the id, the client's signal to send the
whole conversation again. Rows past RESPONSES_RETENTION_DAYS are deleted by the daily
retention run (tenants_app/services/retention.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from aipk_site.infra.batch_writer import BatchWriter
from tenants_app.models import StoredResponse

T = TypeVar("T")

# how many recent responses each process keeps in memory (a continuation usually
# follows within seconds, on the same worker when the client keeps its connection)
RECENT_SIZE = 1024
BATCH_SIZE = 100
# the column's length: the gateway's ids (resp_ + 32 hex digits) are far shorter
MAX_ID_CHARS = 64


def _interval() -> float:
    return max(0.0, float(getattr(settings, "RESPONSES_FLUSH_INTERVAL_SECONDS", 0.5)))


@dataclass(frozen=True, slots=True)
class Stored:
    response_id: str
    tenant_id: int
    model: str
    # the conversation a continuation starts from (Responses input items)
    items: list[dict[str, Any]]
    # the response object as the client got it
    response: dict[str, Any]


class _Recent:
    """The last RECENT_SIZE responses of this process, and the ids deleted here (so a
    row still queued, or in a database read racing the delete, does not come back)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.table: OrderedDict[str, Stored] = OrderedDict()
        self.deleted: OrderedDict[str, None] = OrderedDict()

    def put(self, stored: Stored) -> None:
        with self.lock:
            self.table[stored.response_id] = stored
            self.table.move_to_end(stored.response_id)
            while len(self.table) > RECENT_SIZE:
                self.table.popitem(last=False)

    def get(self, response_id: str) -> Stored | None:
        with self.lock:
            return self.table.get(response_id)

    def forget(self, response_id: str) -> None:
        with self.lock:
            self.table.pop(response_id, None)
            self.deleted[response_id] = None
            while len(self.deleted) > RECENT_SIZE:
                self.deleted.popitem(last=False)

    def was_deleted(self, response_id: str) -> bool:
        with self.lock:
            return response_id in self.deleted

    def clear(self) -> None:
        with self.lock:
            self.table.clear()
            self.deleted.clear()


_recent = _Recent()


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return row  # built on the request path already: a few fields, no serialising


_writer: BatchWriter[dict[str, Any]] = BatchWriter(
    name="responses",
    model=StoredResponse,
    interval=_interval,
    build=_row,
    describe=lambda row: f"response {row['response_id']}",
    batch_size=BATCH_SIZE,
)


def response_keep(
    *,
    response_id: str,
    tenant_id: int,
    key_id: int | None,
    model: str,
    items: list[dict[str, Any]],
    response: dict[str, Any],
) -> None:
    """Keep a response for its tenant: at once in this process, in the database soon.
    Never blocks (called from the event loop, at the end of a reply or a stream)."""
    _recent.put(Stored(response_id, tenant_id, model, items, response))
    _writer.add(
        {
            "response_id": response_id,
            "tenant_id": tenant_id,
            "virtual_key_id": key_id,
            "model": model[:200],
            "items": items,
            "response": response,
            "created_at": timezone.now(),
        }
    )


def _load(response_id: str) -> Stored | None:
    row = (
        StoredResponse.objects.filter(response_id=response_id)
        .values_list("tenant_id", "model", "items", "response")
        .first()
    )
    if row is None:
        return None
    return Stored(response_id, row[0], row[1], row[2], row[3])


def _fresh(fn: Callable[..., T], *args: Any) -> T:
    """``fn`` on a connection that is checked before and after: the lean /v1 edge runs no
    request signals that would close a broken or expired one (as snapshot loads do)."""
    managed = not transaction.get_connection().in_atomic_block
    if managed:
        close_old_connections()
    try:
        return fn(*args)
    finally:
        if managed:
            close_old_connections()


async def response_find(tenant_id: int, response_id: str) -> Stored | None:
    """The tenant's stored response, or None (unknown, deleted, or another tenant's)."""
    if len(response_id) > MAX_ID_CHARS or "\x00" in response_id:
        # no id of ours looks like this (and PostgreSQL refuses NUL in a query)
        return None
    stored = _recent.get(response_id)
    if stored is None and not _recent.was_deleted(response_id):
        stored = await sync_to_async(_fresh)(_load, response_id)
    if stored is None or stored.tenant_id != tenant_id or _recent.was_deleted(response_id):
        return None
    return stored


def _delete(tenant_id: int, response_id: str) -> int:
    deleted: int = StoredResponse.objects.filter(
        tenant_id=tenant_id, response_id=response_id
    ).delete()[0]
    return deleted


async def response_delete(tenant_id: int, response_id: str) -> bool:
    """Delete the tenant's stored response; False when it has none of that id."""
    stored = await response_find(tenant_id, response_id)
    if stored is None:
        return False
    _recent.forget(response_id)
    _writer.drop(lambda row: row["response_id"] == response_id)
    await sync_to_async(_fresh)(_delete, tenant_id, response_id)
    return True


def responses_flush() -> int:
    """Write whatever is queued now (tests, shutdown); the number of rows written."""
    return _writer.flush()


def responses_forget_recent() -> None:
    """Drop this process's recent table (tests: make reads go to the database)."""
    _recent.clear()
