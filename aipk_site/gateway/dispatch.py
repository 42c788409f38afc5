"""The gateway's request path, shared by every transport (REST API, websocket).

    key context (already authenticated) → route the model → PII filter →
    admit (reserve the estimate) → response cache → candidates in order
    (the provider request path fails over between credentials; here, before
    the first byte, between candidates) → stream or reply → settle + one
    usage record.

Transports parse their wire format into a ``ParsedRequest``, call
``gateway_reply`` or ``gateway_stream`` and render what comes back; they hold
no logic of their own. A reply and a stream differ only in how one candidate
is tried (a whole reply, or a stream opened up to its first chunk) and in what
is made of the answer: ``_serve`` and ``first_answer`` hold everything else
once, so failover, the one deadline and the accounting cannot drift apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from aipk_site.gateway import shutdown
from aipk_site.gateway.admission import Limits, admit
from aipk_site.gateway.error_mapping import (
    infrastructure_fault,
    server_shutting_down,
    upstream_error,
)
from aipk_site.gateway.formats.common import response_as_chunks
from aipk_site.gateway.key_auth import KeyContext
from aipk_site.gateway.ledger import (
    GatewayCall,
    Ledger,
    close_on_exit,
    error_type_of,
    estimate_prompt_tokens,
    log_infrastructure_fault,
    usage_or_estimate,
)
from aipk_site.gateway.redaction import redact_request
from aipk_site.gateway.response_cache import cache_get, cache_key, cache_put
from aipk_site.gateway.routing import Candidate, Resolution, resolve_model
from aipk_site.gateway.stream_relay import relay_stream, replay, started
from aipk_site.infra import tracing
from aipk_site.infra.errors import AipkError
from aipk_site.infra.log_context import bind_request_id
from providers_app.kit import errors as kit_errors
from providers_app.kit.errors import ProviderError
from providers_app.kit.fields import UnsupportedFieldError, fit
from providers_app.kit.types import ChatChunk, ChatRequest, ChatResponse, Usage
from providers_app.models import Provider
from providers_app.services.chat import provider_chat, provider_stream, request_deadline
from providers_app.services.providers import provider_deadlines
from tenants_app.models import UsageStatus
from tenants_app.services.pricing import (
    DEFAULT_COMPLETION_ALLOWANCE_TOKENS,
    MAX_RESERVED_TOKENS,
    CostBound,
    acost_bound,
    aprice_for,
    cost_usd,
    unpriced_model_error,
)

__all__ = [
    "GatewayCall",
    "Reply",
    "StreamReply",
    "gateway_reply",
    "gateway_stream",
]

T = TypeVar("T")
Answer = TypeVar("Answer")

# Names the request fields dropped under the key's drop option (unknown to the format,
# or refused by the answering provider's type): never a silent drop.
DROPPED_HEADER = "x-aipk-dropped-params"

# Which credential a provider call used, filled in by providers_app.services.chat.
Trace = dict[str, str]


@dataclass(slots=True)
class Reply:
    response: ChatResponse
    headers: dict[str, str]


@dataclass(slots=True)
class StreamReply:
    """Headers are known before the first byte; ``chunks`` is already primed: the first
    chunk has arrived, so an error raised while opening could still become an HTTP status."""

    headers: dict[str, str]
    chunks: AsyncGenerator[ChatChunk, None]
    prompt_tokens_estimate: int
    ledger: Ledger

    def usage(self) -> Usage | None:
        """The usage accounted for this stream, once ``chunks`` is exhausted."""
        return self.ledger.final_usage


def _limits(ctx: KeyContext) -> tuple[Limits, Limits]:
    return (
        Limits(
            rpm=ctx.rpm,
            tpm=ctx.tpm,
            max_concurrent=ctx.max_concurrent_streams,
            budget_micro_usd=ctx.budget_micro_usd,
        ),
        Limits(
            rpm=ctx.tenant_rpm, tpm=ctx.tenant_tpm, budget_micro_usd=ctx.tenant_budget_micro_usd
        ),
    )


def _budget_scope(key_limits: Limits, tenant_limits: Limits) -> str:
    """Which budget the request falls under ("key", "tenant"), or "" for none."""
    if key_limits.budget_micro_usd is not None:
        return "key"
    return "tenant" if tenant_limits.budget_micro_usd is not None else ""


# Between a request's total deadline and its settle: the time to end and account it.
LEASE_MARGIN_SECONDS = 10.0


def _lease_seconds(resolution: Resolution) -> float:
    """A reservation's lease outlasts the request: its longest candidate's total
    deadline (retries and failover share it) plus a margin."""
    longest = max(provider_deadlines(c.provider).total for c in resolution.candidates)
    return longest + LEASE_MARGIN_SECONDS


async def reserve(
    call: GatewayCall,
    ledger: Ledger,
    resolution: Resolution,
    *,
    estimated_tokens: int,
    cost_bound: Callable[[list[tuple[Provider, str]]], Awaitable[CostBound]],
) -> Resolution:
    """The admission every operation that calls a provider shares (chat, embeddings):
    the key's and tenant's RPM, TPM (``estimated_tokens``) and concurrency, and, under a
    budget, a reservation of the most the request can cost (``cost_bound`` of the
    candidates: each operation knows its own bound). Candidates without a price are
    dropped under a budget (they would cost it nothing). Sets ``ledger.admission``;
    returns the resolution left. A refusal is raised for the caller to account."""
    ctx = call.ctx
    span = tracing.child_start("admission") if tracing.enabled else None
    try:
        key_limits, tenant_limits = _limits(ctx)
        candidates = resolution.candidates
        budget_scope = _budget_scope(key_limits, tenant_limits)
        reserved_micro = 0
        if budget_scope:
            # Only a budget needs the most the request can cost held up front; without
            # one the month's spend counter takes the real cost at settle (and the
            # bound's price and catalogue lookups are not paid per request).
            bound = await cost_bound([(c.provider, c.model) for c in candidates])
            reserved_micro = bound.cost_micro
            if bound.unpriced:
                # a model with no price would cost the budget nothing: use only priced ones
                priced = tuple(c for i, c in enumerate(candidates) if i not in bound.unpriced)
                if not priced:
                    ledger.candidate = candidates[0]
                    raise unpriced_model_error(
                        provider=candidates[0].provider,
                        model=candidates[0].model,
                        scope=budget_scope,
                    )
                resolution = dataclasses.replace(resolution, candidates=priced)
        ledger.admission = await admit(
            request_id=call.request_id,
            key_id=ctx.key_id,
            tenant_id=ctx.tenant_id,
            key_limits=key_limits,
            tenant_limits=tenant_limits,
            estimated_tokens=min(estimated_tokens, MAX_RESERVED_TOKENS),
            estimated_cost_micro=reserved_micro,
            stream=call.parsed.stream,
            lease_seconds=_lease_seconds(resolution),
        )
    except BaseException as error:
        if span is not None:
            tracing.child_end(span, error_type=error_type_of(error))
        raise
    if span is not None:
        tracing.child_end(span, budget=budget_scope, candidates=len(resolution.candidates))
    return resolution


async def route(call: GatewayCall, ledger: Ledger, model: str) -> Resolution:
    """``model`` resolved as the caller's key may use it, the route noted on the ledger.
    (Also the embeddings operation's first step: embeddings.py reuses this module's
    ``route``, ``reserve``, ``first_answer``, ``reply_headers`` and ``under_shutdown``.)"""
    ctx = call.ctx
    span = tracing.child_start("routing") if tracing.enabled else None
    try:
        resolution = await resolve_model(
            tenant_id=ctx.tenant_id,
            model=model,
            allowed_models=ctx.allowed_models,
            allowed_provider_ids=ctx.allowed_provider_ids,
        )
    except BaseException as error:
        if span is not None:
            tracing.child_end(span, error_type=error_type_of(error))
        raise
    ledger.alias = resolution.alias
    ledger.strategy = resolution.strategy
    if span is not None:
        tracing.child_end(
            span,
            model_alias=resolution.alias,
            strategy=resolution.strategy,
            candidates=len(resolution.candidates),
        )
    return resolution


async def _admit(call: GatewayCall, ledger: Ledger) -> tuple[Resolution, int]:
    """Route, filter and reserve; a refusal is accounted before it is raised.
    Returns the route and the prompt-token estimate the reservation used."""
    ctx, request = call.ctx, call.parsed.request
    try:
        resolution = await route(call, ledger, request.model)
        if ctx.pii_redaction:
            redact_request(request)
        # Rate limits (TPM) count a typical size; a budget reserves the most the request
        # can cost (docs/GATEWAY.md "Budgets"), settled to the real cost afterwards.
        prompt_tokens = estimate_prompt_tokens(request)
        completion_tokens = request.max_tokens or DEFAULT_COMPLETION_ALLOWANCE_TOKENS
        resolution = await reserve(
            call,
            ledger,
            resolution,
            estimated_tokens=prompt_tokens + completion_tokens,
            cost_bound=lambda pairs: acost_bound(pairs, request),
        )
    except AipkError as error:
        await ledger.close(status=UsageStatus.REFUSED, error_type=error.code)
        raise
    except BaseException as error:
        await close_on_exit(ledger, error)
        raise
    return resolution, prompt_tokens


def reply_headers(ledger: Ledger, *, cache: str | None) -> dict[str, str]:
    headers = {"x-request-id": ledger.call.request_id}
    if ledger.admission is not None:
        headers.update(ledger.admission.headers)
    if ledger.candidate is not None:
        headers["x-aipk-provider"] = ledger.candidate.provider.name
        headers["x-aipk-model"] = ledger.candidate.model
    if cache is not None:
        headers["x-aipk-cache"] = cache
    dropped = ledger.call.parsed.dropped + ledger.dropped
    if dropped:
        headers[DROPPED_HEADER] = ", ".join(dropped)
    return headers


def _cache_key_for(call: GatewayCall) -> str | None:
    wanted = call.parsed.cache if call.parsed.cache is not None else call.ctx.cache_enabled
    return cache_key(tenant_id=call.ctx.tenant_id, request=call.parsed.request) if wanted else None


async def _cache_hit(
    ledger: Ledger, key: str | None, resolution: Resolution
) -> ChatResponse | None:
    """A cached reply, accounted (as cached, its cost saved) before it is returned."""
    if key is None:
        return None
    hit = await cache_get(key)
    if hit is None:
        return None
    if ledger.call.ctx.capture_bodies:
        ledger.response_text = hit.text
    await account_cache_hit(ledger, resolution, hit.usage)
    return hit


async def account_cache_hit(ledger: Ledger, resolution: Resolution, usage: Usage) -> None:
    """The one rule for a response-cache hit (chat and embeddings): a successful row on
    the route's first candidate, marked cached, costing nothing (nothing is charged to
    the budget) and recording what the call would have cost at that candidate's price."""
    first = resolution.candidates[0]
    ledger.candidate = first
    ledger.price = await aprice_for(first.provider, first.model)
    saved = cost_usd(ledger.price, usage)
    ledger.first_token()
    await ledger.close(status=UsageStatus.SUCCESS, usage=usage, cached=True, cost_saved=saved)


