"""`manage.py seed_demo` leaves a demo with nothing left to do: every seeded provider
health-checked with its models discovered, and the seeded OAuth providers wired to the
simulator's authorisation server, so *Connect* and the device flow complete offline."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import openai
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from providers_app.models import ApiKey, DiscoveredModel, OAuthCredential, OAuthFlow, Provider
from providers_app.services import oauth
from providers_app.services.credentials import api_key_replace_secret, api_key_set_state
from providers_app.services.health import latest_check
from tests.gateway.test_demo_seed import PROVIDER_NAMES, clean_caches, debug_on, printed_key

__all__ = ["clean_caches", "debug_on"]  # fixtures shared with test_demo_seed.py

OAUTH_CODE_FLOW = {"openai", "anthropic", "gemini"}


def seed(simulator_url: str, base_url: str = "http://127.0.0.1:8000", **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "seed_demo",
        simulator_url=simulator_url,
        base_url=base_url,
        quiet=True,
        stdout=out,
        stderr=err,
        **options,
    )
    return out.getvalue(), err.getvalue()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sim_requests(simulator) -> list[dict]:
    return httpx.get(simulator.url + "/_sim/requests").json()


def _only_credential_is_oauth(provider: Provider) -> None:
    """Retire the demo's fake API key, so a /v1 request can only use the OAuth account."""
    for key in ApiKey.objects.filter(provider=provider):
        api_key_set_state(key=key, state=ApiKey.State.RETIRED)


