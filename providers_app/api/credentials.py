"""A provider's API keys, for staff: list them with their last known upstream limits, add,
rotate with a grace period, test live, disable or re-enable by hand, and (OpenRouter)
ask for a key's credit."""

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status

from aipk_site.infra.access import require_staff
from providers_app.api.schemas import (
    ApiKeyLimitsOut,
    ApiKeyOut,
    KeyCreditsOut,
    api_key_limits_out,
)
from providers_app.models import ApiKey, Provider
from providers_app.services.credentials import (
    api_key_add,
    api_key_rotate,
    api_key_set_state,
    api_key_test_live,
)
from providers_app.services.credits import aapi_key_credits
from providers_app.services.upstream_limits import aapi_keys_upstream_limits

# mounted beside the providers router, under /providers
router = Router(tags=["providers"])


class ApiKeyIn(Schema):
    label: str = Field(min_length=1, max_length=100)
    secret: str = Field(min_length=8, max_length=4096)


class RotateIn(Schema):
    secret: str = Field(min_length=8, max_length=4096)
    label: str = Field(default="", max_length=100)
    grace_seconds: int = Field(default=3600, ge=0, le=30 * 24 * 3600)


class StateIn(Schema):
    state: ApiKey.State
    reason: str = Field(default="", max_length=200)


class LiveTestOut(Schema):
    ok: bool
    error_type: str


def _key(provider_name: str, key_id: int) -> ApiKey:
    return get_object_or_404(
        ApiKey.objects.select_related("provider", "tenant"), pk=key_id, provider__name=provider_name
    )


def _keys(provider_name: str) -> list[ApiKey]:
    provider = get_object_or_404(Provider, name=provider_name)
    return list(provider.api_keys.select_related("provider", "tenant"))


@router.get("/{name}/keys", response=list[ApiKeyLimitsOut])
async def list_keys(request: HttpRequest, name: str) -> list[dict[str, Any]]:
    """Every key of the provider, each with what the provider's last answers said of its
    limits (per model)."""
    require_staff(request.auth)
    keys = await sync_to_async(_keys)(name)
    limits = await aapi_keys_upstream_limits(keys)
    return [api_key_limits_out(key, limits[key.pk]) for key in keys]


@router.get("/{name}/keys/{key_id}", response=ApiKeyLimitsOut)
async def get_key(request: HttpRequest, name: str, key_id: int) -> dict[str, Any]:
    require_staff(request.auth)
    key = await sync_to_async(_key)(name, key_id)
    limits = await aapi_keys_upstream_limits([key])
    return api_key_limits_out(key, limits[key.pk])


@router.get("/{name}/keys/{key_id}/credits", response=KeyCreditsOut)
async def key_credits(request: HttpRequest, name: str, key_id: int) -> dict[str, Any]:
    """OpenRouter only (400 ``provider`` for any other type): the key's credit, asked of
    OpenRouter at most once a minute."""
    require_staff(request.auth)
    key = await sync_to_async(_key)(name, key_id)
    return await aapi_key_credits(key=key, provider=key.provider)


@router.post("/{name}/keys", response={201: ApiKeyOut})
def add_key(request: HttpRequest, name: str, payload: ApiKeyIn) -> Status:
    require_staff(request.auth)
    provider = get_object_or_404(Provider, name=name)
    return Status(
        201,
        api_key_add(
            provider=provider, label=payload.label, secret=payload.secret, actor=request.auth
        ),
    )


@router.post("/{name}/keys/{key_id}/rotate", response={201: ApiKeyOut})
def rotate_key(request: HttpRequest, name: str, key_id: int, payload: RotateIn) -> Status:
    require_staff(request.auth)
    new_key = api_key_rotate(
        key=_key(name, key_id),
        new_secret=payload.secret,
        label=payload.label,
        grace_seconds=payload.grace_seconds,
        actor=request.auth,
    )
    return Status(201, new_key)


@router.post("/{name}/keys/{key_id}/test", response=LiveTestOut)
async def test_key(request: HttpRequest, name: str, key_id: int) -> dict[str, Any]:
    # request.auth, not request.auser(): the session's user is not the caller when an
    # admin token authenticated the request
    require_staff(request.auth)
    key = await sync_to_async(_key)(name, key_id)
    ok, error_type = await api_key_test_live(key)
    return {"ok": ok, "error_type": error_type}


@router.post("/{name}/keys/{key_id}/state", response=ApiKeyOut)
def set_key_state(request: HttpRequest, name: str, key_id: int, payload: StateIn) -> ApiKey:
    require_staff(request.auth)
    return api_key_set_state(
        key=_key(name, key_id), state=payload.state, actor=request.auth, reason=payload.reason
    )
