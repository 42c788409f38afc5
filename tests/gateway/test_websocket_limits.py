"""Bad frames on the websocket chat, against the real aipk server: each gets a
``chat.error`` naming the problem and the socket stays usable, as docs/WEBSOCKET.md
promises; a message larger than the server accepts at all gets a close frame saying so,
never a dropped connection."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from django.conf import settings as django_settings

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai/gpt-4o-mini"
TIMEOUT = 20
MIB = 1024 * 1024


def ws_url(gateway_server) -> str:
    return gateway_server.url.replace("http://", "ws://", 1) + "/ws/chat/"


def chat(msg_id, content="Hello there", **fields) -> dict:
    return {
        "type": "chat.request",
        "id": msg_id,
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        **fields,
    }


async def receive_event(ws) -> dict:
    message = await ws.receive(timeout=TIMEOUT)
    assert message.type == aiohttp.WSMsgType.TEXT, (message.type, message.data, ws.close_code)
    return json.loads(message.data)


async def until_finished(ws, msg_id) -> list[dict]:
    events = []
    while True:
        event = await receive_event(ws)
        events.append(event)
        if event["type"] in ("chat.done", "chat.error") and event["id"] == msg_id:
            return events


def exchange(gateway_server, secret: str, frames: list[str | bytes], then_id="after") -> tuple:
    """Send each frame, read one answer per frame, then check the socket still serves a
    normal request."""

    async def main():
        headers = {"authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                ws_url(gateway_server), headers=headers, max_msg_size=0
            ) as ws:
                answers = []
                for frame in frames:
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
                    answers.append(await receive_event(ws))
                await ws.send_json(chat(then_id))
                return answers, await until_finished(ws, then_id)

    return asyncio.run(main())


def test_it_answers_a_frame_nested_100k_deep_and_stays_open(world, gateway_server):
    nested = '{"type": "chat.request", "id": "deep", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (error,), after = exchange(gateway_server, world.secret, [nested])
    assert (error["type"], error["code"]) == ("chat.error", "json_too_deep")
    assert "nested deeper than 64 levels" in error["message"]
    assert after[-1]["type"] == "chat.done"


def test_it_answers_a_tool_schema_nested_400_deep(world, gateway_server):
    schema: dict = {"type": "string"}
    for _ in range(400):
        schema = {"type": "object", "properties": {"a": schema}}
    tool = {"type": "function", "function": {"name": "deep", "parameters": schema}}
    (error,), after = exchange(gateway_server, world.secret, [json.dumps(chat("t", tools=[tool]))])
    assert error["type"] == "chat.error" and "nested deeper than 64 levels" in error["message"]
    assert after[-1]["type"] == "chat.done"


def test_it_answers_a_lone_surrogate(world, gateway_server):
    frame = json.dumps(chat("s", content="hi \ud800"))  # json.dumps escapes it as \ud800
    (error,), after = exchange(gateway_server, world.secret, [frame])
    assert (error["code"], error["param"]) == ("invalid_unicode", "messages[0].content")
    assert after[-1]["type"] == "chat.done"


def test_it_answers_a_binary_frame_that_is_not_utf8(world, gateway_server):
    frame = b'{"type": "chat.request", "id": "b", "model": "x\xed\xa0\x80"}'
    (error,), after = exchange(gateway_server, world.secret, [frame])
    assert error["code"] == "invalid_json" and "UTF-8" in error["message"]
    assert after[-1]["type"] == "chat.done"


@pytest.mark.parametrize("field", ["max_tokens", "nul_model"])
def test_it_refuses_out_of_range_options_and_nul_model_ids(world, gateway_server, field):
    if field == "max_tokens":
        frame = chat("m", options={"max_tokens": 2**62})
        param, words = "options.max_tokens", "between 1 and 1000000"
    else:
        frame = {**chat("m"), "model": "openai/gpt\x00-4o"}
        param, words = "model", "NUL"
    (error,), after = exchange(gateway_server, world.secret, [json.dumps(frame)])
    assert (error["type"], error["id"], error["param"]) == ("chat.error", "m", param)
    assert words in error["message"]
    assert after[-1]["type"] == "chat.done"


def test_it_serves_a_message_over_1_mib_within_the_body_limit(world, gateway_server):
    # two 600 KiB messages: under GATEWAY_MAX_MESSAGE_CHARS each, 1.2 MiB together
    frame = chat("big", content="word " * (120 * 1024))
    frame["messages"].append({"role": "user", "content": "more " * (120 * 1024)})
    text = json.dumps(frame)
    assert MIB < len(text) < django_settings.GATEWAY_MAX_BODY_BYTES

    async def main():
        headers = {"authorization": f"Bearer {world.secret}"}
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(gateway_server), headers=headers) as ws:
                await ws.send_str(text)
                return await until_finished(ws, "big")

    events = asyncio.run(main())
    assert events[-1]["type"] == "chat.done", events[-1]


def test_it_answers_a_message_over_the_body_limit_with_payload_too_large(
    world, gateway_server, settings
):
    settings.GATEWAY_MAX_BODY_BYTES = MIB
    frame = json.dumps(chat("big", content="x" * (MIB + MIB // 2)))
    (error,), after = exchange(gateway_server, world.secret, [frame])
    assert (error["type"], error["code"], error["id"]) == ("chat.error", "payload_too_large", None)
    assert after[-1]["type"] == "chat.done"


def test_it_closes_with_1009_on_a_message_larger_than_the_server_takes(world, gateway_server):
    size = django_settings.WS_MAX_MESSAGE_BYTES + 1024

    async def main():
        headers = {"authorization": f"Bearer {world.secret}"}
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(gateway_server), headers=headers) as ws:
                await ws.send_str(json.dumps(chat("huge", content="x" * size)))
                message = await ws.receive(timeout=TIMEOUT)
                return message, ws.close_code

    message, code = asyncio.run(main())
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
    assert code == 1009, (code, message)
