"""Authorization code + PKCE end to end: oauth_start → the simulator's authorize page →
/oauth/callback/<provider>/ (Django test client) → token exchange over loopback HTTP."""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from providers_app.models import ApiKey, OAuthCredential, OAuthFlow
from providers_app.services.oauth import oauth_start
from tenants_app.models import AuditEvent

pytestmark = pytest.mark.django_db

REDIRECT = "http://testserver/oauth/callback/{name}/"


@pytest.fixture
def admin_user(db):
    return User.objects.create_user("admin", password="x", is_staff=True)


@pytest.fixture
def oauth_provider(make_provider, simulator):
    def make(provider_type="openai", *, name=None, client_id=None, authorize_query="", **fields):
        name = name or f"{provider_type}-oauth"
        return make_provider(
            provider_type,
            name=name,
            keys=0,
            oauth_client_id=client_id or f"sim-{name}-{secrets.token_hex(3)}",
            oauth_authorize_url=simulator.url + "/oauth/authorize" + authorize_query,
            oauth_token_url=simulator.url + "/oauth/token",
            **fields,
        )

    return make


def _authorize(url: str) -> dict[str, str]:
    """Follow the authorize URL at the simulator; the callback's query parameters."""
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def _start(provider, actor=None):
    url = oauth_start(
        provider=provider, redirect_uri=REDIRECT.format(name=provider.name), actor=actor
    )
    return url, _authorize(url)


@pytest.mark.parametrize("provider_type", ["openai", "anthropic"])
def test_it_connects_an_openai_style_account(client, oauth_provider, admin_user, provider_type):
    provider = oauth_provider(provider_type, oauth_scopes="openid email offline_access")
    url, params = _start(provider, admin_user)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [REDIRECT.format(name=provider.name)]

    response = client.get(f"/oauth/callback/{provider.name}/", params)

    assert response.status_code == 200
    credential = OAuthCredential.objects.get(provider=provider)
    assert credential.account_label == "sim-user@example.com"
    assert credential.access_token.startswith("sim-at-")
    assert credential.refresh_token.startswith("sim-rt-")
    assert credential.last4 == credential.access_token[-4:]
    assert credential.scopes == "openid email offline_access"
    assert credential.client_id == provider.oauth_client_id
    assert timedelta(minutes=59) < credential.expires_at - timezone.now() <= timedelta(hours=1)
    page = response.content.decode()
    assert "sim-user@example.com" in page and credential.last4 in page
    assert credential.access_token not in page and credential.refresh_token not in page
    flow = OAuthFlow.objects.get(provider=provider)
    assert flow.used_at is not None and flow.oauth_credential == credential and flow.error == ""
    event = AuditEvent.objects.get(action="oauth_credential.add")
    assert event.actor == admin_user and event.object_id == str(credential.pk)
    assert credential.access_token not in str(event.changes)


def test_it_connects_a_google_account_with_client_secret_and_offline_access(client, oauth_provider):
    client_id = f"confidential-gemini-{secrets.token_hex(3)}"
    provider = oauth_provider(
        "gemini", client_id=client_id, oauth_client_secret=f"secret-{client_id}"
    )
    url, params = _start(provider)
    query = parse_qs(urlsplit(url).query)
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert "cloud-platform" in query["scope"][0]  # the documented default scopes

    response = client.get(f"/oauth/callback/{provider.name}/", params)

    assert response.status_code == 200
    credential = OAuthCredential.objects.get(provider=provider)
    assert credential.client_secret == f"secret-{client_id}"
    assert credential.refresh_token


def test_it_reports_a_failed_exchange_when_the_client_secret_is_wrong(client, oauth_provider):
    client_id = f"confidential-x-{secrets.token_hex(3)}"
    provider = oauth_provider("gemini", client_id=client_id, oauth_client_secret="wrong")
    _url, params = _start(provider)
    response = client.get(f"/oauth/callback/{provider.name}/", params)
    assert response.status_code == 400
    assert b"invalid_client" in response.content
    assert not OAuthCredential.objects.exists()
    assert OAuthFlow.objects.get().error == "invalid_client"


