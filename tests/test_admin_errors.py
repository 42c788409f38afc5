"""The one mapping of the error family to the admin (aipk_site/infra/admin.py): a
service's refusal is a form error on the field it names, else above the form, and a
refusal outside a form is one admin message per field."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.test import RequestFactory
from django.urls import reverse

from aipk_site.infra import errors
from aipk_site.infra.admin import message_error, report_error
from providers_app.models import Provider
from providers_app.services.provider_settings import ProviderSettingsError
from providers_app.services.providers import provider_create
from tenants_app.models import Membership, ModelRoute, Role, Tenant
from tenants_app.services.tenants import tenant_create


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def root(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def client(client, root):
    client.force_login(root)
    return client


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code  # the form again
    return {
        name: list(messages) for name, messages in response.context["adminform"].form.errors.items()
    }


def test_it_shows_a_refusal_beside_the_field_it_names(client, root):
    tenant = tenant_create(name="Acme", slug="acme", owner=root, actor=root)
    owner = Membership.objects.get(tenant=tenant, user=root)

    response = client.post(url(Membership, "change", owner.pk), {"role": Role.MEMBER})

    assert form_errors(response) == {"role": ["a tenant must keep at least one owner"]}
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_it_shows_a_refusal_about_part_of_a_field_on_it_with_the_path_once(client, root):
    response = client.post(
        url(ModelRoute, "add"),
        {
            "alias": "smart",
            "strategy": "failover",
            "candidates": '[{"provider": "nope", "model": "x"}]',
        },
    )

    assert form_errors(response) == {
        "candidates": ["candidates.0.provider: unknown provider 'nope'"]
    }
    assert not ModelRoute.objects.exists()


def test_it_shows_provider_settings_errors_field_by_field(client, root):
    form = {"name": "groq", "type": "openai-compatible", "key_strategy": "health_aware"}

    no_url = client.post(url(Provider, "add"), {**form, "settings": "{}", "timeout_seconds": "60"})
    assert form_errors(no_url) == {"base_url": ["an openai-compatible provider needs a base URL"]}

    unknown = client.post(
        url(Provider, "add"),
        {
            **form,
            "base_url": "https://groq.example",
            "settings": '{"nope": 1}',
            "timeout_seconds": "60",
        },
    )
    assert form_errors(unknown) == {"__all__": ["nope: Extra inputs are not permitted"]}
    assert not Provider.objects.exists()


def test_it_turns_a_refused_delete_into_a_message(client, root):
    tenant = tenant_create(name="Acme", slug="acme", owner=root, actor=root)
    owner = Membership.objects.get(tenant=tenant, user=root)

    response = client.post(url(Membership, "delete", owner.pk), {"post": "yes"}, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "a tenant must keep at least one owner"
    ]
    assert Tenant.objects.get().memberships.count() == 1


@pytest.fixture
def request_with_messages(root):
    request = RequestFactory().post("/admin/")
    request.user = root
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    return request


def test_it_reports_a_refusal_one_message_per_field(request_with_messages, root):
    model_admin = admin.site._registry[Provider]
    provider = provider_create(name="openai-x", type="openai", actor=root)

    message_error(
        model_admin,
        request_with_messages,
        ProviderSettingsError({"organization": "too long", "timeouts.connect": "must be > 0"}),
    )
    report_error(model_admin, request_with_messages, provider, errors.PermissionDenied("no"))

    assert [(m.level_tag, str(m)) for m in get_messages(request_with_messages)] == [
        ("error", "organization: too long"),
        ("error", "timeouts.connect: must be > 0"),
        ("error", f"{provider}: no"),
    ]
