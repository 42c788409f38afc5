"""/console/audit/: who reads which events, the filters, pagination, and no secrets.

The rule is the management API's (GET /api/tenants/{slug}/audit needs the admin role):
staff read everything, including events of no tenant; tenant admins and owners read
their tenants' events; anyone with no admin role anywhere gets 403."""

import datetime as dt
import re

import pytest

from aipk_site.infra.audit import audit_record
from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_create
from tenants_app.models import AuditEvent, Role, VirtualKey
from tenants_app.services.keys import virtual_key_create, virtual_key_update
from tenants_app.services.routes import route_create, route_delete
from tenants_app.services.tenants import member_add

URL = "/console/audit/"
PROVIDER_SECRET = "sk-audit-provider-secret-9876"


@pytest.fixture
def events(tenant, other_tenant, owner, outsider, staff):
    """An Acme route change by the owner, a Globex key change by the outsider, and a
    provider created by staff (no tenant)."""
    audit_record(
        action="route.create",
        object_type="tenants_app.ModelRoute",
        object_id="7",
        actor=owner,
        tenant=tenant,
        changes={"alias": "acme-smart", "strategy": "failover"},
        ip_address="203.0.113.7",
    )
    audit_record(
        action="virtual_key.revoke",
        object_type="tenants_app.VirtualKey",
        object_id="9",
        actor=outsider,
        tenant=other_tenant,
        changes={"name": "globex-ci"},
    )
    provider = provider_create(
        name="openai", type="openai", base_url="http://127.0.0.1:9/openai/v1", actor=staff
    )
    api_key_add(provider=provider, label="main", secret=PROVIDER_SECRET, actor=staff)


def rows(body: str) -> list[str]:
    """Each table row's action."""
    tbody = body.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<td class=\"audit-action\"><code>([^<]+)</code></td>", tbody)


def test_it_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/")


def test_it_shows_staff_every_event_including_those_of_no_tenant(client_as, staff, events):
    response = client_as(staff).get(URL)
    body = response.content.decode()

    assert response.status_code == 200
    assert rows(body) == ["api_key.add", "provider.create", "virtual_key.revoke", "route.create"]
    assert '<option value="(none)">No tenant' in body
    assert "Acme" in body and "Globex" in body
    assert "203.0.113.7" in body
    assert "tenants_app.ModelRoute:7" not in body
    assert "Route #7" in body  # deleted since: what was recorded, as plain text
    assert '<span class="audit-change-field">Alias</span>: acme-smart' in body


@pytest.mark.parametrize("who", ["owner", "tenant_admin"])
def test_it_shows_tenant_admins_only_their_tenants_events(request, client_as, who, events):
    response = client_as(request.getfixturevalue(who)).get(URL)
    body = response.content.decode()

    assert response.status_code == 200
    assert rows(body) == ["route.create"]
    assert "Globex" not in body and "globex-ci" not in body
    assert "provider.create" not in body and "(none)" not in body


@pytest.mark.parametrize("who", ["teammate", "viewer"])
def test_it_refuses_members_and_viewers_with_no_admin_role(request, client_as, who, events):
    response = client_as(request.getfixturevalue(who)).get(URL)

    assert response.status_code == 403
    assert "route.create" not in response.content.decode()


def test_it_refuses_someone_with_no_tenant(client_as, make_member, events):
    loner = make_member("loner", None)

    assert client_as(loner).get(URL).status_code == 403


def test_it_shows_an_outsider_their_own_tenant_and_nothing_of_acme(client_as, outsider, events):
    body = client_as(outsider).get(URL).content.decode()

    assert rows(body) == ["virtual_key.revoke"]
    assert "Acme" not in body and "acme-smart" not in body and "203.0.113.7" not in body


def test_it_refuses_a_tenant_filter_outside_what_the_user_may_read(client_as, outsider, events):
    response = client_as(outsider).get(URL, {"tenant": "acme"})
    body = response.content.decode()

    assert response.status_code == 422
    assert "Tenant: Select a valid choice." in body
    assert "<tbody>" not in body and "route.create" not in body


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"tenant": "acme"}, ["route.create"]),
        ({"tenant": "(none)"}, ["api_key.add", "provider.create"]),
        ({"action": "route.create"}, ["route.create"]),
        ({"action": "route"}, []),  # exact unless it ends in "."
        ({"action": "provider."}, ["provider.create"]),
        ({"actor": "outsider"}, ["virtual_key.revoke"]),
        ({"object_type": "providers_app.ApiKey"}, ["api_key.add"]),
        ({"tenant": "globex", "action": "route.create"}, []),
    ],
)
def test_it_filters_events(client_as, staff, events, filters, expected):
    response = client_as(staff).get(URL, filters)

    assert response.status_code == 200
    assert rows(response.content.decode()) == expected


def test_it_filters_by_date_with_both_days_included(client_as, staff, tenant, owner):
    for day in (1, 2, 3, 4):
        event = audit_record(action=f"day.{day}", actor=owner, tenant=tenant, object_type="t")
        AuditEvent.objects.filter(pk=event.pk).update(
            created_at=dt.datetime(2025, 3, day, 12, tzinfo=dt.UTC)
        )

    body = client_as(staff).get(URL, {"date_from": "2025-03-02", "date_to": "2025-03-03"})

    assert rows(body.content.decode()) == ["day.3", "day.2"]


