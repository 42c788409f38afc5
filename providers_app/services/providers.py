"""Creating and changing providers, and turning a provider + credential into a kit adapter."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction

from aipk_site.infra.audit import audit_record
from providers_app.kit.adapters import BaseAdapter, Deadlines, ProviderConfig
from providers_app.kit.http_client import pooled_client
from providers_app.kit.providers import ADAPTERS, PROFILES, create_adapter, provider_profile
from providers_app.models import ApiKey, OAuthCredential, Provider
from providers_app.services.provider_settings import (
    ProviderSettingsError,
    validate_provider_settings,
)

EDITABLE_FIELDS = (
    "base_url",
    "default_model",
    "settings",
    "timeout_seconds",
    "enabled",
    "key_strategy",
    "oauth_client_id",
    "oauth_authorize_url",
    "oauth_token_url",
    "oauth_device_url",
    "oauth_scopes",
)


def _clean(provider_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Known fields only, settings validated for the type; raises naming the bad field."""
    unknown = set(fields) - set(EDITABLE_FIELDS) - {"oauth_client_secret"}
    if unknown:
        raise ProviderSettingsError({field: "unknown field" for field in sorted(unknown)})
    if provider_type not in PROFILES:
        raise ProviderSettingsError({"type": f"must be one of {', '.join(PROFILES)}"})
    if "settings" in fields:
        fields["settings"] = validate_provider_settings(provider_type, fields["settings"])
    if (
        provider_profile(provider_type).requires_base_url
        and "base_url" in fields
        and not fields["base_url"]
    ):
        raise ProviderSettingsError({"base_url": f"an {provider_type} provider needs a base URL"})
    return fields


def _save_audited(
    provider: Provider, *, action: str, actor: Any, fields: dict[str, Any]
) -> Provider:
    provider.full_clean()
    provider.save()
    changes = {k: v for k, v in fields.items() if k != "oauth_client_secret"}
    audit_record(action=action, obj=provider, actor=actor, changes=changes)
    return provider


@transaction.atomic
def provider_create(*, name: str, type: str, actor: Any = None, **fields: Any) -> Provider:
    fields.setdefault("settings", {})
    if type in PROFILES and PROFILES[type].requires_base_url:
        fields.setdefault("base_url", "")
    provider = Provider(name=name, type=type, **_clean(type, fields))
    return _save_audited(provider, action="provider.create", actor=actor, fields=fields)


@transaction.atomic
def provider_update(*, provider: Provider, actor: Any = None, **fields: Any) -> Provider:
    for field, value in _clean(provider.type, dict(fields)).items():
        setattr(provider, field, value)
    return _save_audited(provider, action="provider.update", actor=actor, fields=fields)


# provider id -> (settings dict, timeout_seconds, deadlines): read for every request (its
# deadline) from the same Provider object of the routing snapshot, so kept until either
# field is replaced (provider_update assigns a new, validated settings dict).
_deadlines: dict[int, tuple[Any, Any, Deadlines]] = {}


def provider_deadlines(provider: Provider) -> Deadlines:
    """The provider's deadlines: the kit's defaults (the official SDKs'), overridden by
    ``settings["timeouts"]``; ``timeout_seconds`` is the total when set."""
    hit = _deadlines.get(provider.pk)
    if hit is not None and hit[0] is provider.settings and hit[1] == provider.timeout_seconds:
        return hit[2]
    deadlines = _provider_deadlines(provider)
    if provider.pk is not None:
        _deadlines[provider.pk] = (provider.settings, provider.timeout_seconds, deadlines)
    return deadlines


def _provider_deadlines(provider: Provider) -> Deadlines:
    configured = (provider.settings or {}).get("timeouts") or {}
    deadlines = Deadlines(
        **{
            name: float(value)
            for name, value in configured.items()
            if name in Deadlines.__dataclass_fields__ and value
        }
    )
    if provider.timeout_seconds:
        deadlines = dataclasses.replace(deadlines, total=float(provider.timeout_seconds))
    return deadlines


def adapter_config(
    provider: Provider, credential: ApiKey | OAuthCredential | None = None
) -> ProviderConfig:
    """The kit configuration for one provider used with one credential."""
    settings = provider.settings or {}
    config = ProviderConfig(
        base_url=provider.base_url or None,
        default_model=provider.default_model or None,
        timeout=provider.timeout_seconds,
        deadlines=provider_deadlines(provider),
        name=provider.name,
        organization=settings.get("organization"),
        project_id=settings.get("project_id"),
        site_url=settings.get("site_url"),
        site_name=settings.get("site_name"),
    )
    if isinstance(credential, ApiKey):
        config.api_key = credential.secret
    elif isinstance(credential, OAuthCredential):
        config.access_token = credential.access_token
        config.access_token_expires_at = (
            credential.expires_at.timestamp() if credential.expires_at else None
        )
        account_base_url = provider_profile(provider.type).base_url_for_account
        if credential.resource_url and account_base_url and not provider.base_url:
            config.base_url = account_base_url(credential.resource_url)
    return config


# One pooled client per provider and event loop (httpx API on aiohttp's pool, which
# keeps its speed under concurrency where httpx's own does not -- see
# kit/http_client.py): a client's connections belong to the loop that opened them.
# This is a per-process connection pool, not shared state, so a process-local map is
# right here.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(provider: Provider) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    client = clients.get(provider.pk)
    if client is None or client.is_closed:
        # as many kept alive as may be open: under a burst, closing and reopening
        # connections above a smaller keep-alive limit costs more than holding them
        size = int(settings.UPSTREAM_MAX_CONNECTIONS)
        limits = httpx.Limits(
            max_connections=size, max_keepalive_connections=size, keepalive_expiry=5.0
        )
        client = clients[provider.pk] = pooled_client(limits)
    return client


def build_adapter(
    provider: Provider, credential: ApiKey | OAuthCredential | None = None, *, limiter: Any = None
) -> BaseAdapter:
    """An adapter for this provider and credential, on the provider's shared pooled client."""
    assert provider.type in ADAPTERS
    return create_adapter(
        provider.type,
        adapter_config(provider, credential),
        client=shared_client(provider),
        limiter=limiter,
    )
