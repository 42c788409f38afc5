"""Model routing: the name a client calls → the (provider, model) candidates to try, in order.

A client names either an alias (a ModelRoute: the tenant's own, else the global
one with that alias) or a "<provider name>/<model id>" id, whose model id may
itself contain "/" ("openrouter/meta-llama/llama-3-8b"). An alias is looked up
first, so an alias that looks like a provider id wins over it.

This runs on every gateway request, so providers and routes are snapshots held
in each process's memory. A change (routes_changed, a provider saved or deleted)
publishes a change event (aipk_site/gateway/receivers.py) and every process drops
its snapshots at once; ``settings.ROUTING_CACHE_SECONDS`` is only a safety TTL for
an event lost while Redis was away. The
state several processes must share (the round-robin position, latency averages)
lives in the shared store (Redis in production), never in this module.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from aipk_site.infra import change_events
from aipk_site.infra.errors import InvalidRequest, NotFound, PermissionDenied, UpstreamError
from aipk_site.infra.snapshots import SnapshotTable
from aipk_site.infra.state import state_store
from providers_app.models import DiscoveredModel, Provider
from tenants_app.models import ModelRoute, RouteStrategy
from tenants_app.services.pricing import aprice_for

logger = logging.getLogger(__name__)


# Longer names are no alias or provider id (aliases ≤ 100, provider ≤ 64, model ≤ 200
# characters); refusing them early keeps a huge "model" out of error messages and keys.
MAX_MODEL_NAME_CHARS = 300

# Weight of the newest sample in the latency average: recent enough to follow a
# provider that slows down, smooth enough that one slow reply does not reorder a route.
LATENCY_EWMA_ALPHA = 0.3
# An average not refreshed for this long is forgotten, so a provider that was slow
# once is measured again instead of being last in line for ever.
LATENCY_TTL_SECONDS = 60 * 60
# The round-robin position only needs to outlive bursts of traffic; starting
# again from the first candidate after a quiet day is harmless.
ROUND_ROBIN_TTL_SECONDS = 24 * 60 * 60


@dataclass(frozen=True, slots=True)
class Candidate:
    provider: Provider  # a cached Provider instance (enabled); do not modify it
    model: str


@dataclass(frozen=True, slots=True)
class Resolution:
    alias: str  # the alias called, "" for provider/model ids
    strategy: str
    candidates: tuple[Candidate, ...]  # in the order to try


@dataclass(frozen=True, slots=True)
class _Route:
    id: int
    alias: str
    strategy: str
    candidates: tuple[tuple[str, str], ...]  # (provider name, model id)


@dataclass(frozen=True, slots=True)
class _Providers:
    by_name: dict[str, Provider]
    by_id: dict[int, Provider]


# --- per-process copies --------------------------------------------------------------


# "providers" -> every provider; ("routes", tenant id or None) -> that tenant's routes
_copies: SnapshotTable[Any, Any] = SnapshotTable("routing")

TOPIC = "routing"  # no payload: any route or provider changed


def routing_cache_clear() -> None:
    """Forget this process's copies of providers and routes (tests; a change calls
    ``routing_changed`` so every process forgets them)."""
    _copies.clear()


def routing_changed() -> None:
    """Call after changing a route or a provider: every process drops its copies."""
    change_events.publish(TOPIC)


# looked up at each event, so a test may replace routing_cache_clear to see it called
change_events.subscribe(TOPIC, lambda payload: routing_cache_clear())


def _read_providers() -> _Providers:
    providers = list(Provider.objects.all())
    return _Providers(by_name={p.name: p for p in providers}, by_id={p.pk: p for p in providers})


def _parse_route(route: ModelRoute) -> _Route:
    candidates = []
    for entry in route.candidates if isinstance(route.candidates, list) else []:
        provider = entry.get("provider") if isinstance(entry, dict) else None
        model = entry.get("model") if isinstance(entry, dict) else None
        if isinstance(provider, str) and isinstance(model, str) and provider and model:
            candidates.append((provider, model))
        else:
            # the management API validates routes; a hand-edited row must not break routing
            logger.warning("route %s: ignoring malformed candidate %r", route.pk, entry)
    return _Route(
        id=route.pk, alias=route.alias, strategy=route.strategy, candidates=tuple(candidates)
    )


def _read_routes(tenant_id: int | None) -> dict[str, _Route]:
    if tenant_id is None:
        rows = ModelRoute.objects.filter(tenant__isnull=True)
    else:
        rows = ModelRoute.objects.filter(tenant_id=tenant_id)
    return {route.alias: _parse_route(route) for route in rows}


async def _providers() -> _Providers:
    providers: _Providers = await _copies.get("providers", _read_providers)
    return providers


async def _routes(tenant_id: int | None) -> dict[str, _Route]:
    routes: dict[str, _Route] = await _copies.get(
        ("routes", tenant_id), lambda: _read_routes(tenant_id)
    )
    return routes


async def _visible_routes(tenant_id: int) -> dict[str, _Route]:
    """Global routes overlaid with the tenant's own (which shadow them by alias)."""
    return {**await _routes(None), **await _routes(tenant_id)}


