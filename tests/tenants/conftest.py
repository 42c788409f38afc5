"""The shared cast for tenant tests.

``tenant`` is Acme: ``owner`` owns it, ``tenant_admin`` is its admin,
``teammate`` a member and ``viewer`` a viewer. ``outsider`` owns ``other_tenant``
(Globex) and has no role in Acme. ``staff`` runs the organisation.

``client_as(user)`` is a test client logged in as ``user`` (a console session);
``token_for(user)`` mints an admin token and returns its secret;
``bearer(secret)`` is a client sending ``Authorization: Bearer <secret>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tenants_app.models import Membership, Role, Tenant
from tenants_app.services.keys import admin_token_create

PASSWORD = "pw-not-used-by-tests"


def _user(username: str, **extra):
    return get_user_model().objects.create_user(username, password=PASSWORD, **extra)


def _member(user, tenant: Tenant, role: Role):
    Membership.objects.create(user=user, tenant=tenant, role=role)
    return user


@pytest.fixture
def tenant(db) -> Tenant:
    return Tenant.objects.create(name="Acme", slug="acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return Tenant.objects.create(name="Globex", slug="globex")


@pytest.fixture
def staff(db):
    return _user("staff", is_staff=True)


@pytest.fixture
def owner(tenant):
    return _member(_user("owner"), tenant, Role.OWNER)


@pytest.fixture
def tenant_admin(tenant):
    return _member(_user("tenant-admin"), tenant, Role.ADMIN)


@pytest.fixture
def teammate(tenant):
    return _member(_user("teammate"), tenant, Role.MEMBER)


@pytest.fixture
def viewer(tenant):
    return _member(_user("viewer"), tenant, Role.VIEWER)


@pytest.fixture
def outsider(other_tenant):
    return _member(_user("outsider"), other_tenant, Role.OWNER)


@pytest.fixture
def client_as() -> Callable[..., Client]:
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def token_for(db) -> Callable[..., str]:
    def make(user, name: str = "ci") -> str:
        _token, secret = admin_token_create(user=user, name=name)
        return secret

    return make


@pytest.fixture
def bearer() -> Callable[[str], Client]:
    def make(secret: str) -> Client:
        return Client(headers={"Authorization": f"Bearer {secret}"})

    return make


def send(client: Client, method: str, url: str, body: dict | None = None):
    """``client.<method>(url)`` with ``body`` as JSON when given."""
    call = getattr(client, method.lower())
    if body is None:
        return call(url)
    return call(url, data=json.dumps(body), content_type="application/json")
