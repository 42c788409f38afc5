"""Images, documents and audio in messages: the official SDKs, through aipk, to the
openai, anthropic and gemini providers on the simulator (docs/GATEWAY.md "Images,
files and audio"). The simulator answers with a marker per media part it received
(``[image: image/png]``), and its request log shows the provider's own shapes."""

from __future__ import annotations

import base64

import anthropic
import httpx
import openai
import pytest

from providers_app.kit import media_fetch
from providers_app.simulator.media import PIXEL_PNG, TINY_PDF

pytestmark = pytest.mark.django_db(transaction=True)

PNG_B64 = base64.b64encode(PIXEL_PNG).decode()
PNG_URL = f"data:image/png;base64,{PNG_B64}"
PDF_B64 = base64.b64encode(TINY_PDF).decode()
WAV_B64 = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 32).decode()
TYPES = ("openai", "anthropic", "gemini")


def openai_client(world, gateway_server) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=world.secret, base_url=gateway_server.openai_base_url, max_retries=0
    )


def anthropic_client(world, gateway_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=world.secret, base_url=gateway_server.url, max_retries=0)


def last_upstream_body(simulator) -> dict:
    entries = httpx.get(simulator.url + "/_sim/requests", timeout=30).json()
    return entries[-1]["body"]


def upstream_media(provider_type: str, body: dict) -> list[dict]:
    """The media parts of the last user turn, in the provider's own shape."""
    if provider_type == "gemini":
        parts = body["contents"][-1]["parts"]
        return [p for p in parts if "inlineData" in p or "fileData" in p]
    content = body["messages"][-1]["content"]
    return [p for p in content if p.get("type") not in ("text", None)]


@pytest.fixture
def relaxed_fetch():
    """Let aipk fetch media from the loopback simulator (the guard's test-only switch)."""
    before = media_fetch.policy()
    media_fetch.configure(media_fetch.FetchPolicy(allow_private=True, timeout=5))
    yield
    media_fetch.configure(before)


# -- the openai SDK -------------------------------------------------------------------------


@pytest.mark.parametrize("provider_type", TYPES)
def test_it_passes_an_inline_image_to_every_provider(
    world, gateway_server, simulator, provider_type
):
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type),
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
                ],
            }
        ],
    )
    assert (
        reply.choices[0].message.content == "Simulated reply to: What is this? [image: image/png]"
    )
    (part,) = upstream_media(provider_type, last_upstream_body(simulator))
    if provider_type == "openai":
        assert part == {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}}
    elif provider_type == "anthropic":
        assert part == {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
        }
    else:
        assert part == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}


@pytest.mark.parametrize("provider_type", TYPES)
def test_it_passes_an_image_url_and_fetches_it_for_gemini(
    world, gateway_server, simulator, relaxed_fetch, provider_type
):
    url = simulator.url + "/_sim/media/redirect-png"
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type),
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    (part,) = upstream_media(provider_type, last_upstream_body(simulator))
    if provider_type == "openai":  # OpenAI fetches URLs itself
        assert part == {"type": "image_url", "image_url": {"url": url}}
        assert reply.choices[0].message.content.endswith("[image: url]")
    elif provider_type == "anthropic":  # so does Anthropic
        assert part == {"type": "image", "source": {"type": "url", "url": url}}
    else:  # Gemini reads only inline bytes or its own files: aipk fetched it (redirect followed)
        assert part == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}
        assert reply.choices[0].message.content.endswith("[image: image/png]")


def test_it_refuses_to_fetch_a_loopback_url_unless_relaxed(world, gateway_server, simulator):
    with pytest.raises(openai.BadRequestError) as info:
        openai_client(world, gateway_server).chat.completions.create(
            model=world.model("gemini"),
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": simulator.url + "/_sim/media/pixel.png"},
                        }
                    ],
                }
            ],
        )
    assert "could not be fetched" in str(info.value) and "not a public address" in str(info.value)


@pytest.mark.parametrize("provider_type", TYPES)
def test_it_passes_a_pdf_file_part(world, gateway_server, simulator, provider_type):
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type),
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Summarise"},
                    {
                        "type": "file",
                        "file": {
                            "file_data": f"data:application/pdf;base64,{PDF_B64}",
                            "filename": "report.pdf",
                        },
                    },
                ],
            }
        ],
    )
    assert (
        reply.choices[0].message.content == "Simulated reply to: Summarise [file: application/pdf]"
    )
    (part,) = upstream_media(provider_type, last_upstream_body(simulator))
    if provider_type == "openai":
        assert part["file"] == {
            "file_data": f"data:application/pdf;base64,{PDF_B64}",
            "filename": "report.pdf",
        }
    elif provider_type == "anthropic":
        assert part == {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
            "title": "report.pdf",
        }
    else:
        assert part == {"inlineData": {"mimeType": "application/pdf", "data": PDF_B64}}


