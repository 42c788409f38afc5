"""The websocket chat at /ws/chat/ (docs/WEBSOCKET.md), over a real daphne and a real client.

Each test drives the socket with aiohttp inside ``asyncio.run`` and checks the
database from the (synchronous) test body, so the server thread and the test
share committed rows.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

from aipk_site.gateway.usage import usage_flush
from tenants_app.models import Membership, Pricing, Role, Tenant, UsageRecord
from tenants_app.services.pricing import pricing_cache_clear
from tests.gateway.conftest import MODELS

from .support import WEATHER_TOOLS

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai/gpt-4o-mini"
SLOW_MODEL = "openai/gpt-4o-mini-delay-100ms"  # the simulator waits 100 ms per word
LONG_PROMPT = " ".join(f"word{i}" for i in range(60))
TIMEOUT = 20


def ws_url(gateway_server, query: str = "") -> str:
    return gateway_server.url.replace("http://", "ws://", 1) + "/ws/chat/" + query


def chat(msg_id, content="Hello there", model=MODEL, **fields) -> dict:
    return {
        "type": "chat.request",
        "id": msg_id,
        "model": model,
        "messages": [{"role": "user", "content": content}],
        **fields,
    }


async def receive_event(ws) -> dict:
    message = await ws.receive(timeout=TIMEOUT)
    assert message.type == aiohttp.WSMsgType.TEXT, (message.type, message.data, ws.close_code)
    return json.loads(message.data)


async def until_finished(ws, ids) -> list[dict]:
    """Every event until each id has had its chat.done or chat.error."""
    pending, events = set(ids), []
    while pending:
        event = await receive_event(ws)
        events.append(event)
        if event["type"] in ("chat.done", "chat.error"):
            pending.discard(event["id"])
    return events


async def refusal(ws) -> tuple[dict, int]:
    """The chat.error a refused socket gets, and its close code."""
    event = await receive_event(ws)
    closing = await ws.receive(timeout=TIMEOUT)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
    return event, ws.close_code


def run(scenario):
    async def main():
        async with aiohttp.ClientSession() as session:
            return await scenario(session)

    return asyncio.run(main())


def records(**filters) -> list[UsageRecord]:
    usage_flush()
    return list(UsageRecord.objects.filter(**filters).order_by("created_at", "id"))


def wait_for_records(count: int, **filters) -> list[UsageRecord]:
    """Accounting after a disconnect finishes on the server after the client has left."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = records(**filters)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def bearer(secret: str) -> dict:
    return {"authorization": f"Bearer {secret}"}


def session_cookie(user) -> dict:
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return {"cookie": f"{name}={client.cookies[name].value}"}


def member(tenant, username: str, role=Role.MEMBER):
    user = get_user_model().objects.create_user(username, password="pw-123456")
    Membership.objects.create(user=user, tenant=tenant, role=role)
    return user


# -- auth ----------------------------------------------------------------------------------


def test_it_takes_json_mode_and_the_other_generation_options_as_v1_does(world, gateway_server):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    options = {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "trip", "schema": schema, "strict": True},
        },
        "seed": 7,
        "frequency_penalty": 0.5,
        "metadata": {"team": "maps"},
    }

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_json(chat("j1", "Plan a trip", options=options))
            return await until_finished(ws, ["j1"])

    events = run(scenario)
    assert events[-1]["type"] == "chat.done", events[-1]
    text = "".join(e["text"] for e in events if e["type"] == "chat.delta")
    reply = json.loads(text)  # JSON that fits the schema, not prose
    assert set(reply) == {"city", "days"} and isinstance(reply["days"], int)


def test_it_refuses_an_option_the_provider_cannot_take_naming_it_and_the_provider(
    world, gateway_server
):
    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_json(chat("bad", options={"response_format": {"type": "xml"}}))
            malformed = await receive_event(ws)
            model = f"anthropic/{MODELS['anthropic']}"
            await ws.send_json(chat("a1", model=model, options={"seed": 7}))
            return malformed, await until_finished(ws, ["a1"])

    malformed, events = run(scenario)
    assert malformed["code"] == "invalid_request", malformed
    assert malformed["param"].startswith("options.response_format")
    refused = events[-1]
    assert refused["type"] == "chat.error" and refused["code"] == "unsupported_parameter"
    assert "seed" in refused["message"] and "anthropic" in refused["message"], refused


