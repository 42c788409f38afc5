"""The console's Providers and Credentials pages (staff only).

Views stay thin: a form parses, a service decides, writes and audits, a
template renders. Views that wait on a provider (health checks, live key
tests, model discovery, device-code polls, token refreshes) are ``async def``
so that waiting never holds one of the server's threads; their ORM work and
template rendering (whose context processors query) go through
``sync_to_async``.

Nothing secret is ever put in a context: API keys and OAuth accounts show a
label and their last four characters, the OAuth client secret only whether
one is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import aget_object_or_404, get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from aipk_site.console.access import staff_required
from aipk_site.infra.client_ip import client_ip
from providers_app.console_forms import (
    ApiKeyAddForm,
    ApiKeyRotateForm,
    ApiKeyStateForm,
    ProviderForm,
    validation_errors,
)
from providers_app.kit.oauth import OAuthError
from providers_app.models import (
    ApiKey,
    DiscoveredModel,
    OAuthCredential,
    OAuthFlow,
    Provider,
    ProviderType,
)
from providers_app.services.credentials import (
    CredentialError,
    api_key_add,
    api_key_rotate,
    api_key_set_state,
    api_key_test_live,
)
from providers_app.services.discovery import adiscover_models
from providers_app.services.health import (
    acheck_provider_health,
    current_health,
    health_alerts,
    health_history,
    latest_check,
)
from providers_app.services.oauth import (
    OAuthConfigError,
    device_poll,
    device_start,
    oauth_credential_disconnect,
    oauth_credential_refresh_now,
    oauth_endpoints,
    oauth_start,
)
from providers_app.services.provider_settings import ProviderSettingsError
from providers_app.services.providers import provider_create, provider_update

UNPROCESSABLE = 422
# device_poll's answers that mean "ask again later"
DEVICE_WAITING = ("pending", "slow_down")


async def arender(request: HttpRequest, template: str, context: dict, status: int = 200):
    return await sync_to_async(render)(request, template, context, status=status)


def _back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    """Back to the page an action was started from (a local ``next``), else ``default``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = default
    return redirect(target or default)


def _reason(exc: CredentialError) -> str:
    """A CredentialError's message without the field name it starts with."""
    return str(exc).removeprefix(f"{exc.field}: ")


def _credentials_url() -> str:
    return reverse("console:credentials")


# --------------------------------------------------------------------------- presentation


@dataclass
class KeyRow:
    """One API key as the console shows it: never its secret, a state badge."""

    key: ApiKey
    state: str  # badge class suffix: active, cooling_down, invalid, disabled, retiring, retired
    state_label: str
    until: datetime | None = None

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
    return [key_row(key) for key in keys]


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
    # OpenRouter's PKCE variant needs no client id; the others do
    needs_client = provider.type != ProviderType.OPENROUTER
    code = (
        provider.type != ProviderType.QWEN
        and bool(endpoints.authorize_url and endpoints.token_url)
        and (bool(endpoints.client_id) or not needs_client)
    )
    device = bool(endpoints.device_url and endpoints.token_url and endpoints.client_id)
    return OAuthOptions(provider=provider, code=code, device=device)


def _provider_credentials(provider: Provider) -> dict[str, Any]:
    keys = list(provider.api_keys.select_related("provider").order_by("created_at", "id"))
    accounts = list(
        provider.oauth_credentials.select_related("provider").order_by("created_at", "id")
    )
    return {"key_rows": key_rows(keys), "oauth_accounts": accounts}


# --------------------------------------------------------------------------- providers


@staff_required
def provider_list(request: HttpRequest) -> HttpResponse:
    providers = list(
        Provider.objects.annotate(
            key_count=Count("api_keys", distinct=True),
            oauth_count=Count("oauth_credentials", distinct=True),
            model_count=Count("models", distinct=True),
        ).order_by("name")
    )
    rows = [(provider, latest_check(provider)) for provider in providers]
    return render(
        request, "console/providers/list.html", {"nav_section": "providers", "rows": rows}
    )


@staff_required
def provider_add_choose_type(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "console/providers/choose_type.html",
        {"nav_section": "providers", "types": ProviderType.choices},
    )


