"""Load shedding at the /v1 edge: a worker whose event loop is behind -- CPU backlog,
the queueing delay every new request would wait -- answers a new request at once with
503 gateway_overloaded in the caller's format, instead of queueing it behind the others;
requests that only wait on a slow provider cost it nothing and shed nothing
(docs/GATEWAY.md, "Load shedding").

The loop is put behind for real: a callback hogs the server's own event loop in slices
(the server runs in a thread of this process, on Twisted's asyncio reactor), the way a
backlog of CPU work does. The test waits until the worker's own probe reports the lag,
read from the process itself, rather than sleeping.

GATEWAY_MAX_IN_FLIGHT, the memory guard, is tested with a cap of 2: the simulator holds
requests open (a non-stream reply waits its ``delay-<n>ms`` once).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import openai
import pytest

from aipk_site.gateway.overload import event_loop_lag, in_flight, loop_behind
from aipk_site.gateway.usage import usage_flush
from tenants_app.models import UsageRecord, UsageStatus

pytestmark = pytest.mark.django_db(transaction=True)

CAP = 2
# long enough that the held requests are still running when the next one arrives
HELD_MODEL = "openai/gpt-4o-mini-delay-4000ms"
# a provider that takes a minute to answer: held requests that cost the worker nothing
WAITING_MODEL = "openai/gpt-4o-mini-delay-60000ms"
QUICK_MODEL = "openai/gpt-4o-mini"
# a word every 300 ms, 20 words: a stream that relays for seconds after its first chunk
SLOW_STREAM_MODEL = "openai/gpt-4o-mini-delay-300ms-words-20"
HELLO = [{"role": "user", "content": "hi"}]
# the loop is hogged in slices this long: every probe runs at least this late, far past
# the test's 50 ms target, however noisy the machine
HOG_SLICE_SECONDS = 0.2
TEST_QUEUE_DELAY_MS = 50


@pytest.fixture
def capped(settings):
    settings.GATEWAY_MAX_IN_FLIGHT = CAP
    # the guard alone: an earlier test's busy loop must not shed these
    settings.GATEWAY_MAX_QUEUE_DELAY_MS = 0


@pytest.fixture
def low_delay(settings):
    settings.GATEWAY_MAX_QUEUE_DELAY_MS = TEST_QUEUE_DELAY_MS


async def until(predicate: Callable[[], bool], what: str) -> None:
    # the deadline only ends a failing test; nothing here measures time
    deadline = time.monotonic() + 30
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"never happened: {what} (in flight: {in_flight()}, lag: {event_loop_lag()})"
            )
        await asyncio.sleep(0.01)


@contextmanager
def hogging_the_server_loop() -> Iterator[None]:
    """The server's event loop busy in HOG_SLICE_SECONDS slices of pure CPU, with a turn
    of the loop between them (so requests are still read and answered, late): what a
    worker with more work than CPU looks like from inside."""
    from twisted.internet import reactor

    stop = threading.Event()

    def slice_() -> None:
        end = time.monotonic() + HOG_SLICE_SECONDS
        while time.monotonic() < end:
            pass
        if not stop.is_set():
            reactor.callLater(0, slice_)  # type: ignore[arg-type]  # twisted's stub

    reactor.callFromThread(slice_)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        stop.set()


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


async def warm(client: httpx.AsyncClient, url: str, secret: str) -> None:
    """One request first: the worker's probe starts on its first request, and the key
    enters the worker's snapshot (a shed request's row needs it). An earlier test may
    have left the loop's averaged lag high: it decays within a second or so."""
    await until(lambda: not loop_behind(), "the worker's loop has caught up")
    assert (await chat(client, url, secret, QUICK_MODEL)).status_code == 200


# --- the event loop's backlog ------------------------------------------------------------


def test_it_serves_a_new_request_while_holding_many_more_than_512_that_wait_on_the_provider(
    world, gateway_server
):
    # The old cap counted these 600 and shed the next request from an idle worker.
    waiting, BATCH = 600, 100

    async def scenario():
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            await warm(client, gateway_server.url, world.secret)
            await until(lambda: in_flight() == 0, "the worker is idle before the test")
            held: list[asyncio.Task] = []
            try:
                # opened 100 at a time: 600 at once can put a slow machine's loop behind
                # by more than the shedding threshold, and then some of them are (rightly)
                # shed -- this test is about holding them, not about opening them
                for batch in range(BATCH, waiting + 1, BATCH):
                    held += [
                        asyncio.create_task(
                            chat(client, gateway_server.url, world.secret, WAITING_MODEL)
                        )
                        for _ in range(BATCH)
                    ]
                    await until(
                        lambda n=batch: in_flight() == n, "all of them wait on the provider"
                    )
                counted = in_flight()
                # opening them did keep the loop busy for a moment; what counts is that
                # holding them, idle, does not
                await until(lambda: not loop_behind(), "the worker's loop has caught up")
                quick = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
                still_waiting = not any(task.done() for task in held)
            finally:
                for task in held:
                    task.cancel()
                await asyncio.gather(*held, return_exceptions=True)
            await until(lambda: in_flight() == 0, "the abandoned requests are let go")
            return counted, quick, still_waiting

    counted, quick, still_waiting = asyncio.run(scenario())
    assert counted == waiting
    assert quick.status_code == 200
    assert still_waiting