def _try_next_candidate(error: ProviderError, deadline: float) -> bool:
    """Another provider may serve what this one could not, within the request's one budget;
    a bad request stays bad anywhere, and a generation slower than its deadline
    (a request-scope timeout, not retryable) would be as slow elsewhere. A field this
    provider's type cannot take (refused before anything was sent) may suit the next
    candidate's type."""
    if time.monotonic() >= deadline:
        return False
    return error.retryable or isinstance(
        error,
        (
            kit_errors.AuthenticationError,
            kit_errors.PermissionDeniedError,
            kit_errors.QuotaExceededError,
            kit_errors.NotFoundError,
            UnsupportedFieldError,
        ),
    )


def _more_telling(last: ProviderError | None, error: ProviderError) -> ProviderError:
    """The error to answer with after several candidates: the last one a provider actually
    answered with, over aipk's own "nothing available" (no credential, breaker open,
    connection pool full) from a later candidate that was never called."""
    if last is not None and error.scope == "local" and last.scope != "local":
        return last
    return error


def _interruption(error: BaseException) -> str:
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    return infrastructure_fault(error)


# How one candidate is tried: given its request (model already set), a trace for the
# credential it used and the request's one deadline, its answer or a ProviderError.
Attempt = Callable[[Candidate, ChatRequest, Trace, float], Awaitable[T]]


