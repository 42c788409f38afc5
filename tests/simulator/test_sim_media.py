"""The simulator sees images, documents and audio in each wire format (a marker per part
in its reply) and refuses malformed ones with each real API's 400."""

import base64

import anthropic
import openai
import pytest
from google.genai import errors, types

from providers_app.simulator.media import PIXEL_PNG, TINY_PDF
from tests.simulator.sim_helpers import anthropic_client, gemini_client, openai_client

PNG_B64 = base64.b64encode(PIXEL_PNG).decode()
PDF_B64 = base64.b64encode(TINY_PDF).decode()


async def test_it_answers_openai_clients_about_the_media_it_saw(simulator):
    client = openai_client(simulator.base_url("openai"))
    reply = await client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {"type": "input_audio", "input_audio": {"data": PNG_B64, "format": "mp3"}},
                ],
            }
        ],
    )
    assert reply.choices[0].message.content == (
        "Simulated reply to: Look [image: image/png] [audio: mp3]"
    )


async def test_it_refuses_a_non_image_data_url_as_openai_does(simulator):
    client = openai_client(simulator.base_url("openai"))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}
                    ],
                }
            ],
        )
    assert caught.value.body["param"] == "messages[0].content[0].image_url.url"


async def test_it_answers_anthropic_clients_about_images_and_documents(simulator):
    client = anthropic_client(simulator)
    message = await client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read"},
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": PDF_B64,
                        },
                    },
                ],
            }
        ],
    )
    assert message.content[0].text == "Simulated reply to: Read [file: application/pdf]"


async def test_it_refuses_an_unsupported_image_type_as_anthropic_does(simulator):
    client = anthropic_client(simulator)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/bmp",
                                "data": PNG_B64,
                            },
                        }
                    ],
                }
            ],
        )
    assert caught.value.body["error"]["message"].startswith(
        "messages.0.content.0.image.source.base64.media_type: Input should be"
    )


async def test_it_answers_gemini_clients_about_inline_data(simulator):
    client = gemini_client(simulator)
    reply = await client.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents=[
            types.Content(
                role="user",
                parts=[
                    types.Part(text="See"),
                    types.Part.from_bytes(data=PIXEL_PNG, mime_type="image/png"),
                ],
            )
        ],
    )
    assert reply.text == "Simulated reply to: See [image: image/png]"


async def test_it_refuses_a_foreign_file_uri_as_gemini_does(simulator):
    client = gemini_client(simulator)
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash",
            contents=[
                types.Content(
                    role="user",
                    parts=[
                        types.Part.from_uri(
                            file_uri="https://example.com/a.png", mime_type="image/png"
                        )
                    ],
                )
            ],
        )
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
