"""The global routes page (/console/routes/): the aliases every tenant may call, which of
the viewer's tenants replace them with a route of their own, and -- for staff only, as in
the management API -- adding, editing and deleting them, each change audited."""

from __future__ import annotations

import pytest

from providers_app.models import Provider
from tenants_app.models import AuditEvent, ModelRoute

URL = "/console/routes/"


@pytest.fixture
def providers(db):
    return (
        Provider.objects.create(name="openai-prod", type="openai"),
        Provider.objects.create(name="claude", type="anthropic"),
    )


def make_route(tenant=None, alias="fast", candidates=None, strategy="failover"):
    return ModelRoute.objects.create(
        tenant=tenant,
        alias=alias,
        strategy=strategy,
        candidates=candidates or [{"provider": "openai-prod", "model": "gpt-4o-mini"}],
    )


def snapshot() -> tuple:
    return list(ModelRoute.objects.order_by("pk").values()), AuditEvent.objects.count()


def assert_audited(action: str, actor) -> AuditEvent:
    rows = list(AuditEvent.objects.filter(action=action))
    assert len(rows) == 1, f"expected one {action} audit row, got {rows}"
    assert rows[0].actor == actor
    assert rows[0].ip_address == "127.0.0.1"
    assert rows[0].tenant is None
    assert rows[0].changes["scope"] == "global"
    return rows[0]


@pytest.mark.parametrize("who", ["staff", "owner", "teammate", "viewer", "outsider"])
def test_it_shows_every_signed_in_user_the_global_routes_in_order(request, client_as, who):
    request.getfixturevalue("providers")
    make_route(
        candidates=[
            {"provider": "openai-prod", "model": "gpt-4o-mini"},
            {"provider": "claude", "model": "claude-3-5-haiku"},
        ],
        strategy="cheapest_first",
    )

    response = client_as(request.getfixturevalue(who)).get(URL)
    body = response.content.decode()

    assert response.status_code == 200
    assert 'title="fast">fast</span>' in body
    assert "Cheapest First" in body  # the strategy's label
    assert body.index("openai-prod/gpt-4o-mini") < body.index("claude/claude-3-5-haiku")


def test_it_sends_a_visitor_to_sign_in(client, providers):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/console/login/")


def test_it_names_the_viewers_tenants_whose_own_route_wins(
    client_as, teammate, outsider, staff, tenant, other_tenant, providers
):
    make_route(alias="fast")
    make_route(alias="smart")
    make_route(tenant, alias="fast", candidates=[{"provider": "claude", "model": "haiku"}])
    make_route(other_tenant, alias="fast")

    member_body = client_as(teammate).get(URL).content.decode()
    staff_body = client_as(staff).get(URL).content.decode()
    outsider_body = client_as(outsider).get(URL).content.decode()

    assert 'href="/console/tenants/acme/routes/"' in member_body
    assert "Globex" not in member_body  # not the member's tenant
    assert "replaces the global one" in member_body
    assert "Acme" in staff_body and "Globex" in staff_body
    assert "Globex" in outsider_body and 'href="/console/tenants/acme/routes/"' not in outsider_body


@pytest.mark.parametrize("who", ["owner", "teammate", "viewer", "outsider"])
def test_it_lets_only_staff_change_global_routes(request, client_as, who, providers):
    make_route()
    client = client_as(request.getfixturevalue(who))
    before = snapshot()

    page = client.get(URL).content.decode()
    data = {"alias": "new", "strategy": "failover", "candidates": "claude/haiku"}

    assert "New global route" not in page and "Edit" not in page
    assert client.post(URL, data).status_code == 403
    assert client.get(URL + "fast/").status_code == 403
    assert client.post(URL + "fast/", data).status_code == 403
    assert client.post(URL + "fast/delete/").status_code == 403
    assert snapshot() == before


def test_it_lets_staff_create_a_global_route_audited(client_as, staff, providers):
    response = client_as(staff).post(
        URL,
        {
            "alias": "balanced",
            "strategy": "round_robin",
            "candidates": "claude/claude-3-5-sonnet\n\nopenai-prod/gpt-4o\n",
        },
    )

    assert response.status_code == 302
    route = ModelRoute.objects.get(tenant=None, alias="balanced")
    assert route.strategy == "round_robin"
    assert route.candidates == [
        {"provider": "claude", "model": "claude-3-5-sonnet"},
        {"provider": "openai-prod", "model": "gpt-4o"},
    ]
    assert_audited("route.create", staff)


def test_it_lets_staff_edit_and_delete_a_global_route_audited(client_as, staff, providers):
    make_route()
    client = client_as(staff)

    edit_page = client.get(URL + "fast/").content.decode()
    saved = client.post(URL + "fast/", {"strategy": "lowest_latency", "candidates": "claude/x"})

    assert "openai-prod/gpt-4o-mini</textarea>" in edit_page
    assert saved.status_code == 302
    route = ModelRoute.objects.get(alias="fast")
    assert route.strategy == "lowest_latency"
    assert route.candidates == [{"provider": "claude", "model": "x"}]
    event = assert_audited("route.update", staff)
    assert event.changes["strategy"] == {"from": "failover", "to": "lowest_latency"}

    assert client.post(URL + "fast/delete/").status_code == 302
    assert not ModelRoute.objects.exists()
    assert_audited("route.delete", staff)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"alias": "x", "strategy": "failover", "candidates": "openai-prod/a\nnope/b"},
            "candidates",
            "Line 2: unknown provider &#x27;nope&#x27;",
        ),
        (
            {"alias": "x", "strategy": "failover", "candidates": "no-slash"},
            "candidates",
            "Line 1: write provider/model",
        ),
        (
            {"alias": "a/b", "strategy": "failover", "candidates": "claude/x"},
            "alias",
            "must not contain",
        ),
        (
            {"alias": "x", "strategy": "fastest", "candidates": "claude/x"},
            "strategy",
            "Select a valid choice",
        ),
        (
            {"alias": "fast", "strategy": "failover", "candidates": "claude/x"},
            "alias",
            "already exists",
        ),
    ],
)
def test_it_shows_what_is_wrong_beside_the_field(client_as, staff, providers, data, field, message):
    make_route(alias="fast")
    before = snapshot()

    response = client_as(staff).post(URL, data)
    body = response.content.decode()

    assert response.status_code == 422
    block = body[body.index(f'id="id_{field}"') :]
    assert message in block[: block.index("</div>")]
    assert snapshot() == before


def test_it_keeps_a_tenants_route_out_of_the_global_pages(client_as, staff, tenant, providers):
    make_route(tenant, alias="acme-only")
    client = client_as(staff)

    assert "acme-only" not in client.get(URL).content.decode()
    assert client.get(URL + "acme-only/").status_code == 404
    assert client.post(URL + "acme-only/delete/").status_code == 404
    assert ModelRoute.objects.filter(alias="acme-only").exists()


def test_it_links_routes_and_pricing_in_the_navigation(client_as, teammate, staff, providers):
    member_nav = client_as(teammate).get(URL).content.decode()
    staff_nav = client_as(staff).get(URL).content.decode()

    assert 'href="/console/routes/" aria-current="page"' in member_nav
    assert 'href="/console/pricing/"' in member_nav
    assert 'href="/console/models/"' not in member_nav  # providers are staff-only
    assert 'href="/console/models/"' in staff_nav
