"""Who is calling: a virtual key's secret → the caller's tenant, limits and permissions.

This runs on every gateway request, so each process holds a snapshot in memory:
the secret's hash → its ``KeyContext``. A hit costs a dict lookup, no I/O and no
thread hop. A miss reads the database once (concurrent misses of one hash share
that read) and keeps the answer for VIRTUAL_KEY_CACHE_SECONDS, a safety TTL only:
every change to a key or its tenant publishes a change event
(aipk_site/infra/change_events.py) and every process drops the entries at once.

Unknown hashes are remembered for VIRTUAL_KEY_UNKNOWN_CACHE_SECONDS only, so a client
repeating a wrong key costs one query per few seconds instead of one per
request; creating a key publishes its hash, which drops that memory at once, so
a key created a moment ago is never refused because of an earlier miss.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from aipk_site.infra import change_events
from aipk_site.infra.errors import AipkError, AuthenticationFailed, PermissionDenied
from tenants_app.models import UnsupportedParams, VirtualKey
from tenants_app.services.secrets import VIRTUAL_KEY_PREFIX, secret_hash

MICRO = 1_000_000


@dataclass(frozen=True, slots=True)
class KeyContext:
    """Everything the request path needs to know about the caller, without a query."""

    # None: a console user on the websocket chat (no key; the tenant's limits only)
    key_id: int | None
    key_prefix: str
    tenant_id: int
    tenant_slug: str
    tenant_active: bool
    revoked: bool
    expires_at: float | None  # unix time
    # the key's own limits (None = no limit of its own)
    rpm: int | None
    tpm: int | None
    max_concurrent_streams: int | None
    budget_micro_usd: int | None
    # the tenant's limits, all its keys together
    tenant_rpm: int | None
    tenant_tpm: int | None
    tenant_budget_micro_usd: int | None
    allowed_models: tuple[str, ...]
    # None = every enabled provider
    allowed_provider_ids: frozenset[int] | None
    cache_enabled: bool
    cache_ttl_seconds: int
    pii_redaction: bool
    # VirtualKey.unsupported_params == "drop": a droppable field the provider cannot take
    # (and an unknown one) is dropped and named in x-aipk-dropped-params, not refused
    drop_unsupported: bool = False
    # the request log keeps this request's body and answer (the key's choice, else the
    # tenant's): request_bodies.py
    capture_bodies: bool = False


def _micro(amount: Decimal | None) -> int | None:
    return None if amount is None else int(amount * MICRO)


def _context_for(key_hash: str) -> KeyContext | None:
    key = VirtualKey.objects.select_related("tenant").filter(key_hash=key_hash).first()
    if key is None:
        return None
    tenant = key.tenant
    allowed = frozenset(tenant.allowed_providers.values_list("id", flat=True))
    return KeyContext(
        key_id=key.pk,
        key_prefix=key.prefix,
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        tenant_active=tenant.active,
        revoked=key.revoked_at is not None,
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        rpm=key.rpm,
        tpm=key.tpm,
        max_concurrent_streams=key.max_concurrent_streams,
        budget_micro_usd=_micro(key.monthly_budget_usd),
        tenant_rpm=tenant.default_rpm,
        tenant_tpm=tenant.default_tpm,
        tenant_budget_micro_usd=_micro(tenant.monthly_budget_usd),
        allowed_models=tuple(key.allowed_models or ()),
        allowed_provider_ids=allowed or None,
        cache_enabled=key.cache_enabled,
        cache_ttl_seconds=key.cache_ttl_seconds,
        pii_redaction=tenant.pii_redaction,
        drop_unsupported=key.unsupported_params == UnsupportedParams.DROP,
        capture_bodies=(
            key.capture_bodies if key.capture_bodies is not None else tenant.capture_bodies
        ),
    )


# --- the snapshot ------------------------------------------------------------------

TOPIC_KEYS = "virtual_keys"  # payload: {"key_hashes": [...]}
TOPIC_TENANT = "tenant"  # payload: {"tenant_id": ...}
# Bounds: past this many entries a table starts over (one query per key again), so
# neither many keys nor an attacker's stream of wrong keys can grow memory for ever.
MAX_KEYS = 100_000
MAX_UNKNOWN = 10_000


class _Snapshot:
    """hash → (KeyContext, expires at) and hash → expires at for unknown hashes.

    Handlers run on the publisher's or the listener's thread while the event loop
    reads: each step is one dict operation (atomic under the GIL), and every drop
    bumps ``generation`` so a load that started before it never stores what it read."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[KeyContext, float]] = {}
        self.unknown: dict[str, float] = {}
        self.loading: dict[tuple[asyncio.AbstractEventLoop, int, str], asyncio.Task[Any]] = {}
        self.generation = 0

    def drop_hashes(self, hashes: list[str]) -> None:
        self.generation += 1
        for key_hash in hashes:
            self.known.pop(key_hash, None)
            self.unknown.pop(key_hash, None)

    def drop_tenant(self, tenant_id: int) -> None:
        self.generation += 1
        for key_hash, (ctx, _) in list(self.known.items()):
            if ctx.tenant_id == tenant_id:
                self.known.pop(key_hash, None)

    def clear(self) -> None:
        self.generation += 1
        self.known.clear()
        self.unknown.clear()


