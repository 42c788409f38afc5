"""Load shedding at the /v1 edge: a worker whose event loop is behind refuses new work.

Past its capacity a worker does not get slower gracefully: every request it accepts
queues on the event loop behind the others, so latency grows without bound (54 s p99
in a 1,000 rps open loop on two workers) until the listen backlog overflows and
clients get connection resets, the successful requests included. A request refused at
once with a 503 and ``retry-after`` is cheaper for everyone: the client backs off or
tries another instance, and the requests already admitted finish in their usual time.

What overloads a worker is CPU, and CPU backlog shows as queueing delay on its event
loop: work that is ready waits behind other ready work. So this module measures that
delay directly. A probe callback is re-armed every ``PROBE_SECONDS`` with
``loop.call_at`` and notes how late it ran (the *lag*): a new request's next step
waits about that long. The probe starts lazily, on the first ``try_enter`` on a loop,
and costs the loop 40 callbacks a second; a request pays ``get_running_loop()``, an
identity check and a float comparison.

The rule compares an average, not one sample, with ``GATEWAY_MAX_QUEUE_DELAY_MS``:
the lag averaged over about the last ``SMOOTHING_SECONDS`` of wall time, each probe
weighted by the time it covers. A CoDel-like "every probe above the target for a
window" rule was tried first and hardly shed in a 1,500 rps open loop: under overload
the lag is bursty (a long turn of the loop, then a few on-time probes), so the run of
late probes kept restarting while clients waited 17 s. The average sees the standing
backlog; one late probe -- a garbage collection, a burst the loop clears in a moment --
moves it only a little, and shedding also needs two probes in a row later than the
target, so a single blocking call sheds nothing at all.

What this deliberately does *not* count is time spent waiting on the provider. A
request waiting 30 s for a reasoning model's first token costs the worker a socket,
not CPU; an earlier cap on requests "in flight" (512) counted those and shed healthy
traffic from an idle worker: 2,913 of 5,000 slow streams through one process.
``GATEWAY_MAX_IN_FLIGHT`` remains, far higher, as a memory guard only: requests from
arrival until their answer starts (a JSON reply's whole life, a stream until its first
chunk).

Either setting at 0 turns its check off. Everything lives in this process only: no
database, no cache, nothing to lose when the worker restarts.

Every request is accounted exactly once: a shed request whose key this process already
holds in memory (aipk_site/gateway/key_auth.py's snapshot; a dict lookup, no query)
gets its usage row, status ``refused``, error_type ``gateway_overloaded``, like any
other refusal. A key the process has not seen would need a database read to be
known, the very work an overloaded worker must not take on: its request is shed
without a row.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

from aipk_site.infra.errors import AipkError, UpstreamError
from aipk_site.infra.metrics import EVENT_LOOP_LAG, GATEWAY_SHED

OVERLOADED_CODE = "gateway_overloaded"
# What a shed request is told to wait: the queue it was spared drains in about a second.
RETRY_AFTER_SECONDS = 1
# How often the probe asks to run. Finer only costs more callbacks: the lag it measures
# is the loop's backlog, which grows over many probes when it grows at all.
PROBE_SECONDS = 0.025
# The lag is averaged over about this much wall time before it is compared with the
# target: longer than a collection pause or a burst the loop clears by itself.
SMOOTHING_SECONDS = 1.0


class _Limits:
    __slots__ = ("delay", "cap")

    def __init__(self) -> None:
        # the settings, read once: a settings read costs about a microsecond, as much as
        # the rest of the check (None: read them on the next request)
        self.delay: float | None = None  # GATEWAY_MAX_QUEUE_DELAY_MS, in seconds; 0: off
        self.cap: int | None = None  # GATEWAY_MAX_IN_FLIGHT; 0: off


class _LagProbe:
    """One event loop's lag, measured by a timer that notes how late it runs."""

    __slots__ = ("loop", "due", "lag", "smoothed", "late_in_a_row", "shedding", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # a weak reference: the loop holds the probe's timer, the probe must not hold it
        self.loop = weakref.ref(loop)
        self.lag = 0.0
        # the lag averaged over about the last SMOOTHING_SECONDS of wall time
        self.smoothed = 0.0
        # consecutive probes that ran later than the target
        self.late_in_a_row = 0
        # what try_enter reads: worked out here, 40 times a second, not per request
        self.shedding = False
        self.due = loop.time() + PROBE_SECONDS
        loop.call_at(self.due, self._run)

    def _run(self) -> None:
        loop = self.loop()
        if loop is None:  # pragma: no cover -- a loop collected with its timer pending
            return
        now = loop.time()
        self.lag = lag = max(0.0, now - self.due)
        # weighted by the time the sample covers (the probe's wait plus its lateness): a
        # probe 800 ms late speaks for 800 ms of backlog, an on-time one for 25 ms of none
        weight = min(1.0, (PROBE_SECONDS + lag) / SMOOTHING_SECONDS)
        self.smoothed += (lag - self.smoothed) * weight
        EVENT_LOOP_LAG.set(lag)
        target = _limits.delay
        if target is None:
            target, _ = _read_limits()
        self.late_in_a_row = self.late_in_a_row + 1 if target and lag > target else 0
        # a backlog, not one stall: a single blocking call (a collection, a synchronous
        # start-up step) makes one probe late and the next on time
        self.shedding = self.late_in_a_row >= 2 and self.smoothed > target
        self.due = now + PROBE_SECONDS
        loop.call_at(self.due, self._run)


class _State:
    __slots__ = ("count", "loop", "probe")

    def __init__(self) -> None:
        self.count = 0
        # the loop of the last try_enter and its probe: a worker runs one loop, so the
        # lookup below is an identity check nearly always
        self.loop: asyncio.AbstractEventLoop | None = None
        self.probe: _LagProbe | None = None


_limits = _Limits()
_state = _State()
_probes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LagProbe] = (
    weakref.WeakKeyDictionary()
)


