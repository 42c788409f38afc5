"""An OpenRouter key's credit through the management API: asked of the simulator's
OpenRouter (GET /api/v1/key, OpenRouter's shape) through the kit's adapter over loopback,
then reused for a minute. Any other provider type is a 400 naming ``provider``; a key
OpenRouter refuses is a 502 that names neither the secret nor OpenRouter's words."""

from __future__ import annotations

import httpx
import pytest
from django.contrib.auth.models import User
from django.core.cache import cache

from providers_app.services.credentials import api_key_add

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_user("admin", is_staff=True))
    return client


def key_calls(simulator) -> list[dict]:
    entries = httpx.get(simulator.url + "/_sim/requests", timeout=30).json()
    return [e for e in entries if e["path"] == "/openrouter/api/v1/key"]


def test_it_reports_the_keys_credit_as_openrouter_says_it(staff, make_provider, simulator):
    provider = make_provider("openrouter", keys=1)
    key = provider.api_keys.get()
    httpx.delete(simulator.url + "/_sim/requests", timeout=30)

    response = staff.get(f"/api/providers/openrouter-sim/keys/{key.pk}/credits")

    assert response.status_code == 200
    credit = response.json()
    assert credit["limit"] == 100
    assert credit["limit_remaining"] == 74.5
    assert credit["limit_reset"] == "monthly"
    assert credit["usage"] == 25.5
    assert credit["is_free_tier"] is False
    assert credit["cached"] is False and credit["checked_at"]
    [call] = key_calls(simulator)
    assert call["headers"]["authorization"].endswith("0001")
    assert "sk-sim-openrouter-key-0001" not in response.content.decode()


def test_it_asks_openrouter_once_a_minute_per_key(staff, make_provider, simulator):
    provider = make_provider("openrouter", keys=2)
    first, second = provider.api_keys.order_by("pk")
    httpx.delete(simulator.url + "/_sim/requests", timeout=30)

    answers = [
        staff.get(f"/api/providers/openrouter-sim/keys/{first.pk}/credits").json(),
        staff.get(f"/api/providers/openrouter-sim/keys/{first.pk}/credits").json(),
        staff.get(f"/api/providers/openrouter-sim/keys/{second.pk}/credits").json(),
    ]

    assert [a["cached"] for a in answers] == [False, True, False]
    assert answers[0]["checked_at"] == answers[1]["checked_at"]
    assert len(key_calls(simulator)) == 2


def test_it_refuses_a_provider_that_reports_no_credit(staff, make_provider, simulator):
    provider = make_provider("openai", keys=1)
    httpx.delete(simulator.url + "/_sim/requests", timeout=30)

    response = staff.get(f"/api/providers/openai-sim/keys/{provider.api_keys.get().pk}/credits")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "provider"
    assert "only OpenRouter" in error["message"]
    assert httpx.get(simulator.url + "/_sim/requests", timeout=30).json() == []


def test_it_says_openrouter_refused_the_key_without_quoting_it(staff, make_provider):
    provider = make_provider("openrouter", keys=0)
    key = api_key_add(provider=provider, label="revoked", secret="invalid-or-key-9876")

    response = staff.get(f"/api/providers/openrouter-sim/keys/{key.pk}/credits")

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error" and "9876" in error["message"]
    assert "authentication_error" in error["message"]
    assert "invalid-or-key-9876" not in response.content.decode()


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_it_shows_credit_to_staff_only(client, make_provider, simulator, who):
    provider = make_provider("openrouter", keys=1)
    if who == "member":
        client.force_login(User.objects.create_user("someone"))
    httpx.delete(simulator.url + "/_sim/requests", timeout=30)

    key_id = provider.api_keys.get().pk
    response = client.get(f"/api/providers/openrouter-sim/keys/{key_id}/credits")

    assert response.status_code == (401 if who == "anonymous" else 403)
    assert key_calls(simulator) == []
