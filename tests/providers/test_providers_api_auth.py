"""The provider API takes the management API's one authentication: a console session or
an admin token, judged the same way (staff only, the same refusal either way)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tenants_app.services.keys import admin_token_create

pytestmark = pytest.mark.django_db(transaction=True)


def token_client(user: User) -> Client:
    _token, secret = admin_token_create(user=user, name="script")
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def session_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_lists_providers_for_an_admin_token_of_a_staff_user(make_provider):
    make_provider("openai", keys=1)
    staff = User.objects.create_user("root", password="pw-123456", is_staff=True)
    response = token_client(staff).get("/api/providers/")
    assert response.status_code == 200
    [provider] = response.json()
    assert provider["name"] == "openai-sim"
    assert provider["api_keys"][0]["last4"] == "0001"


def test_it_tests_a_key_live_for_an_admin_token_of_a_staff_user(make_provider):
    # the one async operation: the caller is the token's user, not the (absent) session's
    key = make_provider("gemini", keys=1).api_keys.get()
    staff = User.objects.create_user("root", password="pw-123456", is_staff=True)
    response = token_client(staff).post(f"/api/providers/gemini-sim/keys/{key.pk}/test")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "error_type": ""}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/providers/"),
        ("GET", "/api/providers/openai-sim"),
        ("POST", "/api/providers/openai-sim/keys"),
        ("POST", "/api/providers/openai-sim/keys/{key}/test"),
    ],
)
def test_it_refuses_a_non_staff_token_exactly_as_it_refuses_the_session(
    make_provider, method, path
):
    key = make_provider("openai", keys=1).api_keys.get()
    path = path.format(key=key.pk)
    someone = User.objects.create_user("someone", password="pw-123456")
    body = json.dumps({"label": "x", "secret": "sk-new-secret-1234"})
    answers = []
    for client in (session_client(someone), token_client(someone)):
        if method == "GET":
            response = client.get(path)
        else:
            response = client.post(path, data=body, content_type="application/json")
        answers.append((response.status_code, response.json()))
    by_session, by_token = answers
    assert by_session == (
        403,
        {"error": {"type": "permission_error", "code": "forbidden", "message": "staff only"}},
    )
    assert by_token == by_session
    assert key.provider.api_keys.count() == 1


def test_it_refuses_a_revoked_token_as_the_other_routers_do(make_provider):
    from tenants_app.services.keys import admin_token_revoke

    make_provider("openai", keys=0)
    staff = User.objects.create_user("root", password="pw-123456", is_staff=True)
    token, secret = admin_token_create(user=staff, name="script")
    admin_token_revoke(token=token)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for path in ("/api/providers/", "/api/tenants/"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.json()["error"] == {
            "type": "authentication_error",
            "code": "unauthenticated",
            "message": "invalid or revoked admin token",
        }
