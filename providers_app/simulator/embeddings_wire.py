"""Embeddings wire formats: OpenAI's ``/embeddings`` (and the dialects that have it) and
Gemini's ``:embedContent`` / ``:batchEmbedContents``.

Vectors are deterministic: seeded from a hash of the model and the input, so the same
text always gets the same vector (a response cache can be checked) and different texts
different ones. A model's full vector is unit length. A shortened one (``dimensions``)
is re-normalised on the OpenAI wires, as OpenAI's text-embedding-3 does; on Gemini it is
only truncated, as Gemini documents (only its full 3072-value vector is normalised).

Only embedding models embed: an id counts as one when it is a catalogue id below, or
starts with one followed by ``-`` (so ``text-embedding-3-small-fail-rate_limit`` picks a
failure the way chat model ids do). Auth, failure knobs and their error envelopes are
the chat routes' own. Cerebras has no embeddings endpoint, so the simulator has none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
from dataclasses import dataclass

from aiohttp import web

from providers_app.simulator import behaviour, gemini_errors
from providers_app.simulator.context import INVALID_JSON, default_delay, json_body
from providers_app.simulator.credentials import bearer_token, mask
from providers_app.simulator.failures import STATUS_MODES, read_knobs, unknown_mode_message
from providers_app.simulator.ids import new_id
from providers_app.simulator.openai_flavours import Flavour, authorised_body, error_response
from providers_app.simulator.streaming import json_response, respond_plain


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    id: str
    size: int  # the full vector's length
    # ``dimensions`` it accepts: None = none at all, () = any from 1 to ``size``
    dimensions: tuple[int, ...] | None = ()
    max_inputs: int = 2048


_DASHSCOPE_V4_SIZES = (2048, 1536, 1024, 768, 512, 256, 128, 64)
_DASHSCOPE_V3_SIZES = (1024, 768, 512, 256, 128, 64)

MODELS: dict[str, tuple[EmbeddingModel, ...]] = {
    "openai": (
        EmbeddingModel("text-embedding-3-small", 1536),
        EmbeddingModel("text-embedding-3-large", 3072),
        EmbeddingModel("text-embedding-ada-002", 1536, dimensions=None),
    ),
    "qwen": (
        EmbeddingModel("text-embedding-v4", 1024, _DASHSCOPE_V4_SIZES, max_inputs=10),
        EmbeddingModel("text-embedding-v3", 1024, _DASHSCOPE_V3_SIZES, max_inputs=10),
        EmbeddingModel("text-embedding-v2", 1536, None, max_inputs=25),
        EmbeddingModel("text-embedding-v1", 1536, None, max_inputs=25),
    ),
    "openrouter": (
        EmbeddingModel("openai/text-embedding-3-small", 1536),
        EmbeddingModel("openai/text-embedding-3-large", 3072),
        EmbeddingModel("qwen/qwen3-embedding-8b", 4096),
        EmbeddingModel("google/gemini-embedding-001", 3072),
    ),
    "gemini": (
        EmbeddingModel("gemini-embedding-001", 3072, max_inputs=100),
        EmbeddingModel("text-embedding-004", 768, max_inputs=100),
        EmbeddingModel("embedding-001", 768, dimensions=None, max_inputs=100),
    ),
}


def find_model(provider: str, model_id: str) -> EmbeddingModel | None:
    best = None
    for model in MODELS.get(provider, ()):
        if (model_id == model.id or model_id.startswith(model.id + "-")) and (
            best is None or len(model.id) > len(best.id)
        ):
            best = model
    return best


def vector(model: str, item: str | list[int], size: int) -> list[float]:
    """A unit vector of ``size`` values, the same every time for the same model and input."""
    seed_text = item if isinstance(item, str) else json.dumps(item)
    seed = hashlib.sha256(f"{model}\x00{seed_text}".encode()).digest()
    rng = random.Random(int.from_bytes(seed[:16], "big"))
    values = [rng.gauss(0.0, 1.0) for _ in range(size)]
    return _normalised(values)


def _base64(values: list[float]) -> str:
    """OpenAI's ``encoding_format=base64``: little-endian float32 bytes. Written here, not
    taken from the kit: the simulator is the kit's judge, so it shares none of its code."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def _normalised(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _tokens(item: str | list[int]) -> int:
    """Usage as the chat routes count it: words (token-id lists count their ids)."""
    return len(item) if isinstance(item, list) else max(1, behaviour.count_words(item))


