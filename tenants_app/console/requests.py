"""The request log (/console/requests/): every gateway request the viewer may see, newest
first, filtered by what the URL says (docs/CONSOLE.md, the helpers' URL contract), with a
live tail and a drawer per request showing its attempts and captured bodies.

Staff see every tenant's requests; anyone else sees those of their tenants, and the
filter choices come from those tenants only. A request of another tenant is a 404, as
one that never existed. The rows are the usage rows (UsageRecord); the reads are
``selectors.request_log*``, shared with the management API."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db.models import Max, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.vary import vary_on_headers

from aipk_site.infra.time_ranges import parse_moment
from tenants_app import selectors
from tenants_app.console_forms import RequestFilterForm
from tenants_app.models import Tenant, UsageRecord

PAGE_SIZE = 50
INVALID = 422
# the live tail adds at most this many rows per poll; a burst beyond it shows on reload
LIVE_MAX_ROWS = 100
CHOICES_SECONDS = 600
# a page load rescans the filter choices when the kept ones are older than this (the live
# tail's poll never does); one scan serves a burst of filter changes
FRESH_CHOICES_SECONDS = 60
CHOICES_WINDOW_DAYS = 31


def _scope(request: HttpRequest) -> QuerySet[Tenant] | None:
    """The tenants whose requests the viewer sees; None: every tenant (staff)."""
    user = request.user
    return None if user.is_staff else selectors.tenants_visible_to(user)


def _form(
    request: HttpRequest, scope: QuerySet[Tenant] | None, *, fresh: bool = True
) -> RequestFilterForm:
    """The filters, checked against the viewer's choices. The page computes the choices
    (distinct values over the viewer's rows) and keeps them a while; the live tail's poll,
    every 2 s, only checks the values the page already offered, so it reuses them
    rather than scanning the usage table again. The rows are always scoped afresh."""
    tenants = list(selectors.tenants_visible_to(request.user).order_by("name", "slug"))
    since = _choices_since(request)
    who = "staff" if scope is None else request.user.pk
    cache_key = f"console:requests:choices:{who}:{since:%Y%m%d}"
    choices = cache.get(cache_key)
    if choices is None or (fresh and choices["at"] < time.time() - FRESH_CHOICES_SECONDS):
        choices = {"at": time.time(), **selectors.request_log_choices(tenants=scope, since=since)}
        cache.set(cache_key, choices, CHOICES_SECONDS)
    return RequestFilterForm(request.GET, tenants=tenants, choices=choices)


def _choices_since(request: HttpRequest) -> dt.datetime:
    """Where the filter choices' scan starts: the start of the day CHOICES_WINDOW_DAYS ago
    (every preset range lies within), or earlier when a custom range starts earlier."""
    floor = timezone.now() - dt.timedelta(days=CHOICES_WINDOW_DAYS)
    text = request.GET.get("since", "").strip()
    if text and request.GET.get("range", "custom") == "custom":
        asked = parse_moment(text, end_of_day=False)  # a bad one is the form's to name
        if asked is not None:
            floor = min(floor, asked)
    return floor.replace(hour=0, minute=0, second=0, microsecond=0)


def _page_number(request: HttpRequest) -> int:
    text = request.GET.get("page", "")
    # a page beyond 10,000 (half a million rows) is one to reach by narrowing the range
    return int(text) if text.isdigit() and 0 < int(text) <= 10_000 else 1


def _with_labels(rows: list[UsageRecord]) -> list[UsageRecord]:
    labels = selectors.credential_labels([r.credential_id for r in rows])
    for row in rows:
        row.credential_label = labels.get(row.credential_id, row.credential_id)  # type: ignore[attr-defined]
    return rows


def _filter_query(request: HttpRequest, *drop: str) -> str:
    query = request.GET.copy()
    for name in ("page", "after", *drop):
        query.pop(name, None)
    return query.urlencode()


@login_required
@vary_on_headers("HX-Request")
def request_list(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    form = _form(request, scope)
    context: dict[str, Any] = {
        "nav_section": "requests",
        "form": form,
        "rows": None,
        "filter_query": _filter_query(request),
        "live_query": _filter_query(request),
    }
    status = 200
    if form.is_valid():
        found = selectors.request_log(tenant=form.chosen_tenant(), tenants=scope, **form.filters())
        number = _page_number(request)
        offset = (number - 1) * PAGE_SIZE
        # one more than shown: whether an older page exists, without a count(*)
        rows = list(found[offset : offset + PAGE_SIZE + 1])
        context.update(
            rows=_with_labels(rows[:PAGE_SIZE]),
            page_number=number,
            has_next=len(rows) > PAGE_SIZE,
            # the live tail asks for rows stored after the newest stored so far (ids
            # grow as rows are stored; created_at is when the request began)
            newest_id=found.aggregate(newest=Max("id"))["newest"] or 0,
        )
    else:
        status = INVALID
    # a history restore (back button, cache miss) needs the whole page, not the results
    if request.htmx and not request.htmx.history_restore_request:
        context["refresh_errors"] = True
        return render(request, "console/requests/_results.html", context, status=status)
    return render(request, "console/requests/list.html", context, status=status)


@login_required
def request_live(request: HttpRequest) -> HttpResponse:
    """The live tail's poll: the rows stored after ``after`` that the filters keep, to
    prepend, with the poller carrying the new newest id; 204 when there is none."""
    scope = _scope(request)
    form = _form(request, scope, fresh=False)
    after = request.GET.get("after", "")
    if not form.is_valid() or not after.isdigit() or len(after) > 18:
        return HttpResponse("Fix the filters to follow new requests.", status=400)
    found = selectors.request_log(
        tenant=form.chosen_tenant(), tenants=scope, after_id=int(after), **form.filters()
    )
    rows = list(found[:LIVE_MAX_ROWS])
    if not rows:
        return HttpResponse(status=204)
    return render(
        request,
        "console/requests/_live.html",
        {
            "rows": _with_labels(rows),
            "newest_id": max(row.pk for row in rows),
            "live_query": _filter_query(request),
        },
    )


@login_required
@vary_on_headers("HX-Request")
def request_detail(request: HttpRequest, request_id: str) -> HttpResponse:
    """One request: the drawer's fragment for htmx, a page of its own otherwise."""
    found = None
    if len(request_id) <= 64:  # no request id of ours is longer
        found = selectors.request_log_entry(request_id=request_id, tenants=_scope(request))
    if found is None:
        raise Http404("request not found")
    record, body = found
    attempts = list(record.attempts or [])
    labels = selectors.credential_labels(
        [record.credential_id, *(str(a.get("credential_id", "")) for a in attempts)]
    )
    for attempt in attempts:
        credential_id = str(attempt.get("credential_id", ""))
        attempt["credential_label"] = labels.get(credential_id, credential_id)
    context = {
        "nav_section": "requests",
        "record": record,
        "body": body,
        "attempts": attempts,
        "credential_label": labels.get(record.credential_id, record.credential_id),
        "uncached_prompt_tokens": max(record.prompt_tokens - record.cached_tokens, 0),
        "back_url": reverse("console:requests") + f"?tenant={record.tenant.slug}",
    }
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, "console/requests/_detail.html", context)
    return render(request, "console/requests/detail.html", context)