async def first_answer(
    call: GatewayCall, ledger: Ledger, resolution: Resolution, attempt: Attempt[T]
) -> tuple[ChatRequest, T]:
    """The one candidate loop: walk the route's candidates under one deadline (failover
    cannot multiply it) until one answers; the ledger follows the candidate being tried,
    so whatever ends the request is accounted against the right provider and credential.
    Raises the most telling provider error, mapped to what the client sees."""
    last: ProviderError | None = None
    # the first candidate whose type refused a field (kit/fields.py): the answer only
    # when no candidate could take the request and none failed otherwise
    refused: tuple[Candidate, UnsupportedFieldError] | None = None
    deadline = request_deadline(resolution.candidates[0].provider)
    drop = call.ctx.drop_unsupported
    for candidate in resolution.candidates:
        provider = candidate.provider
        request = call.parsed.request
        began = time.perf_counter()
        try:
            # a table lookup per candidate: a refused field tries the next candidate
            # (another provider type may take it) without calling this one
            request, ledger.dropped = fit(request, provider.type, provider.name, drop=drop)
        except UnsupportedFieldError as error:
            refused = refused or (candidate, error)
            ledger.attempt_ended(
                candidate, began, credential_id="", status="skipped", error_type=error.type
            )
            continue
        ledger.candidate = candidate
        ledger.price = await aprice_for(provider, candidate.model)
        if request.model != candidate.model:
            request = dataclasses.replace(request, model=candidate.model)
        if tracing.enabled:
            ledger.attempt_span = tracing.child_start(
                "upstream attempt", provider=provider.name, model=candidate.model
            )
        trace: Trace = {}
        try:
            answer = await attempt(candidate, request, trace, deadline)
        except ProviderError as error:
            ledger.credential_id = trace.get("credential_id", "")
            ledger.attempt_ended(
                candidate,
                began,
                credential_id=ledger.credential_id,
                status="error",
                error_type=error.type,
                http_status=error.status_code,
            )
            if isinstance(error, UnsupportedFieldError):
                refused = refused or (candidate, error)
            else:
                last = _more_telling(last, error)
            if _try_next_candidate(error, deadline):
                continue
            break
        except BaseException as error:
            # a cancel (the client left) or aipk's own fault: the log still shows the
            # candidate it interrupted
            ledger.credential_id = trace.get("credential_id", "")
            ledger.attempt_ended(
                candidate,
                began,
                credential_id=ledger.credential_id,
                status="error",
                error_type=_interruption(error),
            )
            raise
        ledger.credential_id = trace.get("credential_id", "")
        ledger.attempt_ended(
            candidate, began, credential_id=ledger.credential_id, status="answered"
        )
        return request, answer
    if last is None:
        assert refused is not None  # resolution always has at least one candidate
        ledger.candidate, last = refused
        ledger.dropped = []
        ledger.price = await aprice_for(ledger.candidate.provider, ledger.candidate.model)
    raise upstream_error(last) from last


