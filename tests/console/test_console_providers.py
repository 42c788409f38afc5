"""The console's Providers pages: list, add, edit, detail, test connection, refresh models.

Staff only: tenant members (whatever their role) get 403 on every page and
action and change nothing. Everything that talks to a provider talks to the
simulator over loopback.
"""

from __future__ import annotations

import re

import pytest

from providers_app.models import DiscoveredModel, HealthAlert, HealthCheck, Provider
from providers_app.services.credentials import api_key_add
from providers_app.services.discovery import discover_models
from providers_app.services.health import check_provider_health
from providers_app.services.providers import provider_create
from tenants_app.models import AuditEvent

OPENAI_PATH = "/openai/v1"
KEY_SECRET = "sk-sim-console-provider-key-9137"
CLIENT_SECRET = "client-secret-never-shown-4482"


@pytest.fixture
def openai_provider(db, simulator):
    provider = provider_create(
        name="openai-main",
        type="openai",
        base_url=simulator.url + OPENAI_PATH,
        default_model="gpt-4o-mini",
        oauth_client_id="sim-console-client",
        oauth_client_secret=CLIENT_SECRET,
    )
    api_key_add(provider=provider, label="primary", secret=KEY_SECRET)
    return provider


@pytest.fixture
def broken_provider(db, simulator):
    """A provider whose only key the simulator refuses (keys starting with "invalid")."""
    provider = provider_create(
        name="openai-broken", type="openai", base_url=simulator.url + OPENAI_PATH
    )
    api_key_add(provider=provider, label="revoked key", secret="invalid-key-000001")
    return provider


def _snapshot():
    """Everything a refused request must leave as it was."""
    return (
        list(Provider.objects.order_by("pk").values()),
        HealthCheck.objects.count(),
        DiscoveredModel.objects.count(),
        AuditEvent.objects.count(),
    )


def _add_form(simulator, **overrides):
    data = {
        "name": "openai-new",
        "base_url": simulator.url + OPENAI_PATH,
        "default_model": "gpt-4o-mini",
        "timeout_seconds": "30",
        "enabled": "on",
        "key_strategy": "health_aware",
        "settings_organization": "org-console",
        "oauth_client_id": "",
        "oauth_client_secret": "",
    }
    data.update(overrides)
    return data


# ------------------------------------------------------------------------------- access


@pytest.mark.parametrize("who", ["owner", "tenant_admin", "teammate", "outsider"])
def test_it_refuses_every_page_and_action_to_non_staff(
    request, who, client_as, openai_provider, simulator
):
    client = client_as(request.getfixturevalue(who))
    pk = openai_provider.pk
    before = _snapshot()

    for url in [
        "/console/providers/",
        "/console/providers/add/",
        "/console/providers/add/openai/",
        f"/console/providers/{pk}/",
        f"/console/providers/{pk}/edit/",
    ]:
        assert client.get(url).status_code == 403, url
    for url, data in [
        ("/console/providers/add/openai/", _add_form(simulator)),
        (f"/console/providers/{pk}/edit/", _add_form(simulator, default_model="changed")),
        (f"/console/providers/{pk}/test/", {}),
        (f"/console/providers/{pk}/refresh-models/", {}),
    ]:
        assert client.post(url, data).status_code == 403, url

    assert _snapshot() == before


def test_it_sends_visitors_who_are_not_signed_in_to_the_login_page(client, openai_provider):
    for url in ["/console/providers/", f"/console/providers/{openai_provider.pk}/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/console/login/?next=")
    response = client.post(f"/console/providers/{openai_provider.pk}/test/")
    assert response.status_code == 302
    assert not HealthCheck.objects.exists()


# ------------------------------------------------------------------------------- list


def test_it_lists_providers_with_health_and_counts(client_as, staff, openai_provider):
    api_key_add(provider=openai_provider, label="second", secret="sk-sim-second-key-5555")
    check_provider_health(openai_provider)
    models = discover_models(openai_provider, refresh=True)

    response = client_as(staff).get("/console/providers/")

    assert response.status_code == 200
    body = response.content.decode()
    assert f'href="/console/providers/{openai_provider.pk}/"' in body
    assert "openai-main" in body and "OpenAI" in body
    assert "badge-healthy" in body and "enabled" in body
    assert '<td class="num">2</td>' in body  # two API keys
    assert f'<td class="num">{len(models)}</td>' in body
    assert KEY_SECRET not in body and CLIENT_SECRET not in body


def test_it_shows_an_unhealthy_provider_at_a_glance(client_as, staff, broken_provider):
    check_provider_health(broken_provider)

    body = client_as(staff).get("/console/providers/").content.decode()

    assert "badge-down" in body and "unhealthy" in body


# ------------------------------------------------------------------------------- add


def test_it_offers_one_settings_form_per_provider_type(client_as, staff):
    client = client_as(staff)

    choose = client.get("/console/providers/add/").content.decode()
    assert 'href="/console/providers/add/gemini/"' in choose
    gemini = client.get("/console/providers/add/gemini/").content.decode()
    assert 'name="settings_project_id"' in gemini
    assert 'name="settings_rate_limit_tier"' in gemini
    assert 'name="settings_organization"' not in gemini
    qwen = client.get("/console/providers/add/qwen/").content.decode()
    assert 'name="settings_requests_per_minute"' in qwen and 'value="60"' in qwen
    assert client.get("/console/providers/add/nonsense/").status_code == 302


