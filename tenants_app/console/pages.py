"""What every tenant tab shares: the tab bar, the page frame, this month, and spend
against a budget."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from tenants_app.auth import TenantAccess
from tenants_app.models import Role

TABS = (
    ("overview", "Overview", "console:tenant"),
    ("members", "Members", "console:tenant_members"),
    ("keys", "Keys", "console:tenant_keys"),
    ("routes", "Routes", "console:tenant_routes"),
    ("usage", "Usage", "console:tenant_usage"),
    ("invoices", "Invoices", "console:tenant_invoices"),
    ("alerts", "Alerts", "console:tenant_alerts"),
)
# tabs only some roles may open (as the management API decides): hidden from the others
TAB_ROLES = {"alerts": Role.ADMIN}
# pages that sit under a tab without being one
EDIT_PAGE_TABS = {"key_edit": "keys", "route_edit": "routes", "alert_channel": "alerts"}
INVALID = 422  # a form re-rendered with its errors (htmx swaps it too)


def this_month() -> tuple[dt.date, dt.date]:
    today = timezone.now().date()
    return today.replace(day=1), today


def budget_use(spent: Decimal, budget: Decimal | None) -> dict[str, Any]:
    """Spend against a budget as a share and a badge state (none without a budget)."""
    percent = None
    if budget is not None and budget > 0:
        share = (Decimal(spent) * 100 / budget).quantize(Decimal(1), ROUND_HALF_UP)
        percent = min(999, int(share))
    elif budget is not None:
        percent = 100  # a zero budget is used up from the start: the gateway refuses all
    if percent is None:
        state = "muted"
    elif percent >= 100:
        state = "bad"
    elif percent >= 80:
        state = "warn"
    else:
        state = "ok"
    return {"spent": spent, "budget": budget, "percent": percent, "state": state}


def tab_page(
    request: HttpRequest,
    access: TenantAccess,
    tab: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HttpResponse:
    slug = access.tenant.slug
    return render(
        request,
        f"console/tenants/{tab}.html",
        {
            "nav_section": "tenants",
            "access": access,
            "tenant": access.tenant,
            "role": access.role,
            "is_admin": access.has(Role.ADMIN),
            "current_tab": EDIT_PAGE_TABS.get(tab, tab),
            "tabs": [
                (name, label, reverse(url, args=[slug]))
                for name, label, url in TABS
                if name not in TAB_ROLES or access.has(TAB_ROLES[name])
            ],
            **context,
        },
        status=status,
    )
