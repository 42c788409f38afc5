"""Sending one chat request to a provider through its pool of credentials.

This is the provider half of the request path: choose a credential from the
key pool, keep an OAuth token fresh, respect client-side rate limits, call the
kit adapter, fail over to the next credential on a retryable error (for a
stream: only before the first chunk has been delivered), feed the circuit
breaker, persist a credential's permanent failure, and count the request in
the metrics. One deadline (the provider's total, or the caller's when shorter)
bounds every attempt, so retries never multiply it. All state the pool, breaker,
buckets and tracker keep is in the shared store (Redis in production), so every
server process agrees on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.db.models import Q
from django.utils import timezone

from aipk_site.infra import change_events
from aipk_site.infra.snapshots import SnapshotTable
from providers_app.kit.adapters import BaseAdapter, ChatStream
from providers_app.kit.embeddings import EmbeddingRequest
from providers_app.kit.errors import AllKeysExhaustedError, ProviderError, RateLimitError
from providers_app.kit.providers import provider_profile
from providers_app.kit.ratelimit import RateLimitTracker, TokenBucket
from providers_app.kit.resilience import CircuitBreaker, KeyPool, RetryPolicy, call_with_failover
from providers_app.kit.types import ChatChunk, ChatRequest, ChatResponse
from providers_app.models import ApiKey, OAuthCredential, Provider
from providers_app.services.credentials import api_key_set_state
from providers_app.services.oauth import fresh_credential
from providers_app.services.pools import credential_id, key_pool, provider_pool_name
from providers_app.services.provider_metrics import record_request
from providers_app.services.providers import build_adapter, provider_deadlines, shared_client
from providers_app.services.shared_state import ProviderStateStore, provider_state_store

Credential = ApiKey | OAuthCredential
# What the credential loop sends: only its ``model`` is read here (the rate-limit
# tracker's key, metrics), so embeddings (services/embeddings.py) share the loop.
ProviderRequest = ChatRequest | EmbeddingRequest

# Near a provider's limit (this share of a window used), requests are paced:
# each waits (time to reset) / (requests left), at most MAX_PACING_SECONDS,
# so the rest of the window is spread out instead of spent in a burst.
THROTTLE_FRACTION = 0.9
MAX_PACING_SECONDS = 1.0
pace_sleep = asyncio.sleep  # replaced in tests to see the pacing without waiting
# Up to this many candidate credentials, the rate-limit tracker is read with the pool.
READ_ALONG_MAX_CANDIDATES = 8


def usable_credentials(provider: Provider, tenant_id: int | None = None) -> list[Credential]:
    """Credentials that may serve a tenant's requests: the organisation's shared ones and the
    tenant's own, never another tenant's. Keys in their grace period come after the others."""
    now = timezone.now()
    owner = (
        (Q(tenant__isnull=True) | Q(tenant_id=tenant_id)) if tenant_id else Q(tenant__isnull=True)
    )
    keys = list(
        provider.api_keys.filter(owner)
        .filter(state__in=[ApiKey.State.ACTIVE, ApiKey.State.COOLING_DOWN])
        .filter(Q(retire_at__isnull=True) | Q(retire_at__gt=now))
        .order_by("retire_at", "id")  # NULLs (not retiring) first on SQLite and PostgreSQL alike
    )
    keys.sort(key=lambda k: k.retire_at is not None)
    tokens = list(
        provider.oauth_credentials.filter(owner)
        .filter(state=OAuthCredential.State.ACTIVE)
        .order_by("id")
    )
    return [*keys, *tokens]


# Usable credentials per (provider, tenant), held in each process's memory: every
# request needs them, and reading them means a query plus a Fernet decryption per
# secret. This is a read cache, not shared state (key health lives in the shared
# store). Every save or delete of a credential or provider (providers_app/signals.py)
# calls ``credentials_forget``, which publishes a change event: this process drops
# its copy at once, every other process when the event reaches it
# (aipk_site/infra/change_events.py). ROUTING_CACHE_SECONDS is only a safety TTL for
# an event lost while Redis was away. A retiring key stays usable for its whole
# grace period, so rotation never waits on this.
CREDENTIALS_TOPIC = "credentials"  # payload: {"provider_id": id or None for all}


# (provider id, tenant id) -> the credentials that may serve that tenant
_usable_cache: SnapshotTable[tuple[int, int | None], list[Credential]] = SnapshotTable(
    "usable credentials"
)


def _forget_usable(provider_id: int | None) -> None:
    if provider_id is None:
        _usable_cache.drop()
    else:
        _usable_cache.drop(lambda key: key[0] == provider_id)


def _on_credentials_changed(payload: Mapping[str, Any] | None) -> None:
    provider_id = None if payload is None else payload.get("provider_id")
    changed = provider_id if isinstance(provider_id, int) else None
    _forget_usable(changed)
    _built.drop(changed)


change_events.subscribe(CREDENTIALS_TOPIC, _on_credentials_changed)


def credentials_forget(provider_id: int | None = None) -> None:
    """Call after changing a provider's credentials (None: every provider's): every
    process drops its copy."""
    change_events.publish(CREDENTIALS_TOPIC, {"provider_id": provider_id})


def credentials_cache_clear() -> None:
    """Forget this process's copies only (tests)."""
    _usable_cache.drop()


