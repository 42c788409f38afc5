"""One tenant's requests cannot take a shared key or provider away from another tenant.

Tenant B (a second tenant with its own virtual key) triggers request-level failures on
the organisation's shared key -- a model its account may not use, slow generations
that hit their deadline -- while tenant A keeps being served. Only key-level evidence
(an invalid key, the same 403 on two models, a quota) changes the key's state, and a
quota cools it down instead of disabling it.
"""

from __future__ import annotations

import asyncio

import openai
import pytest
from asgiref.sync import async_to_sync

from providers_app.models import ApiKey
from providers_app.services.chat import resilience_for
from providers_app.services.pools import credential_id
from providers_app.services.providers import provider_update
from tenants_app.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)

ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tenant_b(world, make_key) -> openai.OpenAI:
    other = Tenant.objects.create(name="Tenant B", slug="tenant-b")
    _, secret = make_key(other)
    return client(world.gateway_url, secret)


@pytest.fixture(autouse=True)
def _gateway_url(world, gateway_server):
    world.gateway_url = gateway_server.openai_base_url


def client(base_url: str, secret: str, timeout: float = 60) -> openai.OpenAI:
    return openai.OpenAI(api_key=secret, base_url=base_url, max_retries=0, timeout=timeout)


def tenant_a(world) -> openai.OpenAI:
    return client(world.gateway_url, world.secret)


def shared_key(world) -> ApiKey:
    return world.providers["openai"].api_keys.get()


def key_health(world):
    provider = world.providers["openai"]
    return async_to_sync(resilience_for(provider).pool.health)(credential_id(shared_key(world)))


def breaker_state(world) -> str:
    return async_to_sync(resilience_for(world.providers["openai"]).breaker.state)()


def served(world, times: int = 4) -> int:
    ok = 0
    for _ in range(times):
        reply = tenant_a(world).chat.completions.create(model="openai/gpt-4o-mini", messages=ASK)
        ok += reply.choices[0].message.content == "Simulated reply to: hi"
    return ok


@pytest.mark.parametrize("mode", ["model_permission", "permission"])
def test_it_keeps_the_shared_key_when_another_tenant_asks_for_a_model_it_may_not_use(
    world, tenant_b, mode
):
    for _ in range(5):
        with pytest.raises(openai.PermissionDeniedError):
            tenant_b.chat.completions.create(model=f"openai/gpt-4o-fail-{mode}", messages=ASK)
    assert shared_key(world).state == ApiKey.State.ACTIVE
    assert key_health(world).state == "active"
    assert served(world) == 4


def test_it_disables_a_key_refused_the_same_way_on_two_models(world, tenant_b):
    # key-level evidence: the same 403 for two different models of one key
    for model in ("gpt-4o-fail-permission", "gpt-4.1-fail-permission"):
        with pytest.raises(openai.PermissionDeniedError):
            tenant_b.chat.completions.create(model=f"openai/{model}", messages=ASK)
    assert shared_key(world).state == ApiKey.State.INVALID


def test_it_keeps_serving_other_models_while_one_model_is_rate_limited_on_the_key(world, tenant_b):
    # providers count rate limits (per minute, per day) per model: a spent one is that model's
    for limited in ("fail-rate_limit-retry-60s", "fail-daily_quota"):
        with pytest.raises(openai.RateLimitError):
            tenant_b.chat.completions.create(model=f"openai/gpt-4o-{limited}", messages=ASK)
    assert key_health(world).state == "active"
    assert served(world) == 4


def test_it_cools_a_key_down_on_a_quota_reply_instead_of_disabling_it(world, tenant_b):
    with pytest.raises(openai.RateLimitError):
        tenant_b.chat.completions.create(model="openai/gpt-4o-mini-fail-quota", messages=ASK)
    assert shared_key(world).state != ApiKey.State.INVALID
    health = key_health(world)
    assert health.state == "cooling_down" and not health.invalid


def test_it_serves_a_key_again_once_its_daily_quota_resets_without_an_admin(world, tenant_b):
    with pytest.raises(openai.RateLimitError):
        tenant_b.chat.completions.create(
            model="openai/gpt-4o-mini-fail-daily_quota-retry-1s", messages=ASK
        )
    assert shared_key(world).state != ApiKey.State.INVALID
    async_to_sync(asyncio.sleep)(1.5)
    assert served(world, times=1) == 1


def test_it_keeps_the_breaker_closed_for_tenant_a_while_tenant_b_hits_its_deadlines(
    world, tenant_b
):
    provider_update(provider=world.providers["openai"], settings={"timeouts": {"first_byte": 1}})
    for _ in range(6):  # a generation slower than the 1 s deadline: the request's, not the key's
        with pytest.raises(openai.APIStatusError) as caught:
            tenant_b.chat.completions.create(model="openai/gpt-4o-mini-gen-3s", messages=ASK)
        assert caught.value.status_code == 504
    assert breaker_state(world) == "closed"
    assert key_health(world).state == "active"
    assert served(world) == 4


def test_it_keeps_serving_tenant_a_while_tenant_b_runs_six_slow_generations(world, tenant_b):
    async def slow_generations():
        b = openai.AsyncOpenAI(
            api_key=tenant_b.api_key, base_url=world.gateway_url, max_retries=0, timeout=60
        )
        return await asyncio.gather(
            *(
                b.chat.completions.create(model="openai/gpt-4o-mini-gen-6s", messages=ASK)
                for _ in range(6)
            ),
            return_exceptions=True,
        )

    replies = async_to_sync(slow_generations)()
    assert [type(r).__name__ for r in replies] == ["ChatCompletion"] * 6
    assert breaker_state(world) == "closed"
    assert served(world) == 4