def test_it_streams_a_reply_as_deltas_then_usage_then_done(world, gateway_server):
    Pricing.objects.update_or_create(
        provider_type="openai",
        provider=None,
        model="gpt-4o-mini",
        defaults={"input_per_million": 1, "output_per_million": 2},
    )
    pricing_cache_clear()

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_json(chat("r1"))
            return await until_finished(ws, ["r1"])

    events = run(scenario)
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["chat.usage", "chat.done"]
    assert set(kinds[:-2]) == {"chat.delta"} and len(kinds) > 3  # one word per chunk
    assert all(e["id"] == "r1" for e in events)
    assert "".join(e["text"] for e in events[:-2]) == "Simulated reply to: Hello there"
    usage, done = events[-2], events[-1]
    assert done["finish_reason"] == "stop"
    assert (done["provider"], done["model"]) == ("openai", "gpt-4o-mini")
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["latency_ms"] >= usage["ttft_ms"] > 0
    [record] = records()
    assert record.request_id == done["request_id"]
    assert (record.status, record.endpoint, record.streamed) == ("success", "ws", True)
    assert record.virtual_key_id == world.key.pk and record.tenant_id == world.tenant.pk
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert usage["cost_usd"] == str(record.cost_usd) and record.cost_usd > 0


def test_it_streams_the_models_reasoning_as_thinking_events_before_its_answer(
    world, gateway_server
):
    request = chat("t", model=world.model("anthropic"), options={"reasoning_effort": "low"})

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_json(request)
            return await until_finished(ws, ["t"])

    events = run(scenario)
    kinds = [e["type"] for e in events]
    assert "chat.thinking" in kinds and "chat.delta" in kinds, kinds
    assert kinds.index("chat.thinking") < kinds.index("chat.delta")
    assert all(e["text"] for e in events if e["type"] == "chat.thinking")
    usage = next(e for e in events if e["type"] == "chat.usage")
    [row] = records()
    assert usage["reasoning_tokens"] == row.reasoning_tokens > 0
    assert (usage["cached_tokens"], usage["cache_write_tokens"]) == (
        row.cached_tokens,
        row.cache_write_tokens,
    )


def test_it_authenticates_with_a_key_subprotocol(world, gateway_server):
    async def scenario(session):
        protocols = ["aipk.chat.v1", f"aipk-key.{world.secret}"]
        async with session.ws_connect(ws_url(gateway_server), protocols=protocols) as ws:
            await ws.send_json({"type": "ping"})
            pong = await receive_event(ws)
            await ws.send_json(chat(7))
            return ws.protocol, pong, await until_finished(ws, [7])

    protocol, pong, events = run(scenario)
    # the key's own subprotocol is never echoed: it would put the secret in a response header
    assert protocol == "aipk.chat.v1"
    assert pong == {"type": "pong"}
    assert events[-1]["type"] == "chat.done" and events[-1]["id"] == 7


@pytest.mark.parametrize(
    "credentials, code",
    [
        ({}, "missing_api_key"),
        ({"headers": bearer("aipk-not-a-real-key")}, "invalid_api_key"),
        ({"protocols": ["aipk.chat.v1", "aipk-key.aipk-wrong"]}, "invalid_api_key"),
    ],
)
def test_it_closes_an_unauthenticated_socket_with_4401(world, gateway_server, credentials, code):
    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), **credentials) as ws:
            return await refusal(ws)

    event, close_code = run(scenario)
    assert close_code == 4401
    assert (event["type"], event["id"], event["code"]) == ("chat.error", None, code)


def test_it_closes_a_deactivated_tenants_socket_with_4403(world, gateway_server):
    Tenant.objects.filter(pk=world.tenant.pk).update(active=False)
    from aipk_site.gateway.key_auth import key_auth_forget_tenant

    key_auth_forget_tenant(world.tenant.pk)

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            return await refusal(ws)

    event, close_code = run(scenario)
    assert (close_code, event["code"]) == (4403, "tenant_inactive")


