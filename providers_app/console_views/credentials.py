"""The console's Credentials page and its API-key actions: add, live test, state, rotate."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import aget_object_or_404, get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from aipk_site.infra.access import staff_required
from providers_app.console_forms import ApiKeyAddForm, ApiKeyRotateForm, ApiKeyStateForm
from providers_app.models import ApiKey, OAuthCredential, Provider
from providers_app.services.credentials import (
    CredentialError,
    api_key_add,
    api_key_rotate,
    api_key_set_state,
)
from providers_app.services.health import acheck_credential_health

from .common import UNPROCESSABLE, arender, back, credentials_url, key_rows, oauth_options, reason


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
            form.add_service_errors({exc.field: reason(exc)})
        else:
            messages.success(
                request, f"API key {key.label} (…{key.last4}) added to {key.provider.name}."
            )
            return back(request, credentials_url())
    return _credentials_page(request, add_form=form, status=UNPROCESSABLE)


@staff_required
@require_POST
async def api_key_test(request: HttpRequest, pk: int) -> HttpResponse:
    """A live check with exactly this key, recorded as its latest health check like the
    periodic ones; the result shows inline and the key's "last check" updates in place
    wherever the page shows it (htmx, out of band)."""
    key = await aget_object_or_404(ApiKey.objects.select_related("provider"), pk=pk)
    check = await acheck_credential_health(key)
    return await arender(
        request,
        "console/credentials/_key_test_result.html",
        {
            "key": key,
            "check": check,
            "ok": check.healthy,
            "error_type": check.error_type or "unknown error",
            "tested_at": check.checked_at,
        },
    )


@staff_required
@require_POST
def api_key_state(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey.objects.select_related("provider"), pk=pk)
    form = ApiKeyStateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown state: choose active or disabled.")
        return back(request, credentials_url())
    state = form.cleaned_data["state"]
    if key.state == ApiKey.State.RETIRED:
        messages.error(request, f"API key {key.label} is retired and stays retired.")
        return back(request, credentials_url())
    verb = "re-enabled" if state == ApiKey.State.ACTIVE else "disabled"
    api_key_set_state(key=key, state=state, actor=request.user, reason=f"console: {verb}")
    messages.success(request, f"API key {key.label} (…{key.last4}) {verb}.")
    return back(request, credentials_url())


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
                form.add_service_errors({exc.field: reason(exc)})
            else:
                key.refresh_from_db()
                until = timezone.localtime(key.retire_at).strftime("%Y-%m-%d %H:%M %Z")
                messages.success(
                    request,
                    f"New key {new_key.label} (…{new_key.last4}) is active; "
                    f"{key.label} (…{key.last4}) keeps serving until {until}.",
                )
                return back(request, credentials_url())
        status = UNPROCESSABLE
    context = {
        "nav_section": "credentials",
        "key": key,
        "row": key_rows([key])[0],
        "form": form,
        "next": request.POST.get("next") or request.GET.get("next", ""),
    }
    return render(request, "console/credentials/rotate.html", context, status=status)