async def usable_credentials_cached(provider: Provider, tenant_id: int | None) -> list[Credential]:
    return await _usable_cache.get(
        (provider.pk, tenant_id), lambda: usable_credentials(provider, tenant_id)
    )


@dataclass(frozen=True)
class Resilience:
    """The pool, breaker and policy for one provider, from settings."""

    pool: KeyPool
    breaker: CircuitBreaker
    retry: RetryPolicy
    max_attempts: int
    tracker: RateLimitTracker


# What each request used to build again from its provider's row and settings -- the
# pool, breaker, policy and tracker (stateless wrappers over the shared store) and an
# adapter per credential -- built once per process and reused. An entry answers only
# for the very Provider and credential objects it was built from: those come from the
# routing snapshot and the usable-credentials cache above, which change events replace
# when a provider or credential changes, so a change means new objects and a rebuild.
# The same events (and a change of settings, in tests) also drop the entries, so they
# do not outlive what they were built from.


class _Built:
    def __init__(self) -> None:
        self.resilience: dict[int, tuple[Provider, ProviderStateStore, Resilience]] = {}
        # (provider id, credential id) -> (provider, credential fingerprint, client, adapter)
        self.adapters: dict[tuple[int, str], tuple[Provider, object, httpx.AsyncClient, Any]] = {}

    def drop(self, provider_id: int | None) -> None:
        if provider_id is None:
            self.resilience.clear()
            self.adapters.clear()
            return
        self.resilience.pop(provider_id, None)
        for cache_key in [k for k in list(self.adapters) if k[0] == provider_id]:
            self.adapters.pop(cache_key, None)


_built = _Built()


def _on_setting_changed(**kwargs: Any) -> None:
    _built.drop(None)  # thresholds, timeouts and stores all come from settings


setting_changed.connect(_on_setting_changed, dispatch_uid="aipk-provider-chat-built")


def resilience_for(provider: Provider) -> Resilience:
    """The provider's pool, breaker, policy and tracker, built once per provider row."""
    store = provider_state_store()
    hit = _built.resilience.get(provider.pk)
    if hit is not None and hit[0] is provider and hit[1] is store:
        return hit[2]
    res = Resilience(
        pool=key_pool(provider.pk, provider.key_strategy),
        breaker=CircuitBreaker(
            store,
            provider_pool_name(provider.pk),
            failure_threshold=settings.PROVIDER_BREAKER_FAILURES,
            reset_timeout=settings.PROVIDER_BREAKER_RESET_SECONDS,
        ),
        retry=RetryPolicy(max_delay=settings.PROVIDER_RETRY_MAX_DELAY_SECONDS),
        max_attempts=settings.PROVIDER_MAX_ATTEMPTS,
        tracker=RateLimitTracker(store),
    )
    _built.resilience[provider.pk] = (provider, store, res)
    return res


def _limiter(provider: Provider, cred: str) -> TokenBucket | None:
    """A token bucket per credential for the providers that send no rate-limit headers, sized
    by the provider's profile from its settings (Qwen's 60 a minute, Gemini's tier)."""
    limits = provider_profile(provider.type).client_limits(provider.settings or {})
    if limits is None:
        return None
    return TokenBucket(
        provider_state_store(),
        f"{provider.pk}:{cred}",
        per_minute=limits.per_minute,
        per_day=limits.per_day,
    )


def _fingerprint(credential: Credential) -> object:
    """What an adapter took from its credential. An API key row is the cached object
    itself (compared by identity); an OAuth credential may be the snapshot's or a
    refreshed copy read from the database, so what the adapter holds of it is compared."""
    if isinstance(credential, OAuthCredential):
        return (
            credential.pk,
            credential.access_token,
            credential.expires_at,
            credential.resource_url,
        )
    return credential


def adapter_for(provider: Provider, credential: Credential, cred: str) -> BaseAdapter:
    """The adapter for this provider and credential, on this event loop's pooled client:
    built on first use and reused (adapters keep no per-request state)."""
    client = shared_client(provider)
    fingerprint = _fingerprint(credential)
    hit = _built.adapters.get((provider.pk, cred))
    if (
        hit is not None
        and hit[0] is provider
        and hit[2] is client
        and (hit[1] is fingerprint or (isinstance(fingerprint, tuple) and hit[1] == fingerprint))
    ):
        adapter: BaseAdapter = hit[3]
        return adapter
    adapter = build_adapter(provider, credential, limiter=_limiter(provider, cred))
    _built.adapters[(provider.pk, cred)] = (provider, fingerprint, client, adapter)
    return adapter


