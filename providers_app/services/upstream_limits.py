"""What providers last said about each credential's limits, read back for the API.

The request path already remembers every rate-limit header it sees: the kit's
``RateLimitTracker`` keeps one snapshot per (provider, credential, model) in the shared
store (Redis in production), plus the "retry until" of a 429. This module only reads
those entries -- nothing is added to the request path.

The store cannot list its keys (the embedded cache has no scan), so the models asked
about are the ones aipk knows the provider serves: its discovered catalogue, its
default model and the adapter's static catalogue. Limits learnt on a model outside
these are not shown. A snapshot lives until its latest window resets (at most two
days): an empty list means nothing is known right now, not "no limits".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async

from providers_app.kit.providers import ADAPTERS
from providers_app.kit.ratelimit import RateLimitTracker
from providers_app.kit.ratelimit.headers import RateLimitInfo
from providers_app.models import ApiKey, DiscoveredModel, OAuthCredential, Provider
from providers_app.services.pools import credential_id
from providers_app.services.shared_state import provider_state_store

Credential = ApiKey | OAuthCredential


@dataclass(frozen=True, slots=True)
class LimitWindow:
    name: str  # requests, tokens, input_tokens, output_tokens, requests_day, tokens_minute
    limit: int | None
    remaining: int | None
    resets_at: datetime | None


@dataclass(frozen=True, slots=True)
class ModelLimits:
    model: str
    observed_at: datetime | None
    windows: list[LimitWindow]
    # a 429's retry-after: no request goes to this model on this credential until then
    retry_after_until: datetime | None


def tracked_key(provider_id: int, cred: str, model: str) -> str:
    """The tracker's key for one credential and model: the very format of the request
    path's (providers_app/services/chat.py, ``_Attempt.tracked``); the API tests read
    back what a real request through the gateway stored, so a drift fails them."""
    return f"{provider_id}:{cred}:{model}"


def _when(timestamp: Any) -> datetime | None:
    if isinstance(timestamp, int | float):
        return datetime.fromtimestamp(timestamp, UTC)
    return None


def known_models(provider: Provider) -> list[str]:
    """The models whose limits are looked up: discovered, default, static catalogue."""
    adapter = ADAPTERS.get(provider.type)
    names = [
        *DiscoveredModel.objects.filter(provider=provider).values_list("model_id", flat=True),
        provider.default_model,
        *(info.id for info in (adapter.static_models if adapter is not None else ())),
    ]
    return list(dict.fromkeys(name for name in names if name))


def _model_limits(
    model: str, snapshot: dict[str, Any] | None, retry: dict[str, Any] | None, now: float
) -> ModelLimits | None:
    if snapshot is not None and (snapshot.get("expires_at") or now + 1) <= now:
        snapshot = None  # the store's TTL would have dropped it a moment later
    retry_until = retry.get("until") if retry else None
    if not isinstance(retry_until, int | float) or retry_until <= now:
        retry_until = None
    if snapshot is None and retry_until is None:
        return None
    info = RateLimitInfo.from_dict(snapshot or {})
    return ModelLimits(
        model=model,
        observed_at=_when(info.observed_at),
        windows=[
            LimitWindow(name, limit, remaining, _when(reset_at))
            for name, limit, remaining, reset_at in info.windows()
        ],
        retry_after_until=_when(retry_until),
    )


async def acredentials_upstream_limits(
    provider: Provider, credentials: Sequence[Credential], models: Iterable[str]
) -> dict[int, list[ModelLimits]]:
    """``{credential pk: [limits per model]}`` in one read of the shared store."""
    store = provider_state_store()
    tracker = RateLimitTracker(store)
    wanted: list[tuple[int, str, str, str]] = []
    for credential in credentials:
        cred = credential_id(credential)
        for model in models:
            snapshot_key, retry_key = tracker.read_keys(tracked_key(provider.pk, cred, model))
            wanted.append((credential.pk, model, snapshot_key, retry_key))
    keys = [key for _, _, snapshot_key, retry_key in wanted for key in (snapshot_key, retry_key)]
    found = await store.get_many(keys) if keys else {}
    now = datetime.now(UTC).timestamp()
    limits: dict[int, list[ModelLimits]] = {credential.pk: [] for credential in credentials}
    for pk, model, snapshot_key, retry_key in wanted:
        entry = _model_limits(model, found.get(snapshot_key), found.get(retry_key), now)
        if entry is not None:
            limits[pk].append(entry)
    return limits


async def aapi_keys_upstream_limits(keys: Sequence[ApiKey]) -> dict[int, list[ModelLimits]]:
    """The limits of API keys of any providers (each key's ``provider`` loaded)."""
    by_provider: dict[int, tuple[Provider, list[ApiKey]]] = {}
    for key in keys:
        by_provider.setdefault(key.provider_id, (key.provider, []))[1].append(key)
    limits: dict[int, list[ModelLimits]] = {}
    for provider, provider_keys in by_provider.values():
        models = await sync_to_async(known_models)(provider)
        limits.update(await acredentials_upstream_limits(provider, provider_keys, models))
    return limits
