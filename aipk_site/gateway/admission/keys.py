"""Admission's cache keys, their lifetimes and the requests its stores carry out.

Shared by both stores (``admission_store`` on local memory, ``admission_redis``
on Redis) so the two cannot disagree on a key's name or how long it lives.

Layout, under the cache prefix:

    adm:{t<T>}:k<K>:w:<window>   key K's requests and tokens in a window
    adm:{t<T>}:k<K>:m:<YYYYMM>   key K's spend that month (micro-USD)
    adm:{t<T>}:k<K>:s            key K's running streams (request id → lease expiry)
    adm:{t<T>}:k<K>:l            key K's leases (``<request id>|<cost>|<YYYYMM>`` → expiry)
    adm:{t<T>}:t:w|m|s|l         the same for the tenant as a whole
    adm:{t<T>}:r:<request id>    a reservation not yet settled

The embedded store (``ObjectAdmissionStore``) keeps each scope's four in one live
object under the scope's streams key (``adm:{t<T>}:k<K>:s``, ``adm:{t<T>}:t:s``), each
part with the lifetime below; its reservations are entries of their own, as here.

Every key of a key+tenant is under the Redis Cluster hash tag ``{t<tenant_id>}``.
Every key has a TTL: windows until they end, months one day past theirs,
stream and lease sets the lease plus a margin, reservations the lease plus an
hour (so a request that outlived its lease still settles once).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from aipk_site.gateway.admission import rules as rules
from aipk_site.gateway.admission.rules import Limits

# Kept past their month so a settle arriving after midnight UTC still lands.
MONTH_MARGIN_SECONDS = 86400
# Covers a few seconds of clock difference between processes.
WINDOW_MARGIN_SECONDS = 5
# A reservation record outlives its lease, so a request that outlived its lease
# still settles (once) and is charged its real cost.
RESERVATION_MARGIN_SECONDS = 3600
# Expired entries are reclaimed on every admit; a stream or lease set's own TTL
# only clears up after a scope nobody uses any more.
LEASES_MARGIN_SECONDS = 60
# Expired leases reclaimed per scope and call: bounds one Lua call's work after
# a crash with thousands in flight (the rest go on the next calls).
RECLAIM_BATCH = 1000


def lease_member(request_id: str, cost: int, month: str) -> str:
    return f"{request_id}|{cost}|{month}"


@dataclass(frozen=True, slots=True)
class AdmissionKeys:
    """Cache keys (before the cache prefix) of one key+tenant for one window and month.

    ``of`` hands out one shared instance per (tenant, key, window, month): building nine
    key strings per admit and per settle was ~4 % of admission's CPU."""

    key_window: str
    key_month: str
    key_streams: str  # also names the key's scope (no window or month in it)
    key_leases: str
    tenant_window: str
    tenant_month: str
    tenant_streams: str  # also names the tenant's scope
    tenant_leases: str
    base: str  # ``adm:{t<T>}``

    @classmethod
    def of(cls, *, tenant_id: int, key_id: int | None, window: int, month: str) -> AdmissionKeys:
        memo = (tenant_id, key_id, window, month)
        keys = _keys.get(memo)
        if keys is None:
            base = f"adm:{{t{tenant_id}}}"
            k = f"{base}:k{key_id}" if key_id is not None else f"{base}:k-"
            keys = cls(
                key_window=f"{k}:w:{window}",
                key_month=f"{k}:m:{month}",
                key_streams=f"{k}:s",
                key_leases=f"{k}:l",
                tenant_window=f"{base}:t:w:{window}",
                tenant_month=f"{base}:t:m:{month}",
                tenant_streams=f"{base}:t:s",
                tenant_leases=f"{base}:t:l",
                base=base,
            )
            if len(_keys) >= _KEYS_KEPT:  # a past window's keys are not asked for again
                _keys.clear()
            _keys[memo] = keys
        return keys

    def reservation(self, request_id: str) -> str:
        """The key of a request's reservation not yet settled."""
        return f"{self.base}:r:{request_id}"

    def ordered(self) -> list[str]:
        """The Lua scripts' first KEYS: the key's four, then the tenant's four."""
        return [
            self.key_window,
            self.key_month,
            self.key_streams,
            self.key_leases,
            self.tenant_window,
            self.tenant_month,
            self.tenant_streams,
            self.tenant_leases,
        ]

    def scopes(
        self,
    ) -> tuple[tuple[str, str, str, str], tuple[str, str, str, str]]:
        """(window, month, streams, leases) of the key, then of the tenant."""
        return (
            (self.key_window, self.key_month, self.key_streams, self.key_leases),
            (self.tenant_window, self.tenant_month, self.tenant_streams, self.tenant_leases),
        )


# AdmissionKeys.of's instances; emptied whole once this many are held (O(1) amortised).
_KEYS_KEPT = 4096
_keys: dict[tuple[int, int | None, int, str], AdmissionKeys] = {}


def lease_floor() -> float:
    """How long a reservation and a stream slot are held without a settle, at least."""
    return float(settings.ADMISSION_LEASE_SECONDS)


def window_ttl(window: int, now: float) -> float:
    return (window + 1) * rules.WINDOW_SECONDS - now + WINDOW_MARGIN_SECONDS


def month_ttl(month_of: float, now: float) -> float:
    """Until one margin past the end of the month holding ``month_of``."""
    return rules.month_end(month_of) - now + MONTH_MARGIN_SECONDS


def leases_ttl(lease: float) -> float:
    return lease + LEASES_MARGIN_SECONDS


def reservation_ttl(lease: float) -> float:
    return lease + RESERVATION_MARGIN_SECONDS


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__,
# twice the cost, and one of each is built per request; nothing changes them.
@dataclass(slots=True)
class AdmitRequest:
    keys: AdmissionKeys
    window: int
    month: str
    key_limits: Limits
    tenant_limits: Limits
    request_id: str
    tokens: int
    cost: int
    stream: bool
    now: float
    lease: float  # seconds


@dataclass(slots=True)
class SettleRequest:
    keys: AdmissionKeys
    window: int
    month: str  # the admission's (YYYYMM)
    admitted_at: float
    same_window: bool
    request_id: str
    token_delta: int
    cost_delta: int
    real_cost: int
    now: float
