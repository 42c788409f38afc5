"""The console's Credentials pages: API keys (add, test, disable/enable, rotate) and OAuth
accounts (connect with code + PKCE, device code, refresh, disconnect).

Staff only. No page ever shows a secret: API keys and OAuth accounts appear as a
label and their last four characters. Providers and authorisation servers are
the simulator, over loopback.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.utils import timezone

from providers_app.models import ApiKey, HealthCheck, OAuthCredential, OAuthFlow, Provider
from providers_app.services import oauth
from providers_app.services.credentials import api_key_add, api_key_set_state
from providers_app.services.providers import provider_create
from tenants_app.models import AuditEvent

OPENAI_PATH = "/openai/v1"
SECRET = "sk-sim-console-cred-key-7311"
NEW_SECRET = "sk-sim-console-rotated-key-2468"


@pytest.fixture
def provider(db, simulator):
    return provider_create(name="openai-main", type="openai", base_url=simulator.url + OPENAI_PATH)


@pytest.fixture
def key(provider):
    return api_key_add(provider=provider, label="primary", secret=SECRET)


@pytest.fixture
def oauth_provider(db, simulator):
    """An OpenAI-type provider whose OAuth client is registered with the simulator."""
    return provider_create(
        name="openai-oauth",
        type="openai",
        base_url=simulator.url + OPENAI_PATH,
        oauth_client_id="sim-console-oauth",
        oauth_authorize_url=simulator.url + "/oauth/authorize",
        oauth_token_url=simulator.url + "/oauth/token",
    )


@pytest.fixture
def device_provider(db, simulator):
    """device_provider("pending_polls=0&outcome=deny") → a Qwen provider on the simulator's
    device flow with those knobs (interval=0: the simulator never answers slow_down)."""

    def make(knobs: str = "pending_polls=1"):
        return provider_create(
            name=f"qwen-{Provider.objects.count() + 1}",
            type="qwen",
            base_url=simulator.url + "/qwen/v1",
            oauth_client_id="sim-console-qwen",
            oauth_device_url=simulator.url
            + "/qwen-oauth/api/v1/oauth2/device/code?interval=0&"
            + knobs,
            oauth_token_url=simulator.url + "/qwen-oauth/api/v1/oauth2/token",
        )

    return make


@pytest.fixture
def clock(monkeypatch):
    """The oauth service's clock, moved by hand instead of sleeping through poll intervals."""

    class Clock:
        now = timezone.now()

        def advance(self, seconds: float) -> None:
            self.now += timedelta(seconds=seconds)

    clock = Clock()
    monkeypatch.setattr(oauth.clock, "now", lambda: clock.now)
    return clock


def _connect(client, provider) -> OAuthCredential:
    """Connect through the console: Connect → the simulator's authorize → the callback."""
    response = client.post(f"/console/credentials/oauth/connect/{provider.pk}/")
    assert response.status_code == 302
    back = httpx.get(response["Location"], follow_redirects=False).headers["location"]
    callback = client.get(back.removeprefix("http://testserver"))
    assert callback.status_code == 200, callback.content
    return OAuthCredential.objects.get(provider=provider)


def _snapshot():
    return (
        list(ApiKey.objects.order_by("pk").values()),
        list(OAuthCredential.objects.order_by("pk").values()),
        OAuthFlow.objects.count(),
        AuditEvent.objects.count(),
    )


def _secrets_of(credential: OAuthCredential) -> list[str]:
    return [s for s in (credential.access_token, credential.refresh_token) if s]


# ------------------------------------------------------------------------------- access


@pytest.mark.parametrize("who", ["owner", "tenant_admin", "teammate", "outsider"])
def test_it_refuses_every_page_and_action_to_non_staff(
    request, who, client_as, staff, key, oauth_provider, device_provider
):
    account = _connect(client_as(staff), oauth_provider)
    qwen = device_provider()
    client = client_as(request.getfixturevalue(who))
    before = _snapshot()

    for url in [
        "/console/credentials/",
        f"/console/credentials/keys/{key.pk}/rotate/",
        f"/console/credentials/oauth/flows/{OAuthFlow.objects.first().pk}/",
    ]:
        assert client.get(url).status_code == 403, url
    for url, data in [
        (
            "/console/credentials/keys/add/",
            {"provider": key.provider_id, "label": "x", "secret": "sk-sim-nope-12345"},
        ),
        (f"/console/credentials/keys/{key.pk}/test/", {}),
        (f"/console/credentials/keys/{key.pk}/state/", {"state": "disabled"}),
        (
            f"/console/credentials/keys/{key.pk}/rotate/",
            {"new_secret": NEW_SECRET, "grace_minutes": "5"},
        ),
        (f"/console/credentials/oauth/connect/{oauth_provider.pk}/", {}),
        (f"/console/credentials/oauth/device/{qwen.pk}/", {}),
        (f"/console/credentials/oauth/flows/{OAuthFlow.objects.first().pk}/poll/", {}),
        (f"/console/credentials/oauth/{account.pk}/refresh/", {}),
        (f"/console/credentials/oauth/{account.pk}/disconnect/", {}),
    ]:
        assert client.post(url, data).status_code == 403, url

    assert _snapshot() == before


