"""Adding, disabling and re-enabling API keys. (OAuth credentials: services.oauth.)"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from aipk_site.infra.audit import audit_record
from aipk_site.infra.errors import InvalidRequest
from providers_app.models import ApiKey, Provider


class CredentialError(InvalidRequest):
    """A credential change refused; ``field`` (the error's ``param``) names the input."""

    code = "invalid_credential"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}", param=field)


@transaction.atomic
def api_key_add(*, provider: Provider, label: str, secret: str, actor: Any = None) -> ApiKey:
    secret = (secret or "").strip()
    if len(secret) < 8:
        raise CredentialError("secret", "an API key has at least 8 characters")
    if not (label or "").strip():
        raise CredentialError("label", "a label is required")
    key = ApiKey.objects.create(
        provider=provider, label=label.strip(), secret=secret, last4=secret[-4:]
    )
    audit_record(
        action="api_key.add", obj=key, actor=actor, changes={"label": key.label, "last4": key.last4}
    )
    return key


@transaction.atomic
def api_key_replace_secret(*, key: ApiKey, secret: str, actor: Any = None) -> ApiKey:
    """Put a new secret in an existing key, in place (configuration as code: the file
    says which secret a label holds). Unlike ``api_key_rotate`` it makes no live test
    and keeps no grace period. A key the provider refused gets a fresh start."""
    secret = (secret or "").strip()
    if len(secret) < 8:
        raise CredentialError("secret", "an API key has at least 8 characters")
    previous_last4 = key.last4
    key.secret = secret
    key.last4 = secret[-4:]
    fields = ["secret", "last4"]
    if key.state == ApiKey.State.INVALID:
        key.state = ApiKey.State.ACTIVE
        key.failure_count = 0
        fields += ["state", "failure_count"]
    key.save(update_fields=fields)
    audit_record(
        action="api_key.replace_secret",
        obj=key,
        actor=actor,
        changes={"label": key.label, "last4": [previous_last4, key.last4]},
    )
    return key


@transaction.atomic
def api_key_set_state(*, key: ApiKey, state: str, actor: Any = None, reason: str = "") -> ApiKey:
    """Disable (disabled), re-enable (active) or retire a key by hand; mark it invalid on a
    permanent provider error. Only active and cooling-down keys serve requests."""
    if state not in ApiKey.State.values:
        raise CredentialError("state", f"must be one of {', '.join(ApiKey.State.values)}")
    previous = key.state
    key.state = state
    key.retired_at = timezone.now() if state == ApiKey.State.RETIRED else key.retired_at
    if state == ApiKey.State.ACTIVE:
        key.failure_count = 0
        key.cooling_down_until = None
    key.save(update_fields=["state", "retired_at", "failure_count", "cooling_down_until"])
    if state == ApiKey.State.ACTIVE and previous != ApiKey.State.ACTIVE:
        _forget_pool_state(key)
    audit_record(
        action="api_key.state",
        obj=key,
        actor=actor,
        changes={"state": [previous, state], "reason": reason},
    )
    return key


def _forget_pool_state(key: ApiKey) -> None:
    """A re-enabled key starts afresh in the shared pool (every process sees it at once)."""
    from asgiref.sync import async_to_sync

    from providers_app.services.pools import credential_id, key_pool

    async_to_sync(key_pool(key.provider_id).reset)(credential_id(key))


class RotationError(CredentialError):
    """The new key failed its live test; nothing was changed."""


async def api_key_test_live(key: ApiKey) -> tuple[bool, str]:
    """Ask the provider with this key (its model list). Returns (ok, error type)."""
    from providers_app.kit.errors import ProviderError
    from providers_app.services.providers import build_adapter

    provider = await Provider.objects.aget(pk=key.provider_id)
    adapter = build_adapter(provider, key)
    try:
        await adapter.fetch_models()
    except ProviderError as exc:
        return False, exc.type
    return True, ""


def api_key_rotate(
    *, key: ApiKey, new_secret: str, label: str = "", grace_seconds: int = 3600, actor: Any = None
) -> ApiKey:
    """Add a new key, test it live, activate it, and retire the old one after a grace period.

    The old key keeps serving until ``retire_at`` so requests already using it
    finish; new requests prefer keys that are not retiring. A new key that
    fails its live test is removed and the old key is left untouched.
    """
    from asgiref.sync import async_to_sync

    if key.state == ApiKey.State.RETIRED:
        raise CredentialError("key", "a retired key cannot be rotated")
    if grace_seconds < 0:
        raise CredentialError("grace_seconds", "must be zero or more")
    new_key = api_key_add(
        provider=key.provider,
        label=label or f"{key.label} (rotated)",
        secret=new_secret,
        actor=actor,
    )
    ok, error_type = async_to_sync(api_key_test_live)(new_key)
    if not ok:
        new_key.delete()
        audit_record(
            action="api_key.rotate_failed", obj=key, actor=actor, changes={"error_type": error_type}
        )
        raise RotationError(
            "new_secret", f"the new key failed its live test ({error_type}); nothing was changed"
        )
    now = timezone.now()
    with transaction.atomic():
        key.rotated_at = now
        key.retire_at = now + timezone.timedelta(seconds=grace_seconds)
        key.save(update_fields=["rotated_at", "retire_at"])
        audit_record(
            action="api_key.rotate",
            obj=key,
            actor=actor,
            changes={
                "new_key": new_key.pk,
                "new_last4": new_key.last4,
                "retire_at": key.retire_at.isoformat(),
            },
        )
    if grace_seconds == 0:
        api_keys_retire_due()
    return new_key


def api_keys_retire_due(*, now: Any = None) -> int:
    """Retire every key whose grace period has ended. Run periodically and after rotations."""
    now = now or timezone.now()
    due = list(ApiKey.objects.filter(retire_at__lte=now).exclude(state=ApiKey.State.RETIRED))
    for key in due:
        api_key_set_state(key=key, state=ApiKey.State.RETIRED, reason="rotation grace period ended")
    return len(due)
