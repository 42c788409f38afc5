"""Celery tasks for OAuth token refresh (thin: the work is in services.oauth)."""

from __future__ import annotations

from celery import shared_task

from providers_app.services import oauth


@shared_task(name="providers.refresh_expiring_tokens")
def refresh_expiring_tokens() -> dict[str, list[int]]:
    """Refresh every active OAuth credential expiring within OAUTH_REFRESH_BUFFER_SECONDS.

    Failures are recorded on the credential (needs re-auth for a permanent
    error) and do not stop the others; run it periodically (django-celery-beat).
    """
    return oauth.oauth_refresh_expiring()
