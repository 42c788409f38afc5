"""The Django admin: every model registered and rendering, secrets never on a page,
writes going through the services (and so audited), and the credential actions
working against the provider simulator."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from providers_app.models import (
    ApiKey,
    DiscoveredModel,
    HealthAlert,
    HealthCheck,
    OAuthCredential,
    OAuthFlow,
    Provider,
)
from providers_app.services.credentials import api_key_add
from providers_app.services.oauth import oauth_callback, oauth_start
from providers_app.services.providers import provider_create
from tenants_app.models import (
    AdminToken,
    AlertDelivery,
    AuditEvent,
    Invoice,
    Membership,
    ModelRoute,
    Pricing,
    RequestBody,
    Role,
    SsoIdentity,
    StoredResponse,
    Tenant,
    UsageRecord,
    VirtualKey,
)
from tenants_app.services.alerts import alert_channel_create
from tenants_app.services.keys import admin_token_create, virtual_key_create
from tenants_app.services.pricing import pricing_set
from tenants_app.services.routes import route_create
from tenants_app.services.tenants import member_add, tenant_create

OUR_APPS = ("providers_app", "tenants_app")
# where each wire protocol lives on the simulator (as tests/providers/conftest.py)
OPENAI_PATH = "/openai/v1"

API_KEY_SECRET = "sk-KNOWN-api-key-secret-1234"
ALERT_WEBHOOK_URL = "https://hooks.example.com/aipk/KNOWN-webhook-token-4321"
ALERT_SLACK_URL = "https://hooks.slack.example.com/services/T0/B0/KNOWN-slack-9876"
PROVIDER_CLIENT_SECRET = "cs-KNOWN-provider-client-secret-7777"
ACCESS_TOKEN = "at-KNOWN-access-token-5678"
REFRESH_TOKEN = "rt-KNOWN-refresh-token-4321"
CREDENTIAL_CLIENT_SECRET = "cs-KNOWN-credential-client-secret-0000"
CODE_VERIFIER = "cv-KNOWN-pkce-code-verifier-abcdefghijklmnopqrstuvwxyz"
DEVICE_CODE = "dc-KNOWN-device-code-2468"
FLOW_STATE = "st-KNOWN-flow-state-1357"

# what a tenant said to a model: kept for previous_response_id, never shown in the admin
STORED_CONVERSATION = "the private words of a tenant's user"


def registered_models() -> list[type]:
    return [m for m in admin.site._registry if m._meta.app_label in OUR_APPS]


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def root(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def client(client, root):
    client.force_login(root)
    return client


@pytest.fixture
def world(root, simulator):
    """One of everything, holding known secrets: ``world["secrets"]`` must never be on a page."""
    provider = provider_create(
        name="openai-sim",
        type="openai",
        base_url=simulator.url + OPENAI_PATH,
        oauth_client_id="sim-admin-client",
        oauth_client_secret=PROVIDER_CLIENT_SECRET,
        actor=root,
    )
    key = api_key_add(provider=provider, label="prod key", secret=API_KEY_SECRET, actor=root)
    credential = OAuthCredential.objects.create(
        provider=provider,
        account_label="sim-user@example.com",
        access_token=ACCESS_TOKEN,
        refresh_token=REFRESH_TOKEN,
        client_id="sim-admin-client",
        client_secret=CREDENTIAL_CLIENT_SECRET,
        last4=ACCESS_TOKEN[-4:],
        expires_at=timezone.now() + timedelta(hours=1),
    )
    OAuthFlow.objects.create(
        provider=provider,
        kind=OAuthFlow.Kind.DEVICE_CODE,
        state=FLOW_STATE,
        code_verifier=CODE_VERIFIER,
        device_code=DEVICE_CODE,
        user_code="ABCD-EFGH",
        verification_uri="https://example.com/device",
        created_by=root,
        expires_at=timezone.now() + timedelta(minutes=10),
    )
    now = timezone.now()
    DiscoveredModel.objects.create(
        provider=provider, model_id="gpt-4o-mini", name="GPT-4o mini", discovered_at=now
    )
    HealthCheck.objects.create(
        provider=provider, api_key=key, healthy=True, latency_ms=12.5, checked_at=now
    )
    HealthAlert.objects.create(
        provider=provider,
        oauth_credential=credential,
        healthy=False,
        message="down",
        created_at=now,
    )
    tenant = tenant_create(name="Acme", slug="acme", owner=root, actor=root)
    member = get_user_model().objects.create_user("carol")
    member_add(tenant=tenant, user=member, role=Role.MEMBER, actor=root)
    SsoIdentity.objects.create(
        user=member, issuer="https://idp.example.com", subject="carol-sub", email="carol@x.io"
    )
    vkey, vkey_secret = virtual_key_create(tenant=tenant, name="app", actor=root)
    token, token_secret = admin_token_create(user=root, name="ci", actor=root)
    route_create(
        tenant=None,
        alias="fast",
        candidates=[{"provider": "openai-sim", "model": "gpt-4o-mini"}],
        actor=root,
    )
    pricing_set(
        provider_type="openai",
        provider=provider,
        model="gpt-4o-mini",
        input_per_million="0.15",
        output_per_million="0.6",
        actor=root,
    )
    UsageRecord.objects.create(
        request_id="req-1",
        tenant=tenant,
        virtual_key=vkey,
        provider=provider,
        provider_name=provider.name,
        credential_id=f"key:{key.pk}",
        model="gpt-4o-mini",
        status="success",
        prompt_tokens=10,
        completion_tokens=5,
        created_at=now,
    )
    Invoice.objects.create(
        tenant=tenant, period=date(2025, 1, 1), total_usd=Decimal("1.5"), generated_at=now
    )
    StoredResponse.objects.create(
        response_id="resp_admin_1",
        tenant=tenant,
        virtual_key=vkey,
        model="gpt-4o-mini",
        items=[{"type": "message", "role": "user", "content": STORED_CONVERSATION}],
        response={"id": "resp_admin_1", "output_text": STORED_CONVERSATION},
        created_at=now,
    )
    # alerts (slice hD): a webhook channel's signing secret and a Slack URL are secrets
    hook, hook_secret = alert_channel_create(
        tenant=tenant, name="ops hook", kind="webhook", target=ALERT_WEBHOOK_URL
    )
    alert_channel_create(tenant=None, name="org slack", kind="slack", target=ALERT_SLACK_URL)
    AlertDelivery.objects.create(
        channel=hook, tenant=tenant, kind="test", dedup_key="test:1", subject="a test"
    )
    RequestBody.objects.create(  # hB: a captured body of the request log
        request_id="req_admin_1",
        tenant=tenant,
        request=json.dumps({"messages": [{"role": "user", "content": STORED_CONVERSATION}]}),
        response=STORED_CONVERSATION,
        created_at=now,
        expires_at=now,
    )
    return {
        "provider": provider,
        "key": key,
        "credential": credential,
        "tenant": tenant,
        "vkey": vkey,
        "token": token,
        "secrets": [
            API_KEY_SECRET,
            PROVIDER_CLIENT_SECRET,
            ACCESS_TOKEN,
            REFRESH_TOKEN,
            CREDENTIAL_CLIENT_SECRET,
            CODE_VERIFIER,
            DEVICE_CODE,
            FLOW_STATE,
            vkey_secret,
            vkey.key_hash,
            token_secret,
            token.token_hash,
            hook_secret,
            ALERT_WEBHOOK_URL,
            ALERT_SLACK_URL,
        ],
    }


def assert_no_secret(html: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in html, f"a stored secret ({secret[:6]}…) is on the page"
        # nor any long piece of it (a secret minus its shown last 4 characters)
        assert secret[:-4] not in html, f"most of a stored secret ({secret[:6]}…) is on the page"


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --------------------------------------------------------------------------- every page


def test_it_shows_a_stored_response_without_its_conversation(client, world, root):
    """A tenant's prompts and answers are theirs: the admin says whose and when only."""
    client.force_login(root)
    stored = StoredResponse.objects.get(response_id="resp_admin_1")
    for page in (url(StoredResponse, "changelist"), url(StoredResponse, "change", stored.pk)):
        response = client.get(page)
        assert response.status_code == 200
        html = response.content.decode()
        assert "resp_admin_1" in html
        assert STORED_CONVERSATION not in html


