"""The API tokens page (/console/tokens/): everyone signed in manages their own admin
tokens -- made here and shown once, listed by prefix, revoked by their owner; someone
else's token is out of reach, and a made token really opens the management API."""

from __future__ import annotations

import re

import pytest

from tenants_app.models import AdminToken, AuditEvent
from tenants_app.services.keys import admin_token_create

URL = "/console/tokens/"

pytestmark = pytest.mark.django_db


def test_it_needs_a_signed_in_user(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/console/login/" in response["Location"]


def test_it_makes_a_token_and_shows_its_secret_once(client_as, teammate):
    client = client_as(teammate)

    response = client.post(URL, {"name": "CI deploys"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()

    assert response.status_code == 201
    token = AdminToken.objects.get(user=teammate)
    secret = re.search(r'id="new-token-secret">([^<]+)<', body).group(1)
    assert secret.startswith(token.prefix)
    assert 'hx-history="false"' in body
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    # never again: the listing shows the prefix, not the secret
    listing = client.get(URL).content.decode()
    assert token.prefix in listing and secret not in listing
    assert AuditEvent.objects.filter(action="admin_token.create", actor=teammate).count() == 1

    # the secret is a working bearer for the management API, acting as its user
    api = client.__class__()
    me = api.get("/api/tenants/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert me.status_code == 200
    assert [t["slug"] for t in me.json()] == ["acme"]


def test_it_names_a_missing_name_next_to_the_field(client_as, teammate):
    response = client_as(teammate).post(URL, {"name": "  "})
    body = response.content.decode()
    assert response.status_code == 422
    assert 'class="field has-error"' in body and "This field is required." in body
    assert not AdminToken.objects.exists()


def test_it_revokes_a_token_audited_and_the_api_stops_taking_it(client_as, teammate):
    token, secret = admin_token_create(user=teammate, name="nightly export")
    client = client_as(teammate)

    response = client.post(f"{URL}{token.pk}/revoke/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "revoked" in response.content.decode()
    assert AuditEvent.objects.filter(action="admin_token.revoke", actor=teammate).count() == 1
    api = client.__class__()
    assert api.get("/api/tenants/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_it_keeps_other_peoples_tokens_out_of_reach(client_as, teammate, outsider, staff):
    theirs, _secret = admin_token_create(user=outsider, name="globex robot")

    for user in (teammate, staff):  # not even staff revoke someone else's token here
        client = client_as(user)
        assert "globex robot" not in client.get(URL).content.decode()
        assert client.post(f"{URL}{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_it_refuses_a_get_on_the_revoke_action(client_as, teammate):
    token, _secret = admin_token_create(user=teammate, name="x")
    assert client_as(teammate).get(f"{URL}{token.pk}/revoke/").status_code == 405
