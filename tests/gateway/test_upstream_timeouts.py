"""Deadlines that match providers: long non-stream generations succeed (the official
SDKs allow 600 s reads), a hung upstream ends in a 504 within its deadline, a stream
that goes silent ends with an error event at the between-chunks deadline, and one
budget bounds every retry and failover of a request."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from providers_app.services.credentials import api_key_add
from providers_app.services.providers import provider_update

pytestmark = pytest.mark.django_db(transaction=True)

ASK = [{"role": "user", "content": "count to twenty for me please"}]


def openai_client(world, gateway_server, timeout: float = 120) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=world.secret,
        base_url=gateway_server.openai_base_url,
        max_retries=0,
        timeout=timeout,
    )


def configure(world, **fields):
    """Change the openai provider (the change drops the routing caches) and give it three
    keys, so a request has retries to spend."""
    provider = world.providers["openai"]
    provider_update(provider=provider, **fields)
    for n in (2, 3):
        api_key_add(provider=provider, label=f"key {n}", secret=f"sk-sim-openai-key-000{n}")
    return provider


def post(gateway_server, world, body: dict, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        headers={"authorization": f"Bearer {world.secret}"},
        json=body,
        timeout=timeout,
    )


def test_it_serves_a_30_second_non_stream_generation_with_the_default_deadlines(
    world, gateway_server
):
    started = time.monotonic()
    reply = openai_client(world, gateway_server).chat.completions.create(
        model="openai/gpt-4o-mini-gen-30s", messages=ASK
    )
    assert reply.choices[0].message.content.startswith("Simulated reply to:")
    assert time.monotonic() - started >= 29  # it really was a 30 s generation


def test_it_ends_a_hung_upstream_in_a_504_within_the_request_deadline_not_once_per_key(
    world, gateway_server
):
    configure(world, timeout_seconds=2)
    started = time.monotonic()
    reply = post(
        gateway_server,
        world,
        {"model": "openai/gpt-4o-mini-fail-hang", "messages": ASK},
    )
    elapsed = time.monotonic() - started
    assert reply.status_code == 504, reply.text
    assert reply.json()["error"]["code"] == "upstream_timeout"
    # one 2 s budget for the three keys, not 2 s (or httpx's 5 s) per try
    assert elapsed < 4.5, elapsed


@pytest.mark.parametrize("mode", ["hang", "stall"])
def test_it_ends_a_stream_with_no_first_byte_within_its_first_byte_deadline(
    world, gateway_server, mode
):
    configure(world, settings={"timeouts": {"first_byte": 1, "total": 3}})
    started = time.monotonic()
    reply = post(
        gateway_server,
        world,
        {"model": f"openai/gpt-4o-mini-fail-{mode}", "messages": ASK, "stream": True},
    )
    elapsed = time.monotonic() - started
    # nothing was sent yet: the caller still gets a status, the deadline in its message
    assert reply.status_code == 504, reply.text
    assert "deadline" in reply.json()["error"]["message"]
    assert elapsed < 5, elapsed  # within the 3 s total, however many keys were tried


def test_it_ends_a_stream_that_goes_silent_midway_with_an_error_event_at_the_idle_deadline(
    world, gateway_server
):
    configure(world, settings={"timeouts": {"idle": 1}})
    started = time.monotonic()
    with httpx.stream(
        "POST",
        gateway_server.openai_base_url + "/chat/completions",
        headers={"authorization": f"Bearer {world.secret}"},
        json={"model": "openai/gpt-4o-mini-fail-stall_midstream", "messages": ASK, "stream": True},
        timeout=30,
    ) as reply:
        assert reply.status_code == 200
        events = [line for line in reply.iter_lines() if line.startswith("data: ")]
    elapsed = time.monotonic() - started
    errors = [json.loads(e[6:]) for e in events if '"error"' in e]
    assert errors and errors[-1]["error"]["code"] == "upstream_timeout", events
    assert "idle" in errors[-1]["error"]["message"]
    assert elapsed < 6, elapsed  # the 1 s idle deadline, not the 600 s default


def test_it_refuses_timeouts_that_are_not_positive_seconds(world):
    from providers_app.services.provider_settings import ProviderSettingsError

    provider = world.providers["openai"]
    for bad in ({"first_byte": 0}, {"idle": -1}, {"total": "soon"}, {"connnect": 5}):
        with pytest.raises(ProviderSettingsError) as caught:
            provider_update(provider=provider, settings={"timeouts": bad})
        assert next(iter(caught.value.errors)).startswith("timeouts."), caught.value.errors


def test_it_shares_one_budget_between_the_candidates_of_a_route(world, gateway_server):
    from tenants_app.models import ModelRoute

    for kind in ("openai", "anthropic"):
        provider_update(
            provider=world.providers[kind], settings={"timeouts": {"first_byte": 1, "total": 2.5}}
        )
    ModelRoute.objects.create(
        alias="both-hung",
        candidates=[
            {"provider": "openai", "model": "gpt-4o-mini-fail-hang"},
            {"provider": "anthropic", "model": "claude-3-5-haiku-20241022-fail-hang"},
        ],
    )
    started = time.monotonic()
    reply = post(gateway_server, world, {"model": "both-hung", "messages": ASK, "stream": True})
    elapsed = time.monotonic() - started
    assert reply.status_code == 504, reply.text
    # three tries on each candidate would take 6 s and more; the request had 2.5 s
    assert elapsed < 4, elapsed