@pytest.mark.parametrize(
    ("filters", "error"),
    [
        ({"date_from": "yesterday"}, "From: Enter a valid date."),
        ({"date_to": "2025-02-30"}, "To: Enter a valid date."),
        (
            {"date_from": "2025-03-05", "date_to": "2025-03-01"},
            "To: must be on or after the From date",
        ),
        ({"action": "x" * 101}, "Action: Ensure this value has at most 100 characters"),
    ],
)
def test_it_answers_bad_filters_with_422_and_the_field_named(
    client_as, staff, events, filters, error
):
    response = client_as(staff).get(URL, filters)
    body = response.content.decode()

    assert response.status_code == 422
    assert error in body
    assert "Fix the filters above" in body and "<tbody>" not in body


def test_it_pages_fifty_events_at_a_time_and_keeps_the_filters(client_as, staff, tenant, owner):
    for n in range(120):
        audit_record(
            action="bulk.touch", object_type="t", object_id=str(n), actor=owner, tenant=tenant
        )
    audit_record(action="other.thing", object_type="t", actor=owner, tenant=tenant)
    client = client_as(staff)

    first = client.get(URL, {"action": "bulk.touch"}).content.decode()
    last = client.get(URL, {"action": "bulk.touch", "page": "3"}).content.decode()

    assert len(rows(first)) == 50 and set(rows(first)) == {"bulk.touch"}
    assert "120 events · page 1 of 3" in first
    assert 'href="?action=bulk.touch&amp;page=2"' in first
    assert len(rows(last)) == 20
    assert 'href="?action=bulk.touch&amp;page=2"' in last and "page=4" not in last
    assert "t #0<" in last and "t #119<" not in last  # newest first


def test_it_answers_htmx_with_the_results_and_each_fields_errors(client_as, staff, events):
    client = client_as(staff)
    htmx = {"HX-Request": "true"}

    good = client.get(URL, {"action": "route."}, headers=htmx)
    bad = client.get(URL, {"action": "route.", "date_from": "soon"}, headers=htmx)

    body = good.content.decode()
    assert good.status_code == 200
    assert body.lstrip().startswith('<div id="audit-results">')
    assert 'class="sidebar"' not in body and "<form" not in body
    assert rows(body) == ["route.create"]
    # every field's error slot comes along out of band, empty: old errors are cleared
    assert (
        '<span class="field-error" id="audit-errors-date_from" hx-swap-oob="true"></span>' in body
    )
    assert "HX-Request" in good["Vary"]
    assert bad.status_code == 422
    assert (
        '<span class="field-error" id="audit-errors-date_from" role="alert" hx-swap-oob="true">'
        "From: Enter a valid date.</span>"
    ) in bad.content.decode()


def test_it_never_shows_a_secret(client_as, staff, owner, tenant, events):
    _key, key_secret = virtual_key_create(tenant=tenant, name="ci", actor=owner)
    audit_record(
        action="oops.logged",
        object_type="t",
        actor=owner,
        tenant=tenant,
        changes={"secret": "sk-should-never-show-1234", "nested": {"api_key": "sk-nested-5678"}},
    )
    key = VirtualKey.objects.get(name="ci")

    staff_body = client_as(staff).get(URL).content.decode()
    assert "api_key.add" in staff_body  # the provider key's own event is listed, not its secret
    for user in (staff, owner):
        body = client_as(user).get(URL).content.decode()

        assert "virtual_key.create" in body and "oops.logged" in body
        for secret in (key_secret, key.key_hash, PROVIDER_SECRET, "sk-should-never-show-1234"):
            assert secret not in body
        assert "sk-nested-5678" not in body
        assert "***" not in body
        assert (
            '<span class="audit-change-field">Secret</span>: '
            '<span class="muted">changed (not shown)</span>'
        ) in body


def test_it_escapes_what_the_changes_hold(client_as, staff, tenant, owner):
    audit_record(
        action="tenant.update",
        object_type="t",
        actor=owner,
        tenant=tenant,
        changes={"name": "<script>alert(1)</script>"},
    )

    body = client_as(staff).get(URL).content.decode()

    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def object_cells(body: str) -> list[str]:
    """Each row's Object cell, as HTML."""
    tbody = body.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<td class="audit-object">(.*?)</td>', tbody, re.S)


def test_it_names_a_virtual_key_and_links_its_page_and_its_requests(client_as, owner, tenant):
    key, _secret = virtual_key_create(tenant=tenant, name="nightly-batch", actor=owner)

    body = client_as(owner).get(URL).content.decode()

    [cell] = object_cells(body)
    assert "tenants_app.VirtualKey" not in cell
    page = f"/console/tenants/acme/keys/{key.pk}/"
    assert f'<a href="{page}">Virtual key nightly-batch (acme)</a>' in cell
    assert f'href="/console/requests/?tenant=acme&amp;key={key.pk}">Requests</a>' in cell