# ------------------------------------------------------------------------------- API keys


def test_it_lists_keys_with_label_last4_and_state_never_the_secret(client_as, staff, key):
    body = client_as(staff).get("/console/credentials/").content.decode()

    assert "primary" in body and "…7311" in body and "openai-main" in body
    assert '<span class="badge badge-active">active</span>' in body
    assert SECRET not in body


def test_it_shows_each_key_state_as_a_badge(client_as, staff, provider):
    soon = timezone.now() + timedelta(minutes=7)
    cooling = api_key_add(provider=provider, label="cooling", secret="sk-sim-cooling-0001")
    ApiKey.objects.filter(pk=cooling.pk).update(state="cooling_down", cooling_down_until=soon)
    broken = api_key_add(provider=provider, label="broken", secret="sk-sim-broken-0002")
    api_key_set_state(key=broken, state="invalid", actor=None, reason="authentication_error")
    disabled = api_key_add(provider=provider, label="by hand", secret="sk-sim-byhand-0003")
    api_key_set_state(key=disabled, state="disabled", actor=staff, reason="console: disabled")
    retired = api_key_add(provider=provider, label="old", secret="sk-sim-retired-0004")
    api_key_set_state(key=retired, state="retired", actor=staff)

    body = client_as(staff).get("/console/credentials/").content.decode()

    assert f"cooling down until {timezone.localtime(soon):%Y-%m-%d %H:%M} UTC" in body
    assert '<span class="badge badge-invalid">invalid</span>' in body
    assert '<span class="badge badge-disabled">disabled</span>' in body
    assert "badge-retired" in body


def test_it_adds_a_key_through_the_service_and_audits_it(client_as, staff, provider):
    client = client_as(staff)

    response = client.post(
        "/console/credentials/keys/add/",
        {"provider": provider.pk, "label": "from console", "secret": SECRET},
    )

    assert response.status_code == 302 and response["Location"] == "/console/credentials/"
    key = ApiKey.objects.get(label="from console")
    assert key.secret == SECRET and key.provider == provider
    event = AuditEvent.objects.get(action="api_key.add")
    assert event.actor == staff and SECRET not in str(event.changes)
    body = client.get("/console/credentials/").content.decode()
    assert "API key from console (…7311) added to openai-main." in body
    assert SECRET not in body


def test_it_shows_a_bad_key_inline_without_echoing_the_secret(client_as, staff, provider):
    client = client_as(staff)

    short = client.post(
        "/console/credentials/keys/add/", {"provider": provider.pk, "label": "x", "secret": "sk-12"}
    )
    no_label = client.post(
        "/console/credentials/keys/add/", {"provider": provider.pk, "label": "", "secret": SECRET}
    )
    no_provider = client.post(
        "/console/credentials/keys/add/", {"provider": "999", "label": "x", "secret": SECRET}
    )

    assert short.status_code == 422
    assert "Secret: an API key has at least 8 characters" in short.content.decode()
    assert "sk-12" not in short.content.decode()
    assert no_label.status_code == 422
    assert "Label: This field is required." in no_label.content.decode()
    assert SECRET not in no_label.content.decode()
    assert no_provider.status_code == 422
    assert "Provider: Select a valid choice." in no_provider.content.decode()
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.filter(action="api_key.add").exists()