def _provider_form_page(
    request: HttpRequest, form: ProviderForm, *, provider: Provider | None, status: int = 200
) -> HttpResponse:
    context = {
        "nav_section": "providers",
        "form": form,
        "provider": provider,
        "provider_type": form.provider_type,
        "type_label": ProviderType(form.provider_type).label,
    }
    return render(request, "console/providers/form.html", context, status=status)


def _save_provider(request: HttpRequest, form: ProviderForm, save: Callable[[dict], Provider]):
    """Run the service with the form's fields; its refusals become inline errors."""
    try:
        return save(form.service_fields())
    except ProviderSettingsError as exc:
        form.add_service_errors(exc.errors)
    except ValidationError as exc:
        form.add_service_errors(validation_errors(exc))
    return None


@staff_required
def provider_add(request: HttpRequest, provider_type: str) -> HttpResponse:
    if provider_type not in ProviderType.values:
        return redirect("console:provider_add_choose")
    if request.method != "POST":
        return _provider_form_page(
            request, ProviderForm(provider_type=provider_type), provider=None
        )
    form = ProviderForm(request.POST, provider_type=provider_type)
    provider = None
    if form.is_valid():
        provider = _save_provider(
            request,
            form,
            lambda fields: provider_create(
                name=form.cleaned_data["name"], type=provider_type, actor=request.user, **fields
            ),
        )
    if provider is None:
        return _provider_form_page(request, form, provider=None, status=UNPROCESSABLE)
    messages.success(request, f"Provider {provider.name} added.")
    return redirect("console:provider", pk=provider.pk)


@staff_required
def provider_edit(request: HttpRequest, pk: int) -> HttpResponse:
    provider = get_object_or_404(Provider, pk=pk)
    if request.method != "POST":
        form = ProviderForm(provider_type=provider.type, instance=provider)
        return _provider_form_page(request, form, provider=provider)
    form = ProviderForm(request.POST, provider_type=provider.type, instance=provider)
    saved = None
    if form.is_valid():
        saved = _save_provider(
            request,
            form,
            lambda fields: provider_update(provider=provider, actor=request.user, **fields),
        )
    if saved is None:
        # the service may have set attributes before refusing: show the stored provider
        provider.refresh_from_db()
        return _provider_form_page(request, form, provider=provider, status=UNPROCESSABLE)
    messages.success(request, f"Provider {saved.name} saved.")
    return redirect("console:provider", pk=saved.pk)


@staff_required
def provider_detail(request: HttpRequest, pk: int) -> HttpResponse:
    provider = get_object_or_404(Provider, pk=pk)
    health = current_health(provider)
    context = {
        "nav_section": "providers",
        "provider": provider,
        "type_label": ProviderType(provider.type).label,
        "health": health,
        "credential_checks": health.credentials,
        "history": list(health_history(provider, limit=20)),
        "alerts": list(health_alerts(provider=provider, limit=20)),
        "models": list(DiscoveredModel.objects.filter(provider=provider).order_by("model_id")),
        "oauth": oauth_options(provider),
        "oauth_endpoints": oauth_endpoints(provider),
        **_provider_credentials(provider),
    }
    return render(request, "console/providers/detail.html", context)


@staff_required
@require_POST
async def provider_test_connection(request: HttpRequest, pk: int) -> HttpResponse:
    """The health check, run now; the result replaces the button's neighbour (htmx)."""
    provider = await aget_object_or_404(Provider, pk=pk)
    check = await acheck_provider_health(provider)
    return await arender(
        request, "console/providers/_health_result.html", {"check": check, "provider": provider}
    )


@staff_required
@require_POST
async def provider_refresh_models(request: HttpRequest, pk: int) -> HttpResponse:
    provider = await aget_object_or_404(Provider, pk=pk)
    models = await adiscover_models(provider, refresh=True)
    if models and all(model.source == "static" for model in models):
        messages.warning(
            request,
            f"{provider.name} did not answer with its model list; "
            f"showing the built-in catalogue ({len(models)} models).",
        )
    else:
        messages.success(request, f"{len(models)} models discovered for {provider.name}.")
    return redirect("console:provider", pk=provider.pk)


