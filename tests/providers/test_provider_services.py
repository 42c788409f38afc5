"""Creating providers, validating their per-type settings, storing keys encrypted."""

from __future__ import annotations

import pytest
from django.db import connection

from providers_app.models import ApiKey, Provider
from providers_app.services.credentials import CredentialError, api_key_add, api_key_set_state
from providers_app.services.provider_settings import ProviderSettingsError
from providers_app.services.providers import adapter_config, provider_create, provider_update
from tenants_app.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_it_creates_a_provider_with_settings_checked_for_its_type():
    provider = provider_create(
        name="openrouter",
        type="openrouter",
        settings={"site_url": "https://aipk.example", "site_name": "aipk"},
    )
    assert provider.settings == {"site_url": "https://aipk.example/", "site_name": "aipk"}
    assert AuditEvent.objects.filter(action="provider.create", object_id=str(provider.pk)).exists()


@pytest.mark.parametrize(
    ("provider_type", "settings", "field"),
    [
        ("openai", {"organisation": "org-1"}, "organisation"),
        ("gemini", {"rate_limit_tier": "platinum"}, "rate_limit_tier"),
        ("openrouter", {"site_url": "not a url"}, "site_url"),
        ("qwen", {"requests_per_minute": 0}, "requests_per_minute"),
        ("anthropic", {"organization": "x"}, "organization"),
    ],
)
def test_it_rejects_settings_a_type_does_not_have_naming_the_field(provider_type, settings, field):
    with pytest.raises(ProviderSettingsError) as info:
        provider_create(name="p", type=provider_type, settings=settings)
    assert field in info.value.errors
    assert not Provider.objects.exists()


def test_it_requires_a_base_url_for_an_openai_compatible_endpoint():
    with pytest.raises(ProviderSettingsError) as info:
        provider_create(name="groq", type="openai-compatible")
    assert "base_url" in info.value.errors


def test_it_rejects_an_unknown_type():
    with pytest.raises(ProviderSettingsError) as info:
        provider_create(name="x", type="mistral")
    assert "type" in info.value.errors


def test_it_builds_the_kit_configuration_from_provider_and_key():
    provider = provider_create(
        name="gem", type="gemini", settings={"project_id": "proj-9"}, timeout_seconds=30
    )
    key = api_key_add(provider=provider, label="main", secret="AIza-secret-value-1234")
    config = adapter_config(provider, key)
    assert (config.api_key, config.project_id, config.timeout, config.name) == (
        "AIza-secret-value-1234",
        "proj-9",
        30,
        "gem",
    )
    assert "AIza-secret-value-1234" not in repr(config)


def test_it_stores_api_keys_encrypted_and_shows_only_the_last_four():
    provider = provider_create(name="oa", type="openai")
    key = api_key_add(provider=provider, label="prod", secret="sk-live-very-secret-9876")
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM providers_app_apikey WHERE id = %s", [key.pk])
        raw = bytes(cursor.fetchone()[0])
    assert b"sk-live-very-secret-9876" not in raw and b"9876" not in raw
    assert ApiKey.objects.get(pk=key.pk).secret == "sk-live-very-secret-9876"
    assert key.last4 == "9876"
    assert "sk-live" not in str(key) + repr(key)
    event = AuditEvent.objects.get(action="api_key.add")
    assert "sk-live-very-secret-9876" not in str(event.changes)


def test_it_refuses_a_key_that_is_too_short_or_unlabelled():
    provider = provider_create(name="oa", type="openai")
    with pytest.raises(CredentialError) as info:
        api_key_add(provider=provider, label="x", secret="short")
    assert info.value.field == "secret"
    with pytest.raises(CredentialError) as info:
        api_key_add(provider=provider, label=" ", secret="long-enough-secret")
    assert info.value.field == "label"


def test_it_disables_and_re_enables_a_key_with_an_audit_trail():
    provider = provider_create(name="oa", type="openai")
    key = api_key_add(provider=provider, label="prod", secret="sk-live-very-secret-9876")
    api_key_set_state(key=key, state="invalid", reason="401 from provider")
    api_key_set_state(key=key, state="active")
    key.refresh_from_db()
    assert key.state == "active" and key.failure_count == 0
    assert AuditEvent.objects.filter(action="api_key.state").count() == 2


def test_it_updates_settings_through_the_same_validation():
    provider = provider_create(name="oa", type="openai")
    provider_update(provider=provider, settings={"organization": "org-2"}, default_model="gpt-4o")
    provider.refresh_from_db()
    assert provider.settings == {"organization": "org-2"} and provider.default_model == "gpt-4o"
    with pytest.raises(ProviderSettingsError):
        provider_update(provider=provider, settings={"project_id": "x"})