def test_it_connects_a_generic_openai_compatible_provider(client, oauth_provider):
    provider = oauth_provider("openai-compatible", name="custom-llm", oauth_scopes="chat")
    _url, params = _start(provider)
    assert client.get(f"/oauth/callback/{provider.name}/", params).status_code == 200
    assert OAuthCredential.objects.get(provider=provider).scopes == "chat"


def _assert_rejected(response, code: str) -> None:
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert code.encode() in response.content


def test_it_rejects_an_unknown_state(client, oauth_provider):
    provider = oauth_provider()
    _url, params = _start(provider)
    response = client.get(f"/oauth/callback/{provider.name}/", {**params, "state": "not-a-state"})
    _assert_rejected(response, "unknown_state")
    _assert_rejected(
        client.get(f"/oauth/callback/{provider.name}/", {"code": "x"}), "missing_state"
    )
    assert not OAuthCredential.objects.exists()
    assert OAuthFlow.objects.get().used_at is None


def test_it_rejects_a_reused_state(client, oauth_provider):
    provider = oauth_provider()
    _url, params = _start(provider)
    assert client.get(f"/oauth/callback/{provider.name}/", params).status_code == 200
    _assert_rejected(client.get(f"/oauth/callback/{provider.name}/", params), "state_used")
    assert OAuthCredential.objects.count() == 1


def test_it_rejects_an_expired_state(client, oauth_provider):
    provider = oauth_provider()
    _url, params = _start(provider)
    flow = OAuthFlow.objects.get()
    assert timedelta(minutes=9) < flow.expires_at - flow.created_at <= timedelta(minutes=10)
    OAuthFlow.objects.filter(pk=flow.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _assert_rejected(client.get(f"/oauth/callback/{provider.name}/", params), "state_expired")
    assert not OAuthCredential.objects.exists()
    assert OAuthFlow.objects.get().used_at is None


def test_it_rejects_a_state_of_another_provider(client, oauth_provider):
    first = oauth_provider(name="first")
    second = oauth_provider(name="second")
    _url, params = _start(first)
    _assert_rejected(client.get(f"/oauth/callback/{second.name}/", params), "state_mismatch")
    assert not OAuthCredential.objects.exists()
    assert OAuthFlow.objects.get().used_at is None


def test_it_shows_access_denied_and_uses_up_the_flow(client, oauth_provider):
    provider = oauth_provider(authorize_query="?deny=1")
    _url, params = _start(provider)
    assert params["error"] == "access_denied"
    response = client.get(f"/oauth/callback/{provider.name}/", params)
    _assert_rejected(response, "access_denied")
    assert b"denied" in response.content
    flow = OAuthFlow.objects.get()
    assert flow.used_at is not None and flow.error == "access_denied"
    assert not OAuthCredential.objects.exists()
    assert AuditEvent.objects.filter(action="oauth_flow.failed").count() == 1


def test_it_adds_an_openrouter_key_to_the_pool(client, make_provider, simulator):
    provider = make_provider(
        "openrouter",
        name="or-oauth",
        keys=0,
        oauth_authorize_url=simulator.url + "/openrouter/auth",
    )
    url = oauth_start(provider=provider, redirect_uri=REDIRECT.format(name=provider.name))
    callback_url = parse_qs(urlsplit(url).query)["callback_url"][0]
    assert callback_url.startswith(REDIRECT.format(name=provider.name) + "?state=")
    params = _authorize(url)
    assert set(params) == {"state", "code"}

    response = client.get(f"/oauth/callback/{provider.name}/", params)

    assert response.status_code == 200
    key = ApiKey.objects.get(provider=provider)
    assert key.secret.startswith("sk-or-v1-sim") and key.state == ApiKey.State.ACTIVE
    assert key.secret not in response.content.decode()
    assert OAuthFlow.objects.get().api_key == key
    assert not OAuthCredential.objects.exists()
    # the key works against the simulator's OpenRouter routes
    reply = httpx.get(provider.base_url + "/key", headers={"Authorization": f"Bearer {key.secret}"})
    assert reply.status_code == 200
    _assert_rejected(client.get(f"/oauth/callback/{provider.name}/", params), "state_used")
    assert ApiKey.objects.count() == 1
