"""The embedded mode's default cache: Django's LocMemCache without memcached's key check,
plus a table of live Python objects for the request path's own state.

``BaseCache.validate_key`` walks every character of every key to warn about keys
memcached would refuse (longer than 250 characters, spaces, control characters).
This cache never reaches memcached, and the gateway reads and writes several
state keys per request: the walk was ~4 % of a request's CPU (docs/BENCHMARKS.md
"Data plane"). Everything else -- expiry, culling, pickled copies, one process
only -- is LocMemCache's own. In production the cache is Redis.

``objects`` holds values that are never pickled: admission's counters and leases,
read and rewritten on every request. Pickling them cost O(requests in flight) per
request (every lease of a scope, at each admit and settle) -- over a third of a
request's CPU at 50 concurrent requests. A value stored there is shared, not
copied: whoever changes one in place must do it under the lock every reader of that
key takes (admission's per-scope objects, with their books of leases and stream slots,
are changed in place under the admission store's own lock, their only readers);
anything else stores a new value instead. ``clear()`` empties both,
so resetting the cache resets that state too, as it did when it lived in the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from django.core.cache.backends.locmem import LocMemCache

# Expired entries nobody reads again (a past minute's rate window) are swept out at
# most this often, so the table cannot grow without bound.
SWEEP_SECONDS = 30.0


class LocalObjects:
    """Values with a TTL, kept as the objects they are, for this process only.

    Not locked itself: callers that read-modify-write hold their own lock (the state
    store's process-wide lock); single dict operations are atomic under the GIL."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[Any, float]] = {}
        self._next_sweep = time.monotonic() + SWEEP_SECONDS

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        now = time.monotonic()
        found: dict[str, Any] = {}
        data = self._data
        for key in keys:
            entry = data.get(key)
            if entry is not None and entry[1] > now:
                found[key] = entry[0]
        return found

    def get(self, key: str) -> Any:
        """The value, or None if absent or expired."""
        entry = self._data.get(key)
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        return None

    def set(self, key: str, value: Any, ttl: float) -> None:
        now = time.monotonic()
        if ttl <= 0:
            self._data.pop(key, None)
        else:
            self._data[key] = (value, now + ttl)
        if now >= self._next_sweep:
            self._sweep(now)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_SECONDS
        for key in [k for k, (_, expires) in self._data.items() if expires <= now]:
            self._data.pop(key, None)


# One table per cache LOCATION, as LocMemCache shares its dict per LOCATION: Django
# builds a cache object per thread and async context.
_objects: dict[str, LocalObjects] = {}
_objects_lock = threading.Lock()


class FastLocMemCache(LocMemCache):  # type: ignore[misc]  # Django ships no types
    def __init__(self, name: str, params: dict[str, Any]) -> None:
        super().__init__(name, params)
        with _objects_lock:
            self.objects = _objects.setdefault(name, LocalObjects())

    def validate_key(self, key: str) -> None:
        """Every key is valid for a dict in this process."""

    def clear(self) -> None:
        super().clear()
        self.objects.clear()
