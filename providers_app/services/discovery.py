"""Model discovery: what each provider offers, stored as DiscoveredModel rows.

A provider's list is fetched through its kit adapter, normalised (prices as
Decimal USD per million tokens), upserted, and remembered in the cache for
MODEL_DISCOVERY_CACHE_TTL (24 h) so the next call costs no upstream request.
When the fetch fails the adapter's static catalogue stands in (rows flagged
``source="static"``) unless an earlier successful fetch is stored: the last
list the provider really gave beats a catalogue. A fallback is remembered only
for MODEL_DISCOVERY_FALLBACK_TTL (5 minutes), so a recovered provider is
asked again soon.

The adapter calls are async; ``adiscover_models`` is the event-loop-friendly
entry point, ``discover_models`` the one for sync code (Celery, shell, tests).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from providers_app.kit import errors
from providers_app.kit.adapters import BaseAdapter
from providers_app.kit.providers import create_adapter
from providers_app.kit.types import ModelInfo
from providers_app.models import ApiKey, DiscoveredModel, OAuthCredential, Provider
from providers_app.services.providers import adapter_config, build_adapter

logger = logging.getLogger(__name__)

DEFAULT_CACHE_TTL = 24 * 60 * 60
DEFAULT_FALLBACK_TTL = 5 * 60
_PRICE_STEP = Decimal("0.000001")
_MAX_PRICE = Decimal("999999.999999")
_ROW_FIELDS = (
    "name",
    "context_window",
    "max_output_tokens",
    "supports_streaming",
    "supports_tools",
    "input_price_per_million",
    "output_price_per_million",
    "source",
    "discovered_at",
)


# -- shared with health checks ------------------------------------------------------------


def usable_credential(provider: Provider) -> ApiKey | OAuthCredential | None:
    """The first credential that may be used right now: active API keys (or ones whose
    cool-down is over) first, then active OAuth credentials. None if there is none."""
    now = timezone.now()
    key = (
        provider.api_keys.filter(
            Q(state=ApiKey.State.ACTIVE)
            | Q(state=ApiKey.State.COOLING_DOWN, cooling_down_until__lte=now)
        )
        .order_by("created_at", "id")
        .first()
    )
    if key is not None:
        return key
    return (
        provider.oauth_credentials.filter(state=OAuthCredential.State.ACTIVE)
        .order_by("created_at", "id")
        .first()
    )


@asynccontextmanager
async def provider_adapter(
    provider: Provider, credential: ApiKey | OAuthCredential | None, *, own_client: bool = False
) -> AsyncIterator[BaseAdapter]:
    """The kit adapter for a probe. ``own_client=True`` for a temporary event loop
    (sync callers): the adapter gets its own client and closes it; otherwise the
    provider's shared pooled client is used."""
    if not own_client:
        yield build_adapter(provider, credential)
        return
    adapter = create_adapter(provider.type, adapter_config(provider, credential))
    try:
        yield adapter
    finally:
        await adapter.aclose()


# -- discovery -------------------------------------------------------------------------------


def _cache_key(provider: Provider) -> str:
    # The provider's last change is part of the key: a new base URL or new
    # settings never reuse an old list, and a recreated database (new rows
    # with old ids) never meets a list cached for a row that no longer exists.
    version = int(provider.updated_at.timestamp() * 1_000_000) if provider.updated_at else 0
    return f"providers:models:{provider.pk}:{version}"


