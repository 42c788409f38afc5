"""One request through a provider's credentials: failover, invalid keys, exhaustion,
the circuit breaker and rotation under load -- over real HTTP against the simulator."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import connections

from providers_app.kit.errors import AllKeysExhaustedError, RateLimitError, ServerError
from providers_app.kit.resilience import CircuitOpenError
from providers_app.kit.types import ChatRequest, Message
from providers_app.models import ApiKey
from providers_app.services.chat import provider_chat, provider_stream, resilience_for
from providers_app.services.credentials import api_key_add, api_key_rotate, api_key_set_state
from providers_app.services.providers import provider_create

pytestmark = [pytest.mark.django_db(transaction=True)]

GOOD = "sk-sim-good-key-0002"


@pytest.fixture(autouse=True)
async def fresh_state():
    """Pool and breaker state lives in the shared cache: start every test from nothing."""
    await sync_to_async(cache.clear)()
    yield
    await sync_to_async(cache.clear)()
    await sync_to_async(connections.close_all)()


@pytest.fixture
def provider_with(simulator, settings):
    settings.PROVIDER_RETRY_MAX_DELAY_SECONDS = 0.2

    def make(*secrets: str, strategy: str = "round_robin", provider_type: str = "openai"):
        provider = provider_create(
            name=f"{provider_type}-pool",
            type=provider_type,
            base_url=simulator.url + "/openai/v1",
            key_strategy=strategy,
        )
        for n, secret in enumerate(secrets, 1):
            api_key_add(provider=provider, label=f"key {n}", secret=secret)
        return provider

    return make


def ask(text: str = "Hello there") -> ChatRequest:
    return ChatRequest(model="gpt-4o-mini", messages=[Message(role="user", content=text)])


def keys_seen(simulator) -> list[str]:
    """The last four characters of the key each chat request carried, in order."""
    return [
        r["headers"]["authorization"][-4:]
        for r in httpx.get(simulator.url + "/_sim/requests").json()
        if r["path"].endswith("/chat/completions")
    ]


async def test_it_serves_the_request_with_key_2_when_key_1_answers_429(provider_with, simulator):
    provider = await sync_to_async(provider_with)("sk-sim-fail-rate_limit-0001", GOOD)
    simulator.clear_requests()
    for _ in range(3):
        reply = await provider_chat(provider, ask())
        assert reply.text == "Simulated reply to: Hello there"
    assert keys_seen(simulator)[0] in ("0001", "0002")
    assert keys_seen(simulator).count("0001") == 1  # cooling down after its 429: not asked again
    limited = f"key:{(await first_key(provider)).pk}"
    pool = resilience_for(provider).pool
    # rate limits are counted per model: the key cools down for this model only
    assert (await pool.healths([limited], model=ask().model))[limited].state == "cooling_down"
    assert (await pool.health(limited)).state == "active"


async def first_key(provider) -> ApiKey:
    return await ApiKey.objects.filter(provider=provider).order_by("id").afirst()


async def test_it_marks_a_revoked_key_invalid_and_never_tries_it_again(provider_with, simulator):
    provider = await sync_to_async(provider_with)("sk-sim-fail-auth-0001", GOOD)
    simulator.clear_requests()
    for _ in range(5):
        assert (await provider_chat(provider, ask())).text
    assert keys_seen(simulator).count("0001") == 1
    revoked = await first_key(provider)
    assert revoked.state == "invalid" and revoked.last_error_type == "authentication_error"
    # an admin re-enables it: the pool forgets its state, and it is tried again
    await sync_to_async(api_key_set_state)(key=revoked, state="active")
    assert (await resilience_for(provider).pool.health(f"key:{revoked.pk}")).state == "active"


async def test_it_reports_all_keys_exhausted_with_the_time_the_first_frees_up(provider_with):
    provider = await sync_to_async(provider_with)(
        "sk-sim-fail-rate_limit-0001", "sk-sim-fail-rate_limit-0002"
    )
    with pytest.raises((RateLimitError, AllKeysExhaustedError)):
        await provider_chat(provider, ask())
    with pytest.raises(AllKeysExhaustedError) as info:
        await provider_chat(provider, ask())
    assert 0 < info.value.retry_after <= 2


async def test_it_opens_the_breaker_after_failures_and_closes_it_after_a_good_probe(
    provider_with, settings
):
    settings.PROVIDER_BREAKER_FAILURES = 2
    settings.PROVIDER_BREAKER_RESET_SECONDS = 0.3
    settings.PROVIDER_MAX_ATTEMPTS = 1
    provider = await sync_to_async(provider_with)(
        "sk-sim-fail-server-0001", "sk-sim-fail-server-0003"
    )
    for _ in range(2):
        with pytest.raises(ServerError) as info:
            await provider_chat(provider, ask())
        assert not isinstance(info.value, CircuitOpenError)
    with pytest.raises(CircuitOpenError):
        await provider_chat(provider, ask())
    assert await resilience_for(provider).breaker.state() == "open"
    # the provider recovers: bad keys go, a good one arrives
    for key in await sync_to_async(list)(provider.api_keys.all()):
        await sync_to_async(api_key_set_state)(key=key, state="retired")
    await sync_to_async(api_key_add)(provider=provider, label="good", secret=GOOD)
    await asyncio.sleep(0.35)
    assert (await provider_chat(provider, ask())).text  # the half-open probe
    assert await resilience_for(provider).breaker.state() == "closed"


async def test_it_fails_over_a_stream_only_before_its_first_chunk(provider_with, simulator):
    provider = await sync_to_async(provider_with)("sk-sim-fail-overloaded-0001", GOOD)
    text = ""
    async for chunk in provider_stream(provider, ask()):
        text += chunk.text
    assert text == "Simulated reply to: Hello there"
    midstream = await sync_to_async(provider_with)(
        "sk-sim-fail-midstream_error-0005", GOOD, provider_type="cerebras"
    )
    received = []
    with pytest.raises(ServerError):
        for _ in range(4):  # round robin reaches the failing key within two requests
            async for chunk in provider_stream(midstream, ask()):
                received.append(chunk.text)
    assert "".join(received)  # text had already gone out, so no failover hid the error


async def test_it_rotates_keys_while_requests_are_running_without_failing_any(
    provider_with, simulator
):
    provider = await sync_to_async(provider_with)("sk-sim-old-key-0001", strategy="health_aware")
    old = await first_key(provider)
    failures = []

    async def traffic():
        for _ in range(10):
            try:
                assert (await provider_chat(provider, ask())).text
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                failures.append(exc)

    async def rotate():
        await asyncio.sleep(0.01)
        await sync_to_async(api_key_rotate)(
            key=old, new_secret="sk-sim-new-key-0009", grace_seconds=0
        )

    await asyncio.gather(*(traffic() for _ in range(5)), rotate())
    assert failures == []
    assert (await ApiKey.objects.aget(pk=old.pk)).state == "retired"
    simulator.clear_requests()
    await provider_chat(provider, ask())
    assert keys_seen(simulator) == ["0009"]


@pytest.mark.usefixtures("close_db_thread")
async def test_it_refreshes_a_token_expiring_mid_traffic_exactly_once_for_20_requests(
    connect, simulator
):
    credential = await sync_to_async(connect)(expires_in=1)
    provider = credential.provider
    replies = await asyncio.gather(*(provider_chat(provider, ask()) for _ in range(20)))
    assert all(r.text == "Simulated reply to: Hello there" for r in replies)
    calls = httpx.get(  # noqa: ASYNC210 - the simulator answers from its own thread
        simulator.url + "/_sim/oauth/calls", params={"client_id": credential.client_id}
    ).json()
    assert calls.get("refresh_token") == 1
    refreshed = await credential.__class__.objects.aget(pk=credential.pk)
    assert refreshed.refresh_count == 1 and refreshed.access_token != credential.access_token


async def test_it_paces_requests_when_a_key_is_near_its_limit(provider_with, monkeypatch):
    import time as clock

    from providers_app.kit.ratelimit import RateLimitInfo
    from providers_app.services import chat

    waits = []

    async def record(seconds):
        waits.append(seconds)

    monkeypatch.setattr(chat, "pace_sleep", record)
    provider = await sync_to_async(provider_with)(GOOD)
    key = await first_key(provider)
    tracked = f"{provider.pk}:key:{key.pk}:gpt-4o-mini"
    now = clock.time()
    info = RateLimitInfo(
        requests_limit=100, requests_remaining=5, requests_reset_at=now + 2, observed_at=now
    )
    await resilience_for(provider).tracker.update(tracked, info)
    assert (await provider_chat(provider, ask())).text
    assert len(waits) == 1 and 0.3 < waits[0] <= 0.4  # 2 s left for 5 requests


async def test_it_moves_off_a_key_whose_provider_said_it_has_nothing_left(provider_with, simulator):
    import time as clock

    from providers_app.kit.ratelimit import RateLimitInfo

    provider = await sync_to_async(provider_with)("sk-sim-spent-key-0001", GOOD)
    spent = await first_key(provider)
    now = clock.time()
    info = RateLimitInfo(
        requests_limit=60, requests_remaining=0, requests_reset_at=now + 30, observed_at=now
    )
    await resilience_for(provider).tracker.update(f"{provider.pk}:key:{spent.pk}:gpt-4o-mini", info)
    simulator.clear_requests()
    for _ in range(3):
        assert (await provider_chat(provider, ask())).text
    assert "0001" not in keys_seen(simulator)


async def test_it_copies_pool_health_and_counters_onto_the_key_rows(provider_with):
    from providers_app.services.credential_state import credentials_sync_state

    # an account's quota cools the whole key down (a rate limit would cool one model only)
    provider = await sync_to_async(provider_with)("sk-sim-fail-quota-0001", GOOD)
    for _ in range(2):
        await provider_chat(provider, ask())
    assert await sync_to_async(credentials_sync_state)() >= 1
    limited, good = [k async for k in ApiKey.objects.filter(provider=provider).order_by("id")]
    assert limited.state == "cooling_down" and limited.cooling_down_until is not None
    assert limited.last_error_type == "quota_exceeded" and limited.error_count >= 1
    assert good.state == "active" and good.request_count >= 2 and good.error_count == 0
    assert good.last_success_at is not None


@pytest.mark.usefixtures("close_db_thread")
async def test_it_carries_on_with_other_credentials_when_a_token_cannot_be_refreshed(
    connect, simulator
):
    from providers_app.models import OAuthCredential

    credential = await sync_to_async(connect)(expires_in=1)
    provider = credential.provider
    # the refresh token was revoked at the provider: the refresh gets invalid_grant
    await OAuthCredential.objects.filter(pk=credential.pk).aupdate(
        refresh_token="revoked-at-the-provider"
    )
    await sync_to_async(api_key_add)(provider=provider, label="backup", secret=GOOD)
    for _ in range(3):
        assert (await provider_chat(provider, ask())).text == "Simulated reply to: Hello there"
    stored = await OAuthCredential.objects.aget(pk=credential.pk)
    assert stored.state == "needs_reauth" and stored.last_refresh_error


async def test_it_builds_a_providers_adapter_and_resilience_once_and_again_after_a_change(
    provider_with,
):
    from aipk_site.infra.metrics import metric_labels_wait
    from providers_app.services.chat import adapter_for, usable_credentials_cached
    from providers_app.services.providers import provider_update

    provider = await sync_to_async(provider_with)(GOOD)
    res = resilience_for(provider)
    assert (await provider_chat(provider, ask())).text
    assert resilience_for(provider) is res
    [credential] = await usable_credentials_cached(provider, None)
    cred = f"key:{credential.pk}"
    adapter = adapter_for(provider, credential, cred)
    assert adapter_for(provider, credential, cred) is adapter

    # an admin changes the provider: this process drops what it built from the old row
    # (after the metrics' label reload that the request started, which reads providers:
    # on SQLite the two would lock each other's table)
    await sync_to_async(metric_labels_wait)()
    await sync_to_async(provider_update)(
        provider=provider, timeout_seconds=42, key_strategy="health_aware"
    )
    rebuilt = resilience_for(provider)
    assert rebuilt is not res and rebuilt.pool.strategy == "health_aware"
    [credential] = await usable_credentials_cached(provider, None)
    again = adapter_for(provider, credential, cred)
    assert again is not adapter and again.deadlines.total == 42
    assert (await provider_chat(provider, ask())).text


async def test_it_moves_off_a_spent_key_in_a_pool_too_long_to_read_the_tracker_along(
    provider_with, simulator
):
    import time as clock

    from providers_app.kit.ratelimit import RateLimitInfo
    from providers_app.services.chat import READ_ALONG_MAX_CANDIDATES

    secrets = [f"sk-sim-many-keys-{n:04d}" for n in range(1, READ_ALONG_MAX_CANDIDATES + 2)]
    provider = await sync_to_async(provider_with)(*secrets)
    spent = await first_key(provider)
    now = clock.time()
    info = RateLimitInfo(
        requests_limit=60, requests_remaining=0, requests_reset_at=now + 30, observed_at=now
    )
    await resilience_for(provider).tracker.update(f"{provider.pk}:key:{spent.pk}:gpt-4o-mini", info)
    simulator.clear_requests()
    for _ in range(len(secrets)):
        assert (await provider_chat(provider, ask())).text
    assert "0001" not in keys_seen(simulator)
