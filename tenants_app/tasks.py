"""Celery tasks of tenants_app. Thin: they call a service and return a small
JSON-able result. The periodic ones are django-celery-beat rows created by the
``invoice_schedule`` and ``retention_schedule`` migrations (editable in the admin)."""

from __future__ import annotations

from celery import shared_task

from tenants_app.services.billing import invoices_generate
from tenants_app.services.retention import retention_prune


@shared_task(name="tenants.generate_invoices")
def generate_invoices() -> int:
    """Periodic: refresh this month's draft invoices and finalise last month's."""
    return invoices_generate()


@shared_task(name="tenants.prune_retention")
def prune_retention() -> dict[str, int]:
    """Periodic (daily): delete usage records and audit events past their retention."""
    return retention_prune()