def test_it_adds_a_provider_through_the_service_and_audits_it(client_as, staff, simulator):
    client = client_as(staff)
    data = _add_form(simulator, oauth_client_id="sim-new", oauth_client_secret=CLIENT_SECRET)

    response = client.post("/console/providers/add/openai/", data)

    provider = Provider.objects.get(name="openai-new")
    assert response.status_code == 302
    assert response["Location"] == f"/console/providers/{provider.pk}/"
    assert provider.type == "openai"
    assert provider.base_url == simulator.url + OPENAI_PATH
    assert provider.timeout_seconds == 30
    assert provider.settings == {"organization": "org-console"}
    assert provider.oauth_client_secret == CLIENT_SECRET
    event = AuditEvent.objects.get(action="provider.create")
    assert event.actor == staff and event.object_id == str(provider.pk)
    assert CLIENT_SECRET not in str(event.changes)
    page = client.get(response["Location"]).content.decode()
    assert "Provider openai-new added." in page
    assert CLIENT_SECRET not in page and "secret stored" in page


def test_it_shows_bad_input_inline_naming_the_field_with_422(client_as, staff, simulator):
    client = client_as(staff)
    data = _add_form(
        simulator,
        name="not a slug!",
        base_url="not-a-url",
        timeout_seconds="-3",
        oauth_client_secret=CLIENT_SECRET,
    )

    response = client.post("/console/providers/add/openai/", data)

    assert response.status_code == 422
    body = response.content.decode()
    assert 'class="has-error"' in body
    assert "Name: Enter a valid “slug”" in body
    assert "Base URL: Enter a valid URL." in body
    assert "Timeout (seconds): Ensure this value is greater than or equal to 0.1." in body
    assert CLIENT_SECRET not in body  # write-only, even when the form comes back
    assert not Provider.objects.exists()
    assert not AuditEvent.objects.exists()


def test_it_names_a_bad_type_specific_setting(client_as, staff, simulator):
    data = _add_form(simulator, name="router")
    del data["settings_organization"]
    data["settings_site_url"] = "not a url"

    response = client_as(staff).post("/console/providers/add/openrouter/", data)

    assert response.status_code == 422
    body = response.content.decode()
    assert "Site url: " in body and "URL" in body
    assert not Provider.objects.exists()


def test_it_shows_a_services_refusal_next_to_the_field(client_as, staff, simulator):
    client = client_as(staff)

    response = client.post(
        "/console/providers/add/openai-compatible/", _add_form(simulator, base_url="")
    )

    assert response.status_code == 422
    assert "Base URL: an openai-compatible provider needs a base URL" in response.content.decode()
    assert not Provider.objects.exists()


def test_it_refuses_a_name_already_taken_inline(client_as, staff, openai_provider, simulator):
    response = client_as(staff).post(
        "/console/providers/add/openai/", _add_form(simulator, name="openai-main")
    )

    assert response.status_code == 422
    assert "Name: Provider with this Name already exists." in response.content.decode()
    assert Provider.objects.count() == 1


# ------------------------------------------------------------------------------- edit


def test_it_edits_a_provider_and_keeps_a_blank_client_secret(
    client_as, staff, openai_provider, simulator
):
    client = client_as(staff)
    page = client.get(f"/console/providers/{openai_provider.pk}/edit/").content.decode()
    assert "A secret is stored. Leave blank to keep it." in page
    assert CLIENT_SECRET not in page
    assert 'name="name"' not in page  # the name is fixed

    data = _add_form(
        simulator,
        default_model="gpt-4o",
        settings_organization="",
        oauth_client_id="sim-console-client",
        key_strategy="round_robin",
    )
    response = client.post(f"/console/providers/{openai_provider.pk}/edit/", data)

    assert response.status_code == 302
    openai_provider.refresh_from_db()
    assert openai_provider.default_model == "gpt-4o"
    assert openai_provider.key_strategy == "round_robin"
    assert openai_provider.oauth_client_secret == CLIENT_SECRET
    event = AuditEvent.objects.get(action="provider.update")
    assert event.actor == staff
    assert event.changes["default_model"] == "gpt-4o"
    assert "oauth_client_secret" not in event.changes
    assert "oauth_client_id" not in event.changes  # unchanged fields are not recorded


def test_it_replaces_or_removes_the_client_secret_on_request(
    client_as, staff, openai_provider, simulator
):
    client = client_as(staff)
    url = f"/console/providers/{openai_provider.pk}/edit/"
    base = _add_form(simulator, oauth_client_id="sim-console-client")

    client.post(url, {**base, "oauth_client_secret": "a-new-client-secret-1"})
    openai_provider.refresh_from_db()
    assert openai_provider.oauth_client_secret == "a-new-client-secret-1"

    client.post(url, {**base, "clear_oauth_client_secret": "on"})
    openai_provider.refresh_from_db()
    assert openai_provider.oauth_client_secret == ""


