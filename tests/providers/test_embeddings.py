"""The kit's ``embed()`` for every provider type, against the simulator over loopback."""

from __future__ import annotations

import base64
import math
import struct
import time

import pytest

from providers_app.kit import errors
from providers_app.kit.embeddings import (
    EmbeddingRequest,
    vector_from_base64,
    vector_to_base64,
)
from providers_app.kit.providers import PROFILES
from tests.providers.kit.live_helpers import make_adapter

# an embedding model the simulator serves for each provider type that has embeddings
EMBEDDING_MODELS = {
    "openai": "text-embedding-3-small",
    "openai-compatible": "text-embedding-3-small",
    "openrouter": "openai/text-embedding-3-small",
    "qwen": "text-embedding-v4",
    "gemini": "gemini-embedding-001",
}
SIZES = {
    "openai": 1536,
    "openai-compatible": 1536,
    "openrouter": 1536,
    "qwen": 1024,
    "gemini": 3072,
}
WITHOUT_EMBEDDINGS = ("anthropic", "cerebras")


def test_it_knows_for_every_registered_provider_whether_it_embeds():
    assert set(EMBEDDING_MODELS) | set(WITHOUT_EMBEDDINGS) == set(PROFILES)
    assert {name for name, profile in PROFILES.items() if profile.has_embeddings} == set(
        EMBEDDING_MODELS
    )


def embed_request(provider: str, inputs=None, *, model=None, **fields) -> EmbeddingRequest:
    return EmbeddingRequest(
        model=model if model is not None else EMBEDDING_MODELS.get(provider, "some-model"),
        inputs=inputs if inputs is not None else ["hello world", "second input text"],
        **fields,
    )


@pytest.mark.parametrize("provider", sorted(EMBEDDING_MODELS))
async def test_it_embeds_with_every_provider_that_has_embeddings(simulator, provider):
    adapter = make_adapter(simulator, provider)
    try:
        result = await adapter.embed(embed_request(provider))
    finally:
        await adapter.aclose()
    assert len(result.vectors) == 2
    assert [len(v) for v in result.vectors] == [SIZES[provider]] * 2
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-6) for v in result.vectors)
    assert result.vectors[0] != result.vectors[1]
    if provider == "gemini":
        # Gemini's documented reply has no token count: the kit's estimate, flagged
        assert result.estimated and result.prompt_tokens == (11 // 4) + (17 // 4)
    else:
        assert not result.estimated and result.prompt_tokens == 5  # the simulator's words


@pytest.mark.parametrize("provider", sorted(EMBEDDING_MODELS))
async def test_it_honours_dimensions_with_every_provider(simulator, provider):
    adapter = make_adapter(simulator, provider)
    try:
        result = await adapter.embed(embed_request(provider, ["short"], dimensions=256))
    finally:
        await adapter.aclose()
    assert len(result.vectors[0]) == 256


async def test_it_sends_the_openai_wire_with_floats_whatever_the_caller_wants(simulator):
    simulator.clear_requests()
    adapter = make_adapter(simulator, "openai")
    try:
        result = await adapter.embed(
            embed_request("openai", ["x"], encoding_format="base64", user="tenant-7")
        )
    finally:
        await adapter.aclose()
    sent = simulator.requests()[-1]
    assert sent["path"] == "/openai/v1/embeddings"
    assert sent["body"] == {
        "model": "text-embedding-3-small",
        "input": ["x"],
        "encoding_format": "float",
        "user": "tenant-7",
    }
    # the gateway encodes: OpenAI's own base64 (little-endian float32) round-trips
    encoded = vector_to_base64(result.vectors[0])
    assert len(base64.b64decode(encoded)) == 4 * 1536
    assert struct.unpack("<2f", base64.b64decode(encoded)[:8]) == pytest.approx(
        result.vectors[0][:2], abs=1e-7
    )
    assert vector_from_base64(encoded) == pytest.approx(result.vectors[0], abs=1e-7)


async def test_it_sends_gemini_batch_embed_contents_with_the_api_key_header(simulator):
    simulator.clear_requests()
    adapter = make_adapter(simulator, "gemini")
    try:
        await adapter.embed(embed_request("gemini", ["one"], dimensions=8))
    finally:
        await adapter.aclose()
    sent = simulator.requests()[-1]
    assert sent["path"] == "/gemini/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent["headers"]["x-goog-api-key"].endswith("1234")
    assert sent["body"] == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "one"}]},
                "outputDimensionality": 8,
            }
        ]
    }