def test_it_tests_a_key_live_and_shows_the_result_inline(client_as, staff, key, provider):
    client = client_as(staff)
    bad = api_key_add(provider=provider, label="bad", secret="invalid-console-key-01")

    good = client.post(f"/console/credentials/keys/{key.pk}/test/", headers={"HX-Request": "true"})
    refused = client.post(f"/console/credentials/keys/{bad.pk}/test/")

    assert good.status_code == 200
    assert '<span class="badge badge-ok" role="status">works</span>' in good.content.decode()
    assert "<html" not in good.content.decode()
    assert "failed: authentication_error" in refused.content.decode()
    assert SECRET not in good.content.decode()
    assert "invalid-console-key-01" not in refused.content.decode()


def test_it_disables_and_re_enables_a_key_with_audit(client_as, staff, key):
    client = client_as(staff)

    response = client.post(f"/console/credentials/keys/{key.pk}/state/", {"state": "disabled"})
    key.refresh_from_db()
    assert response.status_code == 302 and key.state == "disabled"
    body = client.get("/console/credentials/").content.decode()
    assert '<span class="badge badge-disabled">disabled</span>' in body
    assert ">Enable</button>" in body

    client.post(f"/console/credentials/keys/{key.pk}/state/", {"state": "active"})
    key.refresh_from_db()
    assert key.state == "active"
    changes = [
        e.changes["state"]
        for e in AuditEvent.objects.filter(action="api_key.state", actor=staff).order_by("id")
    ]
    assert changes == [["active", "disabled"], ["disabled", "active"]]


def test_it_refuses_an_unknown_state(client_as, staff, key):
    response = client_as(staff).post(
        f"/console/credentials/keys/{key.pk}/state/", {"state": "retired"}
    )
    key.refresh_from_db()
    assert response.status_code == 302 and key.state == "active"
    assert not AuditEvent.objects.filter(action="api_key.state").exists()


def test_it_rotates_a_key_with_a_grace_period_and_never_shows_either_secret(
    client_as, staff, key, provider
):
    client = client_as(staff)
    form_page = client.get(f"/console/credentials/keys/{key.pk}/rotate/")
    assert form_page.status_code == 200 and 'name="new_secret"' in form_page.content.decode()

    response = client.post(
        f"/console/credentials/keys/{key.pk}/rotate/",
        {"new_secret": NEW_SECRET, "label": "primary v2", "grace_minutes": "30"},
    )

    assert response.status_code == 302
    key.refresh_from_db()
    new_key = ApiKey.objects.get(label="primary v2")
    assert new_key.secret == NEW_SECRET and new_key.state == "active"
    assert timedelta(minutes=29) < key.retire_at - timezone.now() <= timedelta(minutes=30)
    assert AuditEvent.objects.filter(action="api_key.rotate", actor=staff).exists()
    pages = [
        client.get("/console/credentials/").content.decode(),
        client.get(f"/console/providers/{provider.pk}/").content.decode(),
        client.get(f"/console/credentials/keys/{key.pk}/rotate/").content.decode(),
    ]
    until = f"retiring until {timezone.localtime(key.retire_at):%Y-%m-%d %H:%M} UTC"
    assert until in pages[0] and until in pages[1]
    assert "keeps serving until" in pages[0]
    assert "cannot be rotated again" in pages[2]
    for page in pages:
        assert SECRET not in page and NEW_SECRET not in page
        assert "…2468" in page or page is pages[2]


def test_it_shows_a_failed_rotation_inline_and_changes_nothing(client_as, staff, key):
    client = client_as(staff)

    refused = client.post(
        f"/console/credentials/keys/{key.pk}/rotate/",
        {"new_secret": "invalid-new-secret-99", "grace_minutes": "30"},
    )
    negative = client.post(
        f"/console/credentials/keys/{key.pk}/rotate/",
        {"new_secret": NEW_SECRET, "grace_minutes": "-1"},
    )

    assert refused.status_code == 422
    body = refused.content.decode()
    assert "New secret: the new key failed its live test (authentication_error)" in body
    assert "invalid-new-secret-99" not in body
    assert negative.status_code == 422
    assert "Grace period (minutes): Ensure this value is greater than or equal to 0." in (
        negative.content.decode()
    )
    assert NEW_SECRET not in negative.content.decode()
    key.refresh_from_db()
    assert key.retire_at is None and ApiKey.objects.count() == 1


# ------------------------------------------------------------------------------- OAuth: code


