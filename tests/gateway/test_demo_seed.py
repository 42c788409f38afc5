"""`manage.py seed_demo` (what `make run` calls): idempotent seeding, and a printed key and
commands that work as printed against a live gateway on the simulator."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import openai
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from providers_app.models import ApiKey, Provider
from tenants_app.models import AuditEvent, Membership, ModelRoute, Tenant, VirtualKey

KEY_RE = re.compile(r"aipk-[A-Za-z0-9_-]{20,}")
PROVIDER_NAMES = {"openai", "anthropic", "gemini", "cerebras", "qwen", "openrouter", "groq"}
ROUTES = {"fast": "cerebras", "smart": "openai", "cheap": None, "balanced": None}


def _clear_caches() -> None:
    from django.core.cache import cache

    from aipk_site.gateway.routing import routing_cache_clear
    from providers_app.services.chat import credentials_forget
    from tenants_app.services.pricing import pricing_cache_clear

    cache.clear()
    credentials_forget()
    pricing_cache_clear()
    routing_cache_clear()


@pytest.fixture(autouse=True)
def debug_on(settings):
    # `make run` seeds a development database (DEBUG on); with DEBUG off seed_demo refuses
    # without --force (tests/test_seed_demo_guard.py), and pytest-django turns DEBUG off
    settings.DEBUG = True


@pytest.fixture
def clean_caches():
    _clear_caches()
    yield
    from aipk_site.gateway.usage import usage_flush

    usage_flush()
    _clear_caches()


def seed(simulator_url: str, base_url: str = "http://127.0.0.1:8000", quiet=False) -> str:
    out = io.StringIO()
    call_command(
        "seed_demo", simulator_url=simulator_url, base_url=base_url, quiet=quiet, stdout=out
    )
    return out.getvalue()


def printed_key(output: str) -> str:
    keys = set(KEY_RE.findall(output))
    assert len(keys) == 1, output
    return keys.pop()


def block(output: str, first: str, last: str) -> str:
    """The printed lines from the first one matching ``first`` to the next matching ``last``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if re.search(first, line))
    end = next(i for i in range(start, len(lines)) if re.search(last, lines[i]))
    return "\n".join(lines[start : end + 1]) + "\n"