def test_it_stops_an_open_socket_when_its_key_is_revoked(world, gateway_server):
    from tenants_app.services.keys import virtual_key_revoke

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_json(chat("before"))
            await until_finished(ws, ["before"])
            await asyncio.to_thread(virtual_key_revoke, key=world.key, actor=None)
            await ws.send_json(chat("after"))
            return await refusal(ws)

    event, close_code = run(scenario)
    assert (close_code, event["id"], event["code"]) == (4401, "after", "api_key_revoked")


def test_it_refuses_a_cross_site_browser_page(world, gateway_server):
    async def scenario(session):
        try:
            await session.ws_connect(
                ws_url(gateway_server), headers={"origin": "http://evil.example"}
            )
        except aiohttp.WSServerHandshakeError as error:
            return error.status
        return None

    assert run(scenario) == 403


def test_it_lets_a_console_member_chat_as_their_tenant(world, gateway_server):
    user = member(world.tenant, "alice")
    headers = {**session_cookie(user), "origin": gateway_server.url}

    async def scenario(session):
        url = ws_url(gateway_server, "?tenant=acme")
        async with session.ws_connect(url, headers=headers) as ws:
            await ws.send_json(chat("s1"))
            return await until_finished(ws, ["s1"])

    events = run(scenario)
    assert events[-1]["type"] == "chat.done"
    [record] = records()
    # no key: admitted against the tenant's limits, recorded without a key
    assert (record.tenant_id, record.virtual_key_id, record.status) == (
        world.tenant.pk,
        None,
        "success",
    )


@pytest.mark.parametrize(
    "who, query, close_code, code",
    [
        ("outsider", "?tenant=acme", 4403, "not_a_member"),
        ("outsider", "?tenant=no-such-tenant", 4403, "not_a_member"),
        ("viewer", "?tenant=acme", 4403, "role_cannot_chat"),
        ("member", "", 4400, "missing_tenant"),
    ],
)
def test_it_refuses_a_session_user_who_may_not_chat_as_the_tenant(
    world, gateway_server, who, query, close_code, code
):
    other = Tenant.objects.create(name="Other", slug="other")
    users = {
        "outsider": member(other, "mallory"),
        "viewer": member(world.tenant, "victor", Role.VIEWER),
        "member": member(world.tenant, "alice"),
    }
    headers = session_cookie(users[who])

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server, query), headers=headers) as ws:
            return await refusal(ws)

    event, got = run(scenario)
    assert (got, event["code"]) == (close_code, code)
    assert records() == []


# -- the protocol --------------------------------------------------------------------------


def test_it_sends_tool_calls_whole(world, gateway_server):
    prompt = "Use get_weather and get_time for Paris"

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_json(chat("t", prompt, tools=WEATHER_TOOLS, tool_choice="auto"))
            return await until_finished(ws, ["t"])

    events = run(scenario)
    calls = [e for e in events if e["type"] == "chat.tool_call"]
    assert [(c["index"], c["name"]) for c in calls] == [(0, "get_weather"), (1, "get_time")]
    for call in calls:
        assert call["call_id"] and isinstance(json.loads(call["arguments"]), dict)
    assert [e["type"] for e in events[-2:]] == ["chat.usage", "chat.done"]
    assert events[-1]["finish_reason"] == "tool_calls"


def test_it_runs_ten_requests_at_once_without_mixing_them(world, gateway_server):
    prompts = {f"q{i}": f"question number {i} " + "about things " * i for i in range(10)}

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            for msg_id, prompt in prompts.items():
                await ws.send_json(chat(msg_id, prompt, model="openai/gpt-4o-mini-delay-5ms"))
            return await until_finished(ws, prompts)

    events = run(scenario)
    texts = {msg_id: "" for msg_id in prompts}
    for event in events:
        if event["type"] == "chat.delta":
            texts[event["id"]] += event["text"]
    assert texts == {m: f"Simulated reply to: {p}".rstrip() for m, p in prompts.items()}
    done = {e["id"] for e in events if e["type"] == "chat.done"}
    assert done == set(prompts)
    # the deltas of different requests did arrive interleaved: they really ran at once
    order = [e["id"] for e in events if e["type"] == "chat.delta"]
    assert order != sorted(order, key=list(prompts).index)
    assert len(records(status="success")) == 10


