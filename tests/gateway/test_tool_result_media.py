"""Images inside an Anthropic ``tool_result`` (a screenshot tool's answer): forwarded to
Anthropic, whose tool results take them, and refused with a 400 naming the provider
where a tool result carries text only (OpenAI-wire tool messages, Gemini's
functionResponse), rather than answered about a picture the model never saw."""

from __future__ import annotations

import base64

import anthropic
import httpx
import pytest

from providers_app.simulator.media import PIXEL_PNG

pytestmark = pytest.mark.django_db(transaction=True)

PNG_B64 = base64.b64encode(PIXEL_PNG).decode()
TOOLS = [
    {
        "name": "screenshot",
        "description": "Take a screenshot",
        "input_schema": {"type": "object", "properties": {}},
    }
]


def conversation(result_content) -> list[dict]:
    return [
        {"role": "user", "content": "Use screenshot"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": result_content}
            ],
        },
    ]


SCREENSHOT = [
    {"type": "text", "text": "the screen"},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
]


@pytest.fixture
def client(world, gateway_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=world.secret, base_url=gateway_server.url, max_retries=0)


def test_it_forwards_an_image_in_a_tool_result_to_anthropic(client, world, simulator):
    reply = client.messages.create(
        model=world.model("anthropic"),
        max_tokens=100,
        tools=TOOLS,
        messages=conversation(SCREENSHOT),
    )
    # the simulator shows media as markers: the image reached the model
    assert reply.content[-1].text == "Tool results: the screen [image: image/png]"
    entries = httpx.get(simulator.url + "/_sim/requests", timeout=30).json()
    sent = entries[-1]["body"]["messages"][-1]["content"][0]
    assert sent["type"] == "tool_result"
    assert [b["type"] for b in sent["content"]] == ["text", "image"]


@pytest.mark.parametrize("provider_type", ["openai", "gemini"])
def test_it_refuses_an_image_in_a_tool_result_where_results_are_text_only(
    client, world, provider_type
):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=world.model(provider_type),
            max_tokens=100,
            tools=TOOLS,
            messages=conversation(SCREENSHOT),
        )
    message = caught.value.body["error"]["message"]
    assert "cannot take images or files in tool results" in message


def test_it_still_takes_a_text_only_tool_result_list_everywhere(client, world):
    reply = client.messages.create(
        model=world.model("gemini"),
        max_tokens=100,
        tools=TOOLS,
        messages=conversation([{"type": "text", "text": "plain"}]),
    )
    assert reply.content[-1].text.startswith("Tool results: ") and "plain" in reply.content[-1].text
