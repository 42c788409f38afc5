"""Console: a tenant's virtual keys. The secret of a new key is in the response that
created it, once, and nowhere else ever after; no page shows a key hash. Members
create keys and manage their own; admins manage every key (docs/API.md)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from tenants_app.models import AuditEvent, VirtualKey
from tenants_app.services.keys import virtual_key_create

KEYS_URL = "/console/tenants/acme/keys/"
TAB_URLS = [
    "/console/tenants/",
    "/console/tenants/acme/",
    "/console/tenants/acme/members/",
    KEYS_URL,
    "/console/tenants/acme/routes/",
    "/console/tenants/acme/usage/",
    "/console/tenants/acme/invoices/",
    "/console/audit/",
]
HTMX = {"HTTP_HX_REQUEST": "true"}


def snapshot() -> tuple:
    return (list(VirtualKey.objects.order_by("pk").values()), AuditEvent.objects.count())


def key_of(tenant, user, name="backend", **fields) -> VirtualKey:
    key, _secret = virtual_key_create(tenant=tenant, name=name, actor=user, **fields)
    return key


def assert_audited(action: str, actor) -> AuditEvent:
    # keys made by the tests' own set-up are audited too, with no address
    rows = list(AuditEvent.objects.filter(action=action, ip_address__isnull=False))
    assert len(rows) == 1, rows
    assert rows[0].actor == actor and rows[0].ip_address == "127.0.0.1"
    return rows[0]


def test_it_lists_keys_by_prefix_with_limits_and_state(client_as, viewer, owner, tenant):
    live = key_of(tenant, owner, "backend", rpm=60, allowed_models=["fast", "claude/haiku"])
    revoked = key_of(tenant, owner, "old")
    VirtualKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    expired = key_of(tenant, owner, "temp", expires_at=timezone.now() + dt.timedelta(hours=1))
    VirtualKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now())

    response = client_as(viewer).get(KEYS_URL)
    body = response.content.decode()

    assert response.status_code == 200
    assert 'aria-current="page">Keys' in body
    assert f"{live.prefix}…" in body
    assert "60 rpm" in body and ">fast<" in body and ">claude/haiku<" in body
    for state in ("active", "revoked", "expired"):
        assert f'<span class="badge badge-{state}">{state}</span>' in body
    for key in (live, revoked, expired):
        assert key.key_hash not in body
    # a viewer reads only
    assert "New key" not in body and "Revoke" not in body and "Edit" not in body


@pytest.mark.django_db
def test_it_answers_404_to_outsiders(client_as, outsider, owner, tenant):
    key = key_of(tenant, owner)
    client = client_as(outsider)
    before = snapshot()

    assert client.get(KEYS_URL).status_code == 404
    assert client.post(KEYS_URL, {"name": "mine", "cache_ttl_seconds": "300"}).status_code == 404
    assert client.get(f"{KEYS_URL}{key.pk}/").status_code == 404
    assert client.post(f"{KEYS_URL}{key.pk}/revoke/").status_code == 404
    assert snapshot() == before


def test_it_shows_a_new_keys_secret_exactly_once(client_as, teammate, owner, staff, tenant):
    client = client_as(teammate)

    response = client.post(
        KEYS_URL,
        {
            "name": "ci bot",
            "rpm": "30",
            "allowed_models": "fast, claude/haiku",
            "cache_ttl_seconds": "300",
        },
        **HTMX,
    )
    body = response.content.decode()

    assert response.status_code == 201
    key = VirtualKey.objects.get(tenant=tenant)
    secret = body.split('<code id="new-key-secret">')[1].split("</code>")[0]
    assert secret.startswith(key.prefix) and len(secret) > len(key.prefix) + 16
    assert body.count(secret) == 1
    assert 'class="secret-once"' in body and 'hx-history="false"' in body
    assert key.key_hash not in body
    # the htmx swap is the panel alone: the address bar keeps the plain keys page
    assert body.lstrip().startswith('<div id="keys-panel">')
    assert "no-store" in response["Cache-Control"]
    assert (key.name, key.rpm, key.allowed_models) == ("ci bot", 30, ["fast", "claude/haiku"])
    assert key.created_by == teammate
    assert assert_audited("virtual_key.create", teammate).changes["prefix"] == key.prefix

    # nothing kept it: no later page, for anyone, shows it again
    for user_client in (client, client_as(owner), client_as(staff)):
        for url in TAB_URLS + [f"{KEYS_URL}{key.pk}/"]:
            later = user_client.get(url).content.decode()
            assert secret not in later, url
            assert key.key_hash not in later, url
    assert secret not in str(dict(client.session))


def test_it_shows_the_secret_on_a_plain_form_post_too(client_as, owner, staff, tenant):
    response = client_as(owner).post(KEYS_URL, {"name": "no js", "cache_ttl_seconds": "300"})
    body = response.content.decode()

    assert response.status_code == 201
    assert '<nav class="tabs"' in body  # the whole page
    secret = body.split('<code id="new-key-secret">')[1].split("</code>")[0]
    assert body.count(secret) == 1
    assert secret not in client_as(staff).get(KEYS_URL).content.decode()
    assert secret not in client_as(owner).get(KEYS_URL).content.decode()


def test_it_refuses_key_creation_to_viewers(client_as, viewer):
    before = snapshot()

    response = client_as(viewer).post(KEYS_URL, {"name": "x", "cache_ttl_seconds": "300"}, **HTMX)

    assert response.status_code == 403
    assert b"member role" in response.content
    assert snapshot() == before


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "", "cache_ttl_seconds": "300"}, "name", "required"),
        ({"name": "k", "rpm": "0", "cache_ttl_seconds": "300"}, "rpm", "greater than or"),
        ({"name": "k", "cache_ttl_seconds": "0"}, "cache_ttl_seconds", "greater than or"),
        (
            {"name": "k", "monthly_budget_usd": "-2", "cache_ttl_seconds": "1"},
            "monthly_budget_usd",
            "greater",
        ),
        (
            {"name": "k", "expires_at": "2001-01-01T00:00", "cache_ttl_seconds": "1"},
            "expires_at",
            "in the future",
        ),
        ({"name": "k", "expires_at": "soon", "cache_ttl_seconds": "1"}, "expires_at", "valid date"),
    ],
)
def test_it_shows_key_errors_inline_without_creating_one(client_as, teammate, data, field, message):
    before = snapshot()

    response = client_as(teammate).post(KEYS_URL, data, **HTMX)
    body = response.content.decode()

    assert response.status_code == 422
    block = body[body.index(f'id="id_{field}"') :]
    assert message in block[: block.index("</div>")]
    assert "secret-once" not in body
    assert snapshot() == before


def test_it_lets_a_member_edit_their_own_key_audited(client_as, teammate, tenant):
    key = key_of(tenant, teammate, "mine")
    client = client_as(teammate)
    assert 'value="mine"' in client.get(f"{KEYS_URL}{key.pk}/").content.decode()
    expires = (timezone.now() + dt.timedelta(days=30)).replace(second=0, microsecond=0)

    response = client.post(
        f"{KEYS_URL}{key.pk}/",
        {
            "name": "mine",
            "tpm": "5000",
            "monthly_budget_usd": "3.5",
            "cache_enabled": "on",
            "cache_ttl_seconds": "600",
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M"),
        },
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.tpm, key.monthly_budget_usd, key.cache_enabled) == (5000, Decimal("3.5"), True)
    assert key.expires_at == expires
    event = assert_audited("virtual_key.update", teammate)
    assert event.changes["tpm"] == {"from": None, "to": 5000}


def test_it_keeps_members_away_from_other_peoples_keys(client_as, teammate, tenant_admin, tenant):
    theirs = key_of(tenant, tenant_admin, "admins")
    client = client_as(teammate)
    page = client.get(KEYS_URL).content.decode()
    row = page[page.index(f'id="key-{theirs.pk}"') :]
    assert "Revoke" not in row[: row.index("</tr>")]
    before = snapshot()

    assert client.get(f"{KEYS_URL}{theirs.pk}/").status_code == 403
    refused = client.post(f"{KEYS_URL}{theirs.pk}/", {"name": "stolen", "cache_ttl_seconds": "1"})
    assert refused.status_code == 403
    assert b"members manage only their own keys" in refused.content
    assert client.post(f"{KEYS_URL}{theirs.pk}/revoke/", **HTMX).status_code == 403
    assert snapshot() == before


@pytest.mark.parametrize("user", ["viewer", "teammate"])
def test_it_refuses_viewers_and_members_on_keys_they_did_not_make(
    client_as, request, owner, tenant, user
):
    key = key_of(tenant, owner)
    client = client_as(request.getfixturevalue(user))
    before = snapshot()

    assert client.post(f"{KEYS_URL}{key.pk}/revoke/").status_code == 403
    assert (
        client.post(f"{KEYS_URL}{key.pk}/", {"name": "x", "cache_ttl_seconds": "1"}).status_code
        == 403
    )
    assert snapshot() == before


def test_it_lets_an_admin_revoke_any_key_audited(client_as, tenant_admin, teammate, tenant):
    key = key_of(tenant, teammate, "theirs")

    response = client_as(tenant_admin).post(f"{KEYS_URL}{key.pk}/revoke/", **HTMX)
    body = response.content.decode()

    assert response.status_code == 200
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert f"Key theirs ({key.prefix}…) revoked" in body
    assert '<span class="badge badge-revoked">revoked</span>' in body
    assert 'hx-confirm="Revoke' not in body  # a revoked key offers no second revoke
    assert assert_audited("virtual_key.revoke", tenant_admin).changes == {"prefix": key.prefix}


def test_it_lets_a_member_revoke_their_own_key_without_htmx(client_as, teammate, tenant):
    key = key_of(tenant, teammate)

    response = client_as(teammate).post(f"{KEYS_URL}{key.pk}/revoke/")

    assert response.status_code == 302
    assert response["Location"] == KEYS_URL
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_it_asks_before_revoking(client_as, owner, tenant):
    key = key_of(tenant, owner, "prod")

    body = client_as(owner).get(KEYS_URL).content.decode()

    assert f'hx-confirm="Revoke prod ({key.prefix}…)? Apps using it stop working at once."' in body


def test_it_refuses_to_edit_a_revoked_key_inline(client_as, owner, tenant):
    key = key_of(tenant, owner)
    VirtualKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    before = snapshot()

    response = client_as(owner).post(
        f"{KEYS_URL}{key.pk}/", {"name": "again", "cache_ttl_seconds": "1"}
    )

    assert response.status_code == 422
    assert "this key is revoked and cannot be changed" in response.content.decode()
    assert snapshot() == before


def test_it_keeps_other_tenants_keys_out_of_reach(client_as, owner, outsider, other_tenant):
    theirs = key_of(other_tenant, outsider)
    before = snapshot()

    assert client_as(owner).get(f"{KEYS_URL}{theirs.pk}/").status_code == 404
    assert client_as(owner).post(f"{KEYS_URL}{theirs.pk}/revoke/").status_code == 404
    assert snapshot() == before


def test_it_lets_staff_manage_every_key(client_as, staff, teammate, tenant):
    key = key_of(tenant, teammate)
    client = client_as(staff)

    assert client.post(f"{KEYS_URL}{key.pk}/revoke/", **HTMX).status_code == 200
    created = client.post(KEYS_URL, {"name": "staff key", "cache_ttl_seconds": "300"}, **HTMX)
    assert created.status_code == 201
    assert_audited("virtual_key.revoke", staff)
    assert_audited("virtual_key.create", staff)


def test_it_changes_only_what_the_edit_form_changed(client_as, owner, tenant):
    key = key_of(
        tenant, owner, "nightly", rpm=10, expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    # the expiry passes while the key is still listed
    passed = timezone.now() - dt.timedelta(minutes=5, seconds=17)
    VirtualKey.objects.filter(pk=key.pk).update(expires_at=passed)
    client = client_as(owner)
    form_page = client.get(f"{KEYS_URL}{key.pk}/").content.decode()
    shown_expiry = re.search(r'name="expires_at" value="([^"]+)"', form_page).group(1)

    response = client.post(
        f"{KEYS_URL}{key.pk}/",
        {"name": "nightly", "rpm": "20", "cache_ttl_seconds": "300", "expires_at": shown_expiry},
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.rpm == 20 and key.expires_at == passed
    event = assert_audited("virtual_key.update", owner)
    assert set(event.changes) == {"prefix", "rpm"}


def test_it_sets_a_keys_unsupported_parameters_option_in_the_form(client_as, owner, tenant):
    key = key_of(tenant, owner, "mine")
    client = client_as(owner)
    page = client.get(f"{KEYS_URL}{key.pk}/").content.decode()
    assert 'name="unsupported_params"' in page and "x-aipk-dropped-params" in page

    response = client.post(
        f"{KEYS_URL}{key.pk}/",
        {"name": "mine", "cache_ttl_seconds": "300", "unsupported_params": "drop"},
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.unsupported_params == "drop"
    assert "drops unsupported params" in client.get(KEYS_URL).content.decode()
    event = assert_audited("virtual_key.update", owner)
    assert event.changes["unsupported_params"] == {"from": "refuse", "to": "drop"}


def test_it_refuses_an_unknown_unsupported_parameters_choice(client_as, owner, tenant):
    key = key_of(tenant, owner, "mine")
    response = client_as(owner).post(
        f"{KEYS_URL}{key.pk}/",
        {"name": "mine", "cache_ttl_seconds": "300", "unsupported_params": "ignore"},
    )
    assert response.status_code == 422
    key.refresh_from_db()
    assert key.unsupported_params == "refuse"


@pytest.mark.parametrize(
    ("choice", "stored"), [("on", True), ("off", False), ("", None)], ids=["on", "off", "tenant"]
)
def test_it_sets_a_keys_body_capture_in_the_form(client_as, owner, tenant, choice, stored):
    key = key_of(tenant, owner, "mine", capture_bodies=not stored if stored is not None else True)
    client = client_as(owner)
    page = client.get(f"{KEYS_URL}{key.pk}/").content.decode()
    assert 'name="capture_bodies"' in page and "As the tenant chooses" in page

    response = client.post(
        f"{KEYS_URL}{key.pk}/",
        {"name": "mine", "cache_ttl_seconds": "300", "capture_bodies": choice},
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.capture_bodies is stored
    assert_audited("virtual_key.update", owner)


def test_it_refuses_an_unknown_body_capture_choice(client_as, owner, tenant):
    key = key_of(tenant, owner, "mine")
    response = client_as(owner).post(
        f"{KEYS_URL}{key.pk}/",
        {"name": "mine", "cache_ttl_seconds": "300", "capture_bodies": "sometimes"},
    )
    assert response.status_code == 422
    key.refresh_from_db()
    assert key.capture_bodies is None