# --------------------------------------------------------------------------- credentials


def _credentials_page(
    request: HttpRequest, *, add_form: ApiKeyAddForm | None = None, status: int = 200
) -> HttpResponse:
    keys = list(
        ApiKey.objects.select_related("provider", "tenant").order_by("provider__name", "id")
    )
    accounts = list(
        OAuthCredential.objects.select_related("provider", "tenant").order_by(
            "provider__name", "id"
        )
    )
    providers = list(Provider.objects.order_by("name"))
    if add_form is None:
        initial = {}
        wanted = request.GET.get("provider", "")
        if wanted.isdigit():
            initial["provider"] = int(wanted)
        add_form = ApiKeyAddForm(initial=initial)
    context = {
        "nav_section": "credentials",
        "key_rows": key_rows(keys),
        "oauth_accounts": accounts,
        "oauth_providers": [o for o in map(oauth_options, providers) if o.any],
        "add_form": add_form,
        "show_provider": True,
    }
    return render(request, "console/credentials/list.html", context, status=status)


@staff_required
def credential_list(request: HttpRequest) -> HttpResponse:
    return _credentials_page(request)


@staff_required
@require_POST
def api_key_add_view(request: HttpRequest) -> HttpResponse:
    form = ApiKeyAddForm(request.POST)
    if form.is_valid():
        try:
            key = api_key_add(
                provider=form.cleaned_data["provider"],
                label=form.cleaned_data["label"],
                secret=form.cleaned_data["secret"],
                actor=request.user,
            )
        except CredentialError as exc:
            form.add_service_errors({exc.field: _reason(exc)})
        else:
            messages.success(
                request, f"API key {key.label} (…{key.last4}) added to {key.provider.name}."
            )
            return _back(request, _credentials_url())
    return _credentials_page(request, add_form=form, status=UNPROCESSABLE)


@staff_required
@require_POST
async def api_key_test(request: HttpRequest, pk: int) -> HttpResponse:
    """A live request with this key (its model list); the result shows inline (htmx)."""
    key = await aget_object_or_404(ApiKey, pk=pk)
    ok, error_type = await api_key_test_live(key)
    return await arender(
        request,
        "console/credentials/_key_test_result.html",
        {"key": key, "ok": ok, "error_type": error_type, "tested_at": timezone.now()},
    )


@staff_required
@require_POST
def api_key_state(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey.objects.select_related("provider"), pk=pk)
    form = ApiKeyStateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown state: choose active or disabled.")
        return _back(request, _credentials_url())
    state = form.cleaned_data["state"]
    if key.state == ApiKey.State.RETIRED:
        messages.error(request, f"API key {key.label} is retired and stays retired.")
        return _back(request, _credentials_url())
    verb = "re-enabled" if state == ApiKey.State.ACTIVE else "disabled"
    api_key_set_state(key=key, state=state, actor=request.user, reason=f"console: {verb}")
    messages.success(request, f"API key {key.label} (…{key.last4}) {verb}.")
    return _back(request, _credentials_url())


@staff_required
def api_key_rotate_view(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey.objects.select_related("provider"), pk=pk)
    form = ApiKeyRotateForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                new_key = api_key_rotate(
                    key=key,
                    new_secret=form.cleaned_data["new_secret"],
                    label=form.cleaned_data["label"],
                    grace_seconds=form.cleaned_data["grace_minutes"] * 60,
                    actor=request.user,
                )
            except CredentialError as exc:
                form.add_service_errors({exc.field: _reason(exc)})
            else:
                key.refresh_from_db()
                until = timezone.localtime(key.retire_at).strftime("%Y-%m-%d %H:%M %Z")
                messages.success(
                    request,
                    f"New key {new_key.label} (…{new_key.last4}) is active; "
                    f"{key.label} (…{key.last4}) keeps serving until {until}.",
                )
                return _back(request, _credentials_url())
        status = UNPROCESSABLE
    context = {
        "nav_section": "credentials",
        "key": key,
        "row": key_rows([key])[0],
        "form": form,
        "next": request.POST.get("next") or request.GET.get("next", ""),
    }
    return render(request, "console/credentials/rotate.html", context, status=status)


