"""Rotating a provider API key: add, test live, activate, retire after a grace period."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from providers_app.models import ApiKey
from providers_app.services.credentials import RotationError, api_key_rotate, api_keys_retire_due
from tenants_app.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_activates_a_new_key_that_passes_its_live_test_and_schedules_the_old_one_to_retire(
    make_provider,
):
    provider = make_provider("openai", keys=1)
    old = provider.api_keys.get()
    new = api_key_rotate(key=old, new_secret="sk-sim-openai-new-0042", grace_seconds=600)
    old.refresh_from_db()
    assert new.state == "active" and new.last4 == "0042"
    assert old.state == "active"  # still serving during the grace period
    assert old.retire_at - old.rotated_at == timedelta(seconds=600)
    event = AuditEvent.objects.get(action="api_key.rotate")
    assert event.changes["new_last4"] == "0042" and "sk-sim-openai-new-0042" not in str(
        event.changes
    )


def test_it_leaves_everything_as_it_was_when_the_new_key_fails_its_live_test(make_provider):
    provider = make_provider("anthropic", keys=1)
    old = provider.api_keys.get()
    with pytest.raises(RotationError) as info:
        api_key_rotate(key=old, new_secret="invalid-new-secret-0001")
    assert "authentication_error" in str(info.value)
    old.refresh_from_db()
    assert provider.api_keys.count() == 1 and old.retire_at is None and old.state == "active"
    assert AuditEvent.objects.filter(action="api_key.rotate_failed").exists()


def test_it_retires_the_old_key_at_once_with_no_grace_period(make_provider):
    old = make_provider("gemini", keys=1).api_keys.get()
    api_key_rotate(key=old, new_secret="AIza-sim-new-key-0007", grace_seconds=0)
    old.refresh_from_db()
    assert old.state == "retired" and old.retired_at is not None


def test_it_retires_keys_only_once_their_grace_period_has_ended(make_provider):
    old = make_provider("openai", keys=1).api_keys.get()
    api_key_rotate(key=old, new_secret="sk-sim-openai-new-0042", grace_seconds=60)
    assert api_keys_retire_due() == 0
    assert api_keys_retire_due(now=timezone.now() + timedelta(seconds=61)) == 1
    old.refresh_from_db()
    assert old.state == "retired"


def test_it_rotates_from_the_command_line_reading_the_secret_from_stdin(make_provider, monkeypatch):
    old = make_provider("cerebras", keys=1).api_keys.get()
    monkeypatch.setattr("sys.stdin", io.StringIO("csk-sim-new-key-0099\n"))
    out = io.StringIO()
    call_command("rotate_api_key", str(old.pk), "--grace-seconds", "30", stdout=out)
    assert "…0099" in out.getvalue() and "csk-sim-new-key-0099" not in out.getvalue()
    assert ApiKey.objects.filter(last4="0099", state="active").exists()


def test_it_refuses_to_rotate_an_unknown_or_retired_key(make_provider, monkeypatch):
    with pytest.raises(CommandError, match="no API key"):
        call_command("rotate_api_key", "999999")
    old = make_provider("openai", keys=1).api_keys.get()
    old.state = "retired"
    old.save()
    monkeypatch.setattr("sys.stdin", io.StringIO("sk-sim-openai-new-0042\n"))
    with pytest.raises(CommandError, match="retired"):
        call_command("rotate_api_key", str(old.pk))


def test_it_retires_due_keys_from_the_periodic_task(make_provider):
    from providers_app.tasks.credentials import retire_rotated_keys

    old = make_provider("openai", keys=1).api_keys.get()
    api_key_rotate(key=old, new_secret="sk-sim-openai-new-0042", grace_seconds=60)
    ApiKey.objects.filter(pk=old.pk).update(retire_at=timezone.now() - timedelta(seconds=1))
    assert retire_rotated_keys() == 1
    old.refresh_from_db()
    assert old.state == "retired"