def test_it_shows_a_captured_body_without_its_content(client, world, root):
    """hB: like a stored response, a captured request body is the tenant's own data."""
    client.force_login(root)
    body = RequestBody.objects.get(request_id="req_admin_1")
    for page in (url(RequestBody, "changelist"), url(RequestBody, "change", body.pk)):
        response = client.get(page)
        assert response.status_code == 200
        html = response.content.decode()
        assert "req_admin_1" in html
        assert STORED_CONVERSATION not in html


def test_it_registers_every_model_of_both_apps():
    for app in OUR_APPS:
        for model in apps.get_app_config(app).get_models():
            assert admin.site.is_registered(model), model._meta.label


@pytest.mark.parametrize(
    "label", sorted(m._meta.label for m in admin.site._registry if m._meta.app_label in OUR_APPS)
)
def test_it_renders_every_page_without_a_secret(client, world, root, label):
    model = apps.get_model(label)
    model_admin = admin.site._registry[model]
    obj = model._default_manager.first()
    assert obj is not None, f"the world has no {label}"
    pages = [
        url(model, "changelist"),
        url(model, "changelist") + "?q=a",
        url(model, "change", obj.pk),
        url(model, "history", obj.pk),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert_no_secret(response.content.decode(), world["secrets"])

    add = client.get(url(model, "add"))
    request = RequestFactory().get("/")
    request.user = root
    can_add = model_admin.has_add_permission(request)
    assert add.status_code == (200 if can_add else 403), label
    assert_no_secret(add.content.decode(), world["secrets"])

    delete = client.get(url(model, "delete", obj.pk))
    assert delete.status_code in (200, 403), label
    assert_no_secret(delete.content.decode(), world["secrets"])


def test_it_lets_admins_add_only_what_a_form_may_create(client, world):
    addable = {
        m._meta.label for m in registered_models() if client.get(url(m, "add")).status_code == 200
    }

    assert addable == {
        "providers_app.Provider",
        "providers_app.ApiKey",
        "tenants_app.Tenant",
        "tenants_app.Membership",
        "tenants_app.VirtualKey",
        "tenants_app.AdminToken",
        "tenants_app.ModelRoute",
        "tenants_app.Pricing",
        "tenants_app.AlertChannel",  # alerts (slice hD)
    }


def test_it_renders_credential_forms_with_write_only_secret_fields(client, world):
    key_form = client.get(url(ApiKey, "add")).content.decode()
    provider_form = client.get(url(Provider, "change", world["provider"].pk)).content.decode()

    assert re.search(r'<input type="password" name="secret"[^>]*>', key_form)
    assert 'name="secret" value=' not in key_form
    assert re.search(r'<input type="password" name="new_oauth_client_secret"', provider_form)
    assert "set (…7777)" in provider_form  # label + last 4 only
    change = client.get(url(OAuthCredential, "change", world["credential"].pk)).content.decode()
    assert 'name="access_token"' not in change and 'name="refresh_token"' not in change
    assert "…5678" in change


def test_it_shows_the_admin_only_to_staff(client, world):
    from django.test import Client

    anonymous = Client().get(url(ApiKey, "changelist"))
    plain = Client()
    plain.force_login(get_user_model().objects.create_user("mallory"))
    not_staff = plain.get(url(ApiKey, "changelist"))

    for response in (anonymous, not_staff):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


# --------------------------------------------------------------------------- writes


def test_it_adds_an_api_key_encrypted_and_audited(client, world, root):
    secret = "sk-admin-added-secret-9876"
    response = client.post(
        url(ApiKey, "add"),
        {"provider": world["provider"].pk, "label": "from the admin", "secret": secret},
        follow=True,
    )

    assert response.status_code == 200
    assert_no_secret(response.content.decode(), [secret])
    key = ApiKey.objects.get(label="from the admin")
    assert key.secret == secret and key.last4 == "9876"
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM providers_app_apikey WHERE id = %s", [key.pk])
        stored = cursor.fetchone()[0]
    assert secret not in (stored if isinstance(stored, str) else bytes(stored).decode())
    event = AuditEvent.objects.get(action="api_key.add", object_id=str(key.pk))
    assert event.actor == root
    assert secret not in str(event.changes) and event.changes["last4"] == "9876"


def test_it_never_re_renders_a_refused_secret(client, world):
    secret = "sk-refused-because-no-label-5555"
    response = client.post(
        url(ApiKey, "add"), {"provider": world["provider"].pk, "label": "", "secret": secret}
    )

    assert response.status_code == 200  # the form again, with its error
    assert "This field is required" in response.content.decode()
    assert secret not in response.content.decode()
    assert ApiKey.objects.count() == 1  # only the world's own key


def test_it_shows_a_service_refusal_as_a_form_error(client, world):
    response = client.post(
        url(ApiKey, "add"), {"provider": world["provider"].pk, "label": "short", "secret": "abc"}
    )

    assert response.status_code == 200
    assert "at least 8 characters" in response.content.decode()
    assert not ApiKey.objects.filter(label="short").exists()


def test_it_audits_a_plain_change_with_actor_and_ip(client, world, root):
    key = world["key"]
    response = client.post(
        url(ApiKey, "change", key.pk),
        {"label": "renamed", "tenant": world["tenant"].pk, "state": "active"},
        REMOTE_ADDR="203.0.113.9",
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.label == "renamed" and key.tenant == world["tenant"]
    assert key.secret == API_KEY_SECRET  # untouched
    event = AuditEvent.objects.get(action="api_key.update", object_id=str(key.pk))
    assert event.actor == root and event.ip_address == "203.0.113.9"
    assert event.changes["label"] == {"from": "prod key", "to": "renamed"}
    assert event.tenant == world["tenant"]


def test_it_keeps_the_provider_client_secret_unless_a_new_one_is_typed(client, world):
    provider = world["provider"]
    form = {
        "enabled": "on",
        "base_url": provider.base_url,
        "default_model": "gpt-4o-mini",
        "key_strategy": "round_robin",
        "timeout_seconds": "",
        "settings": "{}",
        "oauth_client_id": provider.oauth_client_id,
        "new_oauth_client_secret": "",
        "oauth_authorize_url": "",
        "oauth_token_url": "",
        "oauth_device_url": "",
        "oauth_scopes": "",
    }
    assert client.post(url(Provider, "change", provider.pk), form).status_code == 302
    provider.refresh_from_db()
    assert provider.oauth_client_secret == PROVIDER_CLIENT_SECRET
    assert provider.key_strategy == "round_robin"

    form["new_oauth_client_secret"] = "cs-new-secret-3333"
    assert client.post(url(Provider, "change", provider.pk), form).status_code == 302
    provider.refresh_from_db()
    assert provider.oauth_client_secret == "cs-new-secret-3333"
    events = AuditEvent.objects.filter(action="provider.update", object_id=str(provider.pk))
    assert events.count() == 2
    assert all("cs-new-secret" not in str(e.changes) for e in events)


def test_it_creates_a_virtual_key_showing_the_secret_once(client, world, root):
    response = client.post(
        url(VirtualKey, "add"),
        {
            "tenant": world["tenant"].pk,
            "name": "from the admin",
            "allowed_models": "[]",
            "rpm": "60",
            "cache_ttl_seconds": "300",
            "unsupported_params": "refuse",
        },
        follow=True,
    )

    assert response.status_code == 200
    html = response.content.decode()
    secrets = re.findall(r"aipk-[A-Za-z0-9_-]{40,}", html)
    assert len(secrets) == 1, "the secret is shown exactly once"
    secret = secrets[0]
    key = VirtualKey.objects.get(name="from the admin")
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert key.rpm == 60 and key.created_by == root and secret.startswith(key.prefix)
    assert not VirtualKey.objects.filter(key_hash=secret).exists()
    for page in (url(VirtualKey, "change", key.pk), url(VirtualKey, "changelist")):
        again = client.get(page).content.decode()
        assert secret not in again and key.key_hash not in again
    event = AuditEvent.objects.get(action="virtual_key.create", object_id=str(key.pk))
    assert event.ip_address == "127.0.0.1" and secret not in str(event.changes)


def test_it_creates_an_admin_token_showing_the_secret_once(client, world, root):
    response = client.post(url(AdminToken, "add"), {"user": root.pk, "name": "deploy"}, follow=True)

    html = response.content.decode()
    secrets = re.findall(r"aipkadm-[A-Za-z0-9_-]{40,}", html)
    assert len(secrets) == 1
    token = AdminToken.objects.get(name="deploy")
    assert token.token_hash == hashlib.sha256(secrets[0].encode()).hexdigest()
    assert secrets[0] not in client.get(url(AdminToken, "change", token.pk)).content.decode()


def test_it_routes_tenant_and_route_writes_through_their_services(client, world, root):
    response = client.post(
        url(Tenant, "add"),
        {
            "name": "Globex",
            "slug": "globex",
            "active": "on",
            "default_rpm": "100",
            "allowed_providers": [world["provider"].pk],
        },
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="globex")
    assert [p.name for p in tenant.allowed_providers.all()] == ["openai-sim"]
    created = AuditEvent.objects.get(action="tenant.create", object_id=str(tenant.pk))
    assert created.changes["allowed_providers"] == ["openai-sim"]

    refused = client.post(
        url(ModelRoute, "add"),
        {
            "tenant": tenant.pk,
            "alias": "smart",
            "strategy": "failover",
            "candidates": '[{"provider": "nope", "model": "x"}]',
        },
    )
    assert refused.status_code == 200
    assert "unknown provider" in refused.content.decode()
    assert not ModelRoute.objects.filter(alias="smart").exists()

    ok = client.post(
        url(ModelRoute, "add"),
        {
            "tenant": tenant.pk,
            "alias": "smart",
            "strategy": "failover",
            "candidates": '[{"provider": "openai-sim", "model": "gpt-4o"}]',
        },
    )
    assert ok.status_code == 302
    route = ModelRoute.objects.get(alias="smart")
    assert AuditEvent.objects.filter(action="route.create", object_id=str(route.pk)).exists()

    deleted = client.post(url(ModelRoute, "delete", route.pk), {"post": "yes"})
    assert deleted.status_code == 302
    assert AuditEvent.objects.filter(action="route.delete", object_id=str(route.pk)).exists()


def test_it_changes_a_price_through_pricing_set(client, world):
    price = Pricing.objects.get(provider=world["provider"], model="gpt-4o-mini")
    response = client.post(
        url(Pricing, "change", price.pk), {"input_per_million": "0.2", "output_per_million": "0.8"}
    )

    assert response.status_code == 302
    price.refresh_from_db()
    assert price.input_per_million == Decimal("0.2") and price.source == "manual"
    assert AuditEvent.objects.filter(action="pricing.update", object_id=str(price.pk)).exists()


def test_it_refuses_to_remove_a_tenants_last_owner(client, world, root):
    owner = Membership.objects.get(tenant=world["tenant"], user=root)
    response = client.post(url(Membership, "delete", owner.pk), {"post": "yes"}, follow=True)

    assert Membership.objects.filter(pk=owner.pk).exists()
    assert any("at least one owner" in m for m in messages_of(response))


def test_it_keeps_usage_audit_and_health_read_only(client, world):
    for model in (UsageRecord, AuditEvent, HealthCheck, HealthAlert, Invoice):
        obj = model._default_manager.first()
        assert client.post(url(model, "change", obj.pk), {}).status_code == 403
        assert client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
        assert model._default_manager.filter(pk=obj.pk).exists()


# --------------------------------------------------------------------------- actions


def run_action(client, model, action: str, objects) -> list[str]:
    response = client.post(
        url(model, "changelist"),
        {"action": action, "_selected_action": [o.pk for o in objects]},
        follow=True,
    )
    assert response.status_code == 200
    return messages_of(response)


def test_it_tests_selected_keys_against_the_simulator(client, world):
    bad = api_key_add(
        provider=world["provider"], label="revoked upstream", secret="invalid-key-0000"
    )

    messages = run_action(client, ApiKey, "test_selected", [world["key"], bad])

    assert "prod key (…1234): works" in messages
    assert any(m.startswith("revoked upstream (…0000): failed (auth") for m in messages), messages
    assert all(API_KEY_SECRET not in m and "invalid-key" not in m for m in messages)


def test_it_disables_and_re_enables_selected_keys(client, world, root):
    key = world["key"]

    messages = run_action(client, ApiKey, "disable_selected", [key])
    key.refresh_from_db()
    assert key.state == ApiKey.State.DISABLED
    assert messages == ["prod key (…1234): disabled"]

    run_action(client, ApiKey, "enable_selected", [key])
    key.refresh_from_db()
    assert key.state == ApiKey.State.ACTIVE
    states = AuditEvent.objects.filter(action="api_key.state", object_id=str(key.pk))
    assert [e.changes["state"] for e in states.order_by("id")] == [
        ["active", "disabled"],
        ["disabled", "active"],
    ]
    assert all(e.actor == root for e in states)


def test_it_revokes_selected_virtual_keys(client, world, root):
    vkey = world["vkey"]

    messages = run_action(client, VirtualKey, "revoke_selected", [vkey])

    vkey.refresh_from_db()
    assert vkey.revoked_at is not None
    assert messages == [f"{vkey}: revoked"]
    event = AuditEvent.objects.get(action="virtual_key.revoke", object_id=str(vkey.pk))
    assert event.actor == root
    assert run_action(client, VirtualKey, "revoke_selected", [vkey]) == [f"{vkey}: already revoked"]
    # a revoked key is shown, no longer edited
    assert client.post(url(VirtualKey, "change", vkey.pk), {"name": "x"}).status_code == 403


def test_it_revokes_selected_admin_tokens(client, world):
    token = world["token"]

    run_action(client, AdminToken, "revoke_selected", [token])

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="admin_token.revoke", object_id=str(token.pk)).exists()


def connected_credential(simulator) -> OAuthCredential:
    """An OAuth account connected through the simulator's authorisation server."""
    provider = provider_create(
        name="openai-oauth",
        type="openai",
        base_url=simulator.url + OPENAI_PATH,
        oauth_client_id="sim-admin-oauth",
        oauth_authorize_url=simulator.url + "/oauth/authorize",
        oauth_token_url=simulator.url + "/oauth/token",
    )
    start = oauth_start(provider=provider, redirect_uri="http://testserver/oauth/callback/x/")
    location = httpx.get(start, follow_redirects=False).headers["location"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    result = async_to_sync(oauth_callback)(provider_name=provider.name, params=params)
    return OAuthCredential.objects.get(pk=result.credential.pk)


def test_it_refreshes_selected_oauth_tokens(client, world, simulator):
    good = connected_credential(simulator)
    old_token = good.access_token
    stale = world["credential"]  # its refresh token was never issued by the simulator
    stale.provider = good.provider
    stale.save()

    messages = run_action(client, OAuthCredential, "refresh_selected", [good, stale])

    good.refresh_from_db()
    stale.refresh_from_db()
    assert good.access_token != old_token and good.refresh_count == 1
    assert f"{good}: refreshed" in messages
    assert any(m.startswith(f"{stale.account_label} (…5678): refresh failed (") for m in messages)
    assert all(good.access_token not in m and REFRESH_TOKEN not in m for m in messages)
    assert AuditEvent.objects.filter(
        action="oauth_credential.refresh", object_id=str(good.pk)
    ).exists()


def test_it_deletes_a_tenant_with_its_usage_through_tenant_delete(client, world, root):
    tenant = world["tenant"]
    confirm = client.get(url(Tenant, "delete", tenant.pk))
    assert "Are you sure" in confirm.content.decode()  # not "would require deleting…"

    response = client.post(url(Tenant, "delete", tenant.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert not UsageRecord.objects.filter(request_id="req-1").exists()
    event = AuditEvent.objects.get(action="tenant.delete", object_id=str(tenant.pk))
    assert event.actor == root and event.changes["keys"] == 1


def test_it_deletes_a_provider_with_its_history_audited(client, world, root):
    provider = world["provider"]

    response = client.post(url(Provider, "delete", provider.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Provider.objects.filter(pk=provider.pk).exists()
    assert not HealthCheck.objects.exists() and not ApiKey.objects.exists()
    event = AuditEvent.objects.get(action="provider.delete", object_id=str(provider.pk))
    assert event.actor == root and event.changes["name"] == "openai-sim"
    assert event.ip_address == "127.0.0.1"