@pytest.mark.parametrize("provider_type", ("openai", "gemini"))
def test_it_passes_an_audio_part(world, gateway_server, simulator, provider_type):
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model(provider_type),
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Transcribe"},
                    {"type": "input_audio", "input_audio": {"data": WAV_B64, "format": "wav"}},
                ],
            }
        ],
    )
    assert reply.choices[0].message.content == "Simulated reply to: Transcribe [audio: wav]"


def test_it_refuses_audio_for_anthropic_naming_the_provider(world, gateway_server):
    with pytest.raises(openai.BadRequestError) as info:
        openai_client(world, gateway_server).chat.completions.create(
            model=world.model("anthropic"),
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": WAV_B64, "format": "wav"}}
                    ],
                }
            ],
        )
    assert "anthropic cannot take audio input" in str(info.value)


# -- the anthropic SDK ----------------------------------------------------------------------


@pytest.mark.parametrize("provider_type", TYPES)
def test_it_passes_anthropic_image_and_document_blocks(
    world, gateway_server, simulator, provider_type
):
    message = anthropic_client(world, gateway_server).messages.create(
        model=world.model(provider_type),
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": PDF_B64,
                        },
                        "title": "report.pdf",
                    },
                ],
            }
        ],
    )
    assert message.content[0].text == (
        "Simulated reply to: Compare [image: image/png] [file: application/pdf]"
    )
    assert len(upstream_media(provider_type, last_upstream_body(simulator))) == 2


def test_it_passes_a_plain_text_document_to_anthropic_as_text(world, gateway_server, simulator):
    anthropic_client(world, gateway_server).messages.create(
        model=world.model("anthropic"),
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "a note"},
                    }
                ],
            }
        ],
    )
    (part,) = upstream_media("anthropic", last_upstream_body(simulator))
    assert part["source"] == {"type": "text", "media_type": "text/plain", "data": "a note"}


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "param", "words"),
    [
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}},
            "messages[0].content[1].image_url.url",
            "base64",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,abc"}},
            "messages[0].content[1].image_url.url",
            "data URL",
        ),
        (
            {"type": "image_url", "image_url": {"url": f"data:image/bmp;base64,{PNG_B64}"}},
            "messages[0].content[1].image_url.url",
            "image/bmp",
        ),
        (
            {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
            "messages[0].content[1].image_url.url",
            "http(s)",
        ),
        (
            {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "max"}},
            "messages[0].content[1].image_url.detail",
            "'max'",
        ),
        (
            {"type": "file", "file": {"file_data": f"data:application/zip;base64,{PDF_B64}"}},
            "messages[0].content[1].file.file_data",
            "application/zip",
        ),
        ({"type": "file", "file": {}}, "messages[0].content[1].file", "file_data"),
        (
            {"type": "input_audio", "input_audio": {"data": WAV_B64, "format": "ogg"}},
            "messages[0].content[1].input_audio.format",
            "'ogg'",
        ),
    ],
)
def test_it_refuses_a_malformed_part_naming_the_field(world, gateway_server, part, param, words):
    response = httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {world.secret}"},
        json={
            "model": world.model("openai"),
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}],
        },
        timeout=30,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert words in error["message"]


def test_it_refuses_a_part_over_the_size_limit(world, gateway_server, settings):
    settings.GATEWAY_MAX_MEDIA_PART_BYTES = 10
    response = httpx.post(
        gateway_server.url + "/v1/messages",
        headers={"x-api-key": world.secret, "anthropic-version": "2023-06-01"},
        json={
            "model": world.model("anthropic"),
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": PDF_B64,
                            },
                        }
                    ],
                }
            ],
        },
        timeout=30,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("messages[0].content[0].source.data: is ")
    assert "the limit per part is 10" in error["message"]


def test_it_refuses_an_image_in_a_system_message(world, gateway_server):
    response = httpx.post(
        gateway_server.openai_base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {world.secret}"},
        json={
            "model": world.model("openai"),
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": PNG_URL}}],
                },
                {"role": "user", "content": "hi"},
            ],
        },
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content[0].type"


# -- accounting -----------------------------------------------------------------------------


def test_it_counts_media_in_the_prompt_estimate():
    from aipk_site.gateway.ledger import estimate_prompt_tokens
    from providers_app.kit.media import IMAGE_TOKENS
    from providers_app.kit.types import ChatRequest, ImagePart, Message, TextPart

    text_only = ChatRequest(model="m", messages=[Message(role="user", content="What is this?")])
    with_image = ChatRequest(
        model="m",
        messages=[
            Message(
                role="user",
                content="What is this?",
                parts=[TextPart("What is this?"), ImagePart(data=PNG_B64, media_type="image/png")],
            )
        ],
    )
    assert estimate_prompt_tokens(with_image) == estimate_prompt_tokens(text_only) + IMAGE_TOKENS


# -- models known to be text-only -----------------------------------------------------------


def _image_message() -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG_URL}},
            ],
        }
    ]


