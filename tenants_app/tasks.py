"""Celery tasks of tenants_app. Thin: they call a service and return a small
JSON-able result. The periodic ones are django-celery-beat rows created by the
``invoice_schedule``, ``retention_schedule`` and ``alerts`` migrations (editable in the admin)."""

from __future__ import annotations

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from tenants_app.services.alerts import alert_delivery_attempt, rotation_grace_alerts
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


# Delivery attempts per alert (the first and its retries), and the backoff: 2 s, 4 s, 8 s, ...
# capped at ALERT_RETRY_MAX_SECONDS, with full jitter so a receiver that comes back is not
# hit by every queued retry at once.
ALERT_MAX_ATTEMPTS = int(getattr(settings, "ALERT_MAX_ATTEMPTS", 5))


@shared_task(bind=True, name="tenants.deliver_alert", max_retries=ALERT_MAX_ATTEMPTS - 1)
def deliver_alert(self: Task, delivery_id: int) -> str:
    """Send one alert delivery; a failure is retried with exponential backoff and, on the
    last attempt, recorded as failed. Retries go through ``self.retry`` (not
    ``autoretry_for``) so the last failure is recorded and returned instead of raised:
    an exception would reach whatever raised the alert in eager mode."""
    attempts = (self.max_retries or 0) + 1
    if self.request.is_eager:
        # Embedded mode runs tasks eagerly with task_eager_propagates on, and then Celery
        # hands ``self.retry``'s Retry to the caller instead of running the next attempt;
        # so an eager run makes its attempts here, one after the other, without waiting.
        for attempt in range(attempts):
            outcome = alert_delivery_attempt(delivery_id=delivery_id, final=attempt == attempts - 1)
            if outcome != "retry":
                break
        return outcome
    final = self.request.retries >= attempts - 1
    outcome = alert_delivery_attempt(delivery_id=delivery_id, final=final)
    if outcome == "retry":
        countdown = get_exponential_backoff_interval(
            factor=int(getattr(settings, "ALERT_RETRY_BACKOFF_SECONDS", 2)),
            retries=self.request.retries + 1,
            maximum=int(getattr(settings, "ALERT_RETRY_MAX_SECONDS", 600)),
            full_jitter=True,
        )
        raise self.retry(countdown=countdown)
    return outcome


@shared_task(name="tenants.alert_rotation_grace")
def alert_rotation_grace() -> int:
    """Periodic (hourly): alert for key rotations whose grace period ends within a day."""
    return rotation_grace_alerts()