def test_it_connects_with_the_authorization_code_and_pkce_s256(
    client_as, staff, oauth_provider, simulator
):
    client = client_as(staff)
    page = client.get("/console/credentials/").content.decode()
    assert f'action="/console/credentials/oauth/connect/{oauth_provider.pk}/"' in page

    response = client.post(f"/console/credentials/oauth/connect/{oauth_provider.pk}/")

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        simulator.url + "/oauth/authorize"
    )
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["response_type"] == "code"
    assert params["client_id"] == "sim-console-oauth"
    assert params["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", params["code_challenge"])
    assert params["redirect_uri"] == "http://testserver/oauth/callback/openai-oauth/"
    flow = OAuthFlow.objects.get(state=params["state"])
    assert flow.created_by == staff
    assert AuditEvent.objects.filter(action="oauth_flow.start", actor=staff).exists()

    back = httpx.get(response["Location"], follow_redirects=False).headers["location"]
    callback = client.get(back.removeprefix("http://testserver")).content.decode()
    assert 'href="/console/credentials/"' in callback
    credential = OAuthCredential.objects.get(provider=oauth_provider)
    body = client.get("/console/credentials/").content.decode()
    assert "sim-user@example.com" in body
    assert '<span class="badge badge-active">active</span>' in body
    for secret in _secrets_of(credential):
        assert secret not in body and secret not in callback


def test_it_does_not_offer_connect_to_a_provider_without_an_oauth_client(
    client_as, staff, provider
):
    client = client_as(staff)
    assert "/console/credentials/oauth/connect/" not in (
        client.get("/console/credentials/").content.decode()
    )

    response = client.post(f"/console/credentials/oauth/connect/{provider.pk}/", follow=True)

    assert "oauth_client_id: an OAuth client id is required" in response.content.decode()
    assert not OAuthFlow.objects.exists()


def test_it_refreshes_an_account_now(client_as, staff, oauth_provider):
    client = client_as(staff)
    credential = _connect(client, oauth_provider)
    old_token = credential.access_token

    response = client.post(f"/console/credentials/oauth/{credential.pk}/refresh/", follow=True)

    credential.refresh_from_db()
    assert credential.refresh_count == 1 and credential.access_token != old_token
    body = response.content.decode()
    assert f"refreshed (…{credential.last4}" in body
    event = AuditEvent.objects.get(action="oauth_credential.refresh")
    assert event.actor == staff and event.changes["ok"] is True
    for secret in [old_token, *_secrets_of(credential)]:
        assert secret not in body


def test_it_reports_a_refused_refresh_and_marks_the_account(client_as, staff, oauth_provider):
    client = client_as(staff)
    credential = _connect(client, oauth_provider)
    OAuthCredential.objects.filter(pk=credential.pk).update(refresh_token="sim-rt-unknown")

    body = client.post(
        f"/console/credentials/oauth/{credential.pk}/refresh/", follow=True
    ).content.decode()

    credential.refresh_from_db()
    assert credential.state == "needs_reauth"
    assert "failed (invalid_grant)" in body
    event = AuditEvent.objects.get(action="oauth_credential.refresh")
    assert event.changes == {"ok": False, "error": "invalid_grant"}
    assert '<span class="badge badge-needs_reauth">needs re-authorisation</span>' in body


def test_it_disconnects_an_account_with_audit(client_as, staff, oauth_provider):
    client = client_as(staff)
    credential = _connect(client, oauth_provider)

    body = client.post(
        f"/console/credentials/oauth/{credential.pk}/disconnect/",
        follow=True,
        REMOTE_ADDR="10.1.2.3",
    ).content.decode()

    credential.refresh_from_db()
    assert credential.state == "revoked"
    assert credential.access_token == "" and credential.refresh_token == ""
    event = AuditEvent.objects.get(action="oauth_credential.disconnect")
    assert event.actor == staff and event.ip_address == "10.1.2.3"
    assert event.changes["state"] == ["active", "revoked"]
    assert "disconnected." in body and "badge-revoked" in body
    assert f"/console/credentials/oauth/{credential.pk}/refresh/" not in body


# ------------------------------------------------------------------------------- OAuth: device


