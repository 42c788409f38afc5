"""A tenant's invoices tab: the invoices newest first with the API's CSV of each;
admins (re)generate a month's."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from tenants_app import selectors
from tenants_app.auth import who
from tenants_app.console.access import console_tenant, console_view
from tenants_app.console.pages import INVALID, tab_page
from tenants_app.console_forms import InvoiceGenerateForm
from tenants_app.models import Role
from tenants_app.services.tenants import tenant_invoice_generate


@console_view
def tenant_invoices(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the invoices, newest first; POST: (re)generate a month's (admin)."""
    access = console_tenant(request, slug)
    form = InvoiceGenerateForm(initial={"period": f"{timezone.now():%Y-%m}"})
    status = 200
    if request.method == "POST":
        access.require(Role.ADMIN)
        form = InvoiceGenerateForm(request.POST)
        if form.is_valid():
            invoice = tenant_invoice_generate(
                tenant=access.tenant, period=form.cleaned_data["period"], **who(request)
            )
            messages.success(request, f"Invoice for {invoice.period:%Y-%m} generated.")
            return redirect("console:tenant_invoices", access.tenant.slug)
        status = INVALID
    invoices = [
        {
            "invoice": invoice,
            "period": f"{invoice.period:%Y-%m}",
            "csv_url": reverse(
                "api-1:invoice_csv",
                kwargs={"slug": access.tenant.slug, "period": f"{invoice.period:%Y-%m}"},
            ),
        }
        for invoice in selectors.tenant_invoices(access.tenant)
    ]
    return tab_page(
        request,
        access,
        "invoices",
        {"invoices": invoices, "form": form if access.has(Role.ADMIN) else None},
        status=status,
    )
