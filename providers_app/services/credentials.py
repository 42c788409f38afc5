"""Adding, disabling and re-enabling API keys. (OAuth credentials: services.oauth.)"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from providers_app.models import ApiKey, Provider
from tenants_app.services.audit import audit_record


class CredentialError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


@transaction.atomic
def api_key_add(*, provider: Provider, label: str, secret: str, actor: Any = None) -> ApiKey:
    secret = (secret or "").strip()
    if len(secret) < 8:
        raise CredentialError("secret", "an API key has at least 8 characters")
    if not (label or "").strip():
        raise CredentialError("label", "a label is required")
    key = ApiKey.objects.create(provider=provider, label=label.strip(), secret=secret, last4=secret[-4:])
    audit_record(action="api_key.add", obj=key, actor=actor, changes={"label": key.label, "last4": key.last4})
    return key


@transaction.atomic
def api_key_set_state(*, key: ApiKey, state: str, actor: Any = None, reason: str = "") -> ApiKey:
    """Disable (invalid), re-enable (active) or retire a key by hand or on a permanent error."""
    if state not in ApiKey.State.values:
        raise CredentialError("state", f"must be one of {', '.join(ApiKey.State.values)}")
    previous = key.state
    key.state = state
    key.retired_at = timezone.now() if state == ApiKey.State.RETIRED else key.retired_at
    if state == ApiKey.State.ACTIVE:
        key.failure_count = 0
        key.cooling_down_until = None
    key.save(update_fields=["state", "retired_at", "failure_count", "cooling_down_until"])
    audit_record(action="api_key.state", obj=key, actor=actor,
                 changes={"state": [previous, state], "reason": reason})
    return key
