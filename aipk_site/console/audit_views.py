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
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.vary import vary_on_headers

from tenants_app.selectors import (
    audit_events_for,
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
    actor = forms.CharField(required=False, max_length=150, label="Actor username")
    object_type = forms.CharField(required=False, max_length=100, label="Object type")
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, tenants: list, with_no_tenant: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenants_by_slug = {t.slug: t for t in tenants}
        choices = [("", "All tenants")]
        if with_no_tenant:
            choices.append((NO_TENANT, "No tenant (providers, credentials, …)"))
        choices += [(t.slug, t.name) for t in tenants]
        self.fields["tenant"].choices = choices
        # suggestions from the events the user may read (datalists in the template)
        self.fields["action"].widget.attrs["list"] = "audit-actions"
        self.fields["object_type"].widget.attrs["list"] = "audit-object-types"

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
            "actor": data.get("actor", "").strip(),
            "object_type": data.get("object_type", "").strip(),
            "start": data.get("date_from"),
            "end": data.get("date_to"),
        }


def compact_changes(changes: Any) -> list[tuple[str, str]]:
    """(key, value) pairs to show in one table cell; long values are cut. Rendered
    escaped: the values are secret-free by design, not trusted HTML."""
    if not isinstance(changes, dict):
        return [("", _short(changes))]
    return [(str(key), _short(value)) for key, value in changes.items()]


def _short(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    )
    return text if len(text) <= CHANGE_VALUE_CHARS else text[: CHANGE_VALUE_CHARS - 1] + "…"


@login_required
@vary_on_headers("HX-Request")
def audit_log(request: HttpRequest) -> HttpResponse:
    user = request.user
    tenants = list(audit_tenants(user))
    if not user.is_staff and not tenants:
        raise PermissionDenied("the audit log needs the admin role in a tenant")
    form = AuditFilterForm(request.GET, tenants=tenants, with_no_tenant=user.is_staff)
    visible = audit_events_for(user)
    status = 200
    page = None
    if form.is_valid():
        events = filter_audit_events(visible, **form.filters())
        page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
        for event in page.object_list:
            event.compact_changes = compact_changes(event.changes)
    else:
        status = 422
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "nav_section": "audit",
        "form": form,
        "page": page,
        "filter_query": query.urlencode(),
        "vocabulary": audit_vocabulary(visible),
    }
    # a history restore (back button, cache miss) needs the whole page, not the results
    if request.htmx and not request.htmx.history_restore_request:
        context["refresh_errors"] = True
        return render(request, "console/audit_results.html", context, status=status)
    return render(request, "console/audit.html", context, status=status)
