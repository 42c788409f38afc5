"""A tenant's own provider keys (the ones staff scoped to it): what the providers last
said of their limits, and an OpenRouter key's credit. Every member may read them; the
organisation's shared keys and other tenants' are not here (staff see every key under
/api/providers/{name}/keys). Secrets never: a key is its label and last four characters."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router

from providers_app.api.schemas import ApiKeyLimitsOut, KeyCreditsOut, api_key_limits_out
from providers_app.models import ApiKey
from providers_app.services.credits import aapi_key_credits
from providers_app.services.upstream_limits import aapi_keys_upstream_limits
from tenants_app.auth import tenant_access

router = Router(tags=["tenants"])


def _own_keys(request: HttpRequest, slug: str) -> list[ApiKey]:
    tenant = tenant_access(request, slug).tenant
    return list(ApiKey.objects.filter(tenant=tenant).select_related("provider", "tenant"))


def _own_key(request: HttpRequest, slug: str, key_id: int) -> ApiKey:
    tenant = tenant_access(request, slug).tenant
    return get_object_or_404(
        ApiKey.objects.select_related("provider", "tenant"), pk=key_id, tenant=tenant
    )


@router.get("/{slug}/credentials", response=list[ApiKeyLimitsOut])
async def list_own_credentials(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    keys = await sync_to_async(_own_keys)(request, slug)
    limits = await aapi_keys_upstream_limits(keys)
    return [api_key_limits_out(key, limits[key.pk]) for key in keys]


@router.get("/{slug}/credentials/{key_id}/credits", response=KeyCreditsOut)
async def own_credential_credits(request: HttpRequest, slug: str, key_id: int) -> dict[str, Any]:
    """OpenRouter keys only (400 ``provider`` for any other type)."""
    key = await sync_to_async(_own_key)(request, slug, key_id)
    return await aapi_key_credits(key=key, provider=key.provider)