# --------------------------------------------------------------------------- OAuth accounts


@staff_required
@require_POST
def oauth_connect(request: HttpRequest, provider_pk: int) -> HttpResponse:
    """Authorization code + PKCE: off to the provider, back at /oauth/callback/<name>/."""
    provider = get_object_or_404(Provider, pk=provider_pk)
    redirect_uri = request.build_absolute_uri(reverse("oauth-callback", args=[provider.name]))
    try:
        url = oauth_start(provider=provider, redirect_uri=redirect_uri, actor=request.user)
    except OAuthConfigError as exc:
        messages.error(request, f"{provider.name} cannot start an OAuth connection: {exc}")
        return _back(request, _credentials_url())
    return HttpResponseRedirect(url)


@staff_required
@require_POST
async def oauth_device_start(request: HttpRequest, provider_pk: int) -> HttpResponse:
    provider = await aget_object_or_404(Provider, pk=provider_pk)
    try:
        flow = await device_start(provider=provider, actor=request.user)
    except OAuthConfigError as exc:
        messages.error(request, f"{provider.name} cannot start a device code: {exc}")
        return _back(request, _credentials_url())
    except OAuthError as exc:
        messages.error(
            request, f"{provider.name}'s authorisation server refused a device code ({exc.error})."
        )
        return _back(request, _credentials_url())
    return redirect("console:oauth_device", flow_pk=flow.pk)


async def _device_context(flow: OAuthFlow) -> dict[str, Any]:
    """Poll once (the service keeps to the interval) and describe where the flow stands."""
    error = ""
    try:
        status = await device_poll(flow=flow)
    except OAuthError as exc:
        # a retryable error leaves the flow pending: keep polling; others end it
        status = "pending" if exc.retryable else "error"
        error = exc.error
    flow = await OAuthFlow.objects.select_related("provider", "oauth_credential").aget(pk=flow.pk)
    return {
        "flow": flow,
        "status": status,
        "error": error,
        "polling": status in DEVICE_WAITING,
        "credential": flow.oauth_credential,
    }


async def _device_flow(pk: int) -> OAuthFlow:
    return await aget_object_or_404(
        OAuthFlow.objects.select_related("provider"), pk=pk, kind=OAuthFlow.Kind.DEVICE_CODE
    )


@staff_required
async def oauth_device(request: HttpRequest, flow_pk: int) -> HttpResponse:
    """The device-code page: the user code, the verification link, and a status that polls."""
    context = await _device_context(await _device_flow(flow_pk))
    context["nav_section"] = "credentials"
    return await arender(request, "console/credentials/device.html", context)


@staff_required
@require_POST
async def oauth_device_poll(request: HttpRequest, flow_pk: int) -> HttpResponse:
    context = await _device_context(await _device_flow(flow_pk))
    return await arender(request, "console/credentials/_device_status.html", context)


@staff_required
@require_POST
async def oauth_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    credential = await aget_object_or_404(OAuthCredential, pk=pk)
    try:
        credential = await oauth_credential_refresh_now(
            credential_id=credential.pk, actor=request.user, ip_address=client_ip(request)
        )
    except OAuthError as exc:
        messages.error(
            request, f"Refreshing {credential.account_label} failed ({exc.error}); see its state."
        )
    else:
        expires = (
            timezone.localtime(credential.expires_at).strftime("%Y-%m-%d %H:%M %Z")
            if credential.expires_at
            else "no expiry"
        )
        messages.success(
            request, f"{credential.account_label} refreshed (…{credential.last4}, {expires})."
        )
    return _back(request, _credentials_url())


@staff_required
@require_POST
def oauth_disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    credential = get_object_or_404(OAuthCredential.objects.select_related("provider"), pk=pk)
    if credential.state == OAuthCredential.State.REVOKED:
        messages.info(request, f"{credential.account_label} is already disconnected.")
        return _back(request, _credentials_url())
    oauth_credential_disconnect(
        credential=credential, actor=request.user, ip_address=client_ip(request)
    )
    messages.success(
        request, f"{credential.account_label} ({credential.provider.name}) disconnected."
    )
    return _back(request, _credentials_url())
