"""Alerts: budget thresholds, OAuth credentials needing re-authorisation, providers
degraded and recovered, key rotations whose grace period ends -- sent to a tenant's
channels (and the organisation's, staff-run ones) as signed webhooks, Slack-compatible
webhooks or email, by a Celery task with retries. docs/MONITORING.md, "Alerts".

- ``channels``: creating, changing, deleting and test-sending channels (audited)
- ``raising``: who hears of an event, one delivery row per channel, deduplicated
- ``delivery``: one attempt at sending one delivery (the task owns the retries)
- ``events``: turning what happened into alerts (budget spend, signals, the grace scan)
"""

from tenants_app.services.alerts.channels import (
    alert_channel_create,
    alert_channel_delete,
    alert_channel_test,
    alert_channel_update,
    target_display,
)
from tenants_app.services.alerts.delivery import alert_delivery_attempt, signature
from tenants_app.services.alerts.events import (
    budget_spend_observe,
    budget_watch_reset,
    rotation_grace_alerts,
)
from tenants_app.services.alerts.raising import alert_raise

__all__ = [
    "alert_channel_create",
    "alert_channel_delete",
    "alert_channel_test",
    "alert_channel_update",
    "alert_delivery_attempt",
    "alert_raise",
    "budget_spend_observe",
    "budget_watch_reset",
    "rotation_grace_alerts",
    "signature",
    "target_display",
]