async def test_it_embeds_token_id_lists_on_the_openai_wire_only(simulator):
    adapter = make_adapter(simulator, "openai")
    gemini = make_adapter(simulator, "gemini")
    try:
        result = await adapter.embed(embed_request("openai", [[1, 2, 3]]))
        assert result.prompt_tokens == 3
        with pytest.raises(errors.InvalidRequestError, match="^input: .*text only"):
            await gemini.embed(embed_request("gemini", [[1, 2, 3]]))
    finally:
        await adapter.aclose()
        await gemini.aclose()


@pytest.mark.parametrize("provider", WITHOUT_EMBEDDINGS)
async def test_it_says_clearly_that_a_provider_has_no_embeddings(simulator, provider):
    simulator.clear_requests()
    adapter = make_adapter(simulator, provider)
    try:
        with pytest.raises(errors.InvalidRequestError) as caught:
            await adapter.embed(embed_request(provider))
    finally:
        await adapter.aclose()
    assert caught.value.code == "embeddings_not_supported"
    assert "not supported" in caught.value.message
    assert simulator.requests() == []  # refused before anything was sent


async def test_it_says_gemini_code_assist_has_no_embeddings(simulator):
    adapter = make_adapter(simulator, "gemini", access_token="ya29.token-1234", project_id="p-1")
    try:
        with pytest.raises(errors.InvalidRequestError, match="Code Assist") as caught:
            await adapter.embed(embed_request("gemini"))
    finally:
        await adapter.aclose()
    assert caught.value.code == "embeddings_not_supported"


@pytest.mark.parametrize("provider", sorted(EMBEDDING_MODELS))
async def test_it_classifies_a_bad_key_as_an_authentication_error(simulator, provider):
    adapter = make_adapter(simulator, provider, api_key="invalid-key-0001", access_token="")
    try:
        with pytest.raises(errors.AuthenticationError) as caught:
            await adapter.embed(embed_request(provider))
    finally:
        await adapter.aclose()
    assert "invalid-key-0001" not in caught.value.message
    assert caught.value.permanent and caught.value.scope == "credential"


@pytest.mark.parametrize("provider", sorted(EMBEDDING_MODELS))
async def test_it_classifies_an_unknown_model_as_not_found(simulator, provider):
    adapter = make_adapter(simulator, provider)
    try:
        with pytest.raises(errors.NotFoundError) as caught:
            await adapter.embed(embed_request(provider, model="no-such-embedder"))
    finally:
        await adapter.aclose()
    assert caught.value.status_code == 404
    assert caught.value.scope == "request"


async def test_it_keeps_a_chat_model_refused_by_openai_embeddings_on_that_model(simulator):
    adapter = make_adapter(simulator, "openai")
    try:
        with pytest.raises(errors.PermissionDeniedError) as caught:
            await adapter.embed(embed_request("openai", model="gpt-4o"))
    finally:
        await adapter.aclose()
    assert caught.value.status_code == 403
    assert caught.value.scope == "model" and not caught.value.permanent
    assert caught.value.model_specific  # never escalated to the credential


async def test_it_says_a_chat_model_is_not_found_for_gemini_embeddings(simulator):
    adapter = make_adapter(simulator, "gemini")
    try:
        with pytest.raises(errors.NotFoundError, match="batchEmbedContents"):
            await adapter.embed(embed_request("gemini", model="gemini-2.5-flash"))
    finally:
        await adapter.aclose()


