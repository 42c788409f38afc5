"""Management API for provider accounts and their API keys (staff only for now;
tenant roles and admin tokens arrive with the tenants issue). Operations are
thin: parse, call a service, render. Secrets go in, never out: a key is shown
as its label and last four characters."""

from __future__ import annotations

from datetime import datetime

from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import AuthorizationError
from ninja.security import django_auth

from providers_app.models import ApiKey, Provider
from providers_app.services.credentials import (
    api_key_add,
    api_key_rotate,
    api_key_set_state,
    api_key_test_live,
)

router = Router(tags=["providers"], auth=django_auth)


def _staff(request) -> None:
    if not request.user.is_staff:
        raise AuthorizationError()


class ApiKeyOut(Schema):
    id: int
    label: str
    last4: str
    state: str
    failure_count: int
    last_error_type: str
    created_at: datetime
    rotated_at: datetime | None
    retire_at: datetime | None
    retired_at: datetime | None


class ProviderOut(Schema):
    name: str
    type: str
    base_url: str
    default_model: str
    enabled: bool
    key_strategy: str
    settings: dict
    api_keys: list[ApiKeyOut]


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


def _provider_out(provider: Provider) -> dict:
    return {
        **{
            f: getattr(provider, f)
            for f in (
                "name",
                "type",
                "base_url",
                "default_model",
                "enabled",
                "key_strategy",
                "settings",
            )
        },
        "api_keys": list(provider.api_keys.all()),
    }


def _key(provider_name: str, key_id: int) -> ApiKey:
    return get_object_or_404(
        ApiKey.objects.select_related("provider"), pk=key_id, provider__name=provider_name
    )


@router.get("/", response=list[ProviderOut])
def list_providers(request):
    _staff(request)
    return [_provider_out(p) for p in Provider.objects.prefetch_related("api_keys")]


@router.get("/{name}", response=ProviderOut)
def get_provider(request, name: str):
    _staff(request)
    return _provider_out(get_object_or_404(Provider, name=name))


@router.post("/{name}/keys", response={201: ApiKeyOut})
def add_key(request, name: str, payload: ApiKeyIn):
    _staff(request)
    provider = get_object_or_404(Provider, name=name)
    return Status(
        201,
        api_key_add(
            provider=provider, label=payload.label, secret=payload.secret, actor=request.user
        ),
    )


@router.post("/{name}/keys/{key_id}/rotate", response={201: ApiKeyOut})
def rotate_key(request, name: str, key_id: int, payload: RotateIn):
    _staff(request)
    new_key = api_key_rotate(
        key=_key(name, key_id),
        new_secret=payload.secret,
        label=payload.label,
        grace_seconds=payload.grace_seconds,
        actor=request.user,
    )
    return Status(201, new_key)


@router.post("/{name}/keys/{key_id}/test", response=LiveTestOut)
async def test_key(request, name: str, key_id: int):
    from asgiref.sync import sync_to_async

    user = await request.auser()
    if not user.is_staff:
        raise AuthorizationError()
    key = await sync_to_async(_key)(name, key_id)
    ok, error_type = await api_key_test_live(key)
    return {"ok": ok, "error_type": error_type}


@router.post("/{name}/keys/{key_id}/state", response=ApiKeyOut)
def set_key_state(request, name: str, key_id: int, payload: StateIn):
    _staff(request)
    return api_key_set_state(
        key=_key(name, key_id), state=payload.state, actor=request.user, reason=payload.reason
    )
