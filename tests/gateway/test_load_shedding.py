"""Load shedding at the /v1 edge: past GATEWAY_MAX_IN_FLIGHT a worker answers a new
request at once with 503 gateway_overloaded in the caller's format, instead of queueing
it behind the others (docs/GATEWAY.md, "Load shedding").

The cap is set to 2 and the simulator holds requests open (a non-stream reply waits its
``delay-<n>ms`` once). The test waits until the worker counts the held requests, read
from the process itself (the server runs in this process), rather than sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import openai
import pytest

from aipk_site.gateway.overload import in_flight
from aipk_site.gateway.usage import usage_flush
from tenants_app.models import UsageRecord, UsageStatus

pytestmark = pytest.mark.django_db(transaction=True)

CAP = 2
# long enough that the held requests are still running when the next one arrives
HELD_MODEL = "openai/gpt-4o-mini-delay-4000ms"
QUICK_MODEL = "openai/gpt-4o-mini"
# a word every 300 ms, 20 words: a stream that relays for seconds after its first chunk
SLOW_STREAM_MODEL = "openai/gpt-4o-mini-delay-300ms-words-20"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def capped(settings):
    settings.GATEWAY_MAX_IN_FLIGHT = CAP


async def until(predicate: Callable[[], bool], what: str) -> None:
    # the deadline only ends a failing test; nothing here measures time
    deadline = time.monotonic() + 30
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what} (in flight: {in_flight()})")
        await asyncio.sleep(0.01)


def chat(client: httpx.AsyncClient, url: str, secret: str, model: str, **body):
    return client.post(
        url + "/v1/chat/completions",
        json={"model": model, "messages": HELLO, "max_tokens": 10, **body},
        headers={"authorization": f"Bearer {secret}"},
    )


def message(client: httpx.AsyncClient, url: str, secret: str, model: str):
    return client.post(
        url + "/v1/messages",
        json={"model": model, "messages": HELLO, "max_tokens": 10},
        headers={"x-api-key": secret, "anthropic-version": "2023-06-01"},
    )


@asynccontextmanager
async def at_the_cap(
    client: httpx.AsyncClient, url: str, secret: str
) -> AsyncIterator[list[asyncio.Task[httpx.Response]]]:
    """CAP slow requests in flight on the server; inside, the worker is full. On the way
    out their replies are awaited (the list then holds finished tasks)."""
    await until(lambda: in_flight() == 0, "the worker is idle before the test")
    held = [asyncio.create_task(chat(client, url, secret, HELD_MODEL)) for _ in range(CAP)]
    await until(lambda: in_flight() == CAP, "the held requests are in flight")
    yield held
    await asyncio.gather(*held)


def test_it_answers_a_chat_completion_past_the_cap_at_once_with_503_in_openai_format(
    world, gateway_server, capped
):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            async with at_the_cap(client, gateway_server.url, world.secret) as held:
                shed = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
                assert not any(task.done() for task in held)
            return shed, [task.result() for task in held]

    shed, held = asyncio.run(scenario())
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert shed.headers["content-type"] == "application/json"
    assert shed.headers["x-request-id"]
    error = shed.json()["error"]
    assert error["code"] == "gateway_overloaded"
    assert error["type"] == "api_error"
    assert "retry" in error["message"]
    # the requests already admitted are not harmed by the one shed
    assert [reply.status_code for reply in held] == [200] * CAP


def test_it_answers_a_message_past_the_cap_in_anthropic_format(world, gateway_server, capped):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            async with at_the_cap(client, gateway_server.url, world.secret):
                return await message(client, gateway_server.url, world.secret, QUICK_MODEL)

    shed = asyncio.run(scenario())
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    body = shed.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"
    assert body["error"]["code"] == "gateway_overloaded"


def test_it_sheds_the_model_list_too(world, gateway_server, capped):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            async with at_the_cap(client, gateway_server.url, world.secret):
                return await client.get(
                    gateway_server.url + "/v1/models",
                    headers={"authorization": f"Bearer {world.secret}"},
                )

    shed = asyncio.run(scenario())
    assert shed.status_code == 503
    assert shed.json()["error"]["code"] == "gateway_overloaded"


def test_it_takes_requests_again_once_the_held_ones_finish(world, gateway_server, capped):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            async with at_the_cap(client, gateway_server.url, world.secret):
                shed = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
            counted_after = in_flight()
            again = [
                await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
                for _ in range(CAP + 1)
            ]
            return shed, counted_after, again

    shed, counted_after, again = asyncio.run(scenario())
    assert shed.status_code == 503
    assert counted_after == 0
    assert [reply.status_code for reply in again] == [200] * (CAP + 1)


def test_it_records_a_refused_usage_row_for_a_shed_request_whose_key_it_knows(
    world, gateway_server, capped
):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            # a first request puts the key in the worker's snapshot (the held ones may
            # still be reading it from the database when the shed one arrives)
            known = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
            assert known.status_code == 200
            async with at_the_cap(client, gateway_server.url, world.secret):
                shed = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
                shed_message = await message(client, gateway_server.url, world.secret, QUICK_MODEL)
            return shed, shed_message

    shed, shed_message = asyncio.run(scenario())
    assert (shed.status_code, shed_message.status_code) == (503, 503)
    usage_flush()
    rows = UsageRecord.objects.filter(virtual_key=world.key)
    assert rows.count() == 1 + CAP + 2  # every request accounted exactly once
    refused = rows.filter(status=UsageStatus.REFUSED).order_by("endpoint")
    assert [(r.endpoint, r.error_type) for r in refused] == [
        ("chat.completions", "gateway_overloaded"),
        ("messages", "gateway_overloaded"),
    ]
    # each answer names its row, as every other answer does
    assert refused[0].request_id == shed.headers["x-request-id"]
    assert refused[0].request_id.startswith("chatcmpl-")
    assert refused[1].request_id == shed_message.headers["x-request-id"]
    assert refused[1].request_id.startswith("msg_")
    assert all(r.tenant_id == world.tenant.pk for r in refused)


def test_it_sheds_a_key_it_has_not_seen_without_a_usage_row(
    world, gateway_server, capped, make_key
):
    # Knowing this key would take a database read, the work an overloaded worker must
    # not take on: the request is shed all the same, and no row is written.
    unseen, unseen_secret = make_key(world.tenant, name="never used")

    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            async with at_the_cap(client, gateway_server.url, world.secret):
                return await chat(client, gateway_server.url, unseen_secret, QUICK_MODEL)

    shed = asyncio.run(scenario())
    assert shed.status_code == 503
    assert shed.json()["error"]["code"] == "gateway_overloaded"
    usage_flush()
    assert not UsageRecord.objects.filter(virtual_key=unseen).exists()


def test_it_does_not_count_streams_once_they_are_relaying(world, gateway_server, capped):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            await until(lambda: in_flight() == 0, "the worker is idle before the test")
            streams = [
                client.stream(
                    "POST",
                    gateway_server.url + "/v1/chat/completions",
                    json={"model": SLOW_STREAM_MODEL, "messages": HELLO, "stream": True},
                    headers={"authorization": f"Bearer {world.secret}"},
                )
                for _ in range(CAP)
            ]
            responses = [await stream.__aenter__() for stream in streams]
            try:
                # both streams have started (their headers are here) and are relaying
                counted = in_flight()
                quick = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
                relaying = [not response.is_stream_consumed for response in responses]
                bodies = [await response.aread() for response in responses]
            finally:
                for stream in streams:
                    await stream.__aexit__(None, None, None)
            return [r.status_code for r in responses], counted, quick, relaying, bodies

    statuses, counted, quick, relaying, bodies = asyncio.run(scenario())
    assert statuses == [200] * CAP
    assert counted == 0
    assert quick.status_code == 200
    assert relaying == [True] * CAP
    assert all(body.rstrip().endswith(b"data: [DONE]") for body in bodies)


def test_it_stops_counting_a_request_whose_client_went_away(world, gateway_server, capped):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            await until(lambda: in_flight() == 0, "the worker is idle before the test")
            abandoned = asyncio.create_task(
                chat(client, gateway_server.url, world.secret, HELD_MODEL)
            )
            await until(lambda: in_flight() == 1, "the request is in flight")
            abandoned.cancel()  # httpx closes the connection: the server sees it go
            await asyncio.gather(abandoned, return_exceptions=True)
            await until(lambda: in_flight() == 0, "the abandoned request is no longer counted")
            return await chat(client, gateway_server.url, world.secret, QUICK_MODEL)

    assert asyncio.run(scenario()).status_code == 200


def test_it_never_sheds_health_metrics_or_the_console(world, gateway_server, capped):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            async with at_the_cap(client, gateway_server.url, world.secret):
                await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
                return {
                    path: (await client.get(gateway_server.url + path)).status_code
                    for path in ("/health", "/metrics", "/console/", "/api/docs")
                }

    statuses = asyncio.run(scenario())
    assert statuses["/health"] == 200
    assert statuses["/metrics"] == 200
    assert statuses["/api/docs"] == 200
    assert statuses["/console/"] in (200, 302)  # the login redirect, not a 503
    metrics = httpx.get(gateway_server.url + "/metrics", timeout=10).text
    assert 'aipk_gateway_shed_requests_total{endpoint="chat.completions"}' in metrics


def test_it_makes_the_openai_sdk_raise_a_503_status_error(world, gateway_server, capped):
    sdk = openai.OpenAI(
        base_url=gateway_server.openai_base_url, api_key=world.secret, max_retries=0
    )

    def call() -> None:
        sdk.chat.completions.create(model=QUICK_MODEL, messages=HELLO)

    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            async with at_the_cap(client, gateway_server.url, world.secret):
                with pytest.raises(openai.APIStatusError) as raised:
                    await asyncio.to_thread(call)
        return raised.value

    error = asyncio.run(scenario())
    assert error.status_code == 503
    assert error.code == "gateway_overloaded"
    assert error.response.headers["retry-after"] == "1"