def run_as_printed(script: str) -> subprocess.CompletedProcess:
    # pasted into a shell in the directory the command was run from (it may print
    # the interpreter's path relative to it)
    return subprocess.run(
        ["bash", "-c", script],
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db
def test_it_seeds_once_and_revokes_the_previous_demo_key(clean_caches):
    first = seed("http://127.0.0.1:8100")
    counts = {
        "providers": Provider.objects.count(),
        "api keys": ApiKey.objects.count(),
        "routes": ModelRoute.objects.count(),
        "tenants": Tenant.objects.count(),
        "users": get_user_model().objects.count(),
        "memberships": Membership.objects.count(),
    }
    assert counts == {
        "providers": 7,
        "api keys": 7,
        "routes": 4,
        "tenants": 1,
        "users": 1,
        "memberships": 1,
    }
    assert set(Provider.objects.values_list("name", flat=True)) == PROVIDER_NAMES
    assert set(ModelRoute.objects.values_list("alias", flat=True)) == set(ROUTES)
    assert Provider.objects.get(name="groq").type == "openai-compatible"
    tenant = Tenant.objects.get(slug="demo")
    assert tenant.monthly_budget_usd and tenant.default_rpm and tenant.default_tpm
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and Membership.objects.get(tenant=tenant).user == admin
    password = re.search(r"user admin  password (\S+)", first).group(1)
    assert admin.check_password(password) and password not in admin.password
    first_key = printed_key(first)

    # the simulator moved: base URLs follow, nothing is duplicated, the password stays
    second = seed("http://127.0.0.1:8200", quiet=True)
    assert {
        "providers": Provider.objects.count(),
        "api keys": ApiKey.objects.count(),
        "routes": ModelRoute.objects.count(),
        "tenants": Tenant.objects.count(),
        "users": get_user_model().objects.count(),
        "memberships": Membership.objects.count(),
    } == counts
    assert all(p.base_url.startswith("http://127.0.0.1:8200/") for p in Provider.objects.all())
    assert not re.search(r"password (?!unchanged)", second)
    admin.refresh_from_db()
    assert admin.check_password(password)
    second_key = printed_key(second)
    assert second_key != first_key

    demo_keys = VirtualKey.objects.filter(tenant=tenant, name="demo key").order_by("pk")
    assert len(demo_keys) == 2
    assert demo_keys[0].revoked_at is not None and demo_keys[1].revoked_at is None
    assert first_key.startswith(demo_keys[0].prefix) and second_key.startswith(demo_keys[1].prefix)
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("virtual_key.revoke") == 1
    assert actions.count("provider.update") == 7


@pytest.mark.django_db
def test_it_leaves_someone_elses_provider_and_superuser_alone(clean_caches):
    from providers_app.services.providers import provider_create

    get_user_model().objects.create_superuser(username="root", email="", password="x" * 12)
    provider_create(name="openai", type="openai", base_url="https://api.openai.com/v1")

    output = seed("http://127.0.0.1:8100")

    assert not get_user_model().objects.filter(username="admin").exists()
    assert not re.search(r"password (?!unchanged)", output)
    assert Provider.objects.get(name="openai").base_url == "https://api.openai.com/v1"
    assert not ApiKey.objects.filter(provider__name="openai").exists()
    tenant = Tenant.objects.get(slug="demo")
    assert Membership.objects.get(tenant=tenant).user.username == "root"
    printed_key(output)


@pytest.mark.django_db(transaction=True)
def test_it_prints_a_curl_command_that_works_as_printed(simulator, gateway_server, clean_caches):
    output = seed(simulator.url, gateway_server.url)
    curl = block(output, r"^curl ", r"^  -d '")
    assert printed_key(output) in curl

    done = run_as_printed(curl.rstrip("\n") + " --silent --show-error --fail-with-body")

    assert done.returncode == 0, done.stderr + done.stdout
    assert '"content":"Simulated reply to: Hello"' in done.stdout
    assert '"model":"smart"' in done.stdout


@pytest.mark.django_db(transaction=True)
def test_it_prints_sdk_snippets_that_work_as_printed(simulator, gateway_server, clean_caches):
    output = seed(simulator.url, gateway_server.url, quiet=True)
    streaming = block(output, r"<<'EOF'$", r"^EOF$")
    one_liner = block(output, r"-c 'import anthropic", r"'$")
    assert "from openai import OpenAI" in streaming and 'model="fast"' in streaming

    done = run_as_printed(streaming)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Simulated reply to: Hello\n"

    done = run_as_printed(one_liner)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Simulated reply to: Hello\n"


@pytest.mark.django_db(transaction=True)
def test_it_answers_every_route_through_the_openai_sdk(simulator, gateway_server, clean_caches):
    key = printed_key(seed(simulator.url, gateway_server.url, quiet=True))
    client = openai.OpenAI(base_url=gateway_server.openai_base_url, api_key=key, max_retries=0)

    for alias, provider in ROUTES.items():
        raw = client.chat.completions.with_raw_response.create(
            model=alias, messages=[{"role": "user", "content": f"Hello {alias}"}]
        )
        reply = raw.parse()
        assert reply.choices[0].message.content == f"Simulated reply to: Hello {alias}", alias
        assert reply.model == alias
        if provider is not None:
            assert raw.headers["x-aipk-provider"] == provider

        stream = client.chat.completions.create(
            model=alias, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "Simulated reply to: Hi", alias

    # cheapest_first: cerebras' llama3.1-8b is the cheapest candidate in the bundled table
    raw = client.chat.completions.with_raw_response.create(
        model="cheap", messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.headers["x-aipk-provider"] == "cerebras"
    # round_robin: successive calls are spread over the candidates
    served = {
        client.chat.completions.with_raw_response.create(
            model="balanced", messages=[{"role": "user", "content": "Hi"}]
        ).headers["x-aipk-provider"]
        for _ in range(4)
    }
    assert len(served) > 1


@pytest.mark.django_db
def test_it_prints_no_provider_secret(clean_caches):
    outputs = [seed("http://127.0.0.1:8100"), seed("http://127.0.0.1:8100", quiet=True)]

    secrets = list(ApiKey.objects.values_list("secret", flat=True))
    assert len(secrets) == 7 and all(secrets)
    for output in outputs:
        for secret in secrets:
            assert secret not in output
        assert "sk-demo" not in output
    changes = " ".join(str(c) for c in AuditEvent.objects.values_list("changes", flat=True))
    for secret in secrets:
        assert secret not in changes
