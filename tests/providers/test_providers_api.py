"""The provider management API: staff only, secrets in but never out."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-sim-openai-key-0001"


@pytest.fixture
def staff(client):
    user = User.objects.create_user("admin", password="pw-123456", is_staff=True)
    client.force_login(user)
    return client


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_it_lists_providers_with_keys_shown_only_by_label_and_last_four(staff, make_provider):
    make_provider("openai", keys=1)
    response = staff.get("/api/providers/")
    assert response.status_code == 200
    [provider] = response.json()
    assert provider["name"] == "openai-sim"
    assert provider["api_keys"][0]["last4"] == "0001"
    assert SECRET not in response.content.decode()


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_it_refuses_anyone_but_staff(client, make_provider, who):
    make_provider("openai", keys=1)
    if who == "member":
        client.force_login(User.objects.create_user("someone", password="pw-123456"))
    response = client.get("/api/providers/")
    assert response.status_code == (401 if who == "anonymous" else 403)
    assert set(response.json()["error"]) == {"type", "code", "message"}
    response = post(
        client, "/api/providers/openai-sim/keys", {"label": "x", "secret": "sk-new-secret-1234"}
    )
    assert response.status_code in (401, 403)


def test_it_adds_a_key_and_answers_without_the_secret(staff, make_provider):
    make_provider("anthropic", keys=0)
    response = post(
        staff,
        "/api/providers/anthropic-sim/keys",
        {"label": "prod", "secret": "sk-ant-new-secret-7777"},
    )
    assert response.status_code == 201
    assert (
        response.json()["last4"] == "7777"
        and "sk-ant-new-secret-7777" not in response.content.decode()
    )


def test_it_names_the_bad_field(staff, make_provider):
    make_provider("openai", keys=0)
    response = post(staff, "/api/providers/openai-sim/keys", {"label": "prod", "secret": "short"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "secret"
    response = staff.post(
        "/api/providers/openai-sim/keys", data="{not json", content_type="application/json"
    )
    assert 400 <= response.status_code < 500


def test_it_answers_404_for_an_unknown_provider_or_key(staff, make_provider):
    make_provider("openai", keys=1)
    assert (
        post(staff, "/api/providers/nope/keys", {"label": "a", "secret": "sk-12345678"}).status_code
        == 404
    )
    response = post(
        staff, "/api/providers/openai-sim/keys/999999/rotate", {"secret": "sk-12345678"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_it_rotates_a_key_through_the_api(staff, make_provider):
    key = make_provider("openai", keys=1).api_keys.get()
    response = post(
        staff,
        f"/api/providers/openai-sim/keys/{key.pk}/rotate",
        {"secret": "sk-sim-openai-new-0042", "grace_seconds": 60},
    )
    assert response.status_code == 201 and response.json()["last4"] == "0042"
    provider = staff.get("/api/providers/openai-sim").json()
    old = next(k for k in provider["api_keys"] if k["id"] == key.pk)
    assert old["retire_at"] is not None


def test_it_refuses_a_rotation_whose_new_key_fails_its_live_test(staff, make_provider):
    key = make_provider("openai", keys=1).api_keys.get()
    response = post(
        staff, f"/api/providers/openai-sim/keys/{key.pk}/rotate", {"secret": "invalid-new-key-0000"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "new_secret"


def test_it_tests_a_key_live_and_disables_it(staff, make_provider):
    provider = make_provider("gemini", keys=1)
    key = provider.api_keys.get()
    assert post(staff, f"/api/providers/gemini-sim/keys/{key.pk}/test", {}).json() == {
        "ok": True,
        "error_type": "",
    }
    response = post(
        staff,
        f"/api/providers/gemini-sim/keys/{key.pk}/state",
        {"state": "invalid", "reason": "leaked"},
    )
    assert response.json()["state"] == "invalid"
    response = post(staff, f"/api/providers/gemini-sim/keys/{key.pk}/state", {"state": "bogus"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "state"
