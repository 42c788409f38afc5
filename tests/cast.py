"""The shared cast for tests of tenants, the console and the gateway (each of those
folders' conftest imports it).

``tenant`` is Acme: ``owner`` owns it, ``tenant_admin`` is its admin,
``teammate`` a member and ``viewer`` a viewer. ``outsider`` owns ``other_tenant``
(Globex) and has no role in Acme. ``staff`` runs the organisation.

``client_as(user)`` is a test client logged in as ``user`` (a console session);
``token_for(user)`` mints an admin token and returns its secret;
``bearer(secret)`` is a client sending ``Authorization: Bearer <secret>``;
``make_member(username, tenant, role)`` adds someone else to the cast;
``send(client, method, url, body)`` sends ``body`` as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tenants_app.models import Membership, Role, Tenant
from tenants_app.services.keys import admin_token_create


def make_user(username: str, **extra):
    """A user without a usable password: tests log in with force_login, and skipping
    the password hash keeps hundreds of matrix cells fast."""
    return get_user_model().objects.create_user(username, **extra)


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
    return make_user("staff", is_staff=True)


@pytest.fixture
def owner(tenant):
    return _member(make_user("owner"), tenant, Role.OWNER)


@pytest.fixture
def tenant_admin(tenant):
    return _member(make_user("tenant-admin"), tenant, Role.ADMIN)


@pytest.fixture
def teammate(tenant):
    return _member(make_user("teammate"), tenant, Role.MEMBER)


@pytest.fixture
def viewer(tenant):
    return _member(make_user("viewer"), tenant, Role.VIEWER)


@pytest.fixture
def outsider(other_tenant):
    return _member(make_user("outsider"), other_tenant, Role.OWNER)


@pytest.fixture
def make_member(db) -> Callable:
    """make_member("carol", tenant, Role.ADMIN) → a new user with that role in ``tenant``;
    with tenant None, a user with no membership at all."""

    def make(username: str, tenant: Tenant | None = None, role: Role = Role.MEMBER, **extra):
        user = make_user(username, **extra)
        return _member(user, tenant, role) if tenant is not None else user

    return make


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


@pytest.fixture
def send() -> Callable:
    """send(client, "POST", url, body) → response, with ``body`` sent as JSON."""

    def call(client: Client, method: str, url: str, body: dict | None = None):
        method_call = getattr(client, method.lower())
        if body is None:
            return method_call(url)
        return method_call(url, data=json.dumps(body), content_type="application/json")

    return call
