"""What /ready answers: whether this process can serve at all.

A trivial query on the database and a set/get round trip on the cache, each
with a short timeout, cheap enough for a load balancer to call every few
seconds. It never returns an exception's text: names and states only.

/health (the providers' state) is providers_app/services/health.py's;
aipk_site/operations_views.py serves both.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connection

logger = logging.getLogger(__name__)

DEFAULT_READY_TIMEOUT_SECONDS = 2.0


def _database_ok() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # a worker thread, not a request: nothing else would close this connection
        connection.close()


def _cache_ok() -> None:
    key, value = f"ready:{uuid.uuid4().hex}", uuid.uuid4().hex
    cache.set(key, value, timeout=10)
    if cache.get(key) != value:
        raise RuntimeError("the cache did not return what was just stored")
    cache.delete(key)


async def _probe(name: str, check: Callable[[], None], seconds: float) -> tuple[str, bool]:
    # Not thread-sensitive: a hanging backend ties up one pool thread, never the
    # process's shared sync thread that every other request's ORM calls need.
    try:
        await asyncio.wait_for(sync_to_async(check, thread_sensitive=False)(), seconds)
    except Exception as error:
        logger.warning("ready: %s is down (%s)", name, type(error).__name__)
        return name, False
    return name, True


async def areadiness() -> dict[str, Any]:
    """{"status": "ready"|"unavailable", "checks": {name: "ok"|"down"}, "down": [...]}."""
    timeout = float(getattr(settings, "READY_TIMEOUT_SECONDS", DEFAULT_READY_TIMEOUT_SECONDS))
    results = await asyncio.gather(
        _probe("database", _database_ok, timeout), _probe("cache", _cache_ok, timeout)
    )
    down = [name for name, ok in results if not ok]
    report: dict[str, Any] = {
        "status": "unavailable" if down else "ready",
        "checks": {name: "ok" if ok else "down" for name, ok in results},
    }
    if down:
        report["down"] = down
    return report