def test_it_keeps_the_stored_provider_when_an_edit_is_refused(
    client_as, staff, openai_provider, simulator
):
    response = client_as(staff).post(
        f"/console/providers/{openai_provider.pk}/edit/",
        _add_form(simulator, base_url="ftp://nope", default_model="changed"),
    )

    assert response.status_code == 422
    assert "Base URL: Enter a valid URL." in response.content.decode()
    openai_provider.refresh_from_db()
    assert openai_provider.default_model == "gpt-4o-mini"
    assert not AuditEvent.objects.filter(action="provider.update").exists()


# ------------------------------------------------------------------------------- detail


def test_it_tests_the_connection_inline(client_as, staff, openai_provider):
    client = client_as(staff)

    response = client.post(
        f"/console/providers/{openai_provider.pk}/test/", headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert '<span id="health-result"' in body and "<html" not in body
    assert "badge-healthy" in body and " ms</span>" in body
    check = HealthCheck.objects.get(provider=openai_provider)
    assert check.healthy
    assert KEY_SECRET not in body


def test_it_shows_a_failed_connection_test_with_its_error_type(client_as, staff, broken_provider):
    response = client_as(staff).post(f"/console/providers/{broken_provider.pk}/test/")

    body = response.content.decode()
    assert response.status_code == 200
    assert "unhealthy" in body and "authentication_error" in body
    assert "invalid-key-000001" not in body
    assert HealthCheck.objects.get(provider=broken_provider).healthy is False


def test_it_refreshes_models_and_shows_capabilities_and_prices(client_as, staff, openai_provider):
    client = client_as(staff)
    assert not DiscoveredModel.objects.exists()

    response = client.post(f"/console/providers/{openai_provider.pk}/refresh-models/")

    assert response.status_code == 302
    models = list(DiscoveredModel.objects.filter(provider=openai_provider))
    assert models
    body = client.get(response["Location"]).content.decode()
    assert f"{len(models)} models discovered for openai-main." in body
    priced = next(m for m in models if m.input_price_per_million is not None)
    assert priced.model_id in body
    assert f"${float(priced.input_price_per_million):g}</td>" in body
    assert f"${float(priced.output_price_per_million):g}</td>" in body
    with_window = next(m for m in models if m.context_window)
    assert f'<td class="num">{with_window.context_window}</td>' in body
    assert "Input $/M tokens" in body and "Streaming" in body and "Tools" in body


def test_it_shows_settings_health_history_alerts_and_credentials(client_as, staff, broken_provider):
    check_provider_health(broken_provider)
    assert HealthAlert.objects.filter(provider=broken_provider).exists()

    body = client_as(staff).get(f"/console/providers/{broken_provider.pk}/").content.decode()

    assert "Test connection" in body and 'hx-post="/console/providers/' in body
    assert "Recent checks" in body and "authentication_error" in body
    assert "became unhealthy" in body  # the alert
    assert "revoked key" in body and "…0001" in body
    assert "invalid-key-000001" not in body
    assert f"/console/credentials/?provider={broken_provider.pk}#add-key" in body


def test_it_answers_404_for_a_provider_that_does_not_exist(client_as, staff):
    client = client_as(staff)
    assert client.get("/console/providers/999/").status_code == 404
    assert client.post("/console/providers/999/test/").status_code == 404


def test_it_sends_the_tests_result_to_every_copy_of_the_last_check(
    client_as, staff, openai_provider
):
    client = client_as(staff)
    htmx = {"HX-Request": "true"}

    from_list = client.post(f"/console/providers/{openai_provider.pk}/test/", headers=htmx)
    from_page = client.post(
        f"/console/providers/{openai_provider.pk}/test/", {"history": "1"}, headers=htmx
    )

    oob = (
        f'<span class="last-check provider-check-{openai_provider.pk}" '
        f'hx-swap-oob="outerHTML:.provider-check-{openai_provider.pk}">'
        '<span class="badge badge-healthy">healthy</span>'
    )
    assert oob in from_list.content.decode() and oob in from_page.content.decode()
    # only the provider's page lists the recent checks: now both of them
    assert 'id="provider-history"' not in from_list.content.decode()
    history = from_page.content.decode().split('<div id="provider-history" hx-swap-oob="true">')[1]
    assert history.count('<span class="badge badge-healthy">healthy</span>') == 2


def test_it_shows_the_same_last_check_on_the_provider_page_and_the_list(
    client_as, staff, broken_provider
):
    client = client_as(staff)
    before = client.get("/console/providers/").content.decode()
    client.post(f"/console/providers/{broken_provider.pk}/test/")

    page = client.get(f"/console/providers/{broken_provider.pk}/").content.decode()
    listed = client.get("/console/providers/").content.decode()

    copy = re.compile(r'<span class="last-check provider-check-\d+">.*?</span>\s*</span>', re.S)
    assert "not checked" in copy.search(before).group(0)
    assert copy.search(page).group(0) == copy.search(listed).group(0)
    assert "unhealthy" in copy.search(listed).group(0)
    assert "authentication_error" in copy.search(listed).group(0)
