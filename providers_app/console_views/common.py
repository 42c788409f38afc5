"""What the console's provider and credential pages share: rendering from async views,
the way back after an action, and rows that show a credential without its secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from providers_app.kit.providers import provider_profile
from providers_app.models import ApiKey, HealthCheck, Provider
from providers_app.services.credentials import CredentialError
from providers_app.services.health import latest_key_checks
from providers_app.services.oauth import oauth_endpoints

UNPROCESSABLE = 422
# device_poll's answers that mean "ask again later"
DEVICE_WAITING = ("pending", "slow_down")


async def arender(request: HttpRequest, template: str, context: dict, status: int = 200):
    return await sync_to_async(render)(request, template, context, status=status)


def back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    """Back to the page an action was started from (a local ``next``), else ``default``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = default
    return redirect(target or default)


def reason(exc: CredentialError) -> str:
    """A CredentialError's message without the field name it starts with."""
    return str(exc).removeprefix(f"{exc.field}: ")


def credentials_url() -> str:
    return reverse("console:credentials")


# --------------------------------------------------------------------------- presentation


@dataclass
class KeyRow:
    """One API key as the console shows it: never its secret, a state badge."""

    key: ApiKey
    state: str  # badge class suffix: active, cooling_down, invalid, disabled, retiring, retired
    state_label: str
    until: datetime | None = None
    check: HealthCheck | None = None  # its latest health check (a Test or the periodic one)

    @property
    def can_test(self) -> bool:
        return self.state != "retired"

    @property
    def can_disable(self) -> bool:
        return self.key.state in (ApiKey.State.ACTIVE, ApiKey.State.COOLING_DOWN)

    @property
    def can_enable(self) -> bool:
        return self.key.state in (ApiKey.State.INVALID, ApiKey.State.DISABLED)

    @property
    def can_rotate(self) -> bool:
        return self.key.state != ApiKey.State.RETIRED and self.key.retire_at is None


def key_row(key: ApiKey) -> KeyRow:
    if key.state == ApiKey.State.RETIRED:
        return KeyRow(key, "retired", "retired", key.retired_at)
    if key.state == ApiKey.State.DISABLED:
        return KeyRow(key, "disabled", "disabled")
    if key.state == ApiKey.State.INVALID:
        return KeyRow(key, "invalid", "invalid")
    if key.retire_at is not None:
        return KeyRow(key, "retiring", "retiring", key.retire_at)
    if key.state == ApiKey.State.COOLING_DOWN:
        return KeyRow(key, "cooling_down", "cooling down", key.cooling_down_until)
    return KeyRow(key, "active", "active")


def key_rows(keys: list[ApiKey]) -> list[KeyRow]:
    rows = [key_row(key) for key in keys]
    checks = latest_key_checks(keys)
    for row in rows:
        row.check = checks.get(row.key.pk)
    return rows


@dataclass
class OAuthOptions:
    """Which OAuth flows a provider can start with its configuration."""

    provider: Provider
    code: bool
    device: bool

    @property
    def any(self) -> bool:
        return self.code or self.device


def oauth_options(provider: Provider) -> OAuthOptions:
    endpoints = oauth_endpoints(provider)
    flows = provider_profile(provider.type).oauth
    code = (
        flows.code_flow is not None
        and bool(endpoints.authorize_url and endpoints.token_url)
        and (bool(endpoints.client_id) or not flows.code_needs_client_id)
    )
    device = bool(endpoints.device_url and endpoints.token_url and endpoints.client_id)
    return OAuthOptions(provider=provider, code=code, device=device)


def provider_credentials(provider: Provider) -> dict[str, Any]:
    keys = list(provider.api_keys.select_related("provider").order_by("created_at", "id"))
    accounts = list(
        provider.oauth_credentials.select_related("provider").order_by("created_at", "id")
    )
    return {"key_rows": key_rows(keys), "oauth_accounts": accounts}
