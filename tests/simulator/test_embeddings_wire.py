"""The simulator's embeddings wires, judged by the official openai and google-genai SDKs."""

import math

import httpx
import openai
import pytest
from google.genai import errors, types

from tests.simulator.sim_helpers import gemini_client, openai_client

# The SDK's own aiohttp session subclass warns on every client; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


def norm(vector) -> float:
    return math.sqrt(sum(v * v for v in vector))


@pytest.fixture
def client(simulator):
    return openai_client(simulator.base_url("openai"))


async def test_it_embeds_texts_as_unit_float_vectors_with_word_usage(client):
    result = await client.embeddings.create(
        model="text-embedding-3-small",
        input=["the quick brown fox", "hello"],
        encoding_format="float",
    )
    assert result.object == "list"
    assert result.model == "text-embedding-3-small"
    assert [d.index for d in result.data] == [0, 1]
    assert [len(d.embedding) for d in result.data] == [1536, 1536]
    assert all(math.isclose(norm(d.embedding), 1.0, rel_tol=1e-9) for d in result.data)
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == 5  # 4 words + 1
    assert result.usage.total_tokens == 5


async def test_it_gives_the_same_text_the_same_vector_every_time(client):
    first = await client.embeddings.create(
        model="text-embedding-3-small", input="same text", encoding_format="float"
    )
    again = await client.embeddings.create(
        model="text-embedding-3-small", input=["other", "same text"], encoding_format="float"
    )
    assert again.data[1].embedding == first.data[0].embedding


async def test_it_answers_base64_as_little_endian_float32_the_sdk_decodes(client):
    as_floats = await client.embeddings.create(
        model="text-embedding-3-small", input="pack me", encoding_format="float"
    )
    # no encoding_format: the SDK asks for base64 itself and decodes it into floats
    decoded = await client.embeddings.create(model="text-embedding-3-small", input="pack me")
    assert len(decoded.data[0].embedding) == 1536
    assert decoded.data[0].embedding == pytest.approx(as_floats.data[0].embedding, abs=1e-6)
    raw = await client.embeddings.create(
        model="text-embedding-3-small", input="pack me", encoding_format="base64"
    )
    assert isinstance(raw.data[0].embedding, str)


async def test_it_shortens_to_the_dimensions_asked_for_and_renormalises(client):
    result = await client.embeddings.create(
        model="text-embedding-3-large", input="shorter", dimensions=256, encoding_format="float"
    )
    assert len(result.data[0].embedding) == 256
    assert math.isclose(norm(result.data[0].embedding), 1.0, rel_tol=1e-9)


async def test_it_refuses_dimensions_on_a_model_without_them(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=64)
    assert caught.value.body["param"] == "dimensions"


async def test_it_embeds_token_id_lists(client):
    result = await client.embeddings.create(
        model="text-embedding-3-small", input=[[1, 2, 3], [4]], encoding_format="float"
    )
    assert len(result.data) == 2
    assert result.usage.prompt_tokens == 4


async def test_it_answers_a_bad_key_with_openais_401(client, simulator):
    bad = openai_client(simulator.base_url("openai"), key="invalid-key-9999")
    with pytest.raises(openai.AuthenticationError) as caught:
        await bad.embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.body["code"] == "invalid_api_key"
    assert "9999" in caught.value.message and "invalid-key" not in caught.value.message


async def test_it_answers_an_unknown_model_with_404_and_a_chat_model_with_403(client):
    with pytest.raises(openai.NotFoundError) as missing:
        await client.embeddings.create(model="text-embedding-9", input="x")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.PermissionDeniedError) as chat_model:
        await client.embeddings.create(model="gpt-4o", input="x")
    assert "not allowed to generate embeddings" in chat_model.value.message


async def test_it_refuses_more_inputs_than_the_model_takes(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="text-embedding-3-small", input=["x"] * 2049)
    assert caught.value.body["param"] == "input"


async def test_it_refuses_an_empty_input(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="text-embedding-3-small", input=[""])
    assert caught.value.body["param"] == "input"


async def test_it_injects_a_rate_limit_with_retry_after_from_the_model_id(client):
    with pytest.raises(openai.RateLimitError) as caught:
        await client.embeddings.create(
            model="text-embedding-3-small-fail-rate_limit-retry-7s", input="x"
        )
    assert caught.value.response.headers["retry-after"] == "7"


