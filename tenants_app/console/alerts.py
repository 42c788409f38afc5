"""Alert channels in the console: the organisation's at /console/alerts/ (staff) and a
tenant's under its Alerts tab (owners and admins; members, viewers and anyone else are
refused exactly as the management API refuses them: 403 for a role too low, 404 for a
tenant someone does not belong to).

Every write goes through the alert services (validation, audit). A target is shown by
``target_display`` only: a webhook or Slack URL carries its own token. A webhook's
signing secret is in the response to the POST that created it and nowhere else, as a
new virtual key's secret is (keys.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from aipk_site.infra.access import require_staff
from aipk_site.infra.errors import InvalidRequest
from tenants_app import selectors
from tenants_app.auth import TenantAccess, who
from tenants_app.console.access import console_tenant, console_view
from tenants_app.console.pages import INVALID, tab_page
from tenants_app.console_forms import ALERT_KIND_LABELS, AlertChannelForm
from tenants_app.models import AlertChannel, Role, Tenant
from tenants_app.services.alerts import (
    alert_channel_create,
    alert_channel_delete,
    alert_channel_test,
    alert_channel_update,
    target_display,
)

RECENT_DELIVERIES = 20


@dataclass(frozen=True)
class Scope:
    """Whose channels a page shows: the organisation's (tenant None) or one tenant's.
    URL names come in pairs, "alerts" and "tenant_alerts", so one set of views and
    templates serves both."""

    tenant: Tenant | None
    access: TenantAccess | None

    def url(self, name: str, *args: Any) -> str:
        if self.tenant is None:
            return reverse(f"console:{name}", args=args)
        return reverse(f"console:tenant_{name}", args=[self.tenant.slug, *args])

    def channel(self, channel_id: int) -> AlertChannel:
        """One of this owner's channels, with its latest delivery; anyone else's: 404."""
        return get_object_or_404(selectors.alert_channel_rows(self.tenant), pk=channel_id)


def _organisation(request: HttpRequest) -> Scope:
    require_staff(request.user)
    return Scope(tenant=None, access=None)


def _tenant(request: HttpRequest, slug: str) -> Scope:
    access = console_tenant(request, slug, Role.ADMIN)
    return Scope(tenant=access.tenant, access=access)


def _row(scope: Scope, channel: AlertChannel) -> dict[str, Any]:
    pk = channel.pk
    return {
        "channel": channel,
        "target": target_display(channel),
        "events": [(e, ALERT_KIND_LABELS.get(e, e)) for e in channel.events],
        "edit_url": scope.url("alert_channel", pk),
        "enable_url": scope.url("alert_channel_enable", pk),
        "delete_url": scope.url("alert_channel_delete", pk),
        "test_url": scope.url("alert_channel_test", pk),
        "row_url": scope.url("alert_channel_row", pk),
    }


def _page(
    request: HttpRequest,
    scope: Scope,
    page: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HttpResponse:
    """``page`` is "alerts" (the list) or "alert_channel" (one channel): under the tenant's
    tabs for a tenant, on its own for the organisation."""
    context = {"scope": scope, "list_url": scope.url("alerts"), **context}
    if scope.access is not None:
        return tab_page(request, scope.access, page, context, status=status)
    template = "console/alerts/list.html" if page == "alerts" else "console/alerts/channel.html"
    return render(request, template, {"nav_section": "alerts", **context}, status=status)


def _list(
    request: HttpRequest,
    scope: Scope,
    *,
    form: AlertChannelForm | None = None,
    created: AlertChannel | None = None,
    secret: str | None = None,
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    """The list: the whole page, or for htmx only its panel (#alerts-panel), so a new
    webhook's signing secret arrives in a swap and no reload can post the form again."""
    context = {
        "rows": [_row(scope, c) for c in selectors.alert_channel_rows(scope.tenant)],
        "row_in_place": True,
        "form": form or AlertChannelForm(),
        "created": created,
        "secret": secret,
        "notice": notice,
    }
    if request.htmx:
        context.update(scope=scope, list_url=scope.url("alerts"))
        return render(request, "console/alerts/_panel.html", context, status=status)
    return _page(request, scope, "alerts", context, status=status)


def _channels(request: HttpRequest, scope: Scope) -> HttpResponse:
    if request.method != "POST":
        return _list(request, scope)
    form = AlertChannelForm(request.POST)
    if form.is_valid():
        try:
            channel, secret = alert_channel_create(
                tenant=scope.tenant, **form.service_fields(), **who(request)
            )
        except InvalidRequest as error:
            form.add_service_error(error)
        else:
            added = f"Alert channel {channel.name} added."
            if secret is None and request.htmx:
                return _list(request, scope, notice=added, status=201)
            if secret is None:
                messages.success(request, added)
                return redirect(scope.url("alerts"))
            # the one response holding the signing secret: no redirect, no message
            return _list(request, scope, created=channel, secret=secret, status=201)
    return _list(request, scope, form=form, status=INVALID)


def _channel(request: HttpRequest, scope: Scope, channel_id: int) -> HttpResponse:
    channel = scope.channel(channel_id)
    status = 200
    if request.method == "POST":
        form = AlertChannelForm(request.POST, channel=channel)
        if form.is_valid():
            try:
                alert_channel_update(channel=channel, **form.service_fields(), **who(request))
            except InvalidRequest as error:
                form.add_service_error(error)
            else:
                messages.success(request, f"Alert channel {channel.name} saved.")
                return redirect(scope.url("alerts"))
        status = INVALID
        channel.refresh_from_db()
        form.channel = channel
    else:
        form = AlertChannelForm(channel=channel)
    context = {
        "channel": channel,
        "row": _row(scope, channel),
        # plain posts here: the answer is this page again, with the new delivery listed
        "row_in_place": False,
        "form": form,
        "deliveries": selectors.recent_alert_deliveries(channel, RECENT_DELIVERIES),
        "recent_limit": RECENT_DELIVERIES,
    }
    return _page(request, scope, "alert_channel", context, status=status)


def _row_response(request: HttpRequest, scope: Scope, channel_id: int) -> HttpResponse:
    channel = scope.channel(channel_id)
    return render(
        request,
        "console/alerts/_channel_row.html",
        {"row": _row(scope, channel), "scope": scope, "row_in_place": True},
    )


def _back(request: HttpRequest, scope: Scope, channel_id: int) -> str:
    """After a plain (non-htmx) post: the channel's page if it came from there, else the
    list. Only these two: a posted address is never followed."""
    if request.POST.get("back") == "channel":
        return scope.url("alert_channel", channel_id)
    return scope.url("alerts")


def _enable(request: HttpRequest, scope: Scope, channel_id: int) -> HttpResponse:
    channel = scope.channel(channel_id)
    wanted = request.POST.get("enabled", "")
    if wanted not in ("1", "0"):
        message = "Say enabled=1 (switch on) or enabled=0 (switch off)."
        if request.htmx:
            return HttpResponse(message, status=400, content_type="text/plain")
        messages.error(request, message)
        return redirect(scope.url("alerts"))
    alert_channel_update(channel=channel, enabled=wanted == "1", **who(request))
    if request.htmx:
        return _row_response(request, scope, channel.pk)
    state = "switched on" if wanted == "1" else "switched off"
    messages.success(request, f"Alert channel {channel.name} {state}.")
    return redirect(_back(request, scope, channel.pk))


def _delete(request: HttpRequest, scope: Scope, channel_id: int) -> HttpResponse:
    channel = scope.channel(channel_id)
    name = channel.name
    alert_channel_delete(channel=channel, **who(request))
    messages.success(request, f"Alert channel {name} deleted, with its delivery history.")
    return redirect(scope.url("alerts"))


def _test(request: HttpRequest, scope: Scope, channel_id: int) -> HttpResponse:
    """Send a test alert through the channel (even when it is switched off); the row
    comes back with that delivery as its latest (pending while a worker has it)."""
    channel = scope.channel(channel_id)
    delivery = alert_channel_test(channel=channel, **who(request))
    if request.htmx:
        return _row_response(request, scope, channel.pk)
    outcome = f"Test alert to {channel.name}: {delivery.status}"
    if delivery.last_error:
        outcome += f" ({delivery.last_error})"
    messages.info(request, outcome + ".")
    return redirect(_back(request, scope, channel.pk))


def _row_fragment(request: HttpRequest, scope: Scope, channel_id: int) -> HttpResponse:
    """The row alone: a row whose latest delivery is pending asks for itself again (a
    Celery worker sends it, and retries with backoff) until the delivery is settled."""
    return _row_response(request, scope, channel_id)


# --- the organisation's channels (staff) ---------------------------------------------------


@never_cache  # the answer to a webhook's creation holds its signing secret
@console_view
def alerts(request: HttpRequest) -> HttpResponse:
    """GET: the organisation's channels; POST: add one."""
    return _channels(request, _organisation(request))


@console_view
def alert_channel(request: HttpRequest, channel_id: int) -> HttpResponse:
    """GET: one channel's settings and recent deliveries; POST: save its settings."""
    return _channel(request, _organisation(request), channel_id)


@console_view
@require_GET
def alert_channel_row(request: HttpRequest, channel_id: int) -> HttpResponse:
    return _row_fragment(request, _organisation(request), channel_id)


@console_view
@require_POST
def alert_channel_enable(request: HttpRequest, channel_id: int) -> HttpResponse:
    return _enable(request, _organisation(request), channel_id)


@console_view
@require_POST
def alert_channel_delete_view(request: HttpRequest, channel_id: int) -> HttpResponse:
    return _delete(request, _organisation(request), channel_id)


@console_view
@require_POST
def alert_channel_test_view(request: HttpRequest, channel_id: int) -> HttpResponse:
    return _test(request, _organisation(request), channel_id)


# --- a tenant's channels (owners and admins) ------------------------------------------------


@never_cache
@console_view
def tenant_alerts(request: HttpRequest, slug: str) -> HttpResponse:
    return _channels(request, _tenant(request, slug))


@console_view
def tenant_alert_channel(request: HttpRequest, slug: str, channel_id: int) -> HttpResponse:
    return _channel(request, _tenant(request, slug), channel_id)


@console_view
@require_GET
def tenant_alert_channel_row(request: HttpRequest, slug: str, channel_id: int) -> HttpResponse:
    return _row_fragment(request, _tenant(request, slug), channel_id)


@console_view
@require_POST
def tenant_alert_channel_enable(request: HttpRequest, slug: str, channel_id: int) -> HttpResponse:
    return _enable(request, _tenant(request, slug), channel_id)


@console_view
@require_POST
def tenant_alert_channel_delete(request: HttpRequest, slug: str, channel_id: int) -> HttpResponse:
    return _delete(request, _tenant(request, slug), channel_id)


@console_view
@require_POST
def tenant_alert_channel_test(request: HttpRequest, slug: str, channel_id: int) -> HttpResponse:
    return _test(request, _tenant(request, slug), channel_id)