async def _serve(
    call: GatewayCall,
    *,
    attempt: Attempt[T],
    from_cache: Callable[[ChatResponse, Ledger, int], Answer],
    answered: Callable[[ChatRequest, T, Ledger, str | None, int], Awaitable[Answer]],
) -> Answer:
    """Admit, try the cache, then the candidate loop; whatever escapes is accounted
    once (a provider error under its own type, not the mapped one)."""
    ledger = Ledger(call)
    bind_request_id(call.request_id)  # its log lines carry the id the client gets
    resolution, prompt_estimate = await _admit(call, ledger)
    try:
        key = _cache_key_for(call)
        hit = await _cache_hit(ledger, key, resolution)
        if hit is not None:
            return from_cache(hit, ledger, prompt_estimate)
        request, opened = await first_answer(call, ledger, resolution, attempt)
        return await answered(request, opened, ledger, key, prompt_estimate)
    except BaseException as error:
        await close_on_exit(ledger, error.__cause__ or error)
        raise


@contextmanager
def _answer_names_request(call: GatewayCall) -> Iterator[None]:
    """An error answer carries the request's id (``x-request-id``) like a reply does: it
    is the id of the request's usage row, so a failed call can be found in the usage."""
    try:
        yield
    except AipkError as error:
        error.headers.setdefault("x-request-id", call.request_id)
        if call.parsed.dropped:
            error.headers.setdefault(DROPPED_HEADER, ", ".join(call.parsed.dropped))
        raise