# ---------------------------------------------------------------- OpenAI and dialects


def openai_handler(flavour: Flavour):
    async def handle(request: web.Request) -> web.StreamResponse:
        body = authorised_body(request, flavour)
        if isinstance(body, web.Response):
            return body
        model_id = body.get("model")
        if not isinstance(model_id, str) or not model_id:
            return _invalid(flavour, "you must provide a model parameter", "model")
        knobs = read_knobs(request.headers, model_id, default_delay(request))
        if knobs.unknown_fail:
            return _invalid(flavour, unknown_mode_message(knobs.unknown_fail), None)
        if knobs.fail in STATUS_MODES or knobs.fail == "midstream_error":
            mode = "server" if knobs.fail == "midstream_error" else knobs.fail
            key = mask(bearer_token(request.headers) or "")
            return error_response(
                flavour, mode, model=model_id, key=key, retry_after=knobs.retry_after
            )
        model = find_model(flavour.name, model_id)
        if model is None:
            if flavour.name == "openai" and model_id in flavour.models_by_id:
                # a chat model, as OpenAI answers it (public bug reports: 403, no code)
                return json_response(
                    {
                        "error": {
                            "message": "You are not allowed to generate embeddings from this model",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": None,
                        }
                    },
                    status=403,
                    headers={"x-request-id": new_id("req_")},
                )
            return error_response(flavour, "not_found", model=model_id)
        inputs = _openai_inputs(body.get("input"))
        if inputs is None:
            return _invalid(
                flavour,
                "'$.input' is invalid. It must be a non-empty string, a list of non-empty "
                "strings, or a list of token-id lists.",
                "input",
            )
        if flavour.name == "qwen" and not all(isinstance(i, str) for i in inputs):
            return _invalid(flavour, "input.contents should be a list of strings", "input")
        if len(inputs) > model.max_inputs:
            return _invalid(
                flavour,
                f"batch size is invalid, it should not be larger than {model.max_inputs}: "
                f"{len(inputs)} inputs given.",
                "input",
            )
        dimensions = body.get("dimensions")
        problem = _dimensions_problem(model, dimensions)
        if problem:
            return _invalid(flavour, problem, "dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return _invalid(
                flavour,
                f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
                "encoding_format",
            )
        size = dimensions if isinstance(dimensions, int) else model.size
        data = []
        for index, item in enumerate(inputs):
            values = vector(model.id, item, model.size)
            if size != model.size:
                values = _normalised(values[:size])
            data.append(
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": _base64(values) if encoding == "base64" else values,
                }
            )
        tokens = sum(_tokens(item) for item in inputs)
        reply: dict = {
            "object": "list",
            "data": data,
            "model": model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if flavour.name == "qwen":
            reply["id"] = new_id("")
        headers = {"x-request-id": new_id("req_"), **flavour.success_headers}
        return await respond_plain(request, knobs, json_response(reply, headers=headers))

    return handle


def _invalid(flavour: Flavour, message: str, param: str | None) -> web.Response:
    code = "invalid_parameter_error" if flavour.name == "qwen" else "invalid_value"
    return error_response(flavour, "bad_request", message=message, param=param, code=code)


def _openai_inputs(value: object) -> list[str | list[int]] | None:
    """OpenAI's ``input``: a text, a token-id list, or a list of either; None when bad."""
    if isinstance(value, str):
        return [value] if value else None
    if not isinstance(value, list) or not value:
        return None
    if all(_is_token(t) for t in value):
        return [value]
    items: list[str | list[int]] = []
    for item in value:
        if isinstance(item, str) and item:
            items.append(item)
        elif isinstance(item, list) and item and all(_is_token(t) for t in item):
            items.append(item)
        else:
            return None
    return items


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _dimensions_problem(model: EmbeddingModel, dimensions: object) -> str | None:
    if dimensions is None:
        return None
    if model.dimensions is None:
        return "This model does not support specifying dimensions."
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        return f"Invalid 'dimensions': {dimensions!r}; expected a positive integer."
    if dimensions > model.size:
        return f"Invalid 'dimensions': {dimensions}; {model.id} has at most {model.size}."
    if model.dimensions and dimensions not in model.dimensions:
        allowed = ", ".join(str(d) for d in model.dimensions)
        return f"Invalid 'dimensions': {dimensions}; {model.id} supports {allowed}."
    return None


# ---------------------------------------------------------------- Gemini


async def gemini_embed_handler(request: web.Request) -> web.StreamResponse:
    """``models/{model}:embedContent``: one content, reply ``{"embedding": {"values"}}``."""
    return await _gemini(request, batch=False)


async def gemini_batch_handler(request: web.Request) -> web.StreamResponse:
    """``models/{model}:batchEmbedContents``: ``requests[]``, reply ``embeddings[]``."""
    return await _gemini(request, batch=True)


async def _gemini(request: web.Request, *, batch: bool) -> web.StreamResponse:
    denied = gemini_errors.check_auth(request)
    if denied is not None:
        return denied
    model_id = request.match_info["model"]
    method = "batchEmbedContents" if batch else "embedContent"
    version = request.match_info.get("version", "v1beta")
    body = json_body(request)
    if body is INVALID_JSON or not isinstance(body, dict):
        return gemini_errors.error_response("bad_request", message="Invalid JSON payload received.")
    knobs = read_knobs(
        request.headers, model_id, default_delay(request), [request.query.get("key", "")]
    )
    if knobs.unknown_fail:
        return gemini_errors.error_response(
            "bad_request", message=unknown_mode_message(knobs.unknown_fail)
        )
    if knobs.fail in STATUS_MODES or knobs.fail == "midstream_error":
        mode = "overloaded" if knobs.fail == "midstream_error" else knobs.fail
        return gemini_errors.error_response(mode, model=model_id, retry_after=knobs.retry_after)
    model = find_model("gemini", model_id)
    if model is None:
        return gemini_errors.error_response(
            "not_found",
            message=f"models/{model_id} is not found for API version {version}, or is not "
            f"supported for {method}. Call ListModels to see the list of available models "
            "and their supported methods.",
        )
    if batch:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _gemini_invalid("* BatchEmbedContentsRequest.requests: requests is required")
        if len(requests) > model.max_inputs:
            return _gemini_invalid(
                "* BatchEmbedContentsRequest.requests: at most "
                f"{model.max_inputs} requests can be in one batch"
            )
    else:
        requests = [body]
    texts: list[str] = []
    sizes: list[int] = []
    for index, entry in enumerate(requests):
        where = f"requests[{index}]" if batch else "EmbedContentRequest"
        if not isinstance(entry, dict):
            return _gemini_invalid(f"* {where}: must be an object")
        named = entry.get("model")
        if batch and named not in (None, f"models/{model_id}", model_id):
            return _gemini_invalid(
                f"Model in request ({named}) does not match the model in the path "
                f"(models/{model_id})."
            )
        text = _content_text(entry.get("content"))
        if not text:
            return _gemini_invalid(f"* {where}.content: content is not specified or empty")
        dimensions = entry.get("outputDimensionality", entry.get("output_dimensionality"))
        problem = _dimensions_problem(model, dimensions)
        if problem:
            return _gemini_invalid(f"* {where}.output_dimensionality: {problem}")
        texts.append(text)
        sizes.append(dimensions if isinstance(dimensions, int) else model.size)
    # Gemini truncates a shortened vector without re-normalising it (see the docstring)
    embeddings = [
        {"values": vector(model.id, text, model.size)[:size]}
        for text, size in zip(texts, sizes, strict=True)
    ]
    reply: dict = {"embeddings": embeddings} if batch else {"embedding": embeddings[0]}
    return await respond_plain(request, knobs, json_response(reply))


def _gemini_invalid(message: str) -> web.Response:
    return gemini_errors.error_response("bad_request", message=message)


def _content_text(content: object) -> str:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return ""
    return " ".join(
        part["text"]
        for part in content["parts"]
        if isinstance(part, dict) and isinstance(part.get("text"), str) and part["text"]
    )
