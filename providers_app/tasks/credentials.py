"""Celery tasks for API keys (thin: the work is in services.credentials)."""

from __future__ import annotations

from celery import shared_task

from providers_app.services.credential_state import credentials_sync_state
from providers_app.services.credentials import api_keys_retire_due


@shared_task(name="providers.retire_rotated_keys")
def retire_rotated_keys() -> int:
    """Retire every key whose rotation grace period has ended; returns how many."""
    return api_keys_retire_due()


@shared_task(name="providers.sync_credential_state")
def sync_credential_state() -> int:
    """Copy pool health and request counters onto the credential rows; returns rows changed."""
    return credentials_sync_state()