# --- resolving -----------------------------------------------------------------------


def _usable(
    provider: Provider | None, allowed_provider_ids: frozenset[int] | None
) -> TypeGuard[Provider]:
    return (
        provider is not None
        and provider.enabled
        and (allowed_provider_ids is None or provider.pk in allowed_provider_ids)
    )


def _model_id_allowed(model_id: str, allowed_models: Sequence[str]) -> bool:
    """Whether a "<provider>/<model>" id is listed itself or by a "<provider>/*" wildcard."""
    if not allowed_models or model_id in allowed_models:
        return True
    provider_name, slash, rest = model_id.partition("/")
    return bool(slash and rest) and f"{provider_name}/*" in allowed_models


def _not_allowed(model: str) -> PermissionDenied:
    return PermissionDenied(
        f"This key may not use the model '{model}'.", code="model_not_allowed", param="model"
    )


def _not_found(model: str) -> NotFound:
    return NotFound(
        f"The model '{model}' does not exist or is not available to this key.",
        code="model_not_found",
        param="model",
    )


async def resolve_model(
    *,
    tenant_id: int,
    model: str,
    allowed_models: Sequence[str],
    allowed_provider_ids: frozenset[int] | None,
    ordered: bool = True,
) -> Resolution:
    """The candidates for ``model`` as ``tenant_id`` may use them, in the order to try.

    ``allowed_models`` is the key's list (empty = anything the tenant may use);
    ``allowed_provider_ids`` the tenant's providers (None = all; an empty set
    allows none). The key's list is checked before existence, so a restricted
    key cannot probe which names exist. ``ordered=False`` leaves the candidates as the
    route lists them: for a caller that only checks the model (count_tokens), so it
    neither advances a round-robin rotation nor reads prices or latencies."""
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model must be a non-empty string.", param="model")
    if len(model) > MAX_MODEL_NAME_CHARS:
        raise InvalidRequest(
            f"model must be at most {MAX_MODEL_NAME_CHARS} characters.", param="model"
        )

    route = (await _visible_routes(tenant_id)).get(model)
    providers = await _providers()

    if route is not None:
        if allowed_models and model not in allowed_models:
            raise _not_allowed(model)
        candidates = [
            Candidate(provider=providers.by_name[name], model=model_id)
            for name, model_id in route.candidates
            if _usable(providers.by_name.get(name), allowed_provider_ids)
        ]
        if not candidates:
            raise UpstreamError(
                f"No provider of the model '{model}' is available right now.",
                status=503,
                code="no_available_provider",
                param="model",
            )
        in_order = await _order(route, candidates) if ordered else tuple(candidates)
        return Resolution(alias=route.alias, strategy=route.strategy, candidates=in_order)

    provider_name, slash, model_id = model.partition("/")
    if not _model_id_allowed(model, allowed_models):
        raise _not_allowed(model)
    if not slash:
        raise _not_found(model)
    if not provider_name or not model_id:
        raise InvalidRequest(
            f"model '{model}' must be an alias or '<provider>/<model id>'.", param="model"
        )
    provider = providers.by_name.get(provider_name)
    if not _usable(provider, allowed_provider_ids):
        raise _not_found(model)
    return Resolution(
        alias="",
        strategy=RouteStrategy.FAILOVER.value,
        candidates=(Candidate(provider=provider, model=model_id),),
    )


