"""Provider accounts with their keys, for staff."""

from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema

from aipk_site.infra.access import require_staff
from providers_app.api.schemas import ApiKeyOut
from providers_app.models import Provider

router = Router(tags=["providers"])


class ProviderOut(Schema):
    name: str
    type: str
    base_url: str
    default_model: str
    enabled: bool
    key_strategy: str
    settings: dict
    api_keys: list[ApiKeyOut]


def provider_out(provider: Provider) -> dict[str, Any]:
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


@router.get("/", response=list[ProviderOut])
def list_providers(request: HttpRequest) -> list[dict[str, Any]]:
    require_staff(request.auth)
    return [provider_out(p) for p in Provider.objects.prefetch_related("api_keys")]


@router.get("/{name}", response=ProviderOut)
def get_provider(request: HttpRequest, name: str) -> dict[str, Any]:
    require_staff(request.auth)
    return provider_out(get_object_or_404(Provider, name=name))