def test_it_sheds_a_chat_completion_with_503_in_openai_format_while_its_loop_is_behind(
    world, gateway_server, low_delay
):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            await warm(client, gateway_server.url, world.secret)
            with hogging_the_server_loop():
                await until(loop_behind, "the worker's probe finds its loop behind")
                shed = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
                shed_message = await message(client, gateway_server.url, world.secret, QUICK_MODEL)
            await until(lambda: not loop_behind(), "the loop has caught up")
            after = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
            return shed, shed_message, after

    shed, shed_message, after = asyncio.run(scenario())
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert shed.headers["content-type"] == "application/json"
    error = shed.json()["error"]
    assert error["code"] == "gateway_overloaded"
    assert error["type"] == "api_error"
    assert "retry" in error["message"]
    # Anthropic's format for /v1/messages
    assert shed_message.status_code == 503
    assert shed_message.headers["retry-after"] == "1"
    body = shed_message.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"
    assert body["error"]["code"] == "gateway_overloaded"
    # once the backlog is gone the worker takes requests again
    assert after.status_code == 200

    # every request accounted exactly once: the shed ones as refused rows named in
    # their answers
    usage_flush()
    rows = UsageRecord.objects.filter(virtual_key=world.key)
    assert rows.count() == 4
    refused = rows.filter(status=UsageStatus.REFUSED).order_by("endpoint")
    assert [(r.endpoint, r.error_type) for r in refused] == [
        ("chat.completions", "gateway_overloaded"),
        ("messages", "gateway_overloaded"),
    ]
    assert refused[0].request_id == shed.headers["x-request-id"]
    assert refused[1].request_id == shed_message.headers["x-request-id"]


def test_it_makes_the_openai_sdk_raise_a_503_status_error_while_its_loop_is_behind(
    world, gateway_server, low_delay
):
    sdk = openai.OpenAI(
        base_url=gateway_server.openai_base_url, api_key=world.secret, max_retries=0
    )

    def call() -> None:
        sdk.chat.completions.create(model=QUICK_MODEL, messages=HELLO)

    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            await warm(client, gateway_server.url, world.secret)
            with hogging_the_server_loop():
                await until(loop_behind, "the worker's probe finds its loop behind")
                with pytest.raises(openai.APIStatusError) as raised:
                    await asyncio.to_thread(call)
        return raised.value

    error = asyncio.run(scenario())
    assert error.status_code == 503
    assert error.code == "gateway_overloaded"
    assert error.response.headers["retry-after"] == "1"


def test_it_does_not_shed_for_lag_when_the_queue_delay_setting_is_0(
    world, gateway_server, settings
):
    settings.GATEWAY_MAX_QUEUE_DELAY_MS = 0

    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            await warm(client, gateway_server.url, world.secret)
            with hogging_the_server_loop():
                # the probe still measures (the gauge), the worker just does not act on it
                await until(
                    lambda: event_loop_lag() > TEST_QUEUE_DELAY_MS / 1000, "the loop is behind"
                )
                return await chat(client, gateway_server.url, world.secret, QUICK_MODEL)

    assert asyncio.run(scenario()).status_code == 200
    metrics = httpx.get(gateway_server.url + "/metrics", timeout=10).text
    assert "aipk_event_loop_lag_seconds" in metrics


# --- the memory guard: GATEWAY_MAX_IN_FLIGHT ---------------------------------------------


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


def test_it_sheds_an_embeddings_request_in_openai_format_with_its_usage_row(
    world, gateway_server, capped
):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            known = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
            assert known.status_code == 200
            async with at_the_cap(client, gateway_server.url, world.secret):
                return await client.post(
                    gateway_server.url + "/v1/embeddings",
                    json={"model": "openai/text-embedding-3-small", "input": "hi"},
                    headers={"authorization": f"Bearer {world.secret}"},
                )

    shed = asyncio.run(scenario())
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert shed.json()["error"]["code"] == "gateway_overloaded"
    usage_flush()
    [row] = UsageRecord.objects.filter(endpoint="embeddings")
    assert (row.status, row.error_type) == (UsageStatus.REFUSED, "gateway_overloaded")
    assert row.request_id == shed.headers["x-request-id"] and row.request_id.startswith("emb-")


def test_it_sheds_a_responses_request_in_openai_format_with_its_usage_row(
    world, gateway_server, capped
):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            known = await chat(client, gateway_server.url, world.secret, QUICK_MODEL)
            assert known.status_code == 200
            headers = {"authorization": f"Bearer {world.secret}"}
            async with at_the_cap(client, gateway_server.url, world.secret):
                created = await client.post(
                    gateway_server.url + "/v1/responses",
                    json={"model": QUICK_MODEL, "input": "hi"},
                    headers=headers,
                )
                stored = await client.get(
                    gateway_server.url + "/v1/responses/resp_1", headers=headers
                )
            return created, stored

    created, stored = asyncio.run(scenario())
    assert (created.status_code, stored.status_code) == (503, 503)
    assert created.json()["error"]["code"] == stored.json()["error"]["code"] == "gateway_overloaded"
    usage_flush()
    # the create gets its row (it would have called a provider); reading one does not
    [row] = UsageRecord.objects.filter(endpoint="responses")
    assert (row.status, row.error_type) == (UsageStatus.REFUSED, "gateway_overloaded")
    assert row.request_id == created.headers["x-request-id"] and row.request_id.startswith("resp_")


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
                # opening them did keep the loop busy for a moment; what counts is that
                # holding them, idle, does not
                await until(lambda: not loop_behind(), "the worker's loop has caught up")
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
