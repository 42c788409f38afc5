"""The console's Providers pages: list, add (type first, then its form), edit, detail,
and the actions that wait on the provider (test connection, refresh models)."""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import aget_object_or_404, get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from aipk_site.infra.access import staff_required
from providers_app.console_forms import ProviderForm, validation_errors
from providers_app.models import ApiKey, DiscoveredModel, Provider, ProviderType
from providers_app.services.discovery import adiscover_models
from providers_app.services.health import (
    acheck_provider_health,
    current_health,
    health_alerts,
    health_history,
    latest_check,
)
from providers_app.services.oauth import oauth_endpoints
from providers_app.services.provider_settings import ProviderSettingsError
from providers_app.services.providers import provider_create, provider_update

from .common import UNPROCESSABLE, arender, oauth_options, provider_credentials


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
        # an API key's check is the one its Test button updates in place (by class)
        "credential_checks": [
            (credential, check, isinstance(credential, ApiKey))
            for credential, check in health.credentials
        ],
        "history": list(health_history(provider, limit=20)),
        "alerts": list(health_alerts(provider=provider, limit=20)),
        "models": list(DiscoveredModel.objects.filter(provider=provider).order_by("model_id")),
        "oauth": oauth_options(provider),
        "oauth_endpoints": oauth_endpoints(provider),
        **provider_credentials(provider),
    }
    return render(request, "console/providers/detail.html", context)


@staff_required
@require_POST
async def provider_test_connection(request: HttpRequest, pk: int) -> HttpResponse:
    """The health check, run now; the result replaces the button's neighbour (htmx)."""
    provider = await aget_object_or_404(Provider, pk=pk)
    check = await acheck_provider_health(provider)
    context: dict[str, object] = {"check": check, "provider": provider, "history": None}
    if request.POST.get("history"):
        # asked from the provider's page, which lists the recent checks too
        context["history"] = await sync_to_async(lambda: list(health_history(provider, limit=20)))()
    return await arender(request, "console/providers/_health_result.html", context)


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