_snapshot = _Snapshot()


def _on_keys(payload: Mapping[str, Any] | None) -> None:
    if payload is None:
        _snapshot.clear()
        return
    hashes = payload.get("key_hashes")
    if isinstance(hashes, list):
        _snapshot.drop_hashes([h for h in hashes if isinstance(h, str)])
    else:
        _snapshot.clear()


def _on_tenant(payload: Mapping[str, Any] | None) -> None:
    tenant_id = None if payload is None else payload.get("tenant_id")
    if isinstance(tenant_id, int):
        _snapshot.drop_tenant(tenant_id)
    else:
        _snapshot.clear()


change_events.subscribe(TOPIC_KEYS, _on_keys)
change_events.subscribe(TOPIC_TENANT, _on_tenant)


def key_auth_cache_clear() -> None:
    """Forget this process's snapshot (tests; changes publish events instead)."""
    _snapshot.clear()


async def _load(key_hash: str) -> KeyContext | None:
    await change_events.watch()
    generation = _snapshot.generation
    ctx = await change_events.snapshot_load(lambda: _context_for(key_hash))
    if generation == _snapshot.generation:
        now = time.monotonic()
        if ctx is None:
            if len(_snapshot.unknown) >= MAX_UNKNOWN:
                _snapshot.unknown.clear()
            _snapshot.unknown[key_hash] = now + settings.VIRTUAL_KEY_UNKNOWN_CACHE_SECONDS
        elif settings.VIRTUAL_KEY_CACHE_SECONDS > 0:
            if len(_snapshot.known) >= MAX_KEYS:
                _snapshot.known.clear()
            _snapshot.known[key_hash] = (ctx, now + settings.VIRTUAL_KEY_CACHE_SECONDS)
    return ctx


async def _lookup(key_hash: str) -> KeyContext | None:
    now = time.monotonic()
    entry = _snapshot.known.get(key_hash)
    if entry is not None and entry[1] > now:
        return entry[0]
    unknown_until = _snapshot.unknown.get(key_hash)
    if unknown_until is not None and unknown_until > now:
        return None
    # one read per hash however many requests miss at once; per loop, since a task
    # belongs to its loop (tests run the server and the test in different loops), and
    # per generation: a request that comes after a change (a revocation) must not be
    # answered by a read that started before it
    slot = (asyncio.get_running_loop(), _snapshot.generation, key_hash)
    task = _snapshot.loading.get(slot)
    if task is None:
        task = asyncio.ensure_future(_load(key_hash))
        _snapshot.loading[slot] = task
        task.add_done_callback(lambda _: _snapshot.loading.pop(slot, None))
    # shielded: a waiter that is cancelled (its client left) does not cancel the others'
    return await asyncio.shield(task)


async def authenticate_virtual_key(secret: str | None) -> KeyContext:
    """The caller's context, or AuthenticationFailed / PermissionDenied saying why."""
    if not secret:
        raise AuthenticationFailed(
            "no API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
            code="missing_api_key",
        )
    if not secret.startswith(VIRTUAL_KEY_PREFIX):
        raise AuthenticationFailed("invalid API key")
    key_hash = secret_hash(secret)
    ctx = await _lookup(key_hash)
    if ctx is None:
        raise AuthenticationFailed("invalid API key")
    refusal = _refusal(ctx)
    if refusal is not None:
        raise refusal
    return ctx


def _refusal(ctx: KeyContext) -> AipkError | None:
    """Why a known key may not be used now (revoked, expired, tenant off), or None."""
    if ctx.revoked:
        return AuthenticationFailed("this API key has been revoked", code="api_key_revoked")
    if ctx.expires_at is not None and ctx.expires_at <= time.time():
        return AuthenticationFailed("this API key has expired", code="api_key_expired")
    if not ctx.tenant_active:
        return PermissionDenied("this key's tenant is deactivated", code="tenant_inactive")
    return None


def cached_key_context(secret: str | None) -> KeyContext | None:
    """The caller's context if this process's snapshot already holds the key and it
    would be let in; None otherwise (unknown here, revoked, expired, tenant inactive).
    Never reads the database: for a worker that must not take on that work (shedding
    load, aipk_site/gateway/overload.py)."""
    if not secret or not secret.startswith(VIRTUAL_KEY_PREFIX):
        return None
    entry = _snapshot.known.get(secret_hash(secret))
    if entry is None or entry[1] <= time.monotonic() or _refusal(entry[0]) is not None:
        return None
    return entry[0]


def key_auth_forget(key_hash: str) -> None:
    """Call after creating, changing or revoking a key: every process sees it at once."""
    key_auth_forget_many([key_hash])


def key_auth_forget_many(key_hashes: list[str]) -> None:
    """``key_auth_forget`` for several keys, in one event."""
    if key_hashes:
        change_events.publish(TOPIC_KEYS, {"key_hashes": list(key_hashes)})


def key_auth_forget_tenant(tenant_id: int) -> None:
    """Call after changing a tenant (limits, active, providers, PII filter)."""
    change_events.publish(TOPIC_TENANT, {"tenant_id": tenant_id})
