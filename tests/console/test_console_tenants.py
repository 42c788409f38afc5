"""Console tenant pages: the tenant list, the overview (settings), members, routes and
invoices. Keys and usage have their own files. The rules are the management API's
(docs/API.md): the same roles may do the same things, refusals change nothing, and
every change leaves an audit row naming who did it and from where."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.utils import timezone

from providers_app.models import Provider
from tenants_app.models import (
    AuditEvent,
    Invoice,
    Membership,
    ModelRoute,
    Pricing,
    Role,
    Tenant,
    UsageRecord,
    UsageStatus,
)
from tenants_app.services import billing
from tenants_app.services.pricing import pricing_cache_clear

TENANT_URL = "/console/tenants/acme/"
MEMBERS_URL = TENANT_URL + "members/"
ROUTES_URL = TENANT_URL + "routes/"
INVOICES_URL = TENANT_URL + "invoices/"


def snapshot() -> tuple:
    """Everything a tenant page could change, to prove a refusal changed nothing."""
    return (
        list(Tenant.objects.order_by("pk").values()),
        list(Membership.objects.order_by("pk").values()),
        list(ModelRoute.objects.order_by("pk").values()),
        list(Invoice.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )


def audit_rows(action: str, tenant=None):
    rows = AuditEvent.objects.filter(action=action)
    return list(rows.filter(tenant=tenant) if tenant is not None else rows)


def assert_audited(action: str, actor, tenant=None) -> AuditEvent:
    rows = audit_rows(action, tenant)
    assert len(rows) == 1, f"expected one {action} audit row, got {rows}"
    assert rows[0].actor == actor
    assert rows[0].ip_address == "127.0.0.1"
    return rows[0]


def spend(tenant, cost: str, *, when=None, n: int = 1) -> UsageRecord:
    return UsageRecord.objects.create(
        request_id=f"req-{tenant.slug}-{UsageRecord.objects.count()}-{n}",
        tenant=tenant,
        provider_name="openai-prod",
        model="gpt-4o-mini",
        status=UsageStatus.SUCCESS,
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=Decimal(cost),
        created_at=when or timezone.now(),
    )


@pytest.fixture
def providers(db):
    return (
        Provider.objects.create(name="openai-prod", type="openai"),
        Provider.objects.create(name="claude", type="anthropic"),
    )


# --- the tenant list -----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_sign_in(client):
    response = client.get("/console/tenants/")

    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/")


def test_it_lists_a_members_tenants_with_role_and_spend_against_budget(
    client_as, owner, tenant, outsider, other_tenant
):
    tenant.monthly_budget_usd = Decimal("10")
    tenant.save()
    spend(tenant, "1.25")
    spend(other_tenant, "7.5")

    response = client_as(owner).get("/console/tenants/")
    body = response.content.decode()

    assert response.status_code == 200
    assert 'href="/console/tenants/acme/"' in body
    assert "Globex" not in body
    assert '<span class="badge">owner</span>' in body
    assert "$1.2500" in body and "$10.00" in body and "13%" in body
    assert "New tenant" not in body


def test_it_shows_staff_every_tenant_and_the_new_tenant_form(
    client_as, staff, tenant, other_tenant
):
    body = client_as(staff).get("/console/tenants/").content.decode()

    assert "Acme" in body and "Globex" in body
    assert "New tenant" in body
    assert 'name="owner"' in body


def test_it_lets_staff_create_a_tenant_with_an_owner_audited(
    client_as, staff, make_member, providers
):
    ada = make_member("ada")

    response = client_as(staff).post(
        "/console/tenants/",
        {
            "name": "Initech",
            "slug": "",
            "owner": "ada",
            "default_rpm": "120",
            "monthly_budget_usd": "50",
            "allowed_providers": ["claude"],
        },
    )

    assert response.status_code == 302
    assert response["Location"] == "/console/tenants/initech/"
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.default_rpm == 120 and tenant.monthly_budget_usd == Decimal("50")
    assert [p.name for p in tenant.allowed_providers.all()] == ["claude"]
    assert Membership.objects.get(tenant=tenant, user=ada).role == Role.OWNER
    event = assert_audited("tenant.create", staff, tenant)
    assert event.changes["owner"] == "ada"


def test_it_refuses_tenant_creation_to_non_staff(client_as, owner):
    before = snapshot()

    response = client_as(owner).post("/console/tenants/", {"name": "Sneaky"})

    assert response.status_code == 403
    assert snapshot() == before


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "Acme again", "slug": "acme"}, "slug", "already exists"),
        ({"name": "Bad", "slug": "Not A Slug"}, "slug", "lower-case"),
        ({"name": "Broke", "monthly_budget_usd": "-1"}, "monthly_budget_usd", "greater than or"),
        ({"name": "Orphan", "owner": "nobody"}, "owner", "No active user"),
        ({"name": ""}, "name", "required"),
        ({"name": "Zero", "default_rpm": "0"}, "default_rpm", "greater than or"),
    ],
)
def test_it_shows_tenant_creation_errors_inline(client_as, staff, tenant, data, field, message):
    before = snapshot()

    response = client_as(staff).post("/console/tenants/", data)
    body = response.content.decode()

    assert response.status_code == 422
    assert snapshot() == before
    # the error sits in the named field's block
    block = body[body.index(f'id="id_{field}"') :]
    assert message in block[: block.index("</div>")]


# --- overview ------------------------------------------------------------------------------


def test_it_shows_the_overview_with_limits_and_this_months_spend(client_as, viewer, tenant):
    tenant.default_rpm, tenant.default_tpm = 60, 9000
    tenant.monthly_budget_usd = Decimal("4")
    tenant.pii_redaction = True
    tenant.save()
    spend(tenant, "1")
    spend(tenant, "2.5", when=timezone.now() - dt.timedelta(days=40))  # an earlier month

    response = client_as(viewer).get(TENANT_URL)
    body = response.content.decode()

    assert response.status_code == 200
    assert '<nav class="tabs"' in body
    assert 'aria-current="page">Overview' in body
    assert "60" in body and "9000" in body
    assert "$1.0000" in body and "$4.00" in body and "25%" in body
    assert '<span class="badge badge-ok">on</span>' in body
    assert "every enabled provider" in body
    # a viewer reads, with no form to change anything
    assert "Save settings" not in body


@pytest.mark.django_db
def test_it_answers_404_to_outsiders_and_for_unknown_tenants(client_as, outsider, owner, tenant):
    make_route(tenant)
    client = client_as(outsider)

    for url in (TENANT_URL, MEMBERS_URL, ROUTES_URL, INVOICES_URL, "/console/tenants/nope/"):
        assert client.get(url).status_code == 404, url
    before = snapshot()
    for url, data in [
        (TENANT_URL, {"name": "Mine now"}),
        (MEMBERS_URL, {"username": "outsider", "role": "owner"}),
        (MEMBERS_URL + "owner/role/", {"role": "viewer"}),
        (MEMBERS_URL + "owner/remove/", {}),
        (ROUTES_URL, {"alias": "x", "strategy": "failover", "candidates": "a/b"}),
        (ROUTES_URL + "fast/", {"strategy": "failover", "candidates": "a/b"}),
        (ROUTES_URL + "fast/delete/", {}),
        (INVOICES_URL, {"period": "2025-03"}),
    ]:
        assert client.post(url, data).status_code == 404, url
    assert snapshot() == before


def test_it_lets_an_admin_change_limits_and_budget_audited(client_as, tenant_admin, tenant):
    client = client_as(tenant_admin)
    assert "Save settings" in client.get(TENANT_URL).content.decode()

    response = client.post(
        TENANT_URL,
        {
            "name": "Acme Corp",
            "default_rpm": "30",
            "monthly_budget_usd": "12.5",
            "pii_redaction": "on",
        },
    )

    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.name, tenant.default_rpm, tenant.default_tpm) == ("Acme Corp", 30, None)
    assert tenant.monthly_budget_usd == Decimal("12.5") and tenant.pii_redaction
    event = assert_audited("tenant.update", tenant_admin, tenant)
    assert event.changes["default_rpm"] == {"from": None, "to": 30}
    assert "Settings saved." in client.get(TENANT_URL).content.decode()


def test_it_keeps_the_organisation_fields_for_staff(
    client_as, tenant_admin, staff, tenant, providers
):
    admin_page = client_as(tenant_admin).get(TENANT_URL).content.decode()
    assert 'name="active"' not in admin_page and 'name="allowed_providers"' not in admin_page
    before = snapshot()

    refused = client_as(tenant_admin).post(TENANT_URL, {"name": "Acme", "active": ""})

    assert refused.status_code == 403
    assert snapshot() == before

    response = client_as(staff).post(
        TENANT_URL, {"name": "Acme", "allowed_providers": ["openai-prod"]}
    )  # "active" unticked

    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.active is False
    assert [p.name for p in tenant.allowed_providers.all()] == ["openai-prod"]
    assert_audited("tenant.update", staff, tenant)


def test_it_lets_an_admin_turn_body_capture_on_audited(client_as, owner, tenant):
    client = client_as(owner)
    assert "not captured" in client.get(TENANT_URL).content.decode()

    response = client.post(TENANT_URL, {"name": tenant.name, "capture_bodies": "on"})

    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.capture_bodies is True
    page = client.get(TENANT_URL).content.decode()
    assert "captured" in page and "not captured" not in page
    assert_audited("tenant.update", owner, tenant)


@pytest.mark.parametrize("user", ["teammate", "viewer"])
def test_it_refuses_settings_changes_below_admin(client_as, request, tenant, user):
    client = client_as(request.getfixturevalue(user))
    before = snapshot()

    response = client.post(TENANT_URL, {"name": "Hacked"})

    assert response.status_code == 403
    assert b"admin role" in response.content
    assert snapshot() == before


def test_it_shows_settings_errors_inline_and_keeps_the_values(client_as, owner, tenant):
    before = snapshot()

    response = client_as(owner).post(TENANT_URL, {"name": "Acme", "default_tpm": "-5"})
    body = response.content.decode()

    assert response.status_code == 422
    assert 'class="field has-error"' in body
    assert "greater than or equal to 1" in body
    assert 'value="-5"' in body
    assert snapshot() == before


# --- members -------------------------------------------------------------------------------


def test_it_lists_members_with_their_roles(client_as, viewer, owner, teammate, tenant):
    body = client_as(viewer).get(MEMBERS_URL).content.decode()

    for username in ("owner", "teammate", "viewer"):
        assert f'id="member-{username}"' in body
    assert "Add member" not in body
    assert "Change role" not in body
    # a viewer may still leave
    assert 'aria-label="Leave Acme"' in body


def test_it_lets_an_admin_add_a_member_audited(client_as, tenant_admin, make_member, tenant):
    make_member("carol")

    response = client_as(tenant_admin).post(MEMBERS_URL, {"username": "carol", "role": "viewer"})

    assert response.status_code == 302
    assert Membership.objects.get(tenant=tenant, user__username="carol").role == Role.VIEWER
    event = assert_audited("member.add", tenant_admin, tenant)
    assert event.changes == {"username": "carol", "role": "viewer"}


def test_it_offers_the_owner_role_only_to_owners(client_as, tenant_admin, owner, make_member):
    assert 'value="owner"' not in client_as(tenant_admin).get(MEMBERS_URL).content.decode()
    assert 'value="owner"' in client_as(owner).get(MEMBERS_URL).content.decode()
    make_member("carol")
    before = snapshot()

    response = client_as(tenant_admin).post(MEMBERS_URL, {"username": "carol", "role": "owner"})

    assert response.status_code == 403
    assert b"owner role" in response.content
    assert snapshot() == before

    assert (
        client_as(owner).post(MEMBERS_URL, {"username": "carol", "role": "owner"}).status_code
        == 302
    )


@pytest.mark.parametrize(
    ("username", "message"),
    [("ghost", "No active user"), ("teammate", "already a member"), ("", "required")],
)
def test_it_shows_member_errors_inline(client_as, owner, teammate, username, message):
    before = snapshot()

    response = client_as(owner).post(MEMBERS_URL, {"username": username, "role": "member"})

    assert response.status_code == 422
    assert message in response.content.decode()
    assert snapshot() == before


@pytest.mark.parametrize("user", ["teammate", "viewer"])
def test_it_refuses_member_changes_below_admin(client_as, request, make_member, viewer, user):
    make_member("carol")
    client = client_as(request.getfixturevalue(user))
    other = "viewer" if user == "teammate" else "teammate"
    request.getfixturevalue(other)
    request.getfixturevalue("owner")
    before = snapshot()

    assert client.post(MEMBERS_URL, {"username": "carol", "role": "viewer"}).status_code == 403
    assert client.post(MEMBERS_URL + "owner/role/", {"role": "viewer"}).status_code == 403
    assert client.post(MEMBERS_URL + f"{other}/remove/").status_code == 403
    assert snapshot() == before


def test_it_lets_an_admin_change_a_role_audited(client_as, tenant_admin, teammate, tenant):
    response = client_as(tenant_admin).post(MEMBERS_URL + "teammate/role/", {"role": "viewer"})

    assert response.status_code == 302
    assert Membership.objects.get(user=teammate).role == Role.VIEWER
    event = assert_audited("member.update", tenant_admin, tenant)
    assert event.changes["role"] == {"from": "member", "to": "viewer"}


def test_it_keeps_admins_away_from_owners(client_as, tenant_admin, owner):
    page = client_as(tenant_admin).get(MEMBERS_URL).content.decode()
    owner_row = page[page.index('id="member-owner"') :]
    owner_row = owner_row[: owner_row.index("</tr>")]
    assert "Change role" not in owner_row and "Remove" not in owner_row
    before = snapshot()

    client = client_as(tenant_admin)
    assert client.post(MEMBERS_URL + "owner/role/", {"role": "admin"}).status_code == 403
    assert client.post(MEMBERS_URL + "owner/remove/").status_code == 403
    assert snapshot() == before


def test_it_shows_the_last_owner_protection_inline(client_as, owner, tenant):
    client = client_as(owner)
    before = snapshot()

    demoted = client.post(MEMBERS_URL + "owner/role/", {"role": "admin"})
    left = client.post(MEMBERS_URL + "owner/remove/")

    for response in (demoted, left):
        assert response.status_code == 422
        body = response.content.decode()
        assert 'role="alert">owner: a tenant must keep at least one owner' in body
    assert snapshot() == before


def test_it_lets_an_admin_remove_a_member_audited(client_as, tenant_admin, teammate, tenant):
    response = client_as(tenant_admin).post(MEMBERS_URL + "teammate/remove/")

    assert response.status_code == 302
    assert not Membership.objects.filter(user=teammate).exists()
    assert assert_audited("member.remove", tenant_admin, tenant).changes["username"] == "teammate"


def test_it_lets_anyone_leave(client_as, viewer, tenant):
    client = client_as(viewer)

    response = client.post(MEMBERS_URL + "viewer/remove/")

    assert response.status_code == 302
    assert response["Location"] == "/console/tenants/"
    assert not Membership.objects.filter(user=viewer).exists()
    assert_audited("member.remove", viewer, tenant)
    assert client.get(TENANT_URL).status_code == 404


def test_it_answers_404_for_an_unknown_member(client_as, owner):
    assert client_as(owner).post(MEMBERS_URL + "ghost/role/", {"role": "viewer"}).status_code == 404


# --- routes --------------------------------------------------------------------------------


def make_route(tenant, alias="fast", candidates=None):
    return ModelRoute.objects.create(
        tenant=tenant,
        alias=alias,
        candidates=candidates or [{"provider": "openai-prod", "model": "gpt-4o-mini"}],
    )


def test_it_lists_routes_with_their_candidates(client_as, viewer, tenant, providers):
    make_route(
        tenant,
        candidates=[
            {"provider": "openai-prod", "model": "gpt-4o-mini"},
            {"provider": "claude", "model": "claude-3-5-haiku"},
        ],
    )

    body = client_as(viewer).get(ROUTES_URL).content.decode()

    assert '<td class="mono"><span class="truncate" title="fast">fast</span></td>' in body
    assert body.index("openai-prod/gpt-4o-mini") < body.index("claude/claude-3-5-haiku")
    assert "Failover" in body
    assert "New route" not in body and "Edit" not in body


def test_it_lets_an_admin_create_a_route_audited(client_as, tenant_admin, tenant, providers):
    response = client_as(tenant_admin).post(
        ROUTES_URL,
        {
            "alias": "smart",
            "strategy": "round_robin",
            "candidates": "claude/claude-3-5-sonnet\n\nopenai-prod/org/model:v2\n",
        },
    )

    assert response.status_code == 302
    route = ModelRoute.objects.get(tenant=tenant, alias="smart")
    assert route.strategy == "round_robin"
    assert route.candidates == [
        {"provider": "claude", "model": "claude-3-5-sonnet"},
        {"provider": "openai-prod", "model": "org/model:v2"},
    ]
    assert_audited("route.create", tenant_admin, tenant)


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ("openai-prod/gpt-4o\nnope/model-x", "Line 2: unknown provider &#x27;nope&#x27;"),
        ("just-a-model", "Line 1: write provider/model"),
        ("", "This field is required"),
    ],
)
def test_it_shows_candidate_errors_inline(client_as, owner, providers, candidates, message):
    before = snapshot()

    response = client_as(owner).post(
        ROUTES_URL, {"alias": "x", "strategy": "failover", "candidates": candidates}
    )
    body = response.content.decode()

    assert response.status_code == 422
    block = body[body.index('id="id_candidates"') :]
    assert message in block[: block.index("</div>")]
    assert snapshot() == before


def test_it_refuses_candidates_outside_the_tenants_providers(client_as, owner, tenant, providers):
    tenant.allowed_providers.set([providers[1]])

    response = client_as(owner).post(
        ROUTES_URL, {"alias": "x", "strategy": "failover", "candidates": "openai-prod/gpt-4o"}
    )

    assert response.status_code == 422
    assert "is not allowed for this tenant" in response.content.decode()
    assert not ModelRoute.objects.exists()


def test_it_refuses_a_taken_alias_inline(client_as, owner, tenant, providers):
    make_route(tenant)

    response = client_as(owner).post(
        ROUTES_URL, {"alias": "fast", "strategy": "failover", "candidates": "claude/haiku"}
    )

    assert response.status_code == 422
    assert "already exists" in response.content.decode()
    assert ModelRoute.objects.count() == 1


def test_it_lets_an_admin_edit_and_delete_a_route_audited(
    client_as, tenant_admin, tenant, providers
):
    make_route(tenant)
    client = client_as(tenant_admin)
    edit_page = client.get(ROUTES_URL + "fast/").content.decode()
    assert "openai-prod/gpt-4o-mini</textarea>" in edit_page

    response = client.post(
        ROUTES_URL + "fast/", {"strategy": "cheapest_first", "candidates": "claude/haiku"}
    )

    assert response.status_code == 302
    route = ModelRoute.objects.get(alias="fast")
    assert route.strategy == "cheapest_first"
    assert route.candidates == [{"provider": "claude", "model": "haiku"}]
    assert_audited("route.update", tenant_admin, tenant)

    assert client.post(ROUTES_URL + "fast/delete/").status_code == 302
    assert not ModelRoute.objects.exists()
    assert_audited("route.delete", tenant_admin, tenant)


@pytest.mark.parametrize("user", ["teammate", "viewer"])
def test_it_refuses_route_changes_below_admin(client_as, request, tenant, providers, user):
    make_route(tenant)
    client = client_as(request.getfixturevalue(user))
    before = snapshot()
    data = {"alias": "y", "strategy": "failover", "candidates": "claude/haiku"}

    assert client.post(ROUTES_URL, data).status_code == 403
    assert client.get(ROUTES_URL + "fast/").status_code == 403
    assert client.post(ROUTES_URL + "fast/", data).status_code == 403
    assert client.post(ROUTES_URL + "fast/delete/").status_code == 403
    assert snapshot() == before


def test_it_keeps_other_tenants_routes_out_of_reach(client_as, owner, other_tenant, providers):
    make_route(other_tenant, alias="theirs")
    before = snapshot()

    assert client_as(owner).get(ROUTES_URL + "theirs/").status_code == 404
    assert client_as(owner).post(ROUTES_URL + "theirs/delete/").status_code == 404
    assert snapshot() == before


# --- invoices ------------------------------------------------------------------------------


def test_it_lets_an_admin_generate_an_invoice_and_download_it(client_as, tenant_admin, tenant):
    march = dt.datetime(2025, 3, 10, tzinfo=dt.UTC)
    spend(tenant, "0.5", when=march)
    spend(tenant, "0.25", when=march, n=2)
    client = client_as(tenant_admin)

    response = client.post(INVOICES_URL, {"period": "2025-03"})

    assert response.status_code == 302
    invoice = Invoice.objects.get(tenant=tenant)
    assert invoice.period == dt.date(2025, 3, 1) and invoice.total_usd == Decimal("0.75")
    event = assert_audited("invoice.generate", tenant_admin, tenant)
    assert event.changes["period"] == "2025-03"

    page = client.get(INVOICES_URL).content.decode()
    assert "2025-03" in page and "0.7500" in page and "final" in page
    csv_url = "/api/tenants/acme/invoices/2025-03/csv"
    assert f'href="{csv_url}"' in page
    csv = client.get(csv_url)
    assert csv.status_code == 200
    assert csv.content.decode().splitlines() == [
        "period,provider,model,requests,prompt_tokens,completion_tokens,cached_tokens,"
        "cache_write_tokens,reasoning_tokens,cached_cost_usd,cache_write_cost_usd,"
        "reasoning_cost_usd,cached_requests,cost_saved_usd,cost_usd",
        # no provider row behind these usage rows, so no price for the parts' cost
        "2025-03,openai-prod,gpt-4o-mini,2,20,10,0,0,0,,,,0,0E-8,0.75000000",
        "2025-03,total,,,,,,,,,,,,,0.75000000",
    ]


def test_it_shows_each_invoice_line_with_its_cache_and_reasoning_cost(
    client_as, viewer, tenant, providers
):
    openai_prod, _ = providers
    Pricing.objects.create(
        provider=openai_prod,
        provider_type="openai",
        model="gpt-4o-mini",
        input_per_million=Decimal("2"),
        output_per_million=Decimal("8"),
        cached_input_per_million=Decimal("0.5"),
    )
    pricing_cache_clear()
    row = spend(tenant, "0.00251", when=dt.datetime(2025, 3, 10, tzinfo=dt.UTC))
    UsageRecord.objects.filter(pk=row.pk).update(
        provider=openai_prod,
        prompt_tokens=2_000,
        completion_tokens=100,
        cached_tokens=1_000,
        reasoning_tokens=40,
    )
    billing.invoice_generate(tenant=tenant, period=dt.date(2025, 3, 1))

    page = client_as(viewer).get(INVOICES_URL).content.decode()

    lines = page.split("Lines of 2025-03")[1].split("</table>")[0]
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", lines)).strip()
    # 1,000 cached at $0.5/M, none written, 40 reasoning at $8/M
    assert "openai-prod gpt-4o-mini 1 2000 100 1000 (0.000500) 0 (0.000000) 40 (0.000320)" in cells
    assert cells.endswith("0.002510")


def test_it_shows_invoices_to_viewers_without_the_generate_form(client_as, viewer, tenant):
    Invoice.objects.create(
        tenant=tenant, period=dt.date(2025, 1, 1), total_usd=3, generated_at=timezone.now()
    )

    body = client_as(viewer).get(INVOICES_URL).content.decode()

    assert "2025-01" in body and "draft" in body
    assert "Generate an invoice" not in body


@pytest.mark.parametrize("user", ["teammate", "viewer"])
def test_it_refuses_invoice_generation_below_admin(client_as, request, tenant, user):
    client = client_as(request.getfixturevalue(user))
    before = snapshot()

    response = client.post(INVOICES_URL, {"period": "2025-03"})

    assert response.status_code == 403
    assert snapshot() == before


def test_it_shows_a_bad_invoice_month_inline(client_as, owner):
    before = snapshot()

    response = client_as(owner).post(INVOICES_URL, {"period": "March"})

    assert response.status_code == 422
    assert "YYYY-MM" in response.content.decode()
    assert snapshot() == before


# --- staff ---------------------------------------------------------------------------------


def test_it_treats_staff_as_owner_everywhere(
    client_as, staff, tenant, owner, make_member, providers
):
    client = client_as(staff)
    make_member("carol")

    for url in (TENANT_URL, MEMBERS_URL, ROUTES_URL, INVOICES_URL):
        assert client.get(url).status_code == 200
    assert 'value="owner"' in client.get(MEMBERS_URL).content.decode()
    assert client.post(MEMBERS_URL, {"username": "carol", "role": "owner"}).status_code == 302
    assert_audited("member.add", staff, tenant)
    route = {"alias": "staffs", "strategy": "failover", "candidates": "claude/haiku"}
    assert client.post(ROUTES_URL, route).status_code == 302
    assert_audited("route.create", staff, tenant)
    assert client.post(INVOICES_URL, {"period": "2025-02"}).status_code == 302
    assert_audited("invoice.generate", staff, tenant)


def test_it_shows_a_zero_budget_as_used_up(client_as, owner, tenant):
    tenant.monthly_budget_usd = Decimal("0")
    tenant.save()

    body = client_as(owner).get("/console/tenants/").content.decode()

    assert '$0.00 <span class="badge badge-bad">100%</span>' in body