async def _order(route: _Route, candidates: list[Candidate]) -> tuple[Candidate, ...]:
    if len(candidates) < 2:
        return tuple(candidates)
    if route.strategy == RouteStrategy.ROUND_ROBIN:
        return await _round_robin(route, candidates)
    if route.strategy == RouteStrategy.CHEAPEST_FIRST:
        return await _cheapest_first(candidates)
    if route.strategy == RouteStrategy.LOWEST_LATENCY:
        return await _lowest_latency(candidates)
    return tuple(candidates)


async def _round_robin(route: _Route, candidates: list[Candidate]) -> tuple[Candidate, ...]:
    # One counter per route in the shared store, so every process advances the same
    # rotation; the others stay behind the first as failover, in listed order.
    turn = await state_store().increment(f"route:{route.id}:rr", ttl=ROUND_ROBIN_TTL_SECONDS)
    start = (turn - 1) % len(candidates)
    return tuple(candidates[start:] + candidates[:start])


async def _cheapest_first(candidates: list[Candidate]) -> tuple[Candidate, ...]:
    def key(item: tuple[int, Candidate, Any]) -> tuple[int, Any, int]:
        index, _, price = item
        if price is None:
            return (1, 0, index)
        return (0, price.input_per_million + price.output_per_million, index)

    priced = [(i, c, await aprice_for(c.provider, c.model)) for i, c in enumerate(candidates)]
    return tuple(candidate for _, candidate, _ in sorted(priced, key=key))


def _latency_key(provider_id: int, model: str) -> str:
    # model ids may hold any character; a digest keeps the cache key short and valid
    digest = hashlib.sha256(model.encode()).hexdigest()[:24]
    return f"latency:{provider_id}:{digest}"


async def _lowest_latency(candidates: list[Candidate]) -> tuple[Candidate, ...]:
    keys = [_latency_key(c.provider.pk, c.model) for c in candidates]
    averages = await state_store().get_many(keys)

    def key(index: int) -> tuple[int, float, int]:
        ewma = (averages.get(keys[index]) or {}).get("ewma")
        if not isinstance(ewma, int | float):
            return (0, 0.0, index)  # unmeasured first, so it gets measured
        return (1, float(ewma), index)

    return tuple(candidates[i] for i in sorted(range(len(candidates)), key=key))


async def record_latency(*, provider_id: int, model: str, latency_ms: float) -> None:
    """Fold one measured latency into the shared average for (provider, model): one
    atomic step on the shared store (one Lua script on Redis), so no sample is lost."""
    if not isinstance(latency_ms, int | float) or not math.isfinite(latency_ms) or latency_ms < 0:
        return
    await state_store().fold_average(
        _latency_key(provider_id, model),
        float(latency_ms),
        alpha=LATENCY_EWMA_ALPHA,
        ttl=LATENCY_TTL_SECONDS,
    )


# --- listing -------------------------------------------------------------------------


async def models_for(
    *,
    tenant_id: int,
    allowed_models: Sequence[str],
    allowed_provider_ids: frozenset[int] | None,
) -> list[dict[str, Any]]:
    """What ``GET /v1/models`` shows a key: the aliases it may call that have a usable
    candidate, then the "<provider>/<model>" ids of its usable providers (discovered
    models plus each provider's default model), each list sorted by id."""
    providers = await _providers()
    usable = {p.pk: p for p in providers.by_id.values() if _usable(p, allowed_provider_ids)}
    by_name = {p.name: p for p in usable.values()}

    aliases = []
    for alias, route in sorted((await _visible_routes(tenant_id)).items()):
        if allowed_models and alias not in allowed_models:
            continue
        if any(name in by_name for name, _ in route.candidates):
            aliases.append({"id": alias, "owned_by": "aipk", "kind": "alias"})

    ids: dict[str, str] = {}
    discovered = DiscoveredModel.objects.filter(provider_id__in=list(usable)).values_list(
        "provider_id", "model_id"
    )
    async for provider_id, model_id in discovered:
        ids[f"{usable[provider_id].name}/{model_id}"] = usable[provider_id].name
    for provider in usable.values():
        if provider.default_model:
            ids[f"{provider.name}/{provider.default_model}"] = provider.name
    models = [
        {"id": model_id, "owned_by": owner, "kind": "model"}
        for model_id, owner in sorted(ids.items())
        if _model_id_allowed(model_id, allowed_models)
    ]
    return aliases + models