def _raw_column(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return str(cursor.fetchone()[0])


@pytest.mark.django_db
def test_it_checks_every_seeded_provider_and_discovers_its_models(simulator, clean_caches):
    output, warnings = seed(simulator.url)

    assert "Checked 7 providers on the simulator (7 healthy)" in output, output + warnings
    total = int(re.search(r"and discovered (\d+) models", output).group(1))
    assert total == DiscoveredModel.objects.count() > 0
    for provider in Provider.objects.filter(name__in=PROVIDER_NAMES):
        check = latest_check(provider)
        assert check is not None and check.healthy, provider.name
        fetched = DiscoveredModel.objects.filter(provider=provider, source="fetched")
        assert fetched.exists(), provider.name
    assert warnings == ""

    # a second `make run`: checked again, nothing duplicated
    again, _ = seed(simulator.url)
    assert f"and discovered {total} models" in again
    assert DiscoveredModel.objects.count() == total


@pytest.mark.django_db
def test_it_names_a_seeded_provider_that_fails_its_check(simulator, clean_caches):
    seed(simulator.url)
    # the simulator refuses any credential starting with "invalid"
    key = ApiKey.objects.get(provider__name="cerebras")
    api_key_replace_secret(key=key, secret="invalid-demo-key-0001")

    output, warnings = seed(simulator.url)

    assert "Checked 7 providers on the simulator (6 healthy)" in output
    assert "warning: provider 'cerebras' is unhealthy: authentication" in warnings
    assert "invalid-demo-key-0001" not in output + warnings
    assert not latest_check(Provider.objects.get(name="cerebras")).healthy


@pytest.mark.django_db
def test_it_warns_and_still_seeds_when_the_simulator_is_down(clean_caches):
    output, warnings = seed(f"http://127.0.0.1:{_free_port()}")

    assert "warning: the provider simulator does not answer" in warnings
    assert "Checked" not in output
    printed_key(output)
    assert Provider.objects.count() == 7
    assert not DiscoveredModel.objects.exists()


@pytest.mark.django_db
def test_it_gives_up_on_the_checks_after_the_timeout_and_still_prints_the_key(
    simulator, clean_caches
):
    # no round trip to the simulator, let alone fourteen, fits in a microsecond
    output, warnings = seed(simulator.url, check_timeout=0.000001)

    assert "warning: checking the demo providers took longer than 1e-06 s" in warnings
    assert "Checked" not in output
    printed_key(output)


@pytest.mark.django_db
def test_it_points_the_oauth_providers_at_the_simulator_and_follows_its_port(clean_caches):
    seed("http://127.0.0.1:1")
    for name in OAUTH_CODE_FLOW:
        provider = Provider.objects.get(name=name)
        assert provider.oauth_authorize_url == "http://127.0.0.1:1/oauth/authorize"
        assert provider.oauth_token_url == "http://127.0.0.1:1/oauth/token"
        assert provider.oauth_client_id == f"aipk-demo-{name}" or name == "gemini"
    qwen = Provider.objects.get(name="qwen")
    assert qwen.oauth_device_url.startswith("http://127.0.0.1:1/qwen-oauth/")
    openrouter = Provider.objects.get(name="openrouter")
    assert openrouter.oauth_authorize_url == "http://127.0.0.1:1/openrouter/auth"
    assert not Provider.objects.get(name="cerebras").oauth_token_url

    # an admin's own client id and a real token URL survive a reseed on another port
    Provider.objects.filter(name="openai").update(
        oauth_client_id="my-client", oauth_token_url="https://auth.example.com/token"
    )
    seed("http://127.0.0.1:2")
    openai_provider = Provider.objects.get(name="openai")
    assert openai_provider.oauth_client_id == "my-client"
    assert openai_provider.oauth_token_url == "https://auth.example.com/token"
    assert openai_provider.oauth_authorize_url == "http://127.0.0.1:2/oauth/authorize"
    assert Provider.objects.get(name="qwen").oauth_token_url.startswith("http://127.0.0.1:2/")


@pytest.mark.django_db(transaction=True)
def test_it_connects_the_seeded_anthropic_account_offline_and_serves_v1_with_it(
    client, simulator, gateway_server, clean_caches
):
    output, _ = seed(simulator.url, gateway_server.url)
    admin = get_user_model().objects.get(username="admin")
    client.force_login(admin)
    anthropic = Provider.objects.get(name="anthropic")

    started = client.post(reverse("console:oauth_connect", args=[anthropic.pk]))
    assert started.status_code == 302
    authorize = started["Location"]
    assert authorize.startswith(simulator.url + "/oauth/authorize?")
    assert dict(parse_qsl(urlsplit(authorize).query))["client_id"] == "aipk-demo-anthropic"

    approved = httpx.get(authorize, follow_redirects=False)
    assert approved.status_code == 302
    callback = urlsplit(approved.headers["location"])
    assert callback.path == "/oauth/callback/anthropic/"
    page = client.get(callback.path, dict(parse_qsl(callback.query)))

    assert page.status_code == 200
    credential = OAuthCredential.objects.get(provider=anthropic)
    assert credential.state == OAuthCredential.State.ACTIVE
    assert credential.account_label == "sim-user@example.com"
    token = credential.access_token
    assert token.startswith("sim-at-")
    assert token not in page.content.decode() and credential.last4 in page.content.decode()
    assert token not in _raw_column("providers_app_oauthcredential", "access_token", credential.pk)

    # the account is usable through the gateway, with the demo's printed key
    _only_credential_is_oauth(anthropic)
    httpx.delete(simulator.url + "/_sim/requests")
    gateway = openai.OpenAI(
        base_url=gateway_server.openai_base_url, api_key=printed_key(output), max_retries=0
    )
    reply = gateway.chat.completions.create(
        model="anthropic/claude-sonnet-4-20250514",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert reply.choices[0].message.content == "Simulated reply to: Hello"
    [upstream] = [r for r in _sim_requests(simulator) if r["path"] == "/anthropic/v1/messages"]
    assert upstream["headers"]["authorization"] == f"Bearer ...{token[-4:]}"
    assert "x-api-key" not in upstream["headers"]


@pytest.mark.parametrize("name", ["openai", "gemini", "openrouter"])
@pytest.mark.django_db(transaction=True)
def test_it_connects_every_other_seeded_oauth_provider_offline(
    name, client, simulator, clean_caches
):
    seed(simulator.url)
    client.force_login(get_user_model().objects.get(username="admin"))
    provider = Provider.objects.get(name=name)

    started = client.post(reverse("console:oauth_connect", args=[provider.pk]))
    assert started["Location"].startswith(simulator.url + "/")
    approved = httpx.get(started["Location"], follow_redirects=False)
    callback = urlsplit(approved.headers["location"])
    assert callback.path == f"/oauth/callback/{name}/"
    page = client.get(callback.path, dict(parse_qsl(callback.query)))

    assert page.status_code == 200, page.content.decode()
    if name == "openrouter":  # OpenRouter's flow yields a permanent API key
        assert ApiKey.objects.filter(provider=provider, label__startswith="OpenRouter OAuth")
    else:
        credential = OAuthCredential.objects.get(provider=provider)
        assert credential.state == OAuthCredential.State.ACTIVE
        assert credential.access_token not in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_it_completes_the_seeded_qwen_device_flow_on_the_simulators_page(
    client, simulator, gateway_server, clean_caches, monkeypatch
):
    output, _ = seed(simulator.url, gateway_server.url)
    client.force_login(get_user_model().objects.get(username="admin"))
    qwen = Provider.objects.get(name="qwen")
    # the console polls every 2 s (Qwen's interval); move the service's clock instead
    now = [timezone.now()]
    monkeypatch.setattr(oauth.clock, "now", lambda: now[0])

    started = client.post(reverse("console:oauth_device_start", args=[qwen.pk]))
    assert started.status_code == 302
    flow = OAuthFlow.objects.get(provider=qwen)
    page = client.get(started["Location"]).content.decode()
    assert flow.user_code in page and flow.verification_uri in page
    assert flow.verification_uri.startswith(simulator.url + "/oauth/device?code=")

    # opening the console's device page polled once: pending until someone approves
    assert OAuthFlow.objects.get(pk=flow.pk).used_at is None
    assert not OAuthCredential.objects.filter(provider=qwen).exists()

    verification = httpx.get(flow.verification_uri)
    assert verification.status_code == 200 and flow.user_code in verification.text
    assert "Approve" in verification.text
    decided = httpx.post(
        simulator.url + "/oauth/device", data={"user_code": flow.user_code, "decision": "approve"}
    )
    assert decided.status_code == 200 and "approved" in decided.text

    now[0] += timedelta(seconds=2)
    status = client.post(reverse("console:oauth_device_poll", args=[flow.pk])).content.decode()

    credential = OAuthCredential.objects.get(provider=qwen)
    assert credential.state == OAuthCredential.State.ACTIVE
    assert credential.last4 in status and credential.access_token not in status
    assert credential.resource_url == simulator.url + "/qwen"

    _only_credential_is_oauth(qwen)
    httpx.delete(simulator.url + "/_sim/requests")
    gateway = openai.OpenAI(
        base_url=gateway_server.openai_base_url, api_key=printed_key(output), max_retries=0
    )
    reply = gateway.chat.completions.create(
        model="qwen/qwen3-coder-flash", messages=[{"role": "user", "content": "Hello"}]
    )
    assert reply.choices[0].message.content == "Simulated reply to: Hello"
    [upstream] = [r for r in _sim_requests(simulator) if r["path"].endswith("/chat/completions")]
    assert upstream["path"] == "/qwen/v1/chat/completions"
    assert upstream["headers"]["authorization"] == f"Bearer ...{credential.access_token[-4:]}"
