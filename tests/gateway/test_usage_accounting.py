"""Every gateway request produces exactly one usage record, whatever its outcome."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx
import pytest

from aipk_site.gateway.usage import usage_flush
from tenants_app.models import Pricing, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def post(gateway_server, secret, body, **kwargs):
    return httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
        **kwargs,
    )


def set_price(model: str, input_per_million, output_per_million) -> None:
    Pricing.objects.update_or_create(
        provider_type="openai",
        provider=None,
        model=model,
        defaults={
            "input_per_million": input_per_million,
            "output_per_million": output_per_million,
        },
    )


def records(**filters) -> list[UsageRecord]:
    usage_flush()
    return list(UsageRecord.objects.filter(**filters).order_by("created_at", "id"))


def test_it_records_a_success_with_tokens_cost_and_credential(world, gateway_server):
    set_price("gpt-4o-mini", 1, 2)
    reply = post(gateway_server, world.secret, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    assert reply.status_code == 200, reply.text
    [record] = records()
    assert record.request_id == reply.json()["id"] == reply.headers["x-request-id"]
    assert (record.status, record.endpoint, record.streamed) == (
        "success",
        "chat.completions",
        False,
    )
    assert record.tenant_id == world.tenant.pk and record.virtual_key_id == world.key.pk
    assert record.provider_id == world.providers["openai"].pk and record.model == "gpt-4o-mini"
    assert record.credential_id.startswith("key:")
    usage = reply.json()["usage"]
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    expected = (Decimal(usage["prompt_tokens"]) * 1 + Decimal(usage["completion_tokens"]) * 2) / (
        10**6
    )
    assert record.cost_usd == expected
    assert record.latency_ms > 0 and record.ttft_ms is not None


def test_it_records_a_stream_once(world, gateway_server):
    reply = post(
        gateway_server,
        world.secret,
        {"model": "anthropic/claude-3-5-haiku-20241022", "messages": HELLO, "stream": True},
    )
    assert reply.text.rstrip().endswith("data: [DONE]")
    [record] = records()
    assert (record.status, record.streamed, record.provider_name) == ("success", True, "anthropic")
    assert record.completion_tokens > 0


def test_it_records_a_provider_error(world, gateway_server):
    reply = post(gateway_server, world.secret, {"model": "openai/x-fail-server", "messages": HELLO})
    assert reply.status_code == 502
    [record] = records()
    assert (record.status, record.error_type) == ("error", "server_error")
    assert record.cost_usd == 0


def test_it_records_a_refusal_and_says_which_limit(world, gateway_server, make_key):
    key, secret = make_key(world.tenant, name="one a minute", rpm=1)
    body = {"model": "openai/gpt-4o-mini", "messages": HELLO}
    first = post(gateway_server, secret, body)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    second = post(gateway_server, secret, body)
    assert second.status_code == 429
    error = second.json()["error"]
    assert error["code"] == "key_rpm" and "per minute" in error["message"]
    assert int(second.headers["retry-after"]) >= 1
    statuses = [(r.status, r.error_type) for r in records(virtual_key=key)]
    assert statuses == [("success", ""), ("refused", "key_rpm")]


def test_it_records_an_unknown_model_as_refused(world, gateway_server):
    reply = post(gateway_server, world.secret, {"model": "nope", "messages": HELLO})
    assert reply.status_code == 404
    [record] = records()
    assert (record.status, record.error_type, record.model) == (
        "refused",
        "model_not_found",
        "nope",
    )


def test_it_records_a_client_that_disconnects_mid_stream(world, gateway_server, make_key):
    key, secret = make_key(world.tenant, name="one stream", max_concurrent_streams=1)
    words = " ".join(f"word{i}" for i in range(200))
    body = {
        "model": "openai/gpt-4o-mini-delay-50ms",
        "messages": [{"role": "user", "content": words}],
        "stream": True,
    }
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST",
            gateway_server.openai_base_url + "/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {secret}"},
        ) as response:
            assert response.status_code == 200
            seen = 0
            for line in response.iter_lines():
                if line.startswith("data: ") and '"content":"' in line:
                    seen += 1
                if seen >= 3:
                    break  # leaving the block closes the connection mid-stream
    deadline = time.monotonic() + 10
    while not (found := records(virtual_key=key)) and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = found
    assert (record.status, record.error_type) == ("cancelled", "client_disconnected")
    assert 0 < record.completion_tokens < 200  # what was produced before the client left
    # the stream's concurrency slot was given back: a new stream is admitted
    again = post(gateway_server, secret, {**body, "model": "openai/gpt-4o-mini"})
    assert again.status_code == 200, again.text


def test_it_replays_a_cached_reply_as_a_stream_and_records_the_saving(
    world, gateway_server, make_key
):
    set_price("gpt-4o-mini", 5, 5)
    key, secret = make_key(world.tenant, name="cached", cache_enabled=True, cache_ttl_seconds=60)
    body = {"model": "openai/gpt-4o-mini", "messages": HELLO}
    first = post(gateway_server, secret, body)
    assert first.headers["x-aipk-cache"] == "miss"
    replay = post(gateway_server, secret, {**body, "stream": True})
    assert replay.headers["x-aipk-cache"] == "hit"
    text = "".join(
        chunk
        for line in replay.text.splitlines()
        if line.startswith("data: {") and (chunk := _content(line))
    )
    assert text == first.json()["choices"][0]["message"]["content"]
    miss, hit = records(virtual_key=key)
    assert (miss.cached, hit.cached) == (False, True)
    assert hit.cost_usd == 0 and hit.cost_saved_usd == miss.cost_usd > 0


def _content(line: str) -> str:
    import json

    choices = json.loads(line[6:]).get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def test_it_counts_a_thousand_concurrent_requests_exactly_once(world, gateway_server):
    import asyncio

    async def burst():
        async with httpx.AsyncClient(timeout=60) as client:

            async def one(i):
                return await client.post(
                    gateway_server.openai_base_url + "/chat/completions",
                    json={
                        "model": "cerebras/llama3.1-8b",
                        "messages": [{"role": "user", "content": f"n{i}"}],
                        "stream": i % 2 == 0,
                    },
                    headers={"authorization": f"Bearer {world.secret}"},
                )

            return await asyncio.gather(*(one(i) for i in range(200)))

    replies = asyncio.run(burst())
    assert {r.status_code for r in replies} == {200}
    got = records()
    assert len(got) == 200 and len({r.request_id for r in got}) == 200


async def test_it_accounts_a_stream_its_transport_drops_without_reading(world, gateway_server):
    """The client may leave between the response head and the body: the stream is then
    dropped unread, and still accounted once (as cancelled) with its slot given back."""
    import gc

    from asgiref.sync import sync_to_async

    from aipk_site.gateway.dispatch import GatewayCall, gateway_stream
    from aipk_site.gateway.formats.common import InputLimits
    from aipk_site.gateway.formats.openai_format import parse_chat_completion
    from aipk_site.gateway.key_auth import authenticate_virtual_key

    ctx = await authenticate_virtual_key(world.secret)
    parsed = parse_chat_completion(
        {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True},
        InputLimits(max_messages=10, max_message_chars=1000, max_tools=1),
    )
    reply = await gateway_stream(GatewayCall(ctx, parsed, "chat.completions", "chatcmpl-dropped"))
    del reply
    gc.collect()
    for _ in range(100):  # asyncio closes the dropped generator on its next turns
        await asyncio.sleep(0.01)
        if found := await sync_to_async(records)(request_id="chatcmpl-dropped"):
            break
    [record] = found
    assert (record.status, record.error_type) == ("cancelled", "client_disconnected")
