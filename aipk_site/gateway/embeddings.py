"""``POST /v1/embeddings``: OpenAI's embeddings operation on the chat request path.

What ``client.embeddings.create(...)`` sends (``model``, ``input`` as a string, a list
of strings, a token-id list or a list of them, ``dimensions``, ``encoding_format``
float | base64 -- the openai SDK asks base64 by default and decodes it --, ``user``) is
parsed here, every bad field a 400 naming it. The request then walks chat's path,
reused rather than copied (dispatch.py): the model resolved by ``route``
(aliases too), the admission ``reserve`` shares with chat (RPM, TPM with the input's
token estimate, a budget reservation at the embedding price: embeddings have no reply
tokens), the candidate loop with failover under one deadline (``first_answer``), the
provider's credential pool, breaker and retries (providers_app/services/embeddings.py),
the shutdown drain, and the ``Ledger``, which settles and writes the one usage row
(endpoint ``embeddings``, completion tokens 0) whatever ends the request.

A provider type without an embeddings API (Anthropic, Cerebras) is refused before
anything is reserved: a direct ``provider/model`` with a 400 naming the provider, an
alias by skipping such candidates (a 400 naming them when none is left). The same goes
for input a candidate's wire cannot take (too many inputs for Qwen, token ids for
Gemini): checked here against each candidate, so failover never lands on a provider
that would refuse it.

A key with ``cache_enabled`` serves a repeated request from the response cache
(response_cache.py: tenant-scoped keys over the model, the inputs as sent upstream and
``dimensions``) without calling a provider, accounted by chat's rule
(``account_cache_hit``: a cached row costing nothing, the saving recorded) and
answered with ``x-aipk-cache: hit`` (``miss`` when it went upstream). Chat's per-request
``aipk.cache`` switch is not an OpenAI embeddings field, so it is refused by name here
like any other unknown field; the key's setting decides.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.conf import settings

from aipk_site.gateway.dispatch import (
    account_cache_hit,
    first_answer,
    reply_headers,
    reserve,
    route,
    under_shutdown,
)
from aipk_site.gateway.formats.common import ParsedRequest
from aipk_site.gateway.key_auth import KeyContext
from aipk_site.gateway.ledger import (
    GatewayCall,
    Ledger,
    close_on_exit,
    log_infrastructure_fault,
)
from aipk_site.gateway.redaction import redact_text
from aipk_site.gateway.response_cache import (
    embedding_cache_get,
    embedding_cache_key,
    embedding_cache_put,
)
from aipk_site.gateway.routing import Candidate, Resolution
from aipk_site.infra.errors import AipkError, InvalidRequest
from aipk_site.infra.log_context import bind_request_id
from providers_app.kit import embeddings as kit
from providers_app.kit import errors as kit_errors
from providers_app.kit.embeddings import EmbeddingRequest, EmbeddingResponse
from providers_app.kit.providers import provider_profile
from providers_app.kit.types import ChatRequest, Usage
from providers_app.services.embeddings import provider_embed
from tenants_app.models import UsageStatus
from tenants_app.services.pricing import aprompt_cost_bound

__all__ = ["ENDPOINT", "ID_PREFIX", "Embedded", "embed", "parse_embeddings"]

ENDPOINT = "embeddings"  # the usage rows' and metrics' endpoint
ID_PREFIX = "emb-"  # the request id (x-request-id, the usage row); OpenAI's reply has no id

# OpenAI's own limit of inputs a request (the largest any embedding wire takes)
MAX_INPUTS = 2048
# The fields OpenAI's embeddings API takes. Anything else is refused by name (OpenAI
# answers "Unrecognized request argument supplied"), never silently dropped.
_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
# Tokens a tokenizer may add around each input (begin/end markers): part of the bound.
_INPUT_OVERHEAD_TOKENS = 2


@dataclasses.dataclass(slots=True)
class Embedded:
    """The OpenAI reply body and the answer's headers."""

    body: dict[str, Any]
    headers: dict[str, str]


# -- parsing -------------------------------------------------------------------------


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _token_list(value: list[Any], param: str, limit: int) -> list[int]:
    if not value:
        raise _bad(param, "a token-id list must not be empty")
    if len(value) > limit:
        raise _bad(param, f"a token-id list may hold at most {limit} ids")
    if not all(_is_int(t) and t >= 0 for t in value):
        raise _bad(param, "a token-id list must hold non-negative integers only")
    return value