def test_it_names_a_deleted_object_in_plain_text(client_as, staff, owner, tenant, make_member):
    key, _secret = virtual_key_create(tenant=tenant, name="gone-soon", actor=owner)
    repr_at_the_time = str(key)
    key.delete()
    provider_create(name="p", type="openai", base_url="http://127.0.0.1:9/openai/v1")
    route = route_create(
        tenant=tenant, alias="smart", candidates=[{"provider": "p", "model": "m"}], actor=owner
    )
    route_delete(route=route, actor=owner)

    body = client_as(staff).get(URL).content.decode()
    cells = dict(zip(rows(body), object_cells(body), strict=True))

    assert cells["route.delete"] == "Route smart"
    assert cells["route.create"] == "Route smart"  # the same row, gone too
    assert cells["virtual_key.create"].startswith(f"Virtual key {repr_at_the_time}<")
    assert '<a href="/console/tenants/' not in "".join(cells.values())
    # a deleted key's requests are still in the log
    assert 'href="/console/requests/?tenant=acme&amp;key=' in cells["virtual_key.create"]


def test_it_links_members_routes_tenants_and_providers_to_their_pages(
    client_as, staff, owner, tenant, make_member
):
    bob = make_member("bob-with-a-rather-long-username@example.com")
    member_add(tenant=tenant, user=bob, role=Role.MEMBER, actor=owner)
    provider = provider_create(
        name="openai", type="openai", base_url="http://127.0.0.1:9/openai/v1", actor=staff
    )
    route_create(
        tenant=tenant,
        alias="smart",
        candidates=[{"provider": "openai", "model": "m"}],
        actor=owner,
    )
    api_key_add(provider=provider, label="main", secret=PROVIDER_SECRET, actor=staff)
    audit_record(action="tenant.update", obj=tenant, actor=owner, tenant=tenant)

    staff_cells = object_cells(client_as(staff).get(URL).content.decode())
    owner_cells = object_cells(client_as(owner).get(URL).content.decode())

    assert staff_cells[0] == '<a href="/console/tenants/acme/">Tenant Acme</a>'
    key = provider.api_keys.get()
    assert staff_cells[1] == (
        f'<a href="/console/credentials/#key-{key.pk}">Provider API key main (…9876) of openai</a>'
    )
    assert staff_cells[2] == '<a href="/console/tenants/acme/routes/smart/">Route smart (acme)</a>'
    assert staff_cells[3] == f'<a href="/console/providers/{provider.pk}/">Provider openai</a>'
    assert staff_cells[4] == (
        '<a href="/console/tenants/acme/members/#member-bob-with-a-rather-long-usernameexamplecom">'
        "Member bob-with-a-rather-long-username@example.com (acme)</a>"
    )
    assert owner_cells == [staff_cells[0], staff_cells[2], staff_cells[4]]


def test_it_shows_changes_as_before_and_after(client_as, owner, tenant):
    key, _secret = virtual_key_create(tenant=tenant, name="ci", actor=owner, rpm=10)
    virtual_key_update(key=key, actor=owner, rpm=60, name="ci-main")

    body = client_as(owner).get(URL).content.decode()

    changes = body.split('<td class="audit-changes">', 2)[1]
    assert (
        '<li><span class="audit-change-field">Rpm</span>: <span class="audit-before">10</span>'
        ' → <span class="audit-after">60</span></li>'
    ) in changes
    assert (
        '<span class="audit-change-field">Name</span>: <span class="audit-before">ci</span>'
        ' → <span class="audit-after">ci-main</span>'
    ) in changes
    assert '{"from"' not in body and "&quot;from&quot;" not in body


def test_it_offers_actors_and_object_types_as_choices_from_the_visible_events(
    client_as, outsider, events
):
    body = client_as(outsider).get(URL).content.decode()

    actor = body.split('<select name="actor"', 1)[1].split("</select>", 1)[0]
    object_type = body.split('<select name="object_type"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r'<option value="([^"]*)"', actor) == ["", "outsider"]
    assert re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)<', object_type) == [
        ("", "Any object"),
        ("tenants_app.VirtualKey", "Virtual key"),
    ]


@pytest.mark.parametrize(
    ("filters", "error"),
    [
        ({"actor": "owner"}, "Actor: Select a valid choice."),  # an actor of Acme only
        ({"object_type": "providers_app.Provider"}, "Object type: Select a valid choice."),
        ({"object_type": "no such type"}, "Object type: Select a valid choice."),
    ],
)
def test_it_refuses_an_actor_or_object_type_that_is_not_among_the_choices(
    client_as, outsider, events, filters, error
):
    response = client_as(outsider).get(URL, filters)
    body = response.content.decode()

    assert response.status_code == 422
    assert error in body and "<tbody>" not in body


def test_it_keeps_the_chosen_filters_selected(client_as, staff, events):
    body = (
        client_as(staff)
        .get(URL, {"actor": "owner", "object_type": "tenants_app.ModelRoute"})
        .content.decode()
    )

    assert rows(body) == ["route.create"]
    assert '<option value="owner" selected>owner</option>' in body
    assert '<option value="tenants_app.ModelRoute" selected>Route</option>' in body
