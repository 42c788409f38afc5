"""The audit log (/console/audit/): who changed what, when and from where.

Who reads what follows the management API (GET /api/tenants/{slug}/audit needs the admin
role in the tenant): staff read every event, including the provider and credential
events that belong to no tenant; tenant admins and owners read their tenants' events;
anyone with no admin role anywhere gets 403.

The filters are a GET form, so a filtered view is a URL that can be shared. htmx sends
the same GET and swaps only the results, never the form (a swap must not replace a
field someone is typing in); each field's errors come along out of band. A bad filter
is answered 422, which the console's htmx settings swap like a success.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.apps import apps
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.vary import vary_on_headers

from aipk_site.infra.audit import SECRET_KEYS
from tenants_app.selectors import (
    audit_events_for,
    audit_objects,
    audit_tenants,
    audit_vocabulary,
    filter_audit_events,
)

PAGE_SIZE = 50
# a value no tenant slug can take (slugs are letters, digits, "-" and "_")
NO_TENANT = "(none)"
CHANGE_VALUE_CHARS = 120


class AuditFilterForm(forms.Form):
    tenant = forms.ChoiceField(required=False)
    action = forms.CharField(
        required=False,
        max_length=100,
        help_text='Exact ("member.add"), or a prefix ending in "." ("member.").',
    )
    actor = forms.ChoiceField(required=False, label="Actor")
    object_type = forms.ChoiceField(required=False, label="Object type")
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(
        self,
        *args: Any,
        tenants: list,
        with_no_tenant: bool,
        vocabulary: dict[str, list[str]],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # choices, not free text: only what the viewer's own events hold, so a typo cannot
        # silently match nothing, and nobody learns the names of others' actors
        self.fields["actor"].choices = [("", "Anyone")] + [
            (name, name) for name in vocabulary["actors"]
        ]
        self.fields["object_type"].choices = [("", "Any object")] + sorted(
            ((value, object_type_label(value)) for value in vocabulary["object_types"]),
            key=lambda choice: choice[1].casefold(),
        )
        self.tenants_by_slug = {t.slug: t for t in tenants}
        choices = [("", "All tenants")]
        if with_no_tenant:
            choices.append((NO_TENANT, "No tenant (providers, credentials, …)"))
        choices += [(t.slug, t.name) for t in tenants]
        self.fields["tenant"].choices = choices
        # suggestions from the events the user may read (datalists in the template)
        self.fields["action"].widget.attrs["list"] = "audit-actions"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "must be on or after the From date")
        return cleaned

    def filters(self) -> dict[str, Any]:
        """The cleaned values as ``filter_audit_events`` keywords."""
        data = self.cleaned_data
        slug = data.get("tenant") or ""
        return {
            "tenant": self.tenants_by_slug.get(slug),
            "without_tenant": slug == NO_TENANT,
            "action": data.get("action", "").strip(),
            "actor": data.get("actor", ""),
            "object_type": data.get("object_type", ""),
            "start": data.get("date_from"),
            "end": data.get("date_to"),
        }


# what a person calls each kind of object; a type missing here shows its model's name
OBJECT_TYPE_LABELS = {
    "tenants_app.Tenant": "Tenant",
    "tenants_app.VirtualKey": "Virtual key",
    "tenants_app.ModelRoute": "Route",
    "tenants_app.Membership": "Member",
    "tenants_app.Invoice": "Invoice",
    "tenants_app.AdminToken": "Admin token",
    "tenants_app.AlertChannel": "Alert channel",
    "tenants_app.Pricing": "Price",
    "providers_app.Provider": "Provider",
    "providers_app.ApiKey": "Provider API key",
    "providers_app.OAuthCredential": "OAuth account",
    "auth.User": "User",
}
# the requests page (docs/CONSOLE.md, "Requests"), filtered to one key
REQUESTS_PATH = "/console/requests/"


def object_type_label(object_type: str) -> str:
    if object_type in OBJECT_TYPE_LABELS:
        return OBJECT_TYPE_LABELS[object_type]
    try:
        verbose = apps.get_model(object_type)._meta.verbose_name
    except (LookupError, ValueError):
        return object_type
    return str(verbose)[:1].upper() + str(verbose)[1:]


@dataclass(frozen=True)
class AuditObject:
    """What an event is about, as a reader names it, with its console page when it still
    exists and the reader may open it."""

    label: str
    url: str = ""
    requests_url: str = ""


def describe_object(event: Any, obj: Any, *, staff: bool) -> AuditObject:
    kind = object_type_label(event.object_type)
    if obj is None:
        # deleted (or never a row): what was recorded at the time, as plain text
        name = event.object_repr or (f"#{event.object_id}" if event.object_id else "")
        label = f"{kind} {name}".strip() if event.object_type else name
        requests_url = ""
        if event.object_type == "tenants_app.VirtualKey" and event.tenant and event.object_id:
            requests_url = _requests_url(event.tenant.slug, event.object_id)
        return AuditObject(label or "—", requests_url=requests_url)
    match event.object_type:
        case "tenants_app.Tenant":
            return AuditObject(f"Tenant {obj.name}", reverse("console:tenant", args=[obj.slug]))
        case "tenants_app.VirtualKey":
            slug = obj.tenant.slug
            return AuditObject(
                f"Virtual key {obj.name} ({slug})",
                reverse("console:tenant_key_edit", args=[slug, obj.pk]),
                _requests_url(slug, str(obj.pk)),
            )
        case "tenants_app.ModelRoute":
            if obj.tenant is None:
                return AuditObject(f"Route {obj.alias} (global)")
            return AuditObject(
                f"Route {obj.alias} ({obj.tenant.slug})",
                reverse("console:tenant_route_edit", args=[obj.tenant.slug, obj.alias]),
            )
        case "tenants_app.Membership":
            username = obj.user.get_username()
            members = reverse("console:tenant_members", args=[obj.tenant.slug])
            return AuditObject(
                f"Member {username} ({obj.tenant.slug})", f"{members}#member-{slugify(username)}"
            )
        case "tenants_app.Invoice":
            return AuditObject(
                f"Invoice {obj.period:%Y-%m} ({obj.tenant.slug})",
                reverse("console:tenant_invoices", args=[obj.tenant.slug]),
            )
        case "providers_app.Provider":
            url = reverse("console:provider", args=[obj.pk]) if staff else ""
            return AuditObject(f"Provider {obj.name}", url)
        case "providers_app.ApiKey":
            url = f"{reverse('console:credentials')}#key-{obj.pk}" if staff else ""
            return AuditObject(f"Provider API key {obj} of {obj.provider.name}", url)
        case "providers_app.OAuthCredential":
            url = reverse("console:credentials") if staff else ""
            return AuditObject(f"OAuth account {obj} of {obj.provider.name}", url)
        case "auth.User":
            return AuditObject(f"User {obj.get_username()}")
    return AuditObject(f"{kind} {obj}")


def _requests_url(slug: str, key_id: str) -> str:
    return f"{REQUESTS_PATH}?{urlencode({'tenant': slug, 'key': key_id})}"


@dataclass(frozen=True)
class Change:
    """One changed field: ``before`` is None when the event recorded only a value."""

    field: str
    after: str
    before: str | None = None
    hidden: bool = False


def readable_changes(changes: Any) -> list[Change]:
    """Each recorded field as "Field: before → after" (or its value). A secret-looking
    field says only that it changed: the recorder masks those values already (``***``),
    and a page shows not even that much of them."""
    if not isinstance(changes, dict):
        return [Change("Value", _readable(changes))] if changes not in (None, "") else []
    rows = []
    for key, value in changes.items():
        name = str(key).replace("_", " ").strip().capitalize() or "Value"
        if key in SECRET_KEYS:
            rows.append(Change(name, "changed (not shown)", hidden=True))
        elif isinstance(value, dict) and set(value) == {"from", "to"}:
            rows.append(Change(name, _readable(value["to"]), _readable(value["from"])))
        else:
            rows.append(Change(name, _readable(value)))
    return rows


def _readable(value: Any) -> str:
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        text = ", ".join(str(item) for item in value) if value else "none"
    elif isinstance(value, list | dict):
        text = json.dumps(_without_secrets(value), ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= CHANGE_VALUE_CHARS else text[: CHANGE_VALUE_CHARS - 1] + "…"


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "(not shown)" if key in SECRET_KEYS else _without_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


@login_required
@vary_on_headers("HX-Request")
def audit_log(request: HttpRequest) -> HttpResponse:
    user = request.user
    tenants = list(audit_tenants(user))
    if not user.is_staff and not tenants:
        raise PermissionDenied("the audit log needs the admin role in a tenant")
    visible = audit_events_for(user)
    vocabulary = audit_vocabulary(visible)
    form = AuditFilterForm(
        request.GET, tenants=tenants, with_no_tenant=user.is_staff, vocabulary=vocabulary
    )
    status = 200
    page = None
    if form.is_valid():
        events = filter_audit_events(visible, **form.filters())
        page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
        objects = audit_objects(list(page.object_list))
        for event in page.object_list:
            found = objects.get((event.object_type, event.object_id))
            event.described = describe_object(event, found, staff=user.is_staff)
            event.readable_changes = readable_changes(event.changes)
    else:
        status = 422
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "nav_section": "audit",
        "form": form,
        "page": page,
        "filter_query": query.urlencode(),
        "vocabulary": vocabulary,
    }
    # a history restore (back button, cache miss) needs the whole page, not the results
    if request.htmx and not request.htmx.history_restore_request:
        context["refresh_errors"] = True
        return render(request, "console/audit_results.html", context, status=status)
    return render(request, "console/audit.html", context, status=status)