async def under_shutdown(call: GatewayCall, serve: Callable[[], Awaitable[T]]) -> T:
    """A shutdown drain waits for the request and, past its deadline, ends it with a 503
    ``server_shutting_down``; a draining server takes no new request."""
    if shutdown.is_draining():
        raise server_shutting_down()
    with shutdown.tracked(), _answer_names_request(call):
        try:
            return await serve()
        except asyncio.CancelledError:
            shutdown.raise_if_ended_by_shutdown()
            raise


async def gateway_reply(call: GatewayCall) -> Reply:
    """A whole reply: the first candidate that answers, accounted once."""
    return await under_shutdown(call, lambda: _reply(call))


async def gateway_stream(call: GatewayCall) -> StreamReply:
    """Open a stream on the first candidate that produces a first chunk, then relay it.
    Once open, the relay tracks itself for the shutdown drain (and, past its deadline,
    ends with an error event ``server_shutting_down``)."""
    return await under_shutdown(call, lambda: _open_stream(call))


# -- replies


async def _reply(call: GatewayCall) -> Reply:
    async def attempt(
        candidate: Candidate, request: ChatRequest, trace: Trace, deadline: float
    ) -> ChatResponse:
        return await provider_chat(
            candidate.provider,
            request,
            tenant_id=call.ctx.tenant_id,
            trace=trace,
            deadline=deadline,
        )

    def from_cache(hit: ChatResponse, ledger: Ledger, _: int) -> Reply:
        return Reply(hit, reply_headers(ledger, cache="hit"))

    async def answered(
        request: ChatRequest, response: ChatResponse, ledger: Ledger, key: str | None, _: int
    ) -> Reply:
        ledger.first_token()
        usage = usage_or_estimate(request, response.usage, len(response.text))
        response.usage = usage
        if call.ctx.capture_bodies:
            ledger.response_text = response.text
        await ledger.close(status=UsageStatus.SUCCESS, usage=usage)
        if key is not None:
            try:
                await cache_put(key, response, call.ctx.cache_ttl_seconds)
            except Exception as error:  # noqa: BLE001 -- the reply is whole; logged
                log_infrastructure_fault(call, "caching the reply of", error)
        return Reply(response, reply_headers(ledger, cache="miss" if key else None))

    return await _serve(call, attempt=attempt, from_cache=from_cache, answered=answered)


# -- streams

Opened = tuple[AsyncGenerator[ChatChunk, None], ChatChunk | None]


async def _open_stream(call: GatewayCall) -> StreamReply:
    async def attempt(
        candidate: Candidate, request: ChatRequest, trace: Trace, deadline: float
    ) -> Opened:
        """A stream counts as answered once its first chunk (or its end) has arrived:
        until then a failure may still fail over."""
        chunks = provider_stream(
            candidate.provider,
            request,
            tenant_id=call.ctx.tenant_id,
            trace=trace,
            deadline=deadline,
        )
        try:
            first: ChatChunk | None = await chunks.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await chunks.aclose()
            raise
        return chunks, first

    def from_cache(hit: ChatResponse, ledger: Ledger, prompt_estimate: int) -> StreamReply:
        return StreamReply(
            reply_headers(ledger, cache="hit"),
            replay(response_as_chunks(hit)),
            prompt_estimate,
            ledger,
        )

    async def answered(
        request: ChatRequest, opened: Opened, ledger: Ledger, key: str | None, estimate: int
    ) -> StreamReply:
        chunks, first = opened
        relay = await started(relay_stream(call, ledger, request, chunks, first, key))
        return StreamReply(
            reply_headers(ledger, cache="miss" if key else None), relay, estimate, ledger
        )

    return await _serve(call, attempt=attempt, from_cache=from_cache, answered=answered)
