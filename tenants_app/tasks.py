"""Celery tasks of tenants_app. Thin: they call a service and return a small
JSON-able result. The periodic one is a django-celery-beat row created by the
``invoice_schedule`` migration (editable in the admin)."""

from __future__ import annotations

from celery import shared_task

from tenants_app.services.billing import invoices_generate


@shared_task(name="tenants.generate_invoices")
def generate_invoices() -> int:
    """Periodic: refresh this month's draft invoices and finalise last month's."""
    return invoices_generate()
