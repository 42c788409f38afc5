"""Load shedding at the /v1 edge: a per-worker cap on requests being worked on.

Past its capacity a worker does not get slower gracefully: every request it accepts
queues on the event loop behind the others, so latency grows without bound (54 s p99
in a 1,000 rps open loop on two workers) until the listen backlog overflows and
clients get connection resets, the successful requests included. A request refused at
once with a 503 and ``retry-after`` is cheaper for everyone: the client backs off or
tries another instance, and the requests already admitted finish in their usual time.

What counts: a /v1 hot-path request (aipk_site/gateway/edge.py ``OPERATIONS``) from
its arrival until its answer starts -- the whole of a JSON reply, and a stream until
its first chunk, when its headers go out. A stream that is relaying no longer counts:
it costs the worker a few microseconds a chunk, not the admission, routing and
upstream opening that the cap protects, and a worker relaying 5,000 slow streams must
still take new requests. (Streams have their own bounds: a key's
``max_concurrent_streams`` and ``UPSTREAM_MAX_CONNECTIONS``.)

``GATEWAY_MAX_IN_FLIGHT`` is the cap (0 turns shedding off); docs/GATEWAY.md
"Load shedding" says how to size it. The count lives in this process only: no
database, no cache, nothing to lose when the worker restarts.

Every request is accounted exactly once: a shed request whose key this process already
holds in memory (aipk_site/gateway/key_auth.py's snapshot; a dict lookup, no query)
gets its usage row, status ``refused``, error_type ``gateway_overloaded``, like any
other refusal. A key the process has not seen would need a database read to be
known, the very work an overloaded worker must not take on: its request is shed
without a row.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

from aipk_site.infra.errors import AipkError, UpstreamError
from aipk_site.infra.metrics import GATEWAY_SHED

OVERLOADED_CODE = "gateway_overloaded"
# What a shed request is told to wait: the queue it was spared drains in about a second.
RETRY_AFTER_SECONDS = 1


class _InFlight:
    __slots__ = ("count", "cap")

    def __init__(self) -> None:
        self.count = 0
        # GATEWAY_MAX_IN_FLIGHT, read once: a settings read costs about a microsecond,
        # as much as the rest of the check (None: read it on the next request)
        self.cap: int | None = None


_in_flight = _InFlight()


def _forget_cap(*, setting: str, **kwargs: Any) -> None:
    if setting == "GATEWAY_MAX_IN_FLIGHT":
        _in_flight.cap = None


setting_changed.connect(_forget_cap, dispatch_uid="aipk-gateway-overload-cap")


def in_flight() -> int:
    """Requests this process is working on now (the figure the cap is compared with)."""
    return _in_flight.count


def try_enter() -> bool:
    """Count a new request in, or False when the worker is at its cap (shed it).

    Every True must be paired with exactly one ``leave()`` (edge.py does it in a
    ``finally``). Both run on the event loop's thread without an ``await`` in
    between, so no lock is needed."""
    cap = _in_flight.cap
    if cap is None:
        cap = _in_flight.cap = int(settings.GATEWAY_MAX_IN_FLIGHT)
    if cap > 0 and _in_flight.count >= cap:
        return False
    _in_flight.count += 1
    return True


def leave() -> None:
    _in_flight.count -= 1


def overloaded() -> AipkError:
    """The refusal a shed request gets: the same family and code as the upstream pool's
    own "at its limit" 503 (error_mapping.py), so one retry rule covers both."""
    return UpstreamError(
        "aipk is at its limit of requests in flight on this worker; retry shortly",
        status=503,
        code=OVERLOADED_CODE,
        retry_after=RETRY_AFTER_SECONDS,
    )


def record_shed(endpoint: str) -> None:
    """Count a shed request; ``endpoint`` is one of edge.py's few operation names."""
    GATEWAY_SHED.labels(endpoint).inc()