def _forget_limits(*, setting: str, **kwargs: Any) -> None:
    if setting in ("GATEWAY_MAX_IN_FLIGHT", "GATEWAY_MAX_QUEUE_DELAY_MS"):
        _limits.delay = None
        _limits.cap = None


setting_changed.connect(_forget_limits, dispatch_uid="aipk-gateway-overload-cap")


def _read_limits() -> tuple[float, int]:
    delay = _limits.delay = max(0.0, float(settings.GATEWAY_MAX_QUEUE_DELAY_MS) / 1000)
    cap = _limits.cap = int(settings.GATEWAY_MAX_IN_FLIGHT)
    return delay, cap


def _probe_for(loop: asyncio.AbstractEventLoop) -> _LagProbe:
    probe = _probes.get(loop)
    if probe is None:
        probe = _probes[loop] = _LagProbe(loop)
    _state.loop = loop
    _state.probe = probe
    return probe


def in_flight() -> int:
    """Requests this process is working on now (the figure the memory guard caps)."""
    return _state.count


def event_loop_lag() -> float:
    """How late the probe of the loop of the last ``try_enter`` last ran, in seconds
    (0 before the first request)."""
    probe = _state.probe
    return probe.lag if probe is not None else 0.0


def loop_behind() -> bool:
    """True while the loop of the last ``try_enter`` sheds: its lag, averaged over the
    last second or so, is above ``GATEWAY_MAX_QUEUE_DELAY_MS`` (as of its last probe)."""
    probe = _state.probe
    return probe is not None and probe.shedding


def try_enter() -> bool:
    """Count a new request in, or False when the worker must shed it: its event loop
    has been behind for a while, or it holds ``GATEWAY_MAX_IN_FLIGHT`` requests.

    Called on the event loop that serves the request. Every True must be paired with
    exactly one ``leave()`` (edge.py does it in a ``finally``). Both run on the event
    loop's thread without an ``await`` in between, so no lock is needed."""
    cap = _limits.cap
    if cap is None:
        _, cap = _read_limits()
    loop = asyncio.get_running_loop()
    probe = _state.probe
    if loop is not _state.loop or probe is None:
        probe = _probe_for(loop)
    # the probe did the arithmetic; a request reads its verdict
    if probe.shedding:
        return False
    if cap > 0 and _state.count >= cap:
        return False
    _state.count += 1
    return True


def leave() -> None:
    _state.count -= 1


def overloaded() -> AipkError:
    """The refusal a shed request gets: the same family and code as the upstream pool's
    own "at its limit" 503 (error_mapping.py), so one retry rule covers both."""
    return UpstreamError(
        "this aipk worker is overloaded; retry shortly",
        status=503,
        code=OVERLOADED_CODE,
        retry_after=RETRY_AFTER_SECONDS,
    )


def record_shed(endpoint: str) -> None:
    """Count a shed request; ``endpoint`` is one of edge.py's few operation names."""
    GATEWAY_SHED.labels(endpoint).inc()
