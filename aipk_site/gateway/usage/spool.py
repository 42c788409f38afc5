"""The usage spool: rows the database could not take, kept on local disk until it can.

Apart from the writer (``usage``) because it is its own store with its own rules
(a SQLite file per database, durable once a write returns, bounded, shared by
processes); the writer only puts rows in and takes them out.

An unreachable database is not a bad row: when a batch fails with a connection
error (OperationalError / InterfaceError: PostgreSQL down or cut off, SQLite
"database is locked"), its rows go to the *spool*, a SQLite file on local disk
(``UsageSpool``: WAL with ``synchronous=FULL``, so every write is fsync'd before
it returns), bounded by ``USAGE_SPOOL_MAX_ROWS``. The writer thread tries the
spool again every ``USAGE_SPOOL_RETRY_SECONDS`` and removes what the database
took; a process started later (a restart during the outage) finds the file and
does the same. Exactly once still holds: a spooled row is written through the same
``_store`` that skips request ids already stored, so a row whose commit reached
the database just before the connection broke is not written twice, and two
processes replaying one spool cannot both insert a row (request_id is unique).
One spool file per database (its name hashes the database's address), so rows
are never replayed into another database.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connections

from tenants_app.models import UsageRecord

_FIELDS_BY_ATTNAME = {f.attname: f for f in UsageRecord._meta.concrete_fields}


class UsageSpool:
    """Usage rows the database could not take, durable on local disk until it can.

    A SQLite file (the standard library's, no server): ``request_id`` is its primary
    key, so spooling a row twice keeps one copy; WAL + ``synchronous=FULL`` make each
    ``put`` fsync'd when it returns; several processes may share the file (SQLite
    locks it). Bounded: rows beyond ``max_rows`` are refused and reported lost.
    """

    def __init__(self, path: Path, max_rows: int) -> None:
        self.path = path
        self.max_rows = max_rows
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        if not self._ready:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS spool "
                "(request_id TEXT PRIMARY KEY, row TEXT NOT NULL, spooled_at REAL NOT NULL)"
            )
            self._ready = True
        db.execute("PRAGMA synchronous=FULL")
        return db

    def put(self, rows: list[dict[str, Any]]) -> list[str]:
        """Store rows durably; the request ids refused because the spool is full."""
        if not rows:
            return []
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                (count,) = db.execute("SELECT count(*) FROM spool").fetchone()
                room = max(0, self.max_rows - count)
                kept, refused = rows[:room], rows[room:]
                now = time.time()
                db.executemany(
                    "INSERT OR IGNORE INTO spool (request_id, row, spooled_at) VALUES (?, ?, ?)",
                    [(r["request_id"], json.dumps(r, cls=DjangoJSONEncoder), now) for r in kept],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return [r["request_id"] for r in refused]

    def take(self, limit: int) -> list[dict[str, Any]]:
        """The oldest rows (left in the spool until ``remove``)."""
        if not self.path.exists():
            return []
        with closing(self._connect()) as db:
            found = db.execute(
                "SELECT row FROM spool ORDER BY spooled_at, request_id LIMIT ?", (limit,)
            ).fetchall()
        return [_decode_row(raw) for (raw,) in found]

    def remove(self, request_ids: list[str]) -> None:
        if not request_ids:
            return
        with closing(self._connect()) as db:
            db.executemany("DELETE FROM spool WHERE request_id = ?", [(i,) for i in request_ids])

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with closing(self._connect()) as db:
            (count,) = db.execute("SELECT count(*) FROM spool").fetchone()
        return int(count)


def _decode_row(raw: str) -> dict[str, Any]:
    # each value back to its field's Python type (created_at a datetime, costs Decimals)
    row = json.loads(raw)
    return {
        name: _FIELDS_BY_ATTNAME[name].to_python(value) if value is not None else None
        for name, value in row.items()
        if name in _FIELDS_BY_ATTNAME
    }


_spools: dict[str, UsageSpool] = {}
_spools_lock = threading.Lock()


def usage_spool() -> UsageSpool:
    """This database's spool (``USAGE_SPOOL_DIR``/<vendor>-<hash of its address>.sqlite3)."""
    db = connections[DEFAULT_DB_ALIAS].settings_dict
    address = f"{db.get('HOST') or ''}:{db.get('PORT') or ''}/{db.get('NAME')}"
    digest = hashlib.sha256(address.encode()).hexdigest()[:16]
    name = f"{connections[DEFAULT_DB_ALIAS].vendor}-{digest}"
    directory = Path(
        getattr(settings, "USAGE_SPOOL_DIR", settings.BASE_DIR / "var" / "usage-spool")
    )
    max_rows = int(getattr(settings, "USAGE_SPOOL_MAX_ROWS", 1_000_000))
    with _spools_lock:
        spool = _spools.get(name)
        if spool is None or spool.path.parent != directory or spool.max_rows != max_rows:
            spool = _spools[name] = UsageSpool(directory / f"{name}.sqlite3", max_rows)
        return spool
