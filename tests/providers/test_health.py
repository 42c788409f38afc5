"""Health checks of providers and credentials over real HTTP against the simulator."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from providers_app.models import ApiKey, HealthAlert, HealthCheck, OAuthCredential
from providers_app.services.credentials import api_key_add
from providers_app.services.health import (
    check_all_health,
    check_credential_health,
    check_provider_health,
    current_health,
    health_alerts,
    health_history,
    prune_health_history,
)
from providers_app.tasks import monitoring

pytestmark = pytest.mark.django_db


def _revoke(key: ApiKey, secret: str = "invalid-revoked-key-9999") -> None:
    """What the provider sees after the key was revoked upstream."""
    key.secret = secret
    key.save()


def _oauth(provider, token: str) -> OAuthCredential:
    return OAuthCredential.objects.create(
        provider=provider, account_label="ops@example.com", access_token=token, last4=token[-4:]
    )


@pytest.mark.parametrize(
    "provider_type", ["openai", "anthropic", "gemini", "cerebras", "qwen", "openrouter"]
)
def test_it_reports_a_provider_healthy_with_a_working_key(make_provider, simulator, provider_type):
    provider = make_provider(provider_type)
    simulator.clear_requests()
    check = check_provider_health(provider)
    assert check.healthy and check.error_type == "" and check.latency_ms >= 0
    assert (check.api_key_id, check.oauth_credential_id) == (None, None)
    assert len(simulator.requests()) == 1
    assert HealthCheck.objects.filter(provider=provider).count() == 1


@pytest.mark.parametrize("provider_type", ["openai", "anthropic", "gemini", "openrouter"])
def test_it_shows_a_revoked_key_unhealthy_with_an_authentication_error(
    make_provider, provider_type
):
    provider = make_provider(provider_type, keys=0)
    key = api_key_add(provider=provider, label="revoked", secret="invalid-key-from-yesterday-4321")
    check = check_credential_health(key)
    assert not check.healthy
    assert check.error_type == "authentication_error"
    assert check.api_key_id == key.pk
    assert "invalid-key-from-yesterday" not in check.detail


def test_it_probes_each_credential_with_that_credential(make_provider, simulator):
    provider = make_provider("openai", keys=2)
    first, second = provider.api_keys.all()
    _revoke(second)
    simulator.clear_requests()
    assert check_credential_health(first).healthy
    assert not check_credential_health(second).healthy
    assert [r["headers"]["authorization"][-4:] for r in simulator.requests()] == ["0001", "9999"]


def test_it_probes_the_provider_with_its_first_usable_key(make_provider, simulator):
    provider = make_provider("openai", keys=2)
    first, second = provider.api_keys.all()
    first.state = ApiKey.State.INVALID
    first.save()
    simulator.clear_requests()
    assert check_provider_health(provider).healthy
    assert simulator.requests()[0]["headers"]["authorization"].endswith("0002")


def test_it_reports_a_provider_without_usable_credentials_unhealthy(make_provider, simulator):
    provider = make_provider("anthropic", keys=1)
    provider.api_keys.update(state=ApiKey.State.RETIRED)
    simulator.clear_requests()
    check = check_provider_health(provider)
    assert not check.healthy and check.error_type == "no_credentials"
    assert simulator.requests() == []


def test_it_checks_oauth_credentials(make_provider):
    provider = make_provider("anthropic", keys=0)
    good = _oauth(provider, "oauth-access-token-good-1111")
    bad = _oauth(provider, "invalid-oauth-access-token-2222")
    assert check_credential_health(good).healthy
    revoked = check_credential_health(bad)
    assert not revoked.healthy and revoked.error_type == "authentication_error"
    assert revoked.oauth_credential_id == bad.pk and revoked.api_key_id is None
    # the provider probe falls back to the OAuth account when it has no key
    assert check_provider_health(provider).healthy


def test_a_change_of_state_writes_exactly_one_alert_and_a_log_line(make_provider, caplog):
    provider = make_provider("openai", keys=1)
    key = provider.api_keys.get()
    assert check_credential_health(key).healthy
    assert not HealthAlert.objects.exists()  # a healthy first check is not news

    _revoke(key)
    with caplog.at_level(logging.WARNING, logger="providers_app.services.health"):
        check_credential_health(key)
        check_credential_health(key)  # still unhealthy: no second alert
    alert = HealthAlert.objects.get()
    assert (alert.api_key_id, alert.healthy) == (key.pk, False)
    assert "authentication_error" in alert.message and "…0001" in alert.message
    changes = [r for r in caplog.records if "health state changed" in r.getMessage()]
    assert len(changes) == 1
    assert f"key:{key.pk}" in changes[0].getMessage()
    assert "invalid-revoked" not in caplog.text and "invalid-revoked" not in alert.message

    _revoke(key, "sk-sim-openai-key-restored-0001")
    check_credential_health(key)
    assert list(HealthAlert.objects.values_list("healthy", flat=True)) == [True, False]
    assert "healthy again" in HealthAlert.objects.first().message


def test_an_unhealthy_first_check_raises_an_alert(make_provider):
    provider = make_provider("gemini", keys=0)
    key = api_key_add(provider=provider, label="typo", secret="invalid-gemini-key-0042")
    check_credential_health(key)
    assert HealthAlert.objects.filter(api_key=key, healthy=False).count() == 1


def test_alerts_are_kept_per_subject(make_provider):
    provider = make_provider("openai", keys=2)
    first, second = provider.api_keys.all()
    check_credential_health(first)
    check_provider_health(provider)
    _revoke(second)
    check_credential_health(second)
    # the provider's and the first key's healthy checks do not mask the second key's change
    assert list(HealthAlert.objects.values_list("api_key_id", flat=True)) == [second.pk]


def test_history_is_newest_first_and_per_subject(make_provider):
    provider = make_provider("openai", keys=1)
    key = provider.api_keys.get()
    for _ in range(3):
        check_provider_health(provider)
    check_credential_health(key)
    history = list(health_history(provider))
    assert len(history) == 3
    assert [c.checked_at for c in history] == sorted((c.checked_at for c in history), reverse=True)
    assert all(c.api_key_id is None for c in history)
    assert [c.api_key_id for c in health_history(provider, key)] == [key.pk]
    assert len(health_history(provider, limit=2)) == 2


def test_current_health_shows_the_latest_state_of_provider_and_credentials(make_provider):
    provider = make_provider("openai", keys=2)
    first, second = provider.api_keys.all()
    assert current_health(provider).healthy is None
    check_all_health(providers=[provider])
    _revoke(second)
    check_credential_health(second)
    state = current_health(provider)
    assert state.healthy is True
    assert [(c.pk, check.healthy) for c, check in state.credentials] == [
        (first.pk, True),
        (second.pk, False),
    ]
    assert [a.api_key_id for a in health_alerts(provider=provider)] == [second.pk]


def test_the_periodic_task_checks_every_enabled_provider_and_credential(make_provider):
    on = make_provider("openai", keys=2)
    _oauth(on, "oauth-token-for-openai-7777")
    retired = on.api_keys.last()
    retired.state = ApiKey.State.RETIRED
    retired.save()
    off = make_provider("qwen", keys=1)
    off.enabled = False
    off.save()
    summary = monitoring.run_health_checks()
    first_key = on.api_keys.first()
    oauth = on.oauth_credentials.get()
    assert summary == {
        f"provider:{on.pk}": True,
        f"key:{first_key.pk}": True,
        f"oauth:{oauth.pk}": True,
    }
    assert not HealthCheck.objects.filter(provider=off).exists()


def test_the_on_demand_tasks_take_ids(make_provider):
    provider = make_provider("cerebras", keys=1)
    key = provider.api_keys.get()
    assert monitoring.check_provider_health(provider.pk) == {
        f"provider:{provider.pk}": True,
        f"key:{key.pk}": True,
    }
    assert monitoring.check_credential_health("key", key.pk) is True
    assert monitoring.check_credential_health("key", 987654) is None
    assert monitoring.check_provider_health(987654) == {}


def test_old_checks_are_pruned(make_provider):
    provider = make_provider("openai", keys=0)
    old = HealthCheck.objects.create(
        provider=provider,
        healthy=True,
        latency_ms=1,
        checked_at=timezone.now() - timedelta(days=40),
    )
    recent = check_provider_health(provider)
    assert prune_health_history(older_than_days=30) == 1
    assert list(HealthCheck.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not HealthCheck.objects.filter(pk=old.pk).exists()


def test_one_crashing_probe_does_not_stop_the_others(make_provider, monkeypatch, caplog):
    from providers_app.services import health

    good = make_provider("openai", name="good")
    bad = make_provider("qwen", name="bad")
    real_probe = health._probe

    async def probe(provider, credential, *, own_client):
        if provider.name == "bad":
            raise RuntimeError("a bug, not an unhealthy provider")
        return await real_probe(provider, credential, own_client=own_client)

    monkeypatch.setattr(health, "_probe", probe)
    with caplog.at_level(logging.ERROR, logger="providers_app.services.health"):
        checks = check_all_health()
    assert {(c.provider_id, c.healthy) for c in checks} == {(good.pk, True)} and len(checks) == 2
    assert f"subject=provider:{bad.pk}" in caplog.text
    assert f"subject=key:{bad.api_keys.get().pk}" in caplog.text