async def test_it_serves_the_unprefixed_alias_and_the_openai_compatible_dialects(simulator):
    alias = openai_client(simulator.url + "/v1")
    result = await alias.embeddings.create(model="text-embedding-3-small", input="alias")
    assert len(result.data[0].embedding) == 1536
    qwen = openai_client(simulator.base_url("qwen"), key="sk-qwen-1234")
    result = await qwen.embeddings.create(
        model="text-embedding-v4", input=["a", "b"], dimensions=512, encoding_format="float"
    )
    assert [len(d.embedding) for d in result.data] == [512, 512]
    with pytest.raises(openai.BadRequestError):
        await qwen.embeddings.create(model="text-embedding-v4", input=["x"] * 11)
    with pytest.raises(openai.BadRequestError):  # DashScope takes 2048 ... 64, not any size
        await qwen.embeddings.create(model="text-embedding-v4", input="x", dimensions=100)
    openrouter = openai_client(simulator.base_url("openrouter"), key="sk-or-v1-1234")
    result = await openrouter.embeddings.create(
        model="openai/text-embedding-3-small", input="routed", encoding_format="float"
    )
    assert len(result.data[0].embedding) == 1536


async def test_it_has_no_embeddings_endpoint_for_cerebras(simulator):
    async with httpx.AsyncClient() as http:
        response = await http.post(
            simulator.base_url("cerebras") + "/embeddings",
            headers={"authorization": "Bearer csk-test-1234"},
            json={"model": "llama3.1-8b", "input": "x"},
        )
    assert response.status_code == 404


# ---------------------------------------------------------------- Gemini


@pytest.fixture
def gemini(simulator):
    return gemini_client(simulator)


async def test_it_embeds_with_gemini_batch_embed_contents(gemini, simulator):
    simulator.clear_requests()
    result = await gemini.aio.models.embed_content(
        model="gemini-embedding-001", contents=["first text", "second text"]
    )
    assert [len(e.values) for e in result.embeddings] == [3072, 3072]
    assert all(math.isclose(norm(e.values), 1.0, rel_tol=1e-9) for e in result.embeddings)
    sent = simulator.requests()[-1]
    assert sent["path"].endswith("/models/gemini-embedding-001:batchEmbedContents")
    assert sent["body"]["requests"][0]["content"]["parts"][0]["text"] == "first text"


async def test_it_truncates_gemini_vectors_to_the_output_dimensionality(gemini):
    full = await gemini.aio.models.embed_content(model="gemini-embedding-001", contents="cut me")
    short = await gemini.aio.models.embed_content(
        model="gemini-embedding-001",
        contents="cut me",
        config=types.EmbedContentConfig(output_dimensionality=768),
    )
    assert short.embeddings[0].values == full.embeddings[0].values[:768]


async def test_it_answers_gemini_embed_content_for_one_content(simulator):
    async with httpx.AsyncClient() as http:
        response = await http.post(
            simulator.base_url("gemini") + "/v1beta/models/text-embedding-004:embedContent",
            headers={"x-goog-api-key": "AIza-test-1234"},
            json={"content": {"parts": [{"text": "one"}]}, "outputDimensionality": 64},
        )
    assert response.status_code == 200
    assert len(response.json()["embedding"]["values"]) == 64


async def test_it_answers_gemini_errors_in_gemini_shape(simulator):
    bad = gemini_client(simulator, key="invalid-AIza-0000")
    with pytest.raises(errors.ClientError) as caught:
        await bad.aio.models.embed_content(model="gemini-embedding-001", contents="x")
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    client = gemini_client(simulator)
    with pytest.raises(errors.ClientError) as missing:
        await client.aio.models.embed_content(model="gemini-2.5-flash", contents="x")
    assert missing.value.code == 404
    assert "not supported for batchEmbedContents" in missing.value.message
    with pytest.raises(errors.ClientError) as limited:
        await client.aio.models.embed_content(
            model="gemini-embedding-001-fail-rate_limit", contents="x"
        )
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(errors.ClientError) as too_many:
        await client.aio.models.embed_content(
            model="gemini-embedding-001", contents=[f"t{i}" for i in range(101)]
        )
    assert too_many.value.code == 400
    assert "at most 100 requests" in too_many.value.message
