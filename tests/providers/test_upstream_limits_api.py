"""A key's last known upstream limits through the management API: a real request through
the credential loop to the simulator (which sends each provider's rate-limit headers),
then the API reads back what the rate-limit tracker kept. Staff only; never a secret."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.cache import cache

from providers_app.kit.providers import ADAPTERS
from providers_app.kit.types import ChatRequest, Message
from providers_app.services.chat import credentials_cache_clear, provider_chat

pytestmark = pytest.mark.django_db(transaction=True)

# what providers_app/simulator/ratelimit_headers.py sends on a success, per style
EXPECTED = {
    "openai": {"requests": (60, 59), "tokens": (150_000, 149_984)},
    "anthropic": {
        "requests": (50, 49),
        "tokens": (38_000, 36_000),
        "input_tokens": (30_000, 28_000),
        "output_tokens": (8_000, 8_000),
    },
    "cerebras": {"requests_day": (14_400, 14_399), "tokens_minute": (60_000, 59_000)},
}


@pytest.fixture(autouse=True)
def fresh_state():
    cache.clear()
    credentials_cache_clear()
    yield
    cache.clear()
    credentials_cache_clear()


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_user("admin", is_staff=True))
    return client


def ask(provider) -> None:
    model = ADAPTERS[provider.type].default_model_id
    request = ChatRequest(model=model, messages=[Message(role="user", content="hi")])
    assert async_to_sync(provider_chat)(provider, request).text


def _parse(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("provider_type", sorted(EXPECTED))
def test_it_shows_the_limits_the_providers_last_reply_carried(staff, make_provider, provider_type):
    provider = make_provider(provider_type, keys=1)
    before = time.time()
    ask(provider)

    response = staff.get(f"/api/providers/{provider.name}/keys")

    assert response.status_code == 200
    [key] = response.json()
    assert key["last4"] == "0001" and key["provider"] == provider.name and key["tenant"] is None
    [limits] = key["upstream_limits"]
    assert limits["model"] == ADAPTERS[provider_type].default_model_id
    assert before - 1 <= _parse(limits["observed_at"]) <= time.time() + 1
    windows = {w["name"]: (w["limit"], w["remaining"]) for w in limits["windows"]}
    assert windows == EXPECTED[provider_type]
    assert all(_parse(w["resets_at"]) > before for w in limits["windows"])
    assert limits["retry_after_until"] is None
    assert f"sk-sim-{provider_type}-key-0001" not in response.content.decode()


def test_it_shows_no_limits_before_any_reply_and_only_the_key_that_answered(staff, make_provider):
    provider = make_provider("openai", keys=2)
    keys = staff.get("/api/providers/openai-sim/keys").json()
    assert [k["upstream_limits"] for k in keys] == [[], []]

    ask(provider)

    keys = staff.get("/api/providers/openai-sim/keys").json()
    assert sorted(len(k["upstream_limits"]) for k in keys) == [0, 1]


def test_it_shows_one_key_with_its_limits(staff, make_provider):
    provider = make_provider("openai", keys=1)
    ask(provider)
    key_id = provider.api_keys.get().pk

    response = staff.get(f"/api/providers/openai-sim/keys/{key_id}")

    assert response.status_code == 200
    assert response.json()["id"] == key_id
    assert response.json()["upstream_limits"][0]["windows"]


def test_it_answers_404_for_a_key_of_another_provider(staff, make_provider):
    make_provider("openai", keys=1)
    other = make_provider("anthropic", keys=1)
    key_id = other.api_keys.get().pk

    response = staff.get(f"/api/providers/openai-sim/keys/{key_id}")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_it_shows_keys_to_staff_only(client, make_provider, who):
    provider = make_provider("openai", keys=1)
    if who == "member":
        client.force_login(User.objects.create_user("someone"))

    listing = client.get("/api/providers/openai-sim/keys")
    one = client.get(f"/api/providers/openai-sim/keys/{provider.api_keys.get().pk}")

    expected = 401 if who == "anonymous" else 403
    assert listing.status_code == one.status_code == expected