def _inputs(value: Any) -> list[str] | list[list[int]]:
    """OpenAI's four ``input`` shapes as the kit's list of texts or of token-id lists."""
    limit = settings.GATEWAY_MAX_MESSAGE_CHARS
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _bad("input", "must be a string, an array of strings, or token-id arrays")
    if not value:
        raise _bad("input", "must not be empty")
    if all(_is_int(item) for item in value):  # one token-id list
        return [_token_list(value, "input", limit)]
    if len(value) > MAX_INPUTS:
        raise _bad("input", f"{len(value)} inputs; at most {MAX_INPUTS} a request")
    if all(isinstance(item, str) for item in value):
        for index, text in enumerate(value):
            if not text:
                raise _bad(f"input[{index}]", "an input must not be an empty string")
            if len(text) > limit:
                raise _bad(f"input[{index}]", f"an input may be at most {limit} characters")
        return list(value)
    if all(isinstance(item, list) for item in value):
        return [_token_list(item, f"input[{i}]", limit) for i, item in enumerate(value)]
    raise _bad("input", "must be all strings or all token-id arrays, not a mix")


def parse_embeddings(body: Any) -> EmbeddingRequest:
    """An OpenAI embeddings body as the kit's request; a bad field is a 400 naming it."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param="body")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise _bad(unknown[0], "unrecognized request argument for embeddings")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model", "an embedding model (an alias or '<provider>/<model>') is required")
    if "\x00" in model:  # stored with the usage row, and PostgreSQL cannot store NUL
        raise _bad("model", "must not contain a NUL character")
    if "input" not in body:
        raise _bad("input", "is required")
    inputs = _inputs(body["input"])
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _is_int(dimensions) or dimensions < 1):
        raise _bad("dimensions", "must be a positive integer")
    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"
    if encoding not in kit.ENCODING_FORMATS:
        raise _bad("encoding_format", "must be 'float' or 'base64'")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user", "must be a string")
    return EmbeddingRequest(
        model=model,
        inputs=inputs,
        dimensions=dimensions,
        encoding_format=encoding,
        user=user,
    )


def prompt_tokens_upper_bound(inputs: list[str] | list[list[int]]) -> int:
    """The most tokens the inputs can be (what a budget reserves): a text's UTF-8 length
    (byte-level tokenizers never make a token of less than a byte; pricing.py says why),
    a token-id list its length, each plus its markers."""
    total = 0
    for item in inputs:
        if isinstance(item, str):
            total += len(item.encode("utf-8", "surrogatepass"))
        else:
            total += len(item)
        total += _INPUT_OVERHEAD_TOKENS
    return total


# -- the request path ----------------------------------------------------------------


def _cannot_embed(candidate: Candidate, request: EmbeddingRequest) -> AipkError | None:
    """Why this candidate cannot take the request (its type has no embeddings, or its
    wire refuses this input), or None."""
    provider = candidate.provider
    try:
        profile = provider_profile(provider.type)
        wire = kit.wire_for(profile.adapter.provider_type, provider.name)
        kit.validate(dataclasses.replace(request, model=candidate.model), wire, provider.name)
    except kit_errors.InvalidRequestError as error:
        param = "model" if error.code == kit.NOT_SUPPORTED else str(error).split(":", 1)[0]
        return InvalidRequest(str(error), param=param, code=error.code or "invalid_value")
    return None


def _embedding_candidates(resolution: Resolution, request: EmbeddingRequest) -> Resolution:
    """The candidates that can take the request; the first refusal when none can."""
    usable, first_refusal = [], None
    for candidate in resolution.candidates:
        refusal = _cannot_embed(candidate, request)
        if refusal is None:
            usable.append(candidate)
        elif first_refusal is None:
            first_refusal = refusal
    if not usable:
        assert first_refusal is not None  # a resolution has at least one candidate
        raise first_refusal
    return dataclasses.replace(resolution, candidates=tuple(usable))


def _call(ctx: KeyContext, request: EmbeddingRequest, request_id: str) -> GatewayCall:
    # The ledger and admission speak of a GatewayCall: its parsed request only names
    # the model (for a usage row written before a candidate is known) and says "not a
    # stream"; no message of it is ever sent.
    stand_in = ChatRequest(model=request.model, messages=[])
    parsed = ParsedRequest(request=stand_in, stream=False, include_usage=False, cache=False)
    return GatewayCall(ctx, parsed, ENDPOINT, request_id)


async def _admit(call: GatewayCall, ledger: Ledger, request: EmbeddingRequest) -> Resolution:
    """Route, check the candidates can embed, filter PII, reserve; a refusal is
    accounted (one REFUSED row) before it is raised."""
    ctx = call.ctx
    try:
        resolution = await route(call, ledger, request.model)
        try:
            resolution = _embedding_candidates(resolution, request)
        except AipkError:
            ledger.candidate = resolution.candidates[0]  # the row names the provider
            raise
        if ctx.pii_redaction and request.inputs and isinstance(request.inputs[0], str):
            request.inputs = [redact_text(text)[0] for text in request.inputs]
        bound = prompt_tokens_upper_bound(request.inputs)
        return await reserve(
            call,
            ledger,
            resolution,
            estimated_tokens=kit.estimate_tokens(request.inputs),
            cost_bound=lambda pairs: aprompt_cost_bound(pairs, bound),
        )
    except AipkError as error:
        await ledger.close(status=UsageStatus.REFUSED, error_type=error.code)
        raise
    except BaseException as error:
        await close_on_exit(ledger, error)
        raise


def _render(response: EmbeddingResponse, request: EmbeddingRequest, model: str) -> dict[str, Any]:
    base64 = request.encoding_format == "base64"
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": kit.vector_to_base64(vector) if base64 else vector,
            }
            for index, vector in enumerate(response.vectors)
        ],
        # the name the caller asked for, as chat replies do (an alias stays an alias)
        "model": model,
        "usage": {
            "prompt_tokens": response.prompt_tokens,
            "total_tokens": response.prompt_tokens,
        },
    }


async def _serve(call: GatewayCall, request: EmbeddingRequest) -> Embedded:
    ledger = Ledger(call)
    bind_request_id(call.request_id)
    resolution = await _admit(call, ledger, request)
    asked = request.model

    async def attempt(
        candidate: Candidate, _: ChatRequest, trace: dict[str, str], deadline: float
    ) -> EmbeddingResponse:
        return await provider_embed(
            candidate.provider,
            dataclasses.replace(request, model=candidate.model),
            tenant_id=call.ctx.tenant_id,
            trace=trace,
            deadline=deadline,
        )

    ctx = call.ctx
    # keyed after _admit: the inputs as sent upstream (PII masked when the tenant asks)
    key = (
        embedding_cache_key(tenant_id=ctx.tenant_id, request=request) if ctx.cache_enabled else None
    )
    try:
        hit = await embedding_cache_get(key) if key is not None else None
        if hit is not None:
            usage = Usage(prompt_tokens=hit.prompt_tokens, estimated=hit.estimated)
            await account_cache_hit(ledger, resolution, usage)
            return Embedded(_render(hit, request, asked), reply_headers(ledger, cache="hit"))
        _, response = await first_answer(call, ledger, resolution, attempt)
        ledger.first_token()
        usage = Usage(prompt_tokens=response.prompt_tokens, estimated=response.estimated)
        await ledger.close(status=UsageStatus.SUCCESS, usage=usage)
    except BaseException as error:
        await close_on_exit(ledger, error.__cause__ or error)
        raise
    if key is not None:
        try:
            await embedding_cache_put(key, response, ctx.cache_ttl_seconds)
        except Exception as error:  # noqa: BLE001 -- the reply is whole; logged
            log_infrastructure_fault(call, "caching the embeddings of", error)
    cache = None if key is None else "miss"
    return Embedded(_render(response, request, asked), reply_headers(ledger, cache=cache))


async def embed(ctx: KeyContext, request: EmbeddingRequest, request_id: str) -> Embedded:
    """The whole operation for an authenticated key and a parsed body: one usage row,
    whatever the outcome; errors raised as AipkErrors naming the request's id."""
    call = _call(ctx, request, request_id)
    return await under_shutdown(call, lambda: _serve(call, request))