def _ttl(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def _price(value: float | None) -> Decimal | None:
    if value is None:
        return None
    try:
        price = Decimal(str(value)).quantize(_PRICE_STEP)
    except (InvalidOperation, ValueError):
        return None
    # Negative prices mean "variable" at some providers: unknown, not free.
    return price if Decimal(0) <= price <= _MAX_PRICE else None


def _row(provider: Provider, info: ModelInfo, now: Any) -> DiscoveredModel:
    return DiscoveredModel(
        provider=provider,
        model_id=info.id,
        name=(info.name or info.id)[:200],
        context_window=info.context_window
        if info.context_window and info.context_window > 0
        else None,
        max_output_tokens=info.max_output_tokens
        if info.max_output_tokens and info.max_output_tokens > 0
        else None,
        supports_streaming=info.supports_streaming,
        supports_tools=info.supports_tools,
        input_price_per_million=_price(info.input_price_per_million),
        output_price_per_million=_price(info.output_price_per_million),
        source=info.source,
        discovered_at=now,
    )


def _as_cached(row: DiscoveredModel) -> dict[str, Any]:
    """JSON-friendly (Redis-safe) form of one row, for the cache."""
    return {
        "id": row.model_id,
        "name": row.name,
        "context_window": row.context_window,
        "max_output_tokens": row.max_output_tokens,
        "supports_streaming": row.supports_streaming,
        "supports_tools": row.supports_tools,
        "input_price_per_million": None
        if row.input_price_per_million is None
        else str(row.input_price_per_million),
        "output_price_per_million": None
        if row.output_price_per_million is None
        else str(row.output_price_per_million),
        "source": row.source,
    }


@transaction.atomic
def _store(provider: Provider, infos: list[ModelInfo], *, fetched: bool) -> list[DiscoveredModel]:
    now = timezone.now()
    stored = DiscoveredModel.objects.filter(provider=provider)
    if not fetched and stored.filter(source="fetched").exists():
        # Keep the last list the provider really gave rather than the catalogue.
        return list(stored)
    rows = {info.id: _row(provider, info, now) for info in infos if info.id and len(info.id) <= 200}
    if fetched:
        # A model the provider no longer lists is gone.
        stored.exclude(model_id__in=list(rows)).delete()
    DiscoveredModel.objects.bulk_create(
        list(rows.values()),
        update_conflicts=True,
        unique_fields=["provider", "model_id"],
        update_fields=list(_ROW_FIELDS),
    )
    return list(DiscoveredModel.objects.filter(provider=provider))


async def adiscover_models(
    provider: Provider, *, refresh: bool = False, own_client: bool = False
) -> list[DiscoveredModel]:
    """Fetch (or, within the cache TTL, reuse) a provider's models and store them.

    ``refresh=True`` ignores the cache. Never raises for a provider failure: the
    static catalogue stands in."""
    key = _cache_key(provider)
    if not refresh and await cache.aget(key) is not None:
        stored = DiscoveredModel.objects.filter(provider=provider)
        return await sync_to_async(lambda: list(stored))()
    credential = await sync_to_async(usable_credential)(provider)
    async with provider_adapter(provider, credential, own_client=own_client) as adapter:
        try:
            infos = await adapter.fetch_models()
            fetched = bool(infos)
        except errors.ProviderError as exc:
            logger.warning(
                "model discovery failed provider=%s error_type=%s; using the static catalogue",
                provider.name,
                exc.type,
            )
            infos, fetched = [], False
        if not fetched:
            infos = [dataclasses.replace(m, source="static") for m in adapter.static_models]
    rows = await sync_to_async(_store)(provider, infos, fetched=fetched)
    ttl = (
        _ttl("MODEL_DISCOVERY_CACHE_TTL", DEFAULT_CACHE_TTL)
        if fetched
        else _ttl("MODEL_DISCOVERY_FALLBACK_TTL", DEFAULT_FALLBACK_TTL)
    )
    await cache.aset(key, [_as_cached(row) for row in rows], ttl)
    return rows


def discover_models(provider: Provider, *, refresh: bool = False) -> list[DiscoveredModel]:
    """Sync entry point (Celery tasks, management commands, tests)."""
    return async_to_sync(adiscover_models)(provider, refresh=refresh, own_client=True)


def discover_all_models(*, refresh: bool = True) -> dict[str, int]:
    """Discovery for every enabled provider; {provider name: models stored}.

    One provider's unexpected failure is logged and skipped: the others still run."""
    counts = {}
    for provider in Provider.objects.filter(enabled=True):
        try:
            counts[provider.name] = len(discover_models(provider, refresh=refresh))
        except Exception:
            logger.exception("model discovery crashed provider=%s", provider.name)
    return counts


# -- selectors ------------------------------------------------------------------------------


def cached_models(provider: Provider) -> list[dict[str, Any]] | None:
    """The normalised list as cached by the last discovery, or None when it expired."""
    return cache.get(_cache_key(provider))


async def acached_models(provider: Provider) -> list[dict[str, Any]] | None:
    """``cached_models`` for async code (e.g. the gateway's model list)."""
    return await cache.aget(_cache_key(provider))


def forget_models(provider: Provider) -> None:
    """Drop the cached list, e.g. after a credential was added (editing the
    provider itself already changes the cache key)."""
    cache.delete(_cache_key(provider))


def search_models(
    *,
    min_context: int | None = None,
    tools: bool | None = None,
    streaming: bool | None = None,
    provider: Provider | str | int | None = None,
    max_input_price: Decimal | float | str | None = None,
    max_output_price: Decimal | float | str | None = None,
) -> QuerySet[DiscoveredModel]:
    """Stored models of enabled providers matching every given condition, cheapest first.

    A model whose context window or price is unknown does not match a condition
    on it: it cannot be shown to meet it."""
    models = DiscoveredModel.objects.filter(provider__enabled=True).select_related("provider")
    if min_context is not None:
        models = models.filter(context_window__gte=min_context)
    if tools is not None:
        models = models.filter(supports_tools=tools)
    if streaming is not None:
        models = models.filter(supports_streaming=streaming)
    if isinstance(provider, Provider):
        models = models.filter(provider=provider)
    elif isinstance(provider, int):
        models = models.filter(provider_id=provider)
    elif provider is not None:
        models = models.filter(provider__name=provider)
    if max_input_price is not None:
        models = models.filter(input_price_per_million__lte=Decimal(str(max_input_price)))
    if max_output_price is not None:
        models = models.filter(output_price_per_million__lte=Decimal(str(max_output_price)))
    return models.order_by(
        F("input_price_per_million").asc(nulls_last=True), "provider__name", "model_id"
    )