def test_it_refuses_media_for_a_model_the_catalogue_knows_is_text_only(world, gateway_server):
    # Cerebras' llama3.1-8b is text-only in the adapter's static catalogue
    with pytest.raises(openai.BadRequestError) as info:
        openai_client(world, gateway_server).chat.completions.create(
            model=world.model("cerebras"), messages=_image_message()
        )
    assert "model 'llama3.1-8b' of cerebras does not take image" in str(info.value)


def test_it_tries_a_model_the_catalogue_does_not_know(world, gateway_server):
    # qwen-plus is not in Qwen's static catalogue: the provider decides
    reply = openai_client(world, gateway_server).chat.completions.create(
        model=world.model("qwen"), messages=_image_message()
    )
    assert reply.choices[0].message.content.endswith("[image: image/png]")


def test_it_reserves_a_budget_for_media_by_their_upper_bounds():
    from providers_app.kit.media import (
        DOCUMENT_TOKENS_PER_PAGE,
        IMAGE_TOKENS_BOUND,
        URL_DOCUMENT_TOKENS_BOUND,
    )
    from providers_app.kit.types import ChatRequest, FilePart, ImagePart, Message, TextPart
    from tenants_app.services.pricing import prompt_tokens_upper_bound

    def bound(*parts) -> int:
        message = Message(role="user", content="hi", parts=[TextPart("hi"), *parts])
        return prompt_tokens_upper_bound(ChatRequest(model="m", messages=[message]))

    plain = bound()
    assert bound(ImagePart(url="https://example.com/a.png")) == plain + IMAGE_TOKENS_BOUND
    three_pages = base64.b64encode(b"%PDF " + b"<< /Type /Page >> " * 3 + b"/Type /Pages").decode()
    assert bound(FilePart(data=three_pages, media_type="application/pdf")) == (
        plain + 3 * DOCUMENT_TOKENS_PER_PAGE
    )
    assert bound(FilePart(url="https://example.com/a.pdf")) == plain + URL_DOCUMENT_TOKENS_BOUND


def test_it_fetches_an_image_url_for_a_gemini_stream(
    world, gateway_server, simulator, relaxed_fetch
):
    stream = openai_client(world, gateway_server).chat.completions.create(
        model=world.model("gemini"),
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Stream"},
                    {
                        "type": "image_url",
                        "image_url": {"url": simulator.url + "/_sim/media/pixel.png"},
                    },
                ],
            }
        ],
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Simulated reply to: Stream [image: image/png]"


def test_it_never_answers_one_image_from_the_cache_of_another():
    from aipk_site.gateway.response_cache import cache_key
    from providers_app.kit.types import ChatRequest, ImagePart, Message, TextPart

    def request(data: str) -> ChatRequest:
        parts = [TextPart("What is this?"), ImagePart(data=data, media_type="image/png")]
        message = Message(role="user", content="What is this?", parts=parts)
        return ChatRequest(model="m", messages=[message])

    other = base64.b64encode(PIXEL_PNG + b"\0").decode()
    assert cache_key(tenant_id=1, request=request(PNG_B64)) != cache_key(
        tenant_id=1, request=request(other)
    )
    text_only = ChatRequest(model="m", messages=[Message(role="user", content="What is this?")])
    assert cache_key(tenant_id=1, request=text_only) != cache_key(
        tenant_id=1, request=request(PNG_B64)
    )


def test_it_refuses_media_for_a_discovered_model_whose_family_is_text_only(
    world, gateway_server, simulator
):
    # Cerebras lists gpt-oss-120b (not in the adapter's catalogue); OpenAI's open-weight
    # models take text only: a 400 naming the model, and nothing sent upstream
    client = openai_client(world, gateway_server)
    model = f"{world.providers['cerebras'].name}/gpt-oss-120b"
    simulator.clear_requests()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=_image_message())
    assert "model 'gpt-oss-120b' of cerebras does not take image" in str(info.value)
    assert simulator.requests() == []
    text_only = [{"role": "user", "content": "What is this?"}]
    assert client.chat.completions.create(model=model, messages=text_only).choices


def test_it_counts_images_and_documents_in_count_tokens_as_admission_does(
    world, gateway_server, simulator
):
    from providers_app.kit.media import DOCUMENT_TOKENS_PER_PAGE, IMAGE_TOKENS

    client = anthropic_client(world, gateway_server)
    text = {"type": "text", "text": "Compare these two, please"}
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
    }
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
    }
    model = world.model("anthropic")
    simulator.clear_requests()

    def count(*blocks) -> int:
        return client.messages.count_tokens(
            model=model, messages=[{"role": "user", "content": list(blocks)}]
        ).input_tokens

    alone = count(text)
    # an image at its documented allowance, a (one-page) PDF at a page's
    assert count(text, image) == alone + IMAGE_TOKENS
    assert count(text, image, document) == alone + IMAGE_TOKENS + DOCUMENT_TOKENS_PER_PAGE
    assert simulator.requests() == []  # a count asks no provider