def test_it_cancels_a_request_mid_stream(world, gateway_server):
    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_json(chat("slow", LONG_PROMPT, model=SLOW_MODEL))
            first = await receive_event(ws)
            await ws.send_json({"type": "chat.cancel", "id": "slow"})
            events = [first, *await until_finished(ws, ["slow"])]
            # the socket carries on, and a cancel of a finished id does nothing
            await ws.send_json({"type": "chat.cancel", "id": "slow"})
            await ws.send_json({"type": "ping"})
            return events, await receive_event(ws)

    events, after = run(scenario)
    assert events[0]["type"] == "chat.delta"
    usage, done = events[-2], events[-1]
    assert usage["type"] == "chat.usage" and usage["completion_tokens"] > 0
    assert (done["type"], done["finish_reason"]) == ("chat.done", "cancelled")
    assert after == {"type": "pong"}
    [record] = records()
    assert (record.request_id, record.status) == (done["request_id"], "cancelled")
    assert record.completion_tokens == usage["completion_tokens"]


def test_it_records_a_disconnect_mid_stream_as_cancelled(world, gateway_server):
    async def scenario(session):
        ws = await session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret))
        await ws.send_json(chat("a", LONG_PROMPT, model=SLOW_MODEL))
        await ws.send_json(chat("b", LONG_PROMPT, model=SLOW_MODEL))
        await receive_event(ws)
        await ws.close()

    run(scenario)
    found = wait_for_records(2)
    assert [r.status for r in found] == ["cancelled", "cancelled"]
    assert all(r.error_type == "client_disconnected" for r in found)
    time.sleep(0.3)  # nothing more turns up later: each was accounted once
    assert len(records()) == 2


def test_it_refuses_a_request_over_the_keys_rpm(world, gateway_server, make_key):
    _, secret = make_key(world.tenant, name="one a minute", rpm=1)

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(secret)) as ws:
            await ws.send_json(chat(1))
            first = await until_finished(ws, [1])
            await ws.send_json(chat(2))
            return first, await until_finished(ws, [2])

    first, second = run(scenario)
    assert first[-1]["type"] == "chat.done"
    [error] = second
    assert (error["type"], error["id"], error["code"]) == ("chat.error", 2, "key_rpm")
    assert error["retry_after"] >= 1
    assert sorted(r.status for r in records()) == ["refused", "success"]


def test_it_reports_a_provider_failure(world, gateway_server):
    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            # different providers: a failing request puts its provider's key in backoff
            await ws.send_json(chat("f", model="openai/x-fail-server"))
            await ws.send_json(chat("m", model="cerebras/llama3.1-8b-fail-midstream_error"))
            return await until_finished(ws, ["f", "m"])

    events = run(scenario)
    errors = {e["id"]: e for e in events if e["type"] == "chat.error"}
    assert errors["f"]["code"] == "upstream_error"
    assert errors["m"]["code"] == "upstream_error"
    # the mid-stream failure came after some text had been sent
    assert any(e["type"] == "chat.delta" and e["id"] == "m" for e in events)
    assert sorted(r.status for r in records()) == ["error", "error"]


@pytest.mark.parametrize(
    "frame, code, param",
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        ('{"type": "chat.nonsense", "id": "x"}', "unknown_type", "type"),
        ('{"id": "x"}', "unknown_type", "type"),
        ('{"type": "chat.request", "model": "smart"}', "missing_id", "id"),
        ('{"type": "chat.request", "id": true}', "invalid_id", "id"),
        ('{"type": "chat.request", "id": "x", "messages": []}', "invalid_request", "model"),
        (
            json.dumps({**chat("x"), "messages": [{"role": "robot", "content": "hi"}]}),
            "invalid_request",
            "messages[0].role",
        ),
        (json.dumps(chat("x", options={"max_tokens": 0})), "invalid_request", "options.max_tokens"),
        (json.dumps(chat("x", options={"stop": [""]})), "invalid_request", "options.stop[0]"),
        (json.dumps(chat("x", options={"max_token": 5})), "invalid_request", "options.max_token"),
        (json.dumps(chat("x", options={"cache": "yes"})), "invalid_request", "options.cache"),
        (json.dumps(chat("x", options=[1])), "invalid_request", "options"),
        # a generation option at the top level instead of under "options"
        (json.dumps(chat("x", max_tokens=5)), "unknown_parameter", "max_tokens"),
        ('{"type": "chat.cancel", "id": "x", "reason": "bored"}', "unknown_parameter", "reason"),
        (
            json.dumps(
                chat(
                    "x",
                    tools=[
                        {"type": "function", "function": {"name": "f", "parameters": {"type": 1}}}
                    ],
                )
            ),
            "invalid_tool",
            "tools[0].function.parameters.type",
        ),
    ],
)
def test_it_answers_a_malformed_message_without_closing(world, gateway_server, frame, code, param):
    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_str(frame)
            error = await receive_event(ws)
            await ws.send_json({"type": "ping"})
            return error, await receive_event(ws)

    error, pong = run(scenario)
    assert error["type"] == "chat.error" and error["code"] == code, error
    assert error.get("param") == param and error["message"]
    if param and param.startswith("options."):
        assert error["message"].startswith(param)
    assert pong == {"type": "pong"}
    assert records() == []


