"""The management API, endpoint by endpoint. Who may call what is the isolation
matrix's business (test_isolation_matrix.py); here: what each endpoint does."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from aipk_site.gateway.key_auth import authenticate_virtual_key
from aipk_site.infra.errors import AuthenticationFailed
from providers_app.models import Provider
from tenants_app.models import (
    AdminToken,
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

pytestmark = pytest.mark.django_db

T = "/api/tenants/acme"


def authenticate(secret: str):
    return async_to_sync(authenticate_virtual_key)(secret)


@pytest.fixture
def provider(db) -> Provider:
    return Provider.objects.create(name="openai-main", type="openai")


@pytest.fixture
def as_owner(client_as, owner):
    return client_as(owner)


@pytest.fixture
def as_staff(client_as, staff):
    return client_as(staff)


def usage(tenant, when, *, key=None, model="gpt-x", provider="openai-main", n=0, **fields):
    return UsageRecord.objects.create(
        request_id=f"req-{tenant.slug}-{n}-{when:%Y%m%d%H%M}",
        tenant=tenant,
        virtual_key=key,
        provider_name=provider,
        model=model,
        prompt_tokens=fields.pop("prompt_tokens", 10),
        completion_tokens=fields.pop("completion_tokens", 5),
        cost_usd=fields.pop("cost_usd", Decimal("0.25")),
        status=fields.pop("status", "success"),
        created_at=when,
        **fields,
    )


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=dt.UTC)


# --- tenants -------------------------------------------------------------------------------


def test_it_lists_only_my_tenants_with_my_role(client_as, owner, outsider):
    response = client_as(owner).get("/api/tenants/")
    assert response.status_code == 200
    assert [(t["slug"], t["role"]) for t in response.json()] == [("acme", "owner")]


def test_it_lists_every_tenant_for_staff(as_staff, tenant, other_tenant):
    response = as_staff.get("/api/tenants/")
    assert [(t["slug"], t["role"]) for t in response.json()] == [
        ("acme", None),
        ("globex", None),
    ]


def test_it_creates_a_tenant_with_its_first_owner(as_staff, send, make_member, provider):
    carol = make_member("carol")
    response = send(
        as_staff,
        "POST",
        "/api/tenants/",
        {
            "name": "Initech",
            "owner": "carol",
            "monthly_budget_usd": "100",
            "default_rpm": 600,
            "allowed_providers": ["openai-main"],
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "initech"  # from the name when not given
    assert body["allowed_providers"] == ["openai-main"]
    assert Decimal(body["monthly_budget_usd"]) == Decimal("100")
    tenant = Tenant.objects.get(slug="initech")
    assert Membership.objects.get(tenant=tenant).user == carol
    event = AuditEvent.objects.get(action="tenant.create")
    assert event.tenant == tenant and event.ip_address == "127.0.0.1"
    assert event.changes["owner"] == "carol"


def test_it_refuses_a_taken_slug_or_unknown_owner_naming_the_field(as_staff, send, tenant):
    response = send(as_staff, "POST", "/api/tenants/", {"name": "Acme 2", "slug": "acme"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "slug"
    response = send(as_staff, "POST", "/api/tenants/", {"name": "X", "owner": "nobody"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "username"
    response = send(as_staff, "POST", "/api/tenants/", {"name": "X", "slug": "Not A Slug"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "slug"
    assert Tenant.objects.count() == 1


def test_it_updates_limits_and_the_gateway_sees_them_at_once(as_owner, send, owner, tenant):
    _key, secret = _make_key(tenant, owner)
    assert authenticate(secret).tenant_rpm is None  # now cached
    response = send(
        as_owner,
        "PATCH",
        T,
        {"default_rpm": 60, "default_tpm": 1000, "monthly_budget_usd": 12.5, "pii_redaction": True},
    )
    assert response.status_code == 200, response.content
    assert response.json()["default_rpm"] == 60 and response.json()["pii_redaction"] is True
    context = authenticate(secret)
    assert context.tenant_rpm == 60 and context.pii_redaction is True
    assert context.tenant_budget_micro_usd == 12_500_000
    event = AuditEvent.objects.get(action="tenant.update")
    assert event.changes["default_rpm"] == {"from": None, "to": 60}
    assert event.actor == owner and event.tenant == tenant


def test_it_clears_a_limit_with_null_but_refuses_null_for_what_cannot_be_empty(
    as_owner, send, tenant
):
    Tenant.objects.filter(pk=tenant.pk).update(default_rpm=10)
    assert send(as_owner, "PATCH", T, {"default_rpm": None}).json()["default_rpm"] is None
    for field in ("name", "pii_redaction"):
        response = send(as_owner, "PATCH", T, {field: None})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"default_rpm": 0}, "default_rpm"),
        ({"default_tpm": -5}, "default_tpm"),
        ({"default_rpm": 2**40}, "default_rpm"),
        ({"default_rpm": "many"}, "default_rpm"),
        ({"monthly_budget_usd": -1}, "monthly_budget_usd"),
        ({"monthly_budget_usd": "NaN"}, "monthly_budget_usd"),
        ({"monthly_budget_usd": "1e20"}, "monthly_budget_usd"),
        ({"name": ""}, "name"),
        ({"slug": "renamed"}, "slug"),
    ],
)
def test_it_names_the_bad_field_in_a_tenant_update(as_owner, send, tenant, body, field):
    before = list(Tenant.objects.values())
    response = send(as_owner, "PATCH", T, body)
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == field
    assert list(Tenant.objects.values()) == before


def test_it_lets_staff_restrict_providers_and_deactivate(as_staff, send, tenant, provider):
    response = send(as_staff, "PATCH", T, {"allowed_providers": ["openai-main"], "active": False})
    assert response.status_code == 200
    assert response.json()["allowed_providers"] == ["openai-main"]
    assert response.json()["active"] is False
    response = send(as_staff, "PATCH", T, {"allowed_providers": ["nope"]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "allowed_providers"


def test_it_tells_a_tenant_admin_that_providers_are_staff_only(
    client_as, tenant_admin, send, provider
):
    response = send(client_as(tenant_admin), "PATCH", T, {"allowed_providers": ["openai-main"]})
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "staff only: allowed_providers"


def test_it_deletes_a_tenant_and_its_keys_stop_working(as_owner, owner, tenant):
    _key, secret = _make_key(tenant, owner)
    authenticate(secret)
    assert as_owner.delete(T).status_code == 204
    assert not Tenant.objects.filter(slug="acme").exists()
    with pytest.raises(AuthenticationFailed):
        authenticate(secret)
    event = AuditEvent.objects.get(action="tenant.delete")
    assert event.changes["slug"] == "acme" and event.actor == owner


def test_it_answers_the_same_404_for_a_missing_and_a_foreign_tenant(client_as, outsider, tenant):
    client = client_as(outsider)
    foreign = client.get(T)
    missing = client.get("/api/tenants/no-such-tenant")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


def test_it_names_the_role_a_member_lacks(client_as, viewer, send):
    response = send(client_as(viewer), "POST", f"{T}/keys", {"name": "x"})
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "this needs the member role in the tenant"


# --- members -------------------------------------------------------------------------------


def test_it_lists_members_by_username(as_owner, teammate, viewer):
    response = as_owner.get(f"{T}/members")
    assert [(m["username"], m["role"]) for m in response.json()] == [
        ("owner", "owner"),
        ("teammate", "member"),
        ("viewer", "viewer"),
    ]


def test_it_adds_changes_and_removes_a_member(as_owner, send, make_member, tenant):
    make_member("dave")
    response = send(as_owner, "POST", f"{T}/members", {"username": "dave", "role": "viewer"})
    assert response.status_code == 201 and response.json()["role"] == "viewer"
    response = send(as_owner, "PATCH", f"{T}/members/dave", {"role": "admin"})
    assert response.status_code == 200 and response.json()["role"] == "admin"
    assert as_owner.delete(f"{T}/members/dave").status_code == 204
    assert not Membership.objects.filter(user__username="dave").exists()
    actions = list(
        AuditEvent.objects.filter(tenant=tenant).order_by("id").values_list("action", flat=True)
    )
    assert actions == ["member.add", "member.update", "member.remove"]


def test_it_refuses_unknown_users_duplicates_and_bad_roles(as_owner, send, teammate):
    response = send(as_owner, "POST", f"{T}/members", {"username": "ghost"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "username"
    response = send(as_owner, "POST", f"{T}/members", {"username": "teammate"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "username"
    response = send(as_owner, "PATCH", f"{T}/members/teammate", {"role": "boss"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "role"
    assert as_owner.delete(f"{T}/members/ghost").status_code == 404


def test_it_keeps_at_least_one_owner(as_owner, send, owner):
    response = send(as_owner, "PATCH", f"{T}/members/owner", {"role": "admin"})
    assert response.status_code == 400
    assert "at least one owner" in response.json()["error"]["message"]
    assert as_owner.delete(f"{T}/members/owner").status_code == 400
    assert Membership.objects.get(user=owner).role == Role.OWNER


def test_it_lets_an_owner_step_down_once_there_is_another(as_owner, send, make_member, tenant):
    make_member("co-owner", tenant, Role.OWNER)
    response = send(as_owner, "PATCH", f"{T}/members/owner", {"role": "viewer"})
    assert response.status_code == 200 and response.json()["role"] == "viewer"


def test_it_lets_anyone_leave_a_tenant(client_as, viewer):
    assert client_as(viewer).delete(f"{T}/members/viewer").status_code == 204
    assert client_as(viewer).get(T).status_code == 404


# --- virtual keys --------------------------------------------------------------------------


def _make_key(tenant, user, **fields):
    from tenants_app.services.keys import virtual_key_create

    return virtual_key_create(tenant=tenant, name=fields.pop("name", "k"), actor=user, **fields)


def test_it_creates_a_key_and_shows_the_secret_exactly_once(as_owner, send, tenant):
    response = send(
        as_owner,
        "POST",
        f"{T}/keys",
        {
            "name": "backend",
            "rpm": 60,
            "allowed_models": ["fast", "openai-main/gpt-x"],
            "cache_enabled": True,
            "expires_at": (timezone.now() + dt.timedelta(days=30)).isoformat(),
        },
    )
    assert response.status_code == 201, response.content
    secret = response.json()["secret"]
    key = VirtualKey.objects.get()
    assert (
        secret.startswith("aipk-") and key.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    )
    assert response.json()["key"]["prefix"] == secret[:12] == key.prefix
    assert "key_hash" not in response.json()["key"]
    assert authenticate(secret).rpm == 60

    for url in (f"{T}/keys", f"{T}/keys/{key.pk}", f"{T}/audit"):
        text = as_owner.get(url).content.decode()
        assert secret not in text and key.key_hash not in text
    event = AuditEvent.objects.get(action="virtual_key.create")
    assert secret not in str(event.changes) and key.key_hash not in str(event.changes)
    assert event.changes["prefix"] == key.prefix


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "k", "rpm": 0}, "rpm"),
        ({"name": "k", "tpm": -1}, "tpm"),
        ({"name": "k", "max_concurrent_streams": 0}, "max_concurrent_streams"),
        ({"name": "k", "monthly_budget_usd": -0.01}, "monthly_budget_usd"),
        ({"name": "k", "cache_ttl_seconds": 0}, "cache_ttl_seconds"),
        ({"name": "k", "allowed_models": "gpt-x"}, "allowed_models"),
        ({"name": "k", "expires_at": "soon"}, "expires_at"),
        ({"name": "k", "key_hash": "0" * 64}, "key_hash"),
    ],
)
def test_it_names_the_bad_field_of_a_new_key(as_owner, send, tenant, body, field):
    response = send(as_owner, "POST", f"{T}/keys", body)
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == field
    assert not VirtualKey.objects.exists()


def test_it_refuses_an_expiry_in_the_past(as_owner, send, tenant):
    past = (timezone.now() - dt.timedelta(minutes=1)).isoformat()
    response = send(as_owner, "POST", f"{T}/keys", {"name": "k", "expires_at": past})
    assert response.status_code == 400 and response.json()["error"]["code"] == "expires_at"


def test_it_updates_a_key_and_the_gateway_sees_it_at_once(as_owner, send, owner, tenant):
    key, secret = _make_key(tenant, owner)
    authenticate(secret)
    response = send(
        as_owner,
        "PATCH",
        f"{T}/keys/{key.pk}",
        {"rpm": 5, "allowed_models": ["fast"], "cache_ttl_seconds": 60},
    )
    assert response.status_code == 200
    assert response.json()["allowed_models"] == ["fast"]
    context = authenticate(secret)
    assert context.rpm == 5 and context.allowed_models == ("fast",)
    event = AuditEvent.objects.get(action="virtual_key.update")
    assert event.changes["rpm"] == {"from": None, "to": 5}


def test_it_revokes_a_key_which_then_stops_working(as_owner, owner, tenant):
    key, secret = _make_key(tenant, owner)
    authenticate(secret)
    response = as_owner.post(f"{T}/keys/{key.pk}/revoke")
    assert response.status_code == 200 and response.json()["revoked_at"]
    with pytest.raises(AuthenticationFailed, match="revoked"):
        authenticate(secret)
    # again: no error, no second audit entry, and a revoked key cannot be edited
    assert as_owner.post(f"{T}/keys/{key.pk}/revoke").status_code == 200
    assert AuditEvent.objects.filter(action="virtual_key.revoke").count() == 1
    response = as_owner.patch(f"{T}/keys/{key.pk}", data="{}", content_type="application/json")
    assert response.status_code == 400


def test_it_does_not_reach_another_tenants_key_through_its_own_tenant(
    as_owner, send, outsider, other_tenant
):
    key, _secret = _make_key(other_tenant, outsider)
    assert as_owner.get(f"{T}/keys/{key.pk}").status_code == 404
    assert send(as_owner, "PATCH", f"{T}/keys/{key.pk}", {"rpm": 1}).status_code == 404
    assert as_owner.post(f"{T}/keys/{key.pk}/revoke").status_code == 404
    assert VirtualKey.objects.get(pk=key.pk).revoked_at is None


# --- routes --------------------------------------------------------------------------------


ROUTE = {
    "alias": "fast",
    "strategy": "failover",
    "candidates": [{"provider": "openai-main", "model": "gpt-x"}],
}


def test_it_creates_updates_and_deletes_a_tenant_route(as_owner, send, provider, monkeypatch):
    from aipk_site.gateway import routing

    cleared = []
    monkeypatch.setattr(routing, "routing_cache_clear", lambda: cleared.append(1))
    response = send(as_owner, "POST", f"{T}/routes", ROUTE)
    assert response.status_code == 201, response.content
    assert response.json()["tenant"] == "acme"
    assert cleared
    response = send(as_owner, "PATCH", f"{T}/routes/fast", {"strategy": "round_robin"})
    assert response.json()["strategy"] == "round_robin"
    assert as_owner.get(f"{T}/routes").json()[0]["alias"] == "fast"
    assert as_owner.delete(f"{T}/routes/fast").status_code == 204
    assert not ModelRoute.objects.exists()
    assert AuditEvent.objects.filter(action__startswith="route.").count() == 3


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"alias": "openai/gpt"}, 422, "alias"),
        ({"alias": ""}, 422, "alias"),
        ({"strategy": "random"}, 422, "strategy"),
        ({"candidates": []}, 422, "candidates"),
        ({"candidates": [{"provider": "openai-main"}]}, 422, "candidates.0.model"),
        ({"candidates": [{"provider": "openai-main", "model": ""}]}, 422, "candidates.0.model"),
        ({"candidates": [{"provider": "nope", "model": "x"}]}, 400, "candidates.0.provider"),
    ],
)
def test_it_names_the_bad_field_of_a_route(as_owner, send, provider, change, status, field):
    response = send(as_owner, "POST", f"{T}/routes", {**ROUTE, **change})
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == field
    assert not ModelRoute.objects.exists()


def test_it_refuses_a_duplicate_alias_and_a_provider_the_tenant_may_not_use(
    as_owner, send, provider, tenant
):
    assert send(as_owner, "POST", f"{T}/routes", ROUTE).status_code == 201
    response = send(as_owner, "POST", f"{T}/routes", ROUTE)
    assert response.status_code == 400 and response.json()["error"]["code"] == "alias"
    other = Provider.objects.create(name="anthropic-main", type="anthropic")
    tenant.allowed_providers.set([other])
    response = send(
        as_owner,
        "POST",
        f"{T}/routes",
        {**ROUTE, "alias": "slow"},
    )
    assert response.status_code == 400
    assert "not allowed" in response.json()["error"]["message"]


def test_it_lets_staff_manage_global_routes_that_everyone_can_read(
    as_staff, as_owner, send, provider
):
    response = send(as_staff, "POST", "/api/routes/", ROUTE)
    assert response.status_code == 201 and response.json()["tenant"] is None
    # a tenant route may shadow the global alias
    assert send(as_owner, "POST", f"{T}/routes", ROUTE).status_code == 201
    assert [r["alias"] for r in as_owner.get("/api/routes/").json()] == ["fast"]
    response = send(
        as_staff,
        "PATCH",
        "/api/routes/fast",
        {"candidates": [{"provider": "openai-main", "model": "gpt-y"}]},
    )
    assert response.json()["candidates"] == [{"provider": "openai-main", "model": "gpt-y"}]
    assert as_staff.delete("/api/routes/fast").status_code == 204
    assert ModelRoute.objects.get().tenant is not None


# --- pricing -------------------------------------------------------------------------------


def test_it_sets_lists_and_deletes_prices(as_staff, as_owner, send, provider):
    response = send(
        as_staff,
        "POST",
        "/api/pricing/",
        {
            "provider_type": "openai",
            "provider": "openai-main",
            "model": "gpt-x",
            "input_per_million": "2.5",
            "output_per_million": 10,
        },
    )
    assert response.status_code == 200, response.content
    assert response.json()["provider"] == "openai-main"
    assert Decimal(response.json()["input_per_million"]) == Decimal("2.5")
    prices = [p for p in as_owner.get("/api/pricing/").json() if p["source"] == "manual"]
    assert [(p["model"], p["provider"]) for p in prices] == [("gpt-x", "openai-main")]
    assert prices[0]["cached_input_per_million"] is None  # no discount unless given
    assert as_staff.delete(f"/api/pricing/{prices[0]['id']}").status_code == 204
    assert not Pricing.objects.filter(source="manual").exists()


def test_it_sets_a_prices_cache_rates(as_staff, send, provider):
    response = send(
        as_staff,
        "POST",
        "/api/pricing/",
        {
            "provider_type": "anthropic",
            "model": "claude-x",
            "input_per_million": 3,
            "output_per_million": 15,
            "cached_input_per_million": "0.3",
            "cache_write_per_million": "3.75",
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert Decimal(body["cached_input_per_million"]) == Decimal("0.3")
    assert Decimal(body["cache_write_per_million"]) == Decimal("3.75")
    price = Pricing.objects.get(model="claude-x")
    assert price.cached_input_per_million == Decimal("0.3")
    assert price.cache_write_per_million == Decimal("3.75")


def test_it_names_the_bad_field_of_a_price(as_staff, send, provider):
    good = {
        "provider_type": "openai",
        "model": "m",
        "input_per_million": 1,
        "output_per_million": 1,
    }
    for change, status, field in [
        ({"provider_type": "acme-ai"}, 422, "provider_type"),
        ({"input_per_million": -1}, 422, "input_per_million"),
        ({"output_per_million": "lots"}, 422, "output_per_million"),
        ({"cached_input_per_million": -0.1}, 422, "cached_input_per_million"),
        ({"cache_write_per_million": "1e9"}, 422, "cache_write_per_million"),
        ({"provider": "nope"}, 400, "provider"),
        ({"provider_type": "anthropic", "provider": "openai-main"}, 400, "provider_type"),
    ]:
        response = send(as_staff, "POST", "/api/pricing/", {**good, **change})
        assert response.status_code == status, (change, response.content)
        assert response.json()["error"]["code"] == field
    assert not Pricing.objects.filter(source="manual").exists()


# --- usage ---------------------------------------------------------------------------------


@pytest.fixture
def month_of_usage(owner, tenant, other_tenant):
    key, _ = _make_key(tenant, owner, name="backend")
    usage(tenant, at("2025-01-01", 0), key=key, n=1)
    usage(tenant, at("2025-01-01", 23), key=key, n=2, model="gpt-y", status="error")
    usage(tenant, at("2025-01-31", 23), n=3, provider="anthropic-main", model="claude")
    usage(tenant, at("2025-02-01", 0), key=key, n=4)  # outside January
    usage(other_tenant, at("2025-01-10"), n=5)  # someone else's
    return key


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("day", [("2025-01-01", 2, 1), ("2025-01-31", 1, 0)]),
        ("model", [("claude", 1, 0), ("gpt-x", 1, 0), ("gpt-y", 1, 1)]),
        ("provider", [("anthropic-main", 1, 0), ("openai-main", 2, 1)]),
    ],
)
def test_it_sums_usage_by_group_over_whole_days(as_owner, month_of_usage, group_by, expected):
    response = as_owner.get(f"{T}/usage?group_by={group_by}&from=2025-01-01&to=2025-01-31")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["from"], body["to"]) == ("2025-01-01", "2025-01-31")
    assert [(r["group"], r["requests"], r["errors"]) for r in body["rows"]] == expected
    assert body["totals"]["requests"] == 3
    assert body["totals"]["prompt_tokens"] == 30 and body["totals"]["completion_tokens"] == 15
    assert Decimal(body["totals"]["cost_usd"]) == Decimal("0.75")


def test_it_sums_usage_by_key(as_owner, month_of_usage):
    body = as_owner.get(f"{T}/usage?group_by=key&from=2025-01-01&to=2025-01-31").json()
    rows = {(r["group"], r["key_id"], r["key_name"]): r["requests"] for r in body["rows"]}
    assert rows == {("", None, None): 1, (month_of_usage.prefix, month_of_usage.pk, "backend"): 2}


def test_it_refuses_a_bad_usage_query_naming_the_parameter(as_owner, tenant):
    response = as_owner.get(f"{T}/usage?group_by=hour")
    assert response.status_code == 422 and response.json()["error"]["code"] == "group_by"
    response = as_owner.get(f"{T}/usage?from=2025-13-01")
    assert response.status_code == 422 and response.json()["error"]["code"] == "from"
    response = as_owner.get(f"{T}/usage?from=2025-02-01&to=2025-01-01")
    assert response.status_code == 400 and response.json()["error"]["code"] == "to"


def test_it_defaults_usage_to_this_month(as_owner, tenant):
    today = timezone.now().date()
    body = as_owner.get(f"{T}/usage").json()
    assert body["from"] == today.replace(day=1).isoformat() and body["to"] == today.isoformat()
    assert body["rows"] == [] and body["totals"]["requests"] == 0


def test_it_shows_the_admission_counters_right_now(as_owner, owner, tenant):
    key, _secret = _make_key(tenant, owner)
    response = as_owner.get(f"{T}/usage/now?key_id={key.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tenant"]["requests"] == 0 and body["key"]["requests"] == 0
    assert as_owner.get(f"{T}/usage/now").json()["key"] is None
    assert as_owner.get(f"{T}/usage/now?key_id=999999").status_code == 404


def test_it_streams_the_usage_csv_for_the_range_only(as_owner, month_of_usage):
    response = as_owner.get(f"{T}/usage/csv?from=2025-01-01&to=2025-01-31")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("created_at,request_id")
    assert [line.split(",")[1] for line in lines[1:]] == [
        "req-acme-1-202501010000",
        "req-acme-2-202501012300",
        "req-acme-3-202501312300",
    ]


# --- invoices ------------------------------------------------------------------------------


def test_it_generates_lists_shows_and_exports_an_invoice(as_owner, send, month_of_usage, tenant):
    response = send(as_owner, "POST", f"{T}/invoices", {"period": "2025-01"})
    assert response.status_code == 201, response.content
    assert response.json()["period"] == "2025-01" and response.json()["final"] is True
    assert [i["period"] for i in as_owner.get(f"{T}/invoices").json()] == ["2025-01"]
    invoice = as_owner.get(f"{T}/invoices/2025-01").json()
    assert Decimal(invoice["total_usd"]) == Invoice.objects.get(tenant=tenant).total_usd
    response = as_owner.get(f"{T}/invoices/2025-01/csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode().startswith("period,provider,model")
    assert AuditEvent.objects.get(action="invoice.generate").tenant == tenant


def test_it_answers_404_for_a_month_without_invoice_and_400_for_a_bad_month(as_owner, send, tenant):
    assert as_owner.get(f"{T}/invoices/2024-12").status_code == 404
    response = as_owner.get(f"{T}/invoices/december")
    assert response.status_code == 400 and response.json()["error"]["code"] == "period"
    response = send(as_owner, "POST", f"{T}/invoices", {"period": "2025-1"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "period"


# --- audit log -----------------------------------------------------------------------------


def test_it_shows_the_tenants_audit_log_with_actor_ip_and_no_secrets(
    as_owner, send, owner, outsider, other_tenant
):
    send(as_owner, "PATCH", T, {"default_rpm": 5})
    created = send(as_owner, "POST", f"{T}/keys", {"name": "k"}).json()
    _make_key(other_tenant, outsider)  # another tenant's event
    response = as_owner.get(f"{T}/audit")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [e["action"] for e in body["items"]] == ["virtual_key.create", "tenant.update"]
    assert {e["actor"] for e in body["items"]} == {"owner"}
    assert {e["ip_address"] for e in body["items"]} == {"127.0.0.1"}
    assert created["secret"] not in response.content.decode()


def test_it_filters_the_audit_log_by_action_and_date(as_owner, send, owner, tenant):
    send(as_owner, "PATCH", T, {"default_rpm": 5})
    send(as_owner, "POST", f"{T}/keys", {"name": "k"})
    old = AuditEvent.objects.get(action="tenant.update")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=at("2024-06-01"))

    def actions(query):
        return [e["action"] for e in as_owner.get(f"{T}/audit?{query}").json()["items"]]

    assert actions("action=tenant.update") == ["tenant.update"]
    assert actions("action=virtual_key.") == ["virtual_key.create"]
    assert actions("from=2024-06-01&to=2024-06-01") == ["tenant.update"]
    assert actions("to=2024-05-31") == []
    assert actions("limit=1") == ["virtual_key.create"]


# --- admin tokens --------------------------------------------------------------------------


def test_it_creates_an_admin_token_that_acts_as_its_user(as_owner, send, bearer, owner):
    response = send(as_owner, "POST", "/api/admin-tokens/", {"name": "deploy"})
    assert response.status_code == 201
    secret = response.json()["secret"]
    assert secret.startswith("aipkadm-")
    token = AdminToken.objects.get()
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()

    script = bearer(secret)
    assert [t["slug"] for t in script.get("/api/tenants/").json()] == ["acme"]
    listed = script.get("/api/admin-tokens/")
    assert [t["prefix"] for t in listed.json()] == [secret[:12]]
    assert secret not in listed.content.decode() and token.token_hash not in listed.text
    assert AdminToken.objects.get().last_used_at is not None
    # writes by token need no CSRF token and are audited as the user
    assert send(script, "PATCH", T, {"default_rpm": 7}).status_code == 200
    assert AuditEvent.objects.get(action="tenant.update").actor == owner


def test_it_refuses_a_revoked_or_unknown_token_even_with_a_session(
    as_owner, bearer, token_for, owner
):
    secret = token_for(owner)
    token = AdminToken.objects.get()
    assert as_owner.post(f"/api/admin-tokens/{token.pk}/revoke").status_code == 200
    response = bearer(secret).get("/api/tenants/")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid or revoked admin token"
    as_owner.defaults["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    assert as_owner.get("/api/tenants/").status_code == 401
    assert bearer("aipkadm-made-up").get("/api/tenants/").status_code == 401


def test_it_does_not_take_a_virtual_key_as_an_admin_token(bearer, owner, tenant):
    _key, secret = _make_key(tenant, owner)
    response = bearer(secret).get("/api/tenants/")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"type", "code", "message"}


def test_it_refuses_an_admin_token_minting_another(bearer, send, token_for, owner):
    response = send(bearer(token_for(owner)), "POST", "/api/admin-tokens/", {"name": "more"})
    assert response.status_code == 403
    assert AdminToken.objects.count() == 1


def test_it_answers_an_unparsable_form_body_with_a_json_400(owner, tenant):
    # found by tests/gateway/test_api_schema_fuzz.py: multipart without a boundary made
    # the session auth's CSRF check raise, and Django answered with its HTML 400 page
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    client.cookies["csrftoken"] = "x" * 32  # so the check goes on to read the form
    response = client.post(f"{T}/keys", data=b"{}", content_type="multipart/form-data")
    assert response.status_code == 400, response.content
    assert response["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "body"
    assert "boundary" in response.json()["error"]["message"]


def test_it_refuses_nul_characters_in_a_body(client_as, send, owner):
    # found by test_api_schema_fuzz.py on PostgreSQL, whose text columns cannot hold NUL:
    # the insert failed with a 500 there (and SQLite stored the NUL)
    response = send(client_as(owner), "POST", "/api/admin-tokens/", {"name": "ci\x00"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "name"
    assert "NUL" in response.json()["error"]["message"]
    assert AdminToken.objects.count() == 0


def test_it_refuses_nul_characters_nested_in_a_body(client_as, send, owner):
    body = {"alias": "fast", "candidates": [{"provider": "open\x00ai", "model": "gpt-4o"}]}
    response = send(client_as(owner), "POST", f"{T}/routes", body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "candidates.0.provider"
    assert not ModelRoute.objects.exists()


def test_it_answers_a_value_the_database_refuses_with_a_400(client_as, owner, monkeypatch):
    # e.g. NUL in a path or query string on PostgreSQL: the database's DataError
    from django.db import DataError

    def refuse(*args, **kwargs):
        raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")

    monkeypatch.setattr("tenants_app.api.keys.selectors.tenant_keys", refuse)
    response = client_as(owner).get(f"{T}/keys")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_value"
    assert "NUL" in response.json()["error"]["message"]


def test_it_checks_csrf_for_session_writes(owner, send, tenant):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = send(client, "PATCH", T, {"default_rpm": 5})
    assert response.status_code == 403
    assert Tenant.objects.get().default_rpm is None


def test_it_sets_a_keys_unsupported_parameters_option_and_the_gateway_sees_it(
    as_owner, send, owner, tenant
):
    response = send(as_owner, "POST", f"{T}/keys", {"name": "k", "unsupported_params": "drop"})
    assert response.status_code == 201, response.content
    assert response.json()["key"]["unsupported_params"] == "drop"
    secret = response.json()["secret"]
    assert authenticate(secret).drop_unsupported is True

    key_id = response.json()["key"]["id"]
    response = send(as_owner, "PATCH", f"{T}/keys/{key_id}", {"unsupported_params": "refuse"})
    assert response.status_code == 200 and response.json()["unsupported_params"] == "refuse"
    assert authenticate(secret).drop_unsupported is False


def test_it_refuses_an_unknown_unsupported_parameters_choice(as_owner, send, tenant):
    response = send(as_owner, "POST", f"{T}/keys", {"name": "k", "unsupported_params": "ignore"})
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "unsupported_params"
    assert not VirtualKey.objects.exists()


def test_it_sums_usage_by_end_user(as_owner, tenant):
    usage(tenant, at("2025-01-02"), n=1, end_user="alice")
    usage(tenant, at("2025-01-03"), n=2, end_user="alice")
    usage(tenant, at("2025-01-04"), n=3, end_user="bob")
    usage(tenant, at("2025-01-05"), n=4)
    body = as_owner.get(f"{T}/usage?group_by=user&from=2025-01-01&to=2025-01-31").json()
    assert [(r["group"], r["requests"]) for r in body["rows"]] == [
        ("", 1),
        ("alice", 2),
        ("bob", 1),
    ]
