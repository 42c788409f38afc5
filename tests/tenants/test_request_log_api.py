"""The request log through the management API: ``GET /api/tenants/{slug}/requests`` and
``/requests/{request_id}``. Entries are usage rows (one per gateway request) with their
attempts; a captured body comes from RequestBody. Read with the roles of usage."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from tenants_app.models import RequestBody, Role, Tenant, UsageRecord, VirtualKey
from tenants_app.services.keys import virtual_key_create

pytestmark = pytest.mark.django_db

T = "/api/tenants/acme"
NOON = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)

FAILED_OVER = [
    {
        "provider": "openai",
        "credential_id": "key:3",
        "model": "gpt-4o",
        "status": "error",
        "http_status": 403,
        "error_type": "permission_denied",
        "latency_ms": 12.5,
        "answered": False,
    },
    {
        "provider": "anthropic",
        "credential_id": "key:7",
        "model": "claude-3-5-haiku",
        "status": "answered",
        "http_status": None,
        "error_type": "",
        "latency_ms": 80.0,
        "answered": True,
    },
]


def key_of(tenant: Tenant, name: str) -> VirtualKey:
    key, _secret = virtual_key_create(tenant=tenant, name=name, actor=None)
    return key


def row(tenant: Tenant, request_id: str, *, minutes: int = 0, **fields) -> UsageRecord:
    values = {
        "provider_name": "anthropic",
        "model": "claude-3-5-haiku",
        "status": "success",
        "created_at": NOON + dt.timedelta(minutes=minutes),
        **fields,
    }
    return UsageRecord.objects.create(request_id=request_id, tenant=tenant, **values)


@pytest.fixture
def log(tenant, other_tenant):
    """Acme: five requests over five minutes from two keys; Globex: one of its own."""
    app, batch = key_of(tenant, "app"), key_of(tenant, "batch")
    rows = {
        "r1": row(tenant, "r1", minutes=0, virtual_key=app, alias="smart", attempts=FAILED_OVER),
        "r2": row(tenant, "r2", minutes=1, virtual_key=app, model="gpt-4o", provider_name="openai"),
        "r3": row(
            tenant, "r3", minutes=2, virtual_key=batch, status="refused", error_type="rate_limited"
        ),
        "r4": row(
            tenant, "r4", minutes=3, virtual_key=batch, status="error", error_type="server_error"
        ),
        "r5": row(
            tenant,
            "r5",
            minutes=4,
            virtual_key=app,
            prompt_tokens=11,
            completion_tokens=7,
            cost_usd=Decimal("0.00012"),
            ttft_ms=42.0,
            cached=True,
        ),
        "g1": row(other_tenant, "g1", minutes=2),
    }
    RequestBody.objects.create(
        request_id="r5",
        tenant=tenant,
        request='{"model": "smart", "messages": [{"role": "user", "content": "hi [EMAIL]"}]}',
        response="hello",
        headers={"user-agent": "OpenAI/Python 1.99.0", "authorization": "(not shown)"},
        created_at=NOON,
        expires_at=NOON + dt.timedelta(days=7),
    )
    return type("Log", (), {"app": app, "batch": batch, "rows": rows})


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["request_id"] for item in response.json()["items"]]


# -- queries ------------------------------------------------------------------------------


def test_it_lists_the_tenants_requests_newest_first(log, owner, client_as):
    response = client_as(owner).get(f"{T}/requests")
    assert ids(response) == ["r5", "r4", "r3", "r2", "r1"]
    assert response.json()["next_offset"] is None


def test_it_shows_tokens_cost_timings_cache_and_the_key(log, owner, client_as):
    [item] = client_as(owner).get(f"{T}/requests?request_id=r5").json()["items"]
    assert item["key_id"] == log.app.pk and item["key_prefix"] == log.app.prefix
    assert (item["prompt_tokens"], item["completion_tokens"]) == (11, 7)
    assert Decimal(str(item["cost_usd"])) == Decimal("0.00012")
    assert item["ttft_ms"] == 42.0 and item["cached"] is True
    assert item["provider"] == "anthropic" and item["model"] == "claude-3-5-haiku"


def test_it_filters_by_request_id(log, owner, client_as):
    assert ids(client_as(owner).get(f"{T}/requests?request_id=r3")) == ["r3"]
    assert ids(client_as(owner).get(f"{T}/requests?request_id=g1")) == []


def test_it_filters_by_key_id_or_prefix(log, owner, client_as):
    client = client_as(owner)
    assert ids(client.get(f"{T}/requests?key={log.batch.pk}")) == ["r4", "r3"]
    assert ids(client.get(f"{T}/requests?key={log.app.prefix}")) == ["r5", "r2", "r1"]


def test_it_filters_by_model_or_alias(log, owner, client_as):
    client = client_as(owner)
    assert ids(client.get(f"{T}/requests?model=gpt-4o")) == ["r2"]
    assert ids(client.get(f"{T}/requests?model=smart")) == ["r1"]


def test_it_filters_by_status_refused_ones_included(log, owner, client_as):
    client = client_as(owner)
    assert ids(client.get(f"{T}/requests?status=refused")) == ["r3"]
    assert ids(client.get(f"{T}/requests?status=error")) == ["r4"]


def test_it_filters_by_time_since_inclusive_until_exclusive(log, owner, client_as):
    since = (NOON + dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    until = (NOON + dt.timedelta(minutes=3)).isoformat().replace("+00:00", "Z")
    response = client_as(owner).get(f"{T}/requests", {"since": since, "until": until})
    assert ids(response) == ["r3", "r2"]


def test_it_reads_a_time_without_an_offset_as_utc(log, owner, client_as):
    response = client_as(owner).get(f"{T}/requests?since=2026-03-10T12:03:00")
    assert ids(response) == ["r5", "r4"]


def test_it_pages_with_limit_and_offset(log, owner, client_as):
    client = client_as(owner)
    first = client.get(f"{T}/requests?limit=2")
    assert ids(first) == ["r5", "r4"] and first.json()["next_offset"] == 2
    second = client.get(f"{T}/requests?limit=2&offset=2")
    assert ids(second) == ["r3", "r2"] and second.json()["next_offset"] == 4
    last = client.get(f"{T}/requests?limit=2&offset=4")
    assert ids(last) == ["r1"] and last.json()["next_offset"] is None


def test_it_shows_one_request_with_its_attempts(log, owner, client_as):
    response = client_as(owner).get(f"{T}/requests/r1")
    assert response.status_code == 200, response.content
    detail = response.json()
    assert detail["alias"] == "smart"
    assert detail["attempts"] == FAILED_OVER
    assert detail["body"] is None


def test_it_shows_the_captured_body_when_there_is_one(log, owner, client_as):
    body = client_as(owner).get(f"{T}/requests/r5").json()["body"]
    assert body["request"].startswith('{"model": "smart"')
    assert body["response"] == "hello"
    assert body["request_truncated"] is False and body["response_truncated"] is False
    assert body["headers"] == {"user-agent": "OpenAI/Python 1.99.0", "authorization": "(not shown)"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("offset=-1", "offset"),
        ("since=yesterday", "since"),
        ("key=" + "x" * 17, "key"),
    ],
)
def test_it_refuses_a_bad_filter_naming_it(log, owner, client_as, query, field):
    response = client_as(owner).get(f"{T}/requests?{query}")
    assert 400 <= response.status_code < 500, response.content
    assert field in response.content.decode()


def test_it_refuses_an_until_before_since(log, owner, client_as):
    response = client_as(owner).get(
        f"{T}/requests", {"since": "2026-03-10T12:05:00Z", "until": "2026-03-10T12:00:00Z"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("until:")


# -- who sees what ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "teammate", "viewer", "staff"])
def test_it_shows_the_log_to_members_and_staff(log, who, request, client_as):
    client = client_as(request.getfixturevalue(who))
    assert ids(client.get(f"{T}/requests")) == ["r5", "r4", "r3", "r2", "r1"]
    assert client.get(f"{T}/requests/r5").json()["body"]["response"] == "hello"


def test_it_answers_an_outsider_as_for_a_tenant_that_is_not_there(log, outsider, client_as):
    client = client_as(outsider)
    listing = client.get(f"{T}/requests")
    missing = client.get("/api/tenants/no-such-tenant/requests")
    assert listing.status_code == missing.status_code == 404
    assert listing.json() == missing.json()
    assert client.get(f"{T}/requests/r5").json() == missing.json()


def test_it_answers_another_tenants_request_id_as_an_unknown_one(log, outsider, owner, client_as):
    # the outsider owns Globex: its own request reads there, never through Acme
    assert ids(client_as(outsider).get("/api/tenants/globex/requests")) == ["g1"]
    client = client_as(owner)
    foreign = client.get(f"{T}/requests/g1")
    unknown = client.get(f"{T}/requests/never-was")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json()
    assert client.get("/api/tenants/globex/requests/g1").status_code == 404


def test_it_keeps_a_second_tenants_body_out_of_the_first(log, tenant, other_tenant, make_member):
    RequestBody.objects.create(
        request_id="g1",
        tenant=other_tenant,
        request="{}",
        response="globex only",
        created_at=NOON,
        expires_at=NOON + dt.timedelta(days=7),
    )
    both = make_member("both", tenant, Role.VIEWER)
    from tenants_app.models import Membership

    Membership.objects.create(user=both, tenant=other_tenant, role=Role.VIEWER)
    from django.test import Client

    client = Client()
    client.force_login(both)
    acme = client.get(f"{T}/requests").content.decode()
    assert "g1" not in acme and "globex only" not in acme
    assert client.get("/api/tenants/globex/requests/g1").json()["body"]["response"] == (
        "globex only"
    )


def test_it_answers_an_anonymous_caller_401(log, client):
    assert client.get(f"{T}/requests").status_code == 401


def test_it_works_with_an_admin_token(log, owner, token_for, bearer):
    response = bearer(token_for(owner)).get(f"{T}/requests?status=success")
    assert ids(response) == ["r5", "r2", "r1"]


# -- turning capture on ---------------------------------------------------------------------


def test_it_turns_capture_on_for_a_tenant_through_its_update_api(tenant, owner, client_as, send):
    assert Tenant.objects.get(pk=tenant.pk).capture_bodies is False  # off by default
    response = send(client_as(owner), "PATCH", T, {"capture_bodies": True})
    assert response.status_code == 200, response.content
    assert response.json()["capture_bodies"] is True
    assert Tenant.objects.get(pk=tenant.pk).capture_bodies is True


def test_it_sets_a_keys_capture_and_back_to_the_tenants_choice(tenant, owner, client_as, send):
    client = client_as(owner)
    created = send(client, "POST", f"{T}/keys", {"name": "app"}).json()["key"]
    assert created["capture_bodies"] is None
    on = send(client, "PATCH", f"{T}/keys/{created['id']}", {"capture_bodies": True})
    assert on.status_code == 200 and on.json()["capture_bodies"] is True
    back = send(client, "PATCH", f"{T}/keys/{created['id']}", {"capture_bodies": None})
    assert back.status_code == 200 and back.json()["capture_bodies"] is None
    assert VirtualKey.objects.get(pk=created["id"]).capture_bodies is None


def test_it_refuses_a_non_boolean_capture_naming_the_field(tenant, owner, client_as, send):
    response = send(client_as(owner), "PATCH", T, {"capture_bodies": "yes please"})
    assert 400 <= response.status_code < 500
    assert "capture_bodies" in response.content.decode()


def test_it_lets_only_admins_turn_capture_on(tenant, teammate, client_as, send):
    response = send(client_as(teammate), "PATCH", T, {"capture_bodies": True})
    assert response.status_code == 403
    assert Tenant.objects.get(pk=tenant.pk).capture_bodies is False


def test_it_records_turning_capture_on_in_the_audit_log(tenant, owner, client_as, send):
    from tenants_app.models import AuditEvent

    send(client_as(owner), "PATCH", T, {"capture_bodies": True})
    event = AuditEvent.objects.filter(action="tenant.update").latest("created_at")
    assert "capture_bodies" in str(event.changes)


def test_the_key_context_follows_the_key_then_the_tenant(tenant):
    from aipk_site.gateway.key_auth import _context_for

    key, inherit = key_of(tenant, "follows"), key_of(tenant, "inherits")
    VirtualKey.objects.filter(pk=key.pk).update(capture_bodies=False)
    Tenant.objects.filter(pk=tenant.pk).update(capture_bodies=True)
    assert _context_for(VirtualKey.objects.get(pk=inherit.pk).key_hash).capture_bodies is True
    assert _context_for(VirtualKey.objects.get(pk=key.pk).key_hash).capture_bodies is False
    Tenant.objects.filter(pk=tenant.pk).update(capture_bodies=False)
    VirtualKey.objects.filter(pk=key.pk).update(capture_bodies=True)
    assert _context_for(VirtualKey.objects.get(pk=inherit.pk).key_hash).capture_bodies is False
    assert _context_for(VirtualKey.objects.get(pk=key.pk).key_hash).capture_bodies is True


def test_it_never_shows_a_key_hash(log, owner, client_as):
    text = client_as(owner).get(f"{T}/requests").content.decode()
    text += client_as(owner).get(f"{T}/requests/r5").content.decode()
    for key_hash in VirtualKey.objects.values_list("key_hash", flat=True):
        assert key_hash not in text


def test_it_lists_an_entry_without_a_key_or_provider(tenant, owner, client_as):
    # a websocket chat by a console user has no key; a refusal before routing no provider
    row(tenant, "ws-1", provider_name="", model="", created_at=timezone.now())
    [item] = client_as(owner).get(f"{T}/requests").json()["items"]
    assert item["key_id"] is None and item["key_prefix"] is None and item["attempts"] == []