def test_it_refuses_a_duplicate_id_and_too_many_requests_at_once(world, gateway_server, settings):
    settings.WS_MAX_IN_FLIGHT = 2

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_json(chat("a", LONG_PROMPT, model=SLOW_MODEL))
            await ws.send_json(chat("a", "again"))
            await ws.send_json(chat("b", LONG_PROMPT, model=SLOW_MODEL))
            await ws.send_json(chat("c"))
            errors = []
            while len(errors) < 2:
                event = await receive_event(ws)
                if event["type"] == "chat.error":
                    errors.append(event)
            for msg_id in ("a", "b"):
                await ws.send_json({"type": "chat.cancel", "id": msg_id})
            await until_finished(ws, ["a", "b"])
            return errors

    errors = run(scenario)
    assert [(e["id"], e["code"]) for e in errors] == [
        ("a", "duplicate_id"),
        ("c", "too_many_in_flight"),
    ]
    # the refused ones never reached the gateway; the two that ran were cancelled
    assert [r.status for r in wait_for_records(2)] == ["cancelled", "cancelled"]


def test_it_refuses_an_oversized_message(world, gateway_server, settings):
    settings.GATEWAY_MAX_BODY_BYTES = 2000

    async def scenario(session):
        async with session.ws_connect(ws_url(gateway_server), headers=bearer(world.secret)) as ws:
            await ws.send_json(chat("big", "x" * 3000))
            error = await receive_event(ws)
            await ws.send_json(chat("small"))
            return error, await until_finished(ws, ["small"])

    error, events = run(scenario)
    assert (error["type"], error["code"], error["id"]) == ("chat.error", "payload_too_large", None)
    assert events[-1]["type"] == "chat.done"


def test_it_answers_from_the_response_cache_when_a_request_asks(world, gateway_server):
    # a console user: no key, so the cache is used only because the request asks
    headers = session_cookie(member(world.tenant, "alice"))

    async def scenario(session):
        url = ws_url(gateway_server, "?tenant=acme")
        async with session.ws_connect(url, headers=headers) as ws:
            replies = []
            for msg_id in ("first", "second"):
                await ws.send_json(chat(msg_id, "cache me", options={"cache": True}))
                replies.append(await until_finished(ws, [msg_id]))
            return replies

    first, second = run(scenario)
    text = ["".join(e.get("text", "") for e in reply) for reply in (first, second)]
    assert text[0] == text[1] == "Simulated reply to: cache me"
    assert [reply[-2]["cached"] for reply in (first, second)] == [False, True]
    assert second[-2]["cost_usd"] == "0"
    assert [r.cached for r in records()] == [False, True]


async def test_it_counts_open_sockets_in_the_metrics(world, gateway_server):
    from prometheus_client.parser import text_string_to_metric_families

    async def open_sockets(session) -> float:
        async with session.get(gateway_server.url + "/metrics") as response:
            text = await response.text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "aipk_websocket_connections"
        )

    async with aiohttp.ClientSession() as session:
        before = await open_sockets(session)
        async with session.ws_connect(
            gateway_server.url + "/ws/chat/", headers={"authorization": f"Bearer {world.secret}"}
        ) as ws:
            await ws.send_json({"type": "ping"})
            assert (await ws.receive_json())["type"] == "pong"
            assert await open_sockets(session) == before + 1
        for _ in range(100):
            if await open_sockets(session) == before:
                break
            await asyncio.sleep(0.02)
        assert await open_sockets(session) == before