def test_it_runs_a_device_code_flow_until_success(client_as, staff, device_provider, clock):
    client = client_as(staff)
    qwen = device_provider("pending_polls=1")

    response = client.post(f"/console/credentials/oauth/device/{qwen.pk}/")

    flow = OAuthFlow.objects.get(provider=qwen)
    assert response.status_code == 302
    assert response["Location"] == f"/console/credentials/oauth/flows/{flow.pk}/"
    page = client.get(response["Location"]).content.decode()  # first poll: pending
    assert f'<span class="user-code" aria-label="User code">{flow.user_code}</span>' in page
    assert f'href="{flow.verification_uri}"' in page
    assert 'hx-trigger="every 2s"' in page
    assert f'hx-post="/console/credentials/oauth/flows/{flow.pk}/poll/"' in page

    clock.advance(2)
    done = client.post(f"/console/credentials/oauth/flows/{flow.pk}/poll/").content.decode()

    credential = OAuthCredential.objects.get(provider=qwen)
    assert 'data-status="success"' in done and "hx-trigger" not in done
    assert f"…{credential.last4}" in done and 'href="/console/credentials/"' in done
    for secret in _secrets_of(credential):
        assert secret not in done
    assert AuditEvent.objects.filter(action="oauth_credential.add", actor=staff).exists()


def test_it_keeps_polling_while_the_approval_is_pending(client_as, staff, device_provider, clock):
    client = client_as(staff)
    qwen = device_provider("pending_polls=5")
    client.post(f"/console/credentials/oauth/device/{qwen.pk}/")
    flow = OAuthFlow.objects.get(provider=qwen)

    fragment = client.post(f"/console/credentials/oauth/flows/{flow.pk}/poll/").content.decode()

    assert 'data-status="pending"' in fragment and 'hx-trigger="every 2s"' in fragment
    assert "<html" not in fragment
    assert not OAuthCredential.objects.exists()


@pytest.mark.parametrize(
    "knobs, status, message",
    [
        ("pending_polls=0&outcome=expire", "expired", "The code expired before it was approved"),
        ("pending_polls=0&outcome=deny", "denied", "Access was denied at the provider"),
    ],
)
def test_it_stops_polling_when_the_code_expires_or_is_denied(
    client_as, staff, device_provider, knobs, status, message
):
    client = client_as(staff)
    qwen = device_provider(knobs)
    response = client.post(f"/console/credentials/oauth/device/{qwen.pk}/")

    page = client.get(response["Location"]).content.decode()

    assert f'data-status="{status}"' in page and message in page
    assert "hx-trigger" not in page and "/poll/" not in page
    assert not OAuthCredential.objects.exists()


def test_it_stops_polling_once_the_flow_itself_has_expired(
    client_as, staff, device_provider, clock
):
    client = client_as(staff)
    qwen = device_provider("pending_polls=100")
    client.post(f"/console/credentials/oauth/device/{qwen.pk}/")
    flow = OAuthFlow.objects.get(provider=qwen)
    clock.advance(31 * 60)  # device codes live 30 minutes

    fragment = client.post(f"/console/credentials/oauth/flows/{flow.pk}/poll/").content.decode()

    assert 'data-status="expired"' in fragment and "hx-trigger" not in fragment
    assert OAuthFlow.objects.get(pk=flow.pk).error == "expired_token"


def test_it_explains_a_device_code_that_cannot_start(client_as, staff, provider):
    response = client_as(staff).post(
        f"/console/credentials/oauth/device/{provider.pk}/", follow=True
    )

    assert "cannot start a device code: oauth_client_id" in response.content.decode()
    assert not OAuthFlow.objects.exists()


def test_it_records_a_keys_test_as_its_last_check_and_sends_it_to_every_copy(
    client_as, staff, key, provider
):
    client = client_as(staff)
    listed_before = client.get("/console/credentials/").content.decode()

    response = client.post(
        f"/console/credentials/keys/{key.pk}/test/", headers={"HX-Request": "true"}
    )

    body = response.content.decode()
    check = HealthCheck.objects.get(api_key=key)
    assert check.healthy
    assert (
        f'<span class="last-check key-check-{key.pk}" '
        f'hx-swap-oob="outerHTML:.key-check-{key.pk}">'
        '<span class="badge badge-healthy">healthy</span>'
    ) in body
    assert SECRET not in body
    copy = re.compile(rf'<span class="last-check key-check-{key.pk}">.*?</span>\s*</span>', re.S)
    assert "not checked" in copy.search(listed_before).group(0)
    listed = client.get("/console/credentials/").content.decode()
    on_provider_page = client.get(f"/console/providers/{provider.pk}/").content.decode()
    assert "healthy" in copy.search(listed).group(0)
    assert len(copy.findall(on_provider_page)) == 2  # its row and "Credentials' last checks"
    assert set(copy.findall(on_provider_page)) == {copy.search(listed).group(0)}