class _Attempt:
    """One credential's try at the request: everything that happens around the adapter call."""

    def __init__(
        self,
        provider: Provider,
        request: ProviderRequest,
        by_id: dict[str, Credential],
        res: Resilience,
    ):
        self.provider = provider
        self.request = request
        self.by_id = by_id
        self.res = res
        # what the pool's read found under the tracker's keys, per credential acquired
        self._found: dict[str, Mapping[str, dict[str, Any]]] = {}

    def tracked(self, cred: str) -> str:
        """The rate-limit tracker's key for this request on ``cred``."""
        return f"{self.provider.pk}:{cred}:{self.request.model}"

    # PoolReads: the tracker's keys are read with the pool's read of each attempt
    def keys_for(self, credential_id: str) -> tuple[str, str]:
        return self.res.tracker.read_keys(self.tracked(credential_id))

    def found(self, credential_id: str, values: Mapping[str, dict[str, Any]]) -> None:
        self._found[credential_id] = values

    async def adapter(self, cred: str) -> tuple[BaseAdapter, str]:
        credential = self.by_id[cred]
        if isinstance(credential, OAuthCredential):
            # the snapshot's credential as it is while its token is fresh (no query)
            fresh = await fresh_credential(credential)
            if fresh is not credential:
                # refreshed, here or elsewhere: should the change event that drops the
                # snapshot have been lost (Redis away), this process's copy goes now, or
                # every request would take the refresh path until its safety TTL
                _forget_usable(self.provider.pk)
                credential = fresh
        tracked = self.tracked(cred)
        # one read of the tracker answers both: at the limit, or close enough to pace --
        # the one the pool made for this attempt, when it read the tracker's keys too
        found = self._found.pop(cred, None)
        if found is None:
            wait, throttle = await self.res.tracker.check(tracked, fraction=THROTTLE_FRACTION)
        else:
            wait, throttle = self.res.tracker.check_found(
                tracked, found, fraction=THROTTLE_FRACTION
            )
        if wait > 0:
            raise RateLimitError(
                "the provider's last reply said this key is at its limit",
                retry_after=wait,
                provider=self.provider.name,
            )
        if throttle:
            await self._pace(tracked)
        return adapter_for(self.provider, credential, cred), tracked

    async def _pace(self, tracked: str) -> None:
        info = await self.res.tracker.get(tracked)
        now = time.time()
        delays = [
            (reset_at - now) / remaining
            for _, _, remaining, reset_at in (info.windows() if info else ())
            if remaining and reset_at and reset_at > now
        ]
        if delays:
            await pace_sleep(min(max(delays), MAX_PACING_SECONDS))

    async def failed(self, cred: str, error: ProviderError, started: float) -> None:
        record_request(
            provider=self.provider,
            credential_id=cred,
            model=self.request.model,
            status="error",
            error_type=error.type,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def invalid(self, cred: str, error: ProviderError) -> None:
        """The pool has just judged the credential unusable (key-level evidence only)."""
        await sync_to_async(_persist_permanent_failure)(self.by_id[cred], error)

    def succeeded(self, cred: str, response_usage, started: float) -> None:
        record_request(
            provider=self.provider,
            credential_id=cred,
            model=self.request.model,
            status="success",
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=response_usage.prompt_tokens if response_usage else 0,
            completion_tokens=response_usage.completion_tokens if response_usage else 0,
        )


def _persist_permanent_failure(credential: Credential, error: ProviderError) -> None:
    """A bad key stays out of the pool until an admin re-enables it, across restarts too."""
    if isinstance(credential, ApiKey):
        key = ApiKey.objects.get(pk=credential.pk)
        if key.state != ApiKey.State.INVALID:
            key.last_error_type = error.type
            key.last_failure_at = timezone.now()
            key.save(update_fields=["last_error_type", "last_failure_at"])
            api_key_set_state(key=key, state=ApiKey.State.INVALID, actor=None, reason=error.type)
    else:
        OAuthCredential.objects.filter(pk=credential.pk).update(
            state=OAuthCredential.State.NEEDS_REAUTH,
            last_error_type=error.type,
            last_failure_at=timezone.now(),
        )
    credentials_forget(credential.provider_id)


def request_deadline(provider: Provider, deadline: float | None = None) -> float:
    """The request's absolute deadline (``time.monotonic()``): the provider's total from
    now, or ``deadline`` (the caller's, e.g. what failover to this candidate has left)
    when that comes first."""
    own = time.monotonic() + provider_deadlines(provider).total
    return own if deadline is None else min(own, deadline)


async def _prepare(
    provider: Provider, request: ProviderRequest, tenant_id: int | None
) -> tuple[_Attempt, list[str]]:
    credentials = await usable_credentials_cached(provider, tenant_id)
    if not credentials:
        raise AllKeysExhaustedError(
            f"{provider.name}: no usable credential", provider=provider.name
        )
    by_id = {credential_id(c): c for c in credentials}
    return _Attempt(provider, request, by_id, resilience_for(provider)), list(by_id)


T = TypeVar("T")


async def _over_credentials(
    provider: Provider,
    request: ProviderRequest,
    *,
    tenant_id: int | None,
    trace: dict[str, str] | None,
    deadline: float,
    use: Callable[[_Attempt, BaseAdapter, str, str, float], Awaitable[T]],
) -> tuple[_Attempt, T]:
    """The credential loop replies and streams share: each try takes a credential from
    the pool, names it in ``trace``, builds its adapter and hands it to ``use`` (a whole
    reply, or a stream up to its first chunk); a provider error is counted in the metrics
    and left to ``call_with_failover`` to retry on the next credential, by ``deadline``."""
    attempt, candidates = await _prepare(provider, request, tenant_id)

    async def operation(cred: str) -> T:
        started = time.perf_counter()
        if trace is not None:
            trace["credential_id"] = cred
        try:
            adapter, tracked = await attempt.adapter(cred)
            return await use(attempt, adapter, cred, tracked, started)
        except ProviderError as error:
            await attempt.failed(cred, error, started)
            raise

    res = attempt.res
    answer = await call_with_failover(
        pool=res.pool,
        candidates=candidates,
        operation=operation,
        breaker=res.breaker,
        max_attempts=res.max_attempts,
        retry=res.retry,
        deadline=deadline,
        model=request.model,
        on_invalid=attempt.invalid,
        # the tracker's two keys per candidate ride on the pool's read (one round trip
        # instead of two); for a long list of credentials, reading two keys of each costs
        # more than the chosen one's own read afterwards
        reads=attempt if len(candidates) <= READ_ALONG_MAX_CANDIDATES else None,
    )
    return attempt, answer


async def provider_chat(
    provider: Provider,
    request: ChatRequest,
    *,
    tenant_id: int | None = None,
    trace: dict[str, str] | None = None,
    deadline: float | None = None,
) -> ChatResponse:
    """One reply from ``provider``, using the organisation's credentials and ``tenant_id``'s own.
    ``trace["credential_id"]`` tells the caller which credential answered (for usage records).
    ``deadline`` (``time.monotonic()``) is the caller's budget, see ``request_deadline``."""
    until = request_deadline(provider, deadline)

    async def reply(
        attempt: _Attempt, adapter: BaseAdapter, cred: str, tracked: str, started: float
    ) -> ChatResponse:
        response = await adapter.chat(request, deadline=until)
        await attempt.res.tracker.update(tracked, response.rate_limit)
        attempt.succeeded(cred, response.usage, started)
        return response

    _, response = await _over_credentials(
        provider, request, tenant_id=tenant_id, trace=trace, deadline=until, use=reply
    )
    return response


async def provider_stream(
    provider: Provider,
    request: ChatRequest,
    *,
    tenant_id: int | None = None,
    trace: dict[str, str] | None = None,
    deadline: float | None = None,
) -> AsyncGenerator[ChatChunk, None]:
    """Chunks as they arrive. Failover covers opening the stream and its first chunk only:
    once a chunk has gone to the caller, a failure is the caller's to see. The stream,
    its retries included, ends by ``deadline`` (see ``request_deadline``)."""
    until = request_deadline(provider, deadline)

    async def open_stream(
        attempt: _Attempt, adapter: BaseAdapter, cred: str, tracked: str, started: float
    ) -> tuple[str, ChatStream, ChatChunk | None, float, str]:
        stream = adapter.stream(request, deadline=until)
        try:
            first: ChatChunk | None = await stream.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await stream.aclose()
            raise
        return cred, stream, first, started, tracked

    attempt, (cred, stream, first, started, tracked) = await _over_credentials(
        provider, request, tenant_id=tenant_id, trace=trace, deadline=until, use=open_stream
    )
    res = attempt.res
    usage = None
    try:
        if first is not None:
            usage = first.usage or usage
            yield first
        async for chunk in stream:
            usage = chunk.usage or usage
            yield chunk
    except ProviderError as error:
        await attempt.failed(cred, error, started)
        if await res.pool.report_failure(cred, error, model=request.model):
            await attempt.invalid(cred, error)
        raise
    finally:
        await stream.aclose()
    await res.tracker.update(tracked, stream.rate_limit)
    attempt.succeeded(cred, usage, started)
