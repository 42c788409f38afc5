"""Every management endpoint × every kind of caller, with the status each cell must get.

The expected statuses are written down by hand below, from the role rules in
docs/API.md — never computed from tenants_app.auth — so a change to who may do
what shows up here as a diff of this table. A refusal must leave the database
exactly as it was, and no answer may ever contain a key or token hash, nor a
secret other than the one a create answer hands out.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from aipk_site.api import api
from providers_app.models import ApiKey, Provider
from providers_app.services.credentials import api_key_add
from tenants_app.models import (
    AdminToken,
    AlertChannel,
    AlertDelivery,
    AuditEvent,
    Invoice,
    Membership,
    ModelRoute,
    Pricing,
    Role,
    Tenant,
    UsageRecord,
    VirtualKey,
)
from tenants_app.services.alerts import alert_channel_create
from tenants_app.services.keys import admin_token_revoke, virtual_key_create

pytestmark = pytest.mark.django_db

# The callers, in the table's column order. "admin" is the tenant admin, "member"
# the teammate; "outsider" owns another tenant; "owner-token" is an admin token of
# the owner's, "revoked-token" a revoked one of the owner's.
CALLERS = (
    "owner",
    "admin",
    "member",
    "viewer",
    "outsider",
    "anonymous",
    "staff",
    "owner-token",
    "revoked-token",
)

T = "/api/tenants/acme"
NEW_ROUTE = {"alias": "brand-new", "candidates": [{"provider": "openai-main", "model": "gpt-x"}]}
NEW_CHANNEL = {"name": "ops mail", "kind": "email", "target": "ops@example.com"}
NEW_PRICE = {
    "provider_type": "openai",
    "model": "gpt-new",
    "input_per_million": "1.5",
    "output_per_million": "2",
}

# fmt: off
# (row id, method, path, body,
#   owner admin member viewer outsider anonymous staff owner-token revoked-token)
MATRIX = [
    ("tenants.list", "GET", "/api/tenants/", None,
        200, 200, 200, 200, 200, 401, 200, 200, 401),
    ("tenants.create", "POST", "/api/tenants/", {"name": "Initech", "slug": "initech"},
        403, 403, 403, 403, 403, 401, 201, 403, 401),
    ("tenant.get", "GET", T, None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("tenant.update-limits", "PATCH", T, {"default_rpm": 60, "monthly_budget_usd": "12.5"},
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("tenant.update-pii", "PATCH", T, {"pii_redaction": True},
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("tenant.update-active", "PATCH", T, {"active": False},
        403, 403, 403, 403, 404, 401, 200, 403, 401),
    ("tenant.update-providers", "PATCH", T, {"allowed_providers": ["openai-main"]},
        403, 403, 403, 403, 404, 401, 200, 403, 401),
    ("tenant.delete", "DELETE", T, None,
        204, 403, 403, 403, 404, 401, 204, 204, 401),
    ("members.list", "GET", f"{T}/members", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("members.add-viewer", "POST", f"{T}/members", {"username": "newbie", "role": "viewer"},
        201, 201, 403, 403, 404, 401, 201, 201, 401),
    ("members.add-owner", "POST", f"{T}/members", {"username": "newbie", "role": "owner"},
        201, 403, 403, 403, 404, 401, 201, 201, 401),
    ("member.change-role", "PATCH", f"{T}/members/bystander", {"role": "viewer"},
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("member.promote-to-owner", "PATCH", f"{T}/members/bystander", {"role": "owner"},
        200, 403, 403, 403, 404, 401, 200, 200, 401),
    ("member.demote-owner", "PATCH", f"{T}/members/co-owner", {"role": "admin"},
        200, 403, 403, 403, 404, 401, 200, 200, 401),
    ("member.remove", "DELETE", f"{T}/members/bystander", None,
        204, 204, 403, 403, 404, 401, 204, 204, 401),
    ("member.remove-owner", "DELETE", f"{T}/members/co-owner", None,
        204, 403, 403, 403, 404, 401, 204, 204, 401),
    ("keys.list", "GET", f"{T}/keys", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("keys.create", "POST", f"{T}/keys", {"name": "ci", "rpm": 5},
        201, 201, 201, 403, 404, 401, 201, 201, 401),
    ("key.get", "GET", f"{T}/keys/{{owner_key}}", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("key.get-other-tenants", "GET", f"{T}/keys/{{other_key}}", None,
        404, 404, 404, 404, 404, 401, 404, 404, 401),
    ("key.update-owners", "PATCH", f"{T}/keys/{{owner_key}}", {"rpm": 10},
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("key.update-teammates", "PATCH", f"{T}/keys/{{teammate_key}}", {"rpm": 10},
        200, 200, 200, 403, 404, 401, 200, 200, 401),
    ("key.revoke-owners", "POST", f"{T}/keys/{{owner_key}}/revoke", None,
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("key.revoke-teammates", "POST", f"{T}/keys/{{teammate_key}}/revoke", None,
        200, 200, 200, 403, 404, 401, 200, 200, 401),
    ("routes.list", "GET", f"{T}/routes", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("routes.create", "POST", f"{T}/routes", NEW_ROUTE,
        201, 201, 403, 403, 404, 401, 201, 201, 401),
    ("route.get", "GET", f"{T}/routes/fast", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("route.update", "PATCH", f"{T}/routes/fast", {"strategy": "round_robin"},
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("route.delete", "DELETE", f"{T}/routes/fast", None,
        204, 204, 403, 403, 404, 401, 204, 204, 401),
    ("global-routes.list", "GET", "/api/routes/", None,
        200, 200, 200, 200, 200, 401, 200, 200, 401),
    ("global-routes.create", "POST", "/api/routes/", NEW_ROUTE,
        403, 403, 403, 403, 403, 401, 201, 403, 401),
    ("global-route.get", "GET", "/api/routes/smart", None,
        200, 200, 200, 200, 200, 401, 200, 200, 401),
    ("global-route.update", "PATCH", "/api/routes/smart", {"strategy": "cheapest_first"},
        403, 403, 403, 403, 403, 401, 200, 403, 401),
    ("global-route.delete", "DELETE", "/api/routes/smart", None,
        403, 403, 403, 403, 403, 401, 204, 403, 401),
    ("pricing.list", "GET", "/api/pricing/", None,
        200, 200, 200, 200, 200, 401, 200, 200, 401),
    ("pricing.set", "POST", "/api/pricing/", NEW_PRICE,
        403, 403, 403, 403, 403, 401, 200, 403, 401),
    ("pricing.delete", "DELETE", "/api/pricing/{price}", None,
        403, 403, 403, 403, 403, 401, 204, 403, 401),
    ("usage.summary", "GET", f"{T}/usage?group_by=model&from=2025-01-01&to=2025-01-31", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("usage.now", "GET", f"{T}/usage/now?key_id={{teammate_key}}", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("usage.now-other-tenants-key", "GET", f"{T}/usage/now?key_id={{other_key}}", None,
        404, 404, 404, 404, 404, 401, 404, 404, 401),
    ("usage.csv", "GET", f"{T}/usage/csv?from=2025-01-01&to=2025-01-31", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    # hB: the request log, read with the roles of usage
    ("requests.list", "GET", f"{T}/requests?status=success", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("requests.get", "GET", f"{T}/requests/req-0", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("requests.get-unknown", "GET", f"{T}/requests/req-none", None,
        404, 404, 404, 404, 404, 401, 404, 404, 401),
    ("invoices.list", "GET", f"{T}/invoices", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("invoices.generate", "POST", f"{T}/invoices", {"period": "2025-02"},
        201, 201, 403, 403, 404, 401, 201, 201, 401),
    ("invoice.get", "GET", f"{T}/invoices/2025-01", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("invoice.csv", "GET", f"{T}/invoices/2025-01/csv", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    # a tenant's own provider keys: read by every member; credit is OpenRouter's only
    ("credentials.list", "GET", f"{T}/credentials", None,
        200, 200, 200, 200, 404, 401, 200, 200, 401),
    ("credential.credits-not-openrouter", "GET", f"{T}/credentials/{{acme_credential}}/credits",
        None, 400, 400, 400, 400, 404, 401, 400, 400, 401),
    ("credential.credits-other-tenants", "GET", f"{T}/credentials/{{other_credential}}/credits",
        None, 404, 404, 404, 404, 404, 401, 404, 404, 401),
    ("audit.list", "GET", f"{T}/audit", None,
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("admin-tokens.list", "GET", "/api/admin-tokens/", None,
        200, 200, 200, 200, 200, 401, 200, 200, 401),
    ("admin-tokens.create", "POST", "/api/admin-tokens/", {"name": "deploy"},
        201, 201, 201, 201, 201, 401, 201, 403, 401),
    ("admin-token.revoke-owners", "POST", "/api/admin-tokens/{spare_token}/revoke", None,
        200, 404, 404, 404, 404, 401, 404, 200, 401),
    # -- alerts (slice hD): owners and admins manage a tenant's channels, staff the global ones
    ("alert-channels.list", "GET", f"{T}/alert-channels", None,
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("alert-channels.create", "POST", f"{T}/alert-channels", NEW_CHANNEL,
        201, 201, 403, 403, 404, 401, 201, 201, 401),
    ("alert-channel.get", "GET", f"{T}/alert-channels/{{channel}}", None,
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("alert-channel.get-other-tenants", "GET", f"{T}/alert-channels/{{other_channel}}", None,
        404, 404, 403, 403, 404, 401, 404, 404, 401),
    ("alert-channel.get-global", "GET", f"{T}/alert-channels/{{global_channel}}", None,
        404, 404, 403, 403, 404, 401, 404, 404, 401),
    ("alert-channel.update", "PATCH", f"{T}/alert-channels/{{channel}}", {"enabled": False},
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("alert-channel.delete", "DELETE", f"{T}/alert-channels/{{channel}}", None,
        204, 204, 403, 403, 404, 401, 204, 204, 401),
    ("alert-channel.test", "POST", f"{T}/alert-channels/{{channel}}/test", None,
        202, 202, 403, 403, 404, 401, 202, 202, 401),
    ("alert-channel.deliveries", "GET", f"{T}/alert-channels/{{channel}}/deliveries", None,
        200, 200, 403, 403, 404, 401, 200, 200, 401),
    ("global-alert-channels.list", "GET", "/api/alert-channels", None,
        403, 403, 403, 403, 403, 401, 200, 403, 401),
    ("global-alert-channels.create", "POST", "/api/alert-channels", NEW_CHANNEL,
        403, 403, 403, 403, 403, 401, 201, 403, 401),
    ("global-alert-channel.get", "GET", "/api/alert-channels/{global_channel}", None,
        403, 403, 403, 403, 403, 401, 200, 403, 401),
    ("global-alert-channel.get-tenants", "GET", "/api/alert-channels/{channel}", None,
        403, 403, 403, 403, 403, 401, 404, 403, 401),
    ("global-alert-channel.update", "PATCH", "/api/alert-channels/{global_channel}",
        {"enabled": False},
        403, 403, 403, 403, 403, 401, 200, 403, 401),
    ("global-alert-channel.delete", "DELETE", "/api/alert-channels/{global_channel}", None,
        403, 403, 403, 403, 403, 401, 204, 403, 401),
    ("global-alert-channel.test", "POST", "/api/alert-channels/{global_channel}/test", None,
        403, 403, 403, 403, 403, 401, 202, 403, 401),
    ("global-alert-channel.deliveries", "GET", "/api/alert-channels/{global_channel}/deliveries",
        None,
        403, 403, 403, 403, 403, 401, 200, 403, 401),
]
# fmt: on

CELLS = [
    pytest.param(row[1], row[2], row[3], caller, status, id=f"{row[0]}-{caller}")
    for row in MATRIX
    for caller, status in zip(CALLERS, row[4:], strict=True)
]


class World:
    """The cast plus one of everything an endpoint can act on, and every secret
    handed out while building it (so answers can be searched for them)."""

    def __init__(self, staff, owner, tenant_admin, teammate, viewer, outsider, make_member):
        tenant = Tenant.objects.get(slug="acme")
        other = Tenant.objects.get(slug="globex")
        self.users = {
            "owner": owner,
            "admin": tenant_admin,
            "member": teammate,
            "viewer": viewer,
            "outsider": outsider,
            "staff": staff,
        }
        make_member("co-owner", tenant, Role.OWNER)
        make_member("bystander", tenant, Role.MEMBER)
        make_member("newbie")
        provider = Provider.objects.create(name="openai-main", type="openai")
        acme_credential = api_key_add(provider=provider, label="acme's", secret="sk-acme-0001")
        other_credential = api_key_add(provider=provider, label="globex's", secret="sk-glx-0002")
        ApiKey.objects.filter(pk=acme_credential.pk).update(tenant=tenant)
        ApiKey.objects.filter(pk=other_credential.pk).update(tenant=other)
        self.secrets: list[str] = ["sk-acme-0001", "sk-glx-0002"]
        owner_key, secret = virtual_key_create(tenant=tenant, name="owner's", actor=owner)
        self.secrets.append(secret)
        teammate_key, secret = virtual_key_create(tenant=tenant, name="mine", actor=teammate)
        self.secrets.append(secret)
        other_key, secret = virtual_key_create(tenant=other, name="theirs", actor=outsider)
        self.secrets.append(secret)
        candidates = [{"provider": "openai-main", "model": "gpt-x"}]
        ModelRoute.objects.create(tenant=tenant, alias="fast", candidates=candidates)
        ModelRoute.objects.create(tenant=None, alias="smart", candidates=candidates)
        price = Pricing.objects.create(
            provider_type="openai",
            model="gpt-x",
            input_per_million=Decimal("1"),
            output_per_million=Decimal("2"),
        )
        day = dt.datetime(2025, 1, 15, 12, tzinfo=dt.UTC)
        for n, key in enumerate((owner_key, teammate_key)):
            UsageRecord.objects.create(
                request_id=f"req-{n}",
                tenant=tenant,
                virtual_key=key,
                provider_name="openai-main",
                model="gpt-x",
                prompt_tokens=10,
                completion_tokens=5,
                cost_usd=Decimal("0.001"),
                status="success",
                created_at=day,
            )
        Invoice.objects.create(
            tenant=tenant, period=dt.date(2025, 1, 1), total_usd=Decimal("0.002"),
            lines=[], final=True, generated_at=timezone.now(),
        )  # fmt: skip
        from tenants_app.services.keys import admin_token_create

        _token, self.owner_token = admin_token_create(user=owner, name="ci")
        spare, spare_secret = admin_token_create(user=owner, name="spare")
        revoked, self.revoked_token = admin_token_create(user=owner, name="old")
        admin_token_revoke(token=revoked)
        self.secrets += [self.owner_token, spare_secret, self.revoked_token]
        hook = "https://hooks.example.com/aipk/matrix-token-0001"
        channel, hook_secret = alert_channel_create(
            tenant=tenant, name="ops", kind="webhook", target=hook
        )
        other_channel, _ = alert_channel_create(
            tenant=other, name="theirs", kind="slack", target=hook + "-theirs"
        )
        global_channel, _ = alert_channel_create(
            tenant=None, name="org", kind="slack", target=hook + "-org"
        )
        self.secrets += [hook_secret, hook, hook + "-theirs", hook + "-org"]
        self.ids = {
            "channel": channel.pk,
            "other_channel": other_channel.pk,
            "global_channel": global_channel.pk,
            "owner_key": owner_key.pk,
            "teammate_key": teammate_key.pk,
            "other_key": other_key.pk,
            "price": price.pk,
            "spare_token": spare.pk,
            "acme_credential": acme_credential.pk,
            "other_credential": other_credential.pk,
        }

    def client(self, caller: str) -> Client:
        if caller == "anonymous":
            return Client()
        if caller == "owner-token":
            return Client(headers={"Authorization": f"Bearer {self.owner_token}"})
        if caller == "revoked-token":
            return Client(headers={"Authorization": f"Bearer {self.revoked_token}"})
        client = Client()
        client.force_login(self.users[caller])
        return client


@pytest.fixture
def world(staff, owner, tenant_admin, teammate, viewer, outsider, make_member) -> World:
    return World(staff, owner, tenant_admin, teammate, viewer, outsider, make_member)


def snapshot() -> dict:
    """Everything the management API can change. Left out: when a user last logged
    in and when an admin token was last used, which a refused call may touch."""
    user_model = get_user_model()
    return {
        "users": list(user_model.objects.order_by("pk").values(
            "pk", "username", "is_staff", "is_active"
        )),
        "tenants": list(Tenant.objects.order_by("pk").values()),
        "allowed_providers": list(
            Tenant.allowed_providers.through.objects.order_by("pk").values()
        ),
        "memberships": list(Membership.objects.order_by("pk").values()),
        "keys": list(VirtualKey.objects.order_by("pk").values()),
        "tokens": list(AdminToken.objects.order_by("pk").values()),
        "routes": list(ModelRoute.objects.order_by("pk").values()),
        "prices": list(Pricing.objects.order_by("pk").values()),
        "usage": list(UsageRecord.objects.order_by("pk").values()),
        "invoices": list(Invoice.objects.order_by("pk").values()),
        "audit": list(AuditEvent.objects.order_by("pk").values()),
        "alert_channels": list(AlertChannel.objects.order_by("pk").values()),
        "alert_deliveries": list(AlertDelivery.objects.order_by("pk").values()),
    }  # fmt: skip


def _without_token_use(snap: dict) -> dict:
    return {
        **snap,
        "tokens": [{k: v for k, v in t.items() if k != "last_used_at"} for t in snap["tokens"]],
    }


def send(client: Client, method: str, url: str, body: dict | None):
    call = getattr(client, method.lower())
    if body is None:
        return call(url)
    import json

    return call(url, data=json.dumps(body), content_type="application/json")


def body_text(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


@pytest.mark.parametrize(("method", "path", "body", "caller", "expected"), CELLS)
def test_it_answers_each_caller_as_the_table_says(world, method, path, body, caller, expected):
    client = world.client(caller)
    before = _without_token_use(snapshot())
    response = send(client, method, path.format(**world.ids), body)
    text = body_text(response)

    assert response.status_code == expected, text
    if expected >= 400:
        assert _without_token_use(snapshot()) == before
        assert set(response.json()["error"]) >= {"type", "code", "message"}
        if expected == 403:
            assert response.json()["error"]["type"] == "permission_error"
        if expected == 404:
            # an outsider learns nothing: the same answer as for a tenant that is not there
            assert response.json()["error"]["type"] == "not_found_error"

    hashes = [*VirtualKey.objects.values_list("key_hash", flat=True)]
    hashes += AdminToken.objects.values_list("token_hash", flat=True)
    assert not [h for h in hashes if h in text]
    assert not [s for s in world.secrets if s in text]


def test_it_covers_every_management_endpoint():
    """A new endpoint must join the table above before it can ship."""
    schema = api.get_openapi_schema()
    mounted = {
        (method.upper(), path.removeprefix("/api"))
        for path, operations in schema["paths"].items()
        if path.startswith(
            (
                "/api/tenants",
                "/api/routes",
                "/api/pricing",
                "/api/admin-tokens",
                "/api/alert-channels",
            )
        )
        for method in operations
    }
    covered = set()
    for _row, method, path, *_ in MATRIX:
        path = path.split("?")[0].removeprefix("/api")
        path = (
            path.replace("/acme", "/{slug}", 1)
            .replace("{owner_key}", "{key_id}")
            .replace("{other_key}", "{key_id}")
            .replace("{teammate_key}", "{key_id}")
            .replace("{acme_credential}", "{key_id}")
            .replace("{other_credential}", "{key_id}")
            .replace("{price}", "{pricing_id}")
            .replace("{spare_token}", "{token_id}")
            .replace("/members/bystander", "/members/{username}")
            .replace("/members/co-owner", "/members/{username}")
            .replace("/routes/fast", "/routes/{alias}")
            .replace("/routes/smart", "/routes/{alias}")
            .replace("/invoices/2025-01", "/invoices/{period}")
            .replace("{other_channel}", "{channel_id}")
            .replace("{global_channel}", "{channel_id}")
            .replace("{channel}", "{channel_id}")
            .replace("/requests/req-0", "/requests/{request_id}")
            .replace("/requests/req-none", "/requests/{request_id}")
        )
        covered.add((method, path))
    assert mounted - covered == set()
    assert covered - mounted == set()


def test_the_matrix_has_a_cell_for_every_caller_of_every_row():
    assert len(CELLS) == len(MATRIX) * len(CALLERS)
