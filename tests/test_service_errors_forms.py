"""The one mapping of the error family to forms (aipk_site/infra/forms.py), through the
console's real forms: a refusal lands on the field it names, else above the form; an
error naming several fields lands field by field."""

from __future__ import annotations

import pytest

from aipk_site.infra import errors
from providers_app.console_forms import ApiKeyRotateForm, ProviderForm
from providers_app.services.credentials import CredentialError
from providers_app.services.provider_settings import ProviderSettingsError
from tenants_app.console_forms import KeyForm, RouteForm, TenantSettingsForm

pytestmark = pytest.mark.django_db


def valid(form):
    assert form.is_valid(), form.errors
    return form


def tenant_form():
    return valid(TenantSettingsForm({"name": "Acme"}))


def test_it_puts_an_error_with_a_param_on_that_field():
    form = tenant_form()
    form.add_service_error(errors.InvalidRequest("name must be 1 to 100 characters", param="name"))

    assert form.errors == {"name": ["name must be 1 to 100 characters"]}


def test_it_drops_the_param_prefix_beside_the_field_it_names():
    form = valid(ApiKeyRotateForm({"new_secret": "sk-new-secret", "grace_minutes": "5"}))
    form.add_service_error(CredentialError("secret", "an API key has at least 8 characters"))

    # the service's "secret" is this form's "new_secret"
    assert form.errors == {"new_secret": ["an API key has at least 8 characters"]}


def test_it_puts_an_error_without_a_param_above_the_form():
    form = tenant_form()
    form.add_service_error(errors.PermissionDenied("staff only"))

    assert form.non_field_errors() == ["staff only"]
    assert list(form.errors) == ["__all__"]


def test_it_puts_an_error_naming_a_field_the_form_lacks_above_the_form_naming_it():
    form = valid(ApiKeyRotateForm({"new_secret": "sk-new-secret", "grace_minutes": "5"}))
    form.add_service_error(CredentialError("provider", "is disabled"))

    assert form.non_field_errors() == ["provider: is disabled"]


def test_it_maps_every_member_of_the_family_not_only_invalid_request():
    form = tenant_form()
    form.add_service_error(errors.NotFound("no such provider 'x'", param="allowed_providers"))

    # TenantSettingsForm has allowed_providers only for staff: above the form
    assert form.non_field_errors() == ["no such provider 'x'"]


def test_it_shows_a_dotted_param_on_its_field_with_the_path():
    form = valid(
        KeyForm(
            {"name": "app", "allowed_models": "a, b", "cache_ttl_seconds": "300"},
        )
    )
    form.add_service_error(
        errors.InvalidRequest("allowed_models.1: unknown model 'b'", param="allowed_models.1")
    )

    assert form.errors == {"allowed_models": ["allowed_models.1: unknown model 'b'"]}


def test_it_keeps_the_route_forms_line_numbers():
    form = valid(RouteForm({"alias": "fast", "strategy": "failover", "candidates": "a/x\nb/y"}))
    form.add_service_error(
        errors.InvalidRequest(
            "candidates.1.provider: unknown provider 'b'", param="candidates.1.provider"
        )
    )

    assert form.errors == {"candidates": ["Line 2: unknown provider 'b'"]}


def test_it_puts_provider_settings_errors_field_by_field():
    form = valid(
        ProviderForm(
            {"name": "openai-x", "key_strategy": "health_aware"},
            provider_type="openai",
        )
    )
    form.add_service_error(
        ProviderSettingsError(
            {
                "organization": "String should have at most 100 characters",
                "base_url": "an openai-compatible provider needs a base URL",
                "nope": "Extra inputs are not permitted",
            }
        )
    )

    assert form.errors == {
        # a type-specific setting is its own form field
        "settings_organization": ["String should have at most 100 characters"],
        "base_url": ["an openai-compatible provider needs a base URL"],
        "__all__": ["nope: Extra inputs are not permitted"],
    }


def test_it_puts_a_model_validation_dict_field_by_field():
    form = tenant_form()
    form.add_service_errors({"name": ["taken"], "__all__": ["try again"], "slug": "bad"})

    assert form.errors == {"name": ["taken"], "__all__": ["try again", "slug: bad"]}