@pytest.mark.parametrize("provider", sorted(EMBEDDING_MODELS))
async def test_it_reads_a_rate_limit_and_its_retry_after(simulator, provider):
    adapter = make_adapter(simulator, provider)
    model = EMBEDDING_MODELS[provider] + "-fail-rate_limit-retry-9s"
    try:
        with pytest.raises(errors.RateLimitError) as caught:
            await adapter.embed(embed_request(provider, model=model))
    finally:
        await adapter.aclose()
    assert caught.value.retry_after == 9
    assert caught.value.retryable and caught.value.scope == "credential"


@pytest.mark.parametrize(("provider", "count"), [("openai", 2049), ("qwen", 11), ("gemini", 101)])
async def test_it_refuses_more_inputs_than_the_provider_takes_before_sending(
    simulator, provider, count
):
    simulator.clear_requests()
    adapter = make_adapter(simulator, provider)
    try:
        with pytest.raises(errors.InvalidRequestError, match=f"^input: {count} inputs"):
            await adapter.embed(embed_request(provider, [f"t{i}" for i in range(count)]))
    finally:
        await adapter.aclose()
    assert simulator.requests() == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": ""}, "model"),
        ({"inputs": []}, "input"),
        ({"inputs": ["ok", ""]}, "input"),
        ({"inputs": ["text", [1, 2]]}, "input"),
        ({"inputs": [[1, -2]]}, "input"),
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": True}, "dimensions"),
        ({"encoding_format": "int8"}, "encoding_format"),
    ],
)
async def test_it_names_the_field_of_bad_input(simulator, fields, field):
    adapter = make_adapter(simulator, "openai")
    request = embed_request("openai")
    for name, value in fields.items():
        setattr(request, name, value)
    try:
        with pytest.raises(errors.InvalidRequestError, match=f"^{field}: ") as caught:
            await adapter.embed(request)
    finally:
        await adapter.aclose()
    assert caught.value.code == "invalid_value"


async def test_it_gives_up_on_a_hanging_provider_at_the_deadline(simulator):
    adapter = make_adapter(simulator, "openai")
    started = time.monotonic()
    try:
        with pytest.raises(errors.TimeoutError):
            await adapter.embed(
                embed_request("openai", model="text-embedding-3-small-fail-hang"),
                deadline=time.monotonic() + 0.3,
            )
    finally:
        await adapter.aclose()
    assert time.monotonic() - started < 5


async def test_it_reads_the_rate_limit_headers_of_a_successful_reply(simulator):
    adapter = make_adapter(simulator, "openai")
    try:
        result = await adapter.embed(embed_request("openai", ["x"]))
    finally:
        await adapter.aclose()
    assert result.rate_limit is not None


def test_it_orders_vectors_by_index_and_estimates_missing_usage():
    from providers_app.kit.embeddings import OPENAI

    request = EmbeddingRequest(model="m", inputs=["first text", "second"])
    reply = {
        "data": [
            {"index": 1, "embedding": vector_to_base64([0.0, 1.0])},  # base64 regardless
            {"index": 0, "embedding": [1, 0.0]},
        ]
    }
    result = OPENAI.parse(reply, request, "compat")
    assert result.vectors == [[1.0, 0.0], [0.0, 1.0]]
    assert result.estimated and result.prompt_tokens == 2 + 1
    assert result.model == "m"


@pytest.mark.parametrize(
    "reply",
    [
        {},
        {"data": [{"embedding": [0.1]}]},  # one vector for two inputs
        {"data": [{"embedding": []}, {"embedding": [0.1]}]},
        {"data": [{"embedding": ["x"]}, {"embedding": [0.1]}]},
        {"data": [{"embedding": "%%%"}, {"embedding": [0.1]}]},
        {"data": [{"embedding": [float("nan")]}, {"embedding": [0.1]}]},
    ],
)
def test_it_calls_a_reply_that_is_not_the_wire_a_protocol_error(reply):
    from providers_app.kit.embeddings import OPENAI

    with pytest.raises(errors.ProtocolError):
        OPENAI.parse(reply, EmbeddingRequest(model="m", inputs=["a", "b"]), "compat")
