"""Embeddings: the request and reply the kit speaks, and each provider's wire for them.

Framework-free like the rest of the kit. ``BaseAdapter.embed`` sends and receives
through the adapter's own send path (auth headers, deadlines, error classification);
this module only knows the wire: the URL, the request body and how to read the reply,
per provider type.

Which providers embed (checked against each provider's documentation, 2025-12):

- OpenAI ``POST /v1/embeddings``: text or token-id arrays, at most 2048 inputs,
  ``dimensions`` (text-embedding-3 only), ``encoding_format`` float | base64.
- OpenRouter ``POST /api/v1/embeddings``: the same OpenAI shape (its embeddings API
  fronts other vendors' models: ``openai/text-embedding-3-small`` ...).
- Qwen: DashScope's compatible mode ``POST /compatible-mode/v1/embeddings``: text only,
  at most 10 inputs a request for text-embedding-v3/v4 (25 for v1/v2), ``dimensions``
  for v3/v4 only.
- Any OpenAI-compatible endpoint (the ``openai`` adapter pointed elsewhere): the OpenAI
  shape; what the server accepts is its own business.
- Gemini ``POST /v1beta/models/{model}:batchEmbedContents`` with
  ``requests[].content.parts[].text`` and ``outputDimensionality``; the reply is
  ``embeddings[].values`` and, in the documented REST reference, no token count: the
  kit estimates one (flagged ``estimated``) unless a ``usageMetadata`` is present. At
  most 100 requests a batch. Code Assist (OAuth + project) has no embeddings method.
- Cerebras (chat and completions only) and Anthropic (no embeddings API; it points
  to Voyage AI) cannot embed: asking them is a clear ``InvalidRequestError`` with code
  ``embeddings_not_supported``, before anything is sent.

``encoding_format``: the kit always asks the provider for floats and returns floats;
the gateway encodes base64 for a caller who asked for it (``vector_to_base64``, the
same little-endian float32 bytes OpenAI sends). One vector type for every provider
(Gemini and DashScope have no base64), so the response cache and the usage records
need not know how a caller wanted its numbers.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from dataclasses import dataclass
from typing import Any, Literal

from . import errors

EncodingFormat = Literal["float", "base64"]
ENCODING_FORMATS: tuple[EncodingFormat, ...] = ("float", "base64")

NOT_SUPPORTED = "embeddings_not_supported"


@dataclass(slots=True)
class EmbeddingRequest:
    """``inputs`` is a list of texts, or a list of token-id lists (OpenAI's wire only)."""

    model: str
    inputs: list[str] | list[list[int]]
    dimensions: int | None = None
    encoding_format: EncodingFormat = "float"
    user: str | None = None


@dataclass(slots=True)
class EmbeddingResponse:
    """One vector per input, in input order. ``prompt_tokens`` is the provider's count,
    or the kit's estimate (4 characters a token) with ``estimated`` set when it sent none."""

    model: str
    vectors: list[list[float]]
    prompt_tokens: int
    estimated: bool = False
    rate_limit: Any = None


def vector_to_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format=base64``: the vector as little-endian float32 bytes."""
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def vector_from_base64(text: str) -> list[float]:
    packed = array("f")
    # validate: a non-base64 character is an error, not something to skip over;
    # frombytes raises ValueError on a length that is not whole float32s
    packed.frombytes(base64.b64decode(text, validate=True))
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tolist()


def estimate_tokens(inputs: list[str] | list[list[int]]) -> int:
    """Token-id inputs count themselves; texts at 4 characters a token."""
    total = 0
    for item in inputs:
        total += len(item) if isinstance(item, list) else max(1, len(item) // 4)
    return max(1, total)


# ---------------------------------------------------------------- the wires


class EmbeddingsWire:
    """How one provider type's embeddings endpoint is spoken."""

    name = ""
    token_inputs = False  # does the endpoint take token-id arrays as well as text?
    dimensions_field = "dimensions"

    def max_inputs(self, model: str) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def url(self, base_url: str, model: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def body(self, request: EmbeddingRequest) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def parse(
        self, body: Any, request: EmbeddingRequest, provider: str
    ) -> EmbeddingResponse:  # pragma: no cover - interface
        raise NotImplementedError


class OpenAIEmbeddings(EmbeddingsWire):
    """OpenAI's ``/embeddings`` and the compatible dialects (OpenRouter, DashScope)."""

    def __init__(
        self, name: str, *, token_inputs: bool, max_inputs: int, send_user: bool = True
    ) -> None:
        self.name = name
        self.token_inputs = token_inputs
        self._max_inputs = max_inputs
        self._send_user = send_user

    def max_inputs(self, model: str) -> int:
        return self._max_inputs

    def url(self, base_url: str, model: str) -> str:
        return f"{base_url}/embeddings"

    def body(self, request: EmbeddingRequest) -> dict[str, Any]:
        # floats always: see the module docstring
        body: dict[str, Any] = {
            "model": request.model,
            "input": request.inputs,
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user and self._send_user:
            body["user"] = request.user
        return body

    def parse(self, body: Any, request: EmbeddingRequest, provider: str) -> EmbeddingResponse:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise _malformed(provider, "no data list")
        indexed: list[tuple[int, list[float]]] = []
        for position, entry in enumerate(data):
            if not isinstance(entry, dict):
                raise _malformed(provider, "an embedding that is not an object")
            index = entry.get("index", position)
            indexed.append(
                (
                    index if isinstance(index, int) else position,
                    _vector(entry.get("embedding"), provider),
                )
            )
        indexed.sort(key=lambda pair: pair[0])
        vectors = [vector for _, vector in indexed]
        _check_count(vectors, request, provider)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens") or usage.get("total_tokens")
        model = body.get("model") if isinstance(body.get("model"), str) else request.model
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
            return EmbeddingResponse(model=model, vectors=vectors, prompt_tokens=tokens)
        return EmbeddingResponse(
            model=model,
            vectors=vectors,
            prompt_tokens=estimate_tokens(request.inputs),
            estimated=True,
        )


class QwenEmbeddings(OpenAIEmbeddings):
    """DashScope's compatible mode: 10 inputs a request for v3/v4, 25 for v1/v2."""

    def max_inputs(self, model: str) -> int:
        return 25 if model in ("text-embedding-v1", "text-embedding-v2") else 10


class GeminiEmbeddings(EmbeddingsWire):
    """``models/{model}:batchEmbedContents`` (what google-genai's ``embed_content`` calls)."""

    name = "gemini"
    token_inputs = False
    dimensions_field = "outputDimensionality"

    def max_inputs(self, model: str) -> int:
        return 100

    def url(self, base_url: str, model: str) -> str:
        return f"{base_url}/v1beta/models/{_gemini_model(model)}:batchEmbedContents"

    def body(self, request: EmbeddingRequest) -> dict[str, Any]:
        model = f"models/{_gemini_model(request.model)}"
        requests = []
        for text in request.inputs:
            entry: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if request.dimensions is not None:
                entry["outputDimensionality"] = request.dimensions
            requests.append(entry)
        return {"requests": requests}

    def parse(self, body: Any, request: EmbeddingRequest, provider: str) -> EmbeddingResponse:
        embeddings = body.get("embeddings") if isinstance(body, dict) else None
        if not isinstance(embeddings, list):
            raise _malformed(provider, "no embeddings list")
        vectors = [
            _vector(entry.get("values") if isinstance(entry, dict) else None, provider)
            for entry in embeddings
        ]
        _check_count(vectors, request, provider)
        usage = body.get("usageMetadata")
        tokens = usage.get("promptTokenCount") if isinstance(usage, dict) else None
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
            return EmbeddingResponse(model=request.model, vectors=vectors, prompt_tokens=tokens)
        return EmbeddingResponse(
            model=request.model,
            vectors=vectors,
            prompt_tokens=estimate_tokens(request.inputs),
            estimated=True,
        )


OPENAI = OpenAIEmbeddings("openai", token_inputs=True, max_inputs=2048)
OPENROUTER = OpenAIEmbeddings("openrouter", token_inputs=True, max_inputs=2048)
# DashScope documents neither token-id input nor a ``user`` field for embeddings
QWEN = QwenEmbeddings("qwen", token_inputs=False, max_inputs=10, send_user=False)
GEMINI = GeminiEmbeddings()

# by adapter provider_type; the openai-compatible profile uses the openai adapter
WIRES: dict[str, EmbeddingsWire] = {
    "openai": OPENAI,
    "openrouter": OPENROUTER,
    "qwen": QWEN,
    "gemini": GEMINI,
}
WHY_NOT: dict[str, str] = {
    "anthropic": "Anthropic has no embeddings API",
    "cerebras": "Cerebras serves chat and completions only, no embeddings",
}


def wire_for(provider_type: str, provider: str, *, code_assist: bool = False) -> EmbeddingsWire:
    """The provider type's embeddings wire, or the clear refusal of one that has none."""
    wire = None if code_assist else WIRES.get(provider_type)
    if wire is None:
        why = (
            "Gemini Code Assist (OAuth with a project) has no embeddings method; use an API key"
            if code_assist
            else WHY_NOT.get(provider_type, f"{provider_type} has no embeddings endpoint")
        )
        raise errors.InvalidRequestError(
            f"{provider}: embeddings are not supported: {why}",
            provider=provider,
            code=NOT_SUPPORTED,
        )
    return wire


def validate(request: EmbeddingRequest, wire: EmbeddingsWire, provider: str) -> None:
    """Bad input fails here, naming its field, before anything is sent."""

    def bad(field: str, problem: str) -> errors.InvalidRequestError:
        return errors.InvalidRequestError(
            f"{field}: {problem}", provider=provider, code="invalid_value"
        )

    if not isinstance(request.model, str) or not request.model.strip():
        raise bad("model", "an embedding model is required")
    inputs = request.inputs
    if not isinstance(inputs, list) or not inputs:
        raise bad("input", "must be a non-empty list of texts or of token-id lists")
    limit = wire.max_inputs(request.model)
    if len(inputs) > limit:
        raise bad("input", f"{len(inputs)} inputs; {provider} takes at most {limit} a request")
    texts = all(isinstance(item, str) for item in inputs)
    if texts:
        if any(not item for item in inputs):
            raise bad("input", "an input is an empty string")
    elif all(isinstance(item, list) for item in inputs):
        if not wire.token_inputs:
            raise bad("input", f"{provider} embeds text only, not token-id lists")
        for item in inputs:
            if not item or not all(
                isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item
            ):
                raise bad("input", "each token-id list must hold non-negative integers")
    else:
        raise bad("input", "must be all texts or all token-id lists")
    dimensions = request.dimensions
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1
    ):
        raise bad("dimensions", "must be a positive integer")
    if request.encoding_format not in ENCODING_FORMATS:
        raise bad("encoding_format", "must be 'float' or 'base64'")


# ---------------------------------------------------------------- helpers


def _gemini_model(model: str) -> str:
    return model.removeprefix("models/")


def _vector(value: Any, provider: str) -> list[float]:
    if isinstance(value, str):  # a compatible server that sent base64 regardless
        try:
            decoded = vector_from_base64(value)
        except ValueError as exc:  # binascii.Error is a ValueError
            raise _malformed(provider, "an embedding that is not base64 float32") from exc
        if not decoded:
            raise _malformed(provider, "an embedding without numbers")
        return decoded
    if not isinstance(value, list) or not value:
        raise _malformed(provider, "an embedding without numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise _malformed(provider, "an embedding with a value that is not a number")
    vector = [float(v) for v in value]
    if not all(math.isfinite(v) for v in vector):  # json's reading lets NaN through
        raise _malformed(provider, "an embedding with a value that is not finite")
    return vector


def _check_count(vectors: list[list[float]], request: EmbeddingRequest, provider: str) -> None:
    if len(vectors) != len(request.inputs):
        raise _malformed(provider, f"{len(vectors)} embeddings for {len(request.inputs)} inputs")


def _malformed(provider: str, what: str) -> errors.ProtocolError:
    return errors.ProtocolError(f"{provider}: embeddings reply has {what}", provider=provider)
