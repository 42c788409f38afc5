"""The gateway's request path, shared by every transport (REST API, websocket).

    key context (already authenticated) → route the model → PII filter →
    admit (reserve the estimate) → response cache → candidates in order
    (the provider request path fails over between credentials; here, before
    the first byte, between candidates) → stream or reply → settle + one
    usage record.

Transports parse their wire format into a ``ParsedRequest``, call
``gateway_reply`` or ``gateway_stream`` and render what comes back; they hold
no logic of their own. ``Ledger`` makes "exactly one usage record and one
settle per request" hold on every path: success, provider error, refusal,
cache hit, client disconnect or cancel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import DatabaseError
from redis.exceptions import RedisError

from aipk_site.gateway import shutdown
from aipk_site.gateway.admission import Admission, Limits, admit, settle, settle_later
from aipk_site.gateway.formats.common import ParsedRequest, response_as_chunks
from aipk_site.gateway.key_auth import KeyContext
from aipk_site.gateway.redaction import redact_request
from aipk_site.gateway.response_cache import cache_get, cache_key, cache_put
from aipk_site.gateway.routing import Candidate, Resolution, record_latency, resolve_model
from aipk_site.gateway.usage import usage_record
from aipk_site.infra.errors import AipkError, LimitExceeded, UpstreamError, UpstreamRefused
from aipk_site.infra.log_context import bind_request_id
from aipk_site.infra.metrics import record_gateway_request, stream_ended, stream_started
from providers_app.kit import errors as kit_errors
from providers_app.kit.errors import ProviderError
from providers_app.kit.resilience import CircuitOpenError
from providers_app.kit.types import ChatChunk, ChatRequest, ChatResponse, ResponseBuilder, Usage
from providers_app.services.chat import provider_chat, provider_stream, request_deadline
from providers_app.services.providers import provider_deadlines
from tenants_app.models import UsageStatus
from tenants_app.services.pricing import (
    DEFAULT_COMPLETION_ALLOWANCE_TOKENS,
    MAX_RESERVED_TOKENS,
    Price,
    acost_bound,
    aprice_for,
    cost_micro,
    cost_usd,
    unpriced_model_error,
)

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # the kit's estimate when a provider reports no usage


def infrastructure_fault(error: BaseException) -> str:
    """The usage row's error_type for a failure of aipk's own infrastructure (not the
    provider's, not the client's): what an operator must fix, in one word."""
    if isinstance(error, RedisError):
        return "redis_unavailable"
    if isinstance(error, DatabaseError):
        return "database_unavailable"
    return "internal_error"


def server_shutting_down() -> AipkError:
    """What a request still running at the shutdown drain's deadline is told (a 503 or an
    error event): retry elsewhere, nothing is wrong with the request."""
    return UpstreamError(
        "aipk is shutting down; retry on another instance",
        status=503,
        code="server_shutting_down",
        retry_after=1,
    )


def _raise_if_ended_by_shutdown() -> None:
    """Called with a CancelledError in flight: when the drain deadline sent it, take the
    cancel back (the task must still answer its client) and raise what the client sees."""
    if not shutdown.ended_by_shutdown():
        return
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    raise server_shutting_down() from None


def infrastructure_unavailable() -> AipkError:
    """What a client is told when aipk's cache or database failed under its request: a
    503 it may retry (an error event once a stream has started)."""
    return UpstreamError(
        "aipk cannot reach its database or cache; retry shortly",
        status=503,
        code="service_unavailable",
        retry_after=1,
    )


@dataclass(slots=True)
class GatewayCall:
    ctx: KeyContext
    parsed: ParsedRequest
    endpoint: str  # "chat.completions", "messages", "ws"
    request_id: str


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


def estimate_prompt_tokens(request: ChatRequest) -> int:
    chars = sum(len(m.content or "") for m in request.messages)
    chars += sum(len(c.arguments) for m in request.messages for c in m.tool_calls)
    chars += sum(len(t.name) + len(t.description) + len(str(t.parameters)) for t in request.tools)
    return max(1, chars // CHARS_PER_TOKEN)


@dataclass(slots=True)
class Ledger:
    """Accounts one request exactly once: settle the admission, write the usage record."""

    call: GatewayCall
    started: float = field(default_factory=time.perf_counter)
    alias: str = ""
    candidate: Candidate | None = None
    credential_id: str = ""
    price: Price | None = None
    admission: Admission | None = None
    ttft_ms: float | None = None
    closed: bool = False
    # set when settling or recording failed on aipk's side (Redis or the database):
    # the request is still accounted once, and a stream ends with an error event
    infra_fault: str = ""
    # what was accounted, for transports that report usage after the stream
    final_usage: Usage | None = None

    def first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000

    async def close(
        self,
        *,
        status: str,
        usage: Usage | None = None,
        error_type: str = "",
        cached: bool = False,
        cost_saved: Decimal = Decimal(0),
    ) -> None:
        if self.closed:
            return
        self.closed = True
        usage = self.final_usage = usage or Usage()
        cost = (
            Decimal(0)
            if cached
            else cost_usd(self.price, usage.prompt_tokens, usage.completion_tokens)
        )
        latency_ms = (time.perf_counter() - self.started) * 1000
        spent_tokens = 0 if cached else usage.total_tokens
        spent_micro = (
            0 if cached else cost_micro(self.price, usage.prompt_tokens, usage.completion_tokens)
        )
        try:
            if self.admission is not None:
                await settle(self.admission, tokens=spent_tokens, cost_micro=spent_micro)
        except Exception as error:  # noqa: BLE001 -- the usage row must be written anyway
            # Not raised: the row below is what must not be lost. The settle is retried in
            # the background, so the real cost still reaches the budget's counters once
            # the store answers again; the caller decides what the client is told.
            self.infra_fault = infrastructure_fault(error)
            log_infrastructure_fault(self.call, "settling", error)
            error_type = error_type or self.infra_fault
            if self.admission is not None:
                settle_later(self.admission, tokens=spent_tokens, cost_micro=spent_micro)
        finally:
            ctx, candidate = self.call.ctx, self.candidate
            usage_record(
                request_id=self.call.request_id,
                tenant_id=ctx.tenant_id,
                virtual_key_id=ctx.key_id,
                provider_id=candidate.provider.pk if candidate else None,
                provider_name=candidate.provider.name if candidate else "",
                credential_id=self.credential_id,
                model=candidate.model if candidate else self.call.parsed.request.model[:200],
                alias=self.alias,
                endpoint=self.call.endpoint,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                tokens_estimated=usage.estimated,
                cost_usd=cost,
                cost_saved_usd=cost_saved,
                latency_ms=latency_ms,
                ttft_ms=self.ttft_ms,
                status=status,
                error_type=error_type[:64],
                cached=cached,
                streamed=self.call.parsed.stream,
            )
            record_gateway_request(
                endpoint=self.call.endpoint,
                alias=self.alias,
                provider=candidate.provider.name if candidate else None,
                status=status,
                latency_ms=latency_ms,
                ttft_ms=self.ttft_ms,
                error_type=error_type,
                cached=cached,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=cost,
                cost_saved_usd=cost_saved,
            )
        if status == UsageStatus.SUCCESS and candidate is not None and not cached:
            try:
                await record_latency(
                    provider_id=candidate.provider.pk, model=candidate.model, latency_ms=latency_ms
                )
            except Exception as error:  # noqa: BLE001 -- routing hint only; logged
                log_infrastructure_fault(self.call, "recording latency", error)


def log_infrastructure_fault(call: GatewayCall, doing: str, error: BaseException) -> None:
    """One line per fault, naming the request and the fault's class. The exception's text
    is left out: a driver's message may quote a connection URL."""
    logger.error(
        "gateway: infrastructure fault while %s request %s: %s (%s)",
        doing,
        call.request_id,
        infrastructure_fault(error),
        type(error).__name__,
    )


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


async def _admit(call: GatewayCall, ledger: Ledger) -> tuple[Resolution, int]:
    """Route, filter and reserve; a refusal is accounted before it is raised.
    Returns the route and the prompt-token estimate the reservation used."""
    ctx, request = call.ctx, call.parsed.request
    try:
        resolution = await resolve_model(
            tenant_id=ctx.tenant_id,
            model=request.model,
            allowed_models=ctx.allowed_models,
            allowed_provider_ids=ctx.allowed_provider_ids,
        )
        ledger.alias = resolution.alias
        if ctx.pii_redaction:
            redact_request(request)
        # Rate limits (TPM) count a typical size; a budget reserves the most the request
        # can cost (docs/GATEWAY.md "Budgets"), settled to the real cost afterwards.
        prompt_tokens = estimate_prompt_tokens(request)
        completion_tokens = request.max_tokens or DEFAULT_COMPLETION_ALLOWANCE_TOKENS
        key_limits, tenant_limits = _limits(ctx)
        candidates = resolution.candidates
        bound = await acost_bound([(c.provider, c.model) for c in candidates], request)
        budget_scope = _budget_scope(key_limits, tenant_limits)
        if bound.unpriced and budget_scope:
            # a model with no price would cost the budget nothing: use only priced ones
            priced = tuple(c for i, c in enumerate(candidates) if i not in bound.unpriced)
            if not priced:
                ledger.candidate = candidates[0]
                raise unpriced_model_error(
                    provider=candidates[0].provider, model=candidates[0].model, scope=budget_scope
                )
            resolution = dataclasses.replace(resolution, candidates=priced)
        ledger.admission = await admit(
            request_id=call.request_id,
            key_id=ctx.key_id,
            tenant_id=ctx.tenant_id,
            key_limits=key_limits,
            tenant_limits=tenant_limits,
            estimated_tokens=min(prompt_tokens + completion_tokens, MAX_RESERVED_TOKENS),
            estimated_cost_micro=bound.cost_micro,
            stream=call.parsed.stream,
            lease_seconds=_lease_seconds(resolution),
        )
    except AipkError as error:
        await ledger.close(status=UsageStatus.REFUSED, error_type=error.code)
        raise
    except BaseException as error:
        await _close_on_exit(ledger, error)
        raise
    return resolution, prompt_tokens


def _headers(ledger: Ledger, *, cache: str | None) -> dict[str, str]:
    headers = {"x-request-id": ledger.call.request_id}
    if ledger.admission is not None:
        headers.update(ledger.admission.headers)
    if ledger.candidate is not None:
        headers["x-aipk-provider"] = ledger.candidate.provider.name
        headers["x-aipk-model"] = ledger.candidate.model
    if cache is not None:
        headers["x-aipk-cache"] = cache
    return headers


def _cache_key_for(call: GatewayCall) -> str | None:
    wanted = call.parsed.cache if call.parsed.cache is not None else call.ctx.cache_enabled
    return cache_key(tenant_id=call.ctx.tenant_id, request=call.parsed.request) if wanted else None


async def _cache_hit(call: GatewayCall, ledger: Ledger, key: str | None, resolution: Resolution):
    if key is None:
        return None
    hit = await cache_get(key)
    if hit is None:
        return None
    first = resolution.candidates[0]
    ledger.candidate = first
    ledger.price = await aprice_for(first.provider, first.model)
    saved = cost_usd(ledger.price, hit.usage.prompt_tokens, hit.usage.completion_tokens)
    ledger.first_token()
    await ledger.close(status=UsageStatus.SUCCESS, usage=hit.usage, cached=True, cost_saved=saved)
    return hit


def _try_next_candidate(error: ProviderError, deadline: float) -> bool:
    """Another provider may serve what this one could not, within the request's one budget;
    a bad request stays bad anywhere, and a generation slower than its deadline
    (a request-scope timeout, not retryable) would be as slow elsewhere."""
    if time.monotonic() >= deadline:
        return False
    return error.retryable or isinstance(
        error,
        (
            kit_errors.AuthenticationError,
            kit_errors.PermissionDeniedError,
            kit_errors.QuotaExceededError,
            kit_errors.NotFoundError,
        ),
    )


def _more_telling(last: ProviderError | None, error: ProviderError) -> ProviderError:
    """The error to answer with after several candidates: the last one a provider actually
    answered with, over aipk's own "nothing available" (no credential, breaker open,
    connection pool full) from a later candidate that was never called."""
    if last is not None and error.scope == "local" and last.scope != "local":
        return last
    return error


# The provider's refusal passed on as it is: status and error type (OpenAI's vocabulary).
_REFUSALS: tuple[tuple[type[ProviderError], int, str, str, str], ...] = (
    (
        kit_errors.AuthenticationError,
        401,
        "authentication_error",
        "upstream_authentication_failed",
        "the provider rejected the credential aipk holds for it (an admin must replace it)",
    ),
    (
        kit_errors.PermissionDeniedError,
        403,
        "permission_error",
        "upstream_permission_denied",
        "the provider refused this request on aipk's credential (the model or the account "
        "is not permitted)",
    ),
    (
        kit_errors.QuotaExceededError,
        429,
        "insufficient_quota",
        "upstream_quota_exceeded",
        "the provider's quota or credit for aipk's credential is used up; retry after its reset",
    ),
)


def upstream_error(error: ProviderError) -> AipkError:
    """A provider failure as the client sees it: a provider's 429, 401, 402 or 403 keeps its
    status, class and retry-after (the SDKs raise RateLimitError, AuthenticationError...),
    whatever the number of keys or the length of the retry-after; aipk's own "nothing
    available" answers are 503s. A provider's text, which may quote a key, is dropped
    for credential problems."""
    retry = error.retry_after
    if isinstance(error, CircuitOpenError):
        return UpstreamError(
            f"{error.provider or 'the provider'} is failing; retry later",
            status=503,
            code="circuit_open",
            retry_after=retry,
        )
    if isinstance(error, kit_errors.AllKeysExhaustedError):
        return UpstreamError(
            "no provider credential is available right now; retry later",
            status=503,
            code="no_available_credential",
            retry_after=retry,
        )
    if isinstance(error, kit_errors.LocalCongestionError):
        return UpstreamError(
            "aipk is at its connection limit for this provider; retry shortly",
            status=503,
            code="gateway_overloaded",
            retry_after=1,
        )
    if isinstance(error, kit_errors.RateLimitError):
        return LimitExceeded(
            "the provider is rate limiting requests; retry later",
            code="upstream_rate_limited",
            retry_after=retry,
        )
    if isinstance(error, kit_errors.OverloadedError):
        return UpstreamError(
            "the provider is overloaded", status=503, code="upstream_overloaded", retry_after=retry
        )
    if isinstance(error, kit_errors.TimeoutError):
        # the kit's message names the deadline and its length, never a secret
        return UpstreamError(
            f"the provider timed out: {error.message}", status=504, code="upstream_timeout"
        )
    for cls, status, kind, code, message in _REFUSALS:
        if isinstance(error, cls):
            if error.status_code in (401, 402, 403, 429):
                status = error.status_code
            return UpstreamRefused(
                f"{error.provider or 'the provider'}: {message}",
                status=status,
                type=kind,
                code=code,
                retry_after=retry,
            )
    if isinstance(error, kit_errors.ContextLengthError):
        return AipkError(str(error), code="context_length_exceeded", param="messages")
    if isinstance(error, kit_errors.ContentFilterError):
        return AipkError(str(error), code="content_filter")
    if isinstance(error, kit_errors.InvalidRequestError):
        return AipkError(str(error), code="upstream_invalid_request")
    if isinstance(error, kit_errors.NotFoundError):
        return UpstreamError(
            "the provider does not know this model", status=404, code="model_not_found"
        )
    return UpstreamError(f"the provider failed ({error.type})", code="upstream_error")


def _usage_or_estimate(request: ChatRequest, usage: Usage | None, completion_chars: int) -> Usage:
    if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
        return usage
    return Usage(
        prompt_tokens=estimate_prompt_tokens(request),
        completion_tokens=(completion_chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN,
        estimated=True,
    )


async def _close_on_exit(ledger: Ledger, error: BaseException) -> None:
    """Account a request that ends in an exception (shielded: a cancel must not skip it)."""
    if isinstance(error, ProviderError):
        status, error_type = UsageStatus.ERROR, error.type
    elif isinstance(error, AipkError):
        status, error_type = UsageStatus.ERROR, error.code
    elif isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        if shutdown.ended_by_shutdown():
            status, error_type = UsageStatus.ERROR, "server_shutdown"
        else:
            status, error_type = UsageStatus.CANCELLED, "client_disconnected"
    else:
        status, error_type = UsageStatus.ERROR, infrastructure_fault(error)
    await asyncio.shield(ledger.close(status=status, error_type=error_type))


@contextmanager
def _answer_names_request(call: GatewayCall) -> Iterator[None]:
    """An error answer carries the request's id (``x-request-id``) like a reply does: it
    is the id of the request's usage row, so a failed call can be found in the usage."""
    try:
        yield
    except AipkError as error:
        error.headers.setdefault("x-request-id", call.request_id)
        raise


async def gateway_reply(call: GatewayCall) -> Reply:
    """A whole reply: the first candidate that answers, accounted once. A shutdown drain
    waits for it and, past its deadline, ends it with a 503 ``server_shutting_down``."""
    if shutdown.is_draining():
        raise server_shutting_down()
    with shutdown.tracked(), _answer_names_request(call):
        try:
            return await _reply(call)
        except asyncio.CancelledError:
            _raise_if_ended_by_shutdown()
            raise


async def gateway_stream(call: GatewayCall) -> StreamReply:
    """Open a stream on the first candidate that produces a first chunk, then relay it.
    A shutdown drain waits for the stream (the relay tracks itself once open) and, past
    its deadline, ends it with a 503 or an error event ``server_shutting_down``."""
    if shutdown.is_draining():
        raise server_shutting_down()
    with shutdown.tracked(), _answer_names_request(call):
        try:
            return await _open_stream(call)
        except asyncio.CancelledError:
            _raise_if_ended_by_shutdown()
            raise


async def _reply(call: GatewayCall) -> Reply:
    """A whole reply: the first candidate that answers, accounted once."""
    ledger = Ledger(call)
    bind_request_id(call.request_id)  # its log lines carry the id the client gets
    resolution, _ = await _admit(call, ledger)
    try:
        key = _cache_key_for(call)
        hit = await _cache_hit(call, ledger, key, resolution)
        if hit is not None:
            return Reply(hit, _headers(ledger, cache="hit"))
        last: ProviderError | None = None
        # one budget for every candidate: failover cannot multiply the deadline
        deadline = request_deadline(resolution.candidates[0].provider)
        for candidate in resolution.candidates:
            ledger.candidate = candidate
            ledger.price = await aprice_for(candidate.provider, candidate.model)
            request = dataclasses.replace(call.parsed.request, model=candidate.model)
            trace: dict = {}
            try:
                response = await provider_chat(
                    candidate.provider,
                    request,
                    tenant_id=call.ctx.tenant_id,
                    trace=trace,
                    deadline=deadline,
                )
            except ProviderError as error:
                ledger.credential_id = trace.get("credential_id", "")
                last = _more_telling(last, error)
                if _try_next_candidate(error, deadline):
                    continue
                break
            ledger.credential_id = trace.get("credential_id", "")
            ledger.first_token()
            usage = _usage_or_estimate(request, response.usage, len(response.text))
            response.usage = usage
            await ledger.close(status=UsageStatus.SUCCESS, usage=usage)
            if key is not None:
                try:
                    await cache_put(key, response, call.ctx.cache_ttl_seconds)
                except Exception as error:  # noqa: BLE001 -- the reply is whole; logged
                    log_infrastructure_fault(call, "caching the reply of", error)
            return Reply(response, _headers(ledger, cache="miss" if key else None))
        assert last is not None  # resolution always has at least one candidate
        raise upstream_error(last) from last
    except BaseException as error:
        await _close_on_exit(ledger, error.__cause__ or error)
        raise


async def _open_stream(call: GatewayCall) -> StreamReply:
    """Open a stream on the first candidate that produces a first chunk, then relay it."""
    ledger = Ledger(call)
    bind_request_id(call.request_id)  # its log lines carry the id the client gets
    resolution, prompt_estimate = await _admit(call, ledger)
    try:
        key = _cache_key_for(call)
        hit = await _cache_hit(call, ledger, key, resolution)
        if hit is not None:
            return StreamReply(
                _headers(ledger, cache="hit"),
                _replay(response_as_chunks(hit)),
                prompt_estimate,
                ledger,
            )
        last: ProviderError | None = None
        # one budget for every candidate: failover cannot multiply the deadline
        deadline = request_deadline(resolution.candidates[0].provider)
        for candidate in resolution.candidates:
            ledger.candidate = candidate
            ledger.price = await aprice_for(candidate.provider, candidate.model)
            request = dataclasses.replace(call.parsed.request, model=candidate.model)
            trace: dict = {}
            chunks = provider_stream(
                candidate.provider,
                request,
                tenant_id=call.ctx.tenant_id,
                trace=trace,
                deadline=deadline,
            )
            try:
                first = await chunks.__anext__()
            except StopAsyncIteration:
                first = None
            except ProviderError as error:
                await chunks.aclose()
                ledger.credential_id = trace.get("credential_id", "")
                last = _more_telling(last, error)
                if _try_next_candidate(error, deadline):
                    continue
                break
            except BaseException:
                await chunks.aclose()
                raise
            ledger.credential_id = trace.get("credential_id", "")
            relay = await _started(_relay(call, ledger, request, chunks, first, key))
            return StreamReply(
                _headers(ledger, cache="miss" if key else None), relay, prompt_estimate, ledger
            )
        assert last is not None
        raise upstream_error(last) from last
    except BaseException as error:
        await _close_on_exit(ledger, error.__cause__ or error)
        raise


async def _started(
    relay: AsyncGenerator[ChatChunk, None],
) -> AsyncGenerator[ChatChunk, None]:
    """Start the relay before handing it over. A transport may drop a stream it never
    iterates (the client leaves between the response head and the body), and Python never
    runs a never-started generator's ``finally``; asyncio does close a started one that is
    dropped, so the relay's ``finally`` accounts the request either way."""
    try:
        head = await relay.__anext__()
    except StopAsyncIteration:
        return _replay([])
    return _prepend(head, relay)


async def _prepend(
    head: ChatChunk, rest: AsyncGenerator[ChatChunk, None]
) -> AsyncGenerator[ChatChunk, None]:
    try:
        yield head
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


async def _aclose(chunks: AsyncIterator[ChatChunk]) -> None:
    """Close an upstream stream now (an async generator: its ``finally`` releases the
    connection), not whenever it is garbage-collected."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


async def _replay(chunks: list[ChatChunk]) -> AsyncGenerator[ChatChunk, None]:
    for chunk in chunks:
        yield chunk


async def _relay(
    call: GatewayCall,
    ledger: Ledger,
    request: ChatRequest,
    chunks: AsyncIterator[ChatChunk],
    first: ChatChunk | None,
    key: str | None,
) -> AsyncGenerator[ChatChunk, None]:
    """Forward chunks as they arrive; whatever ends the stream, account it once."""
    builder = ResponseBuilder(call.request_id, request.model)
    completion_chars = 0
    status, error_type = UsageStatus.CANCELLED, "client_disconnected"
    finished = False  # the provider said its last word (a finish reason)
    stream_started(call.endpoint)
    tracked_task = shutdown.track_begin()  # the shutdown drain waits for this stream
    try:
        if first is not None:
            ledger.first_token()
            builder.add(first)
            completion_chars += len(first.text) + sum(len(d.arguments) for d in first.tool_calls)
            finished = bool(first.finish_reason)
            yield first
        async for chunk in chunks:
            builder.add(chunk)
            completion_chars += len(chunk.text) + sum(len(d.arguments) for d in chunk.tool_calls)
            finished = finished or bool(chunk.finish_reason)
            yield chunk
        status, error_type = UsageStatus.SUCCESS, ""
    except ProviderError as error:
        status, error_type = UsageStatus.ERROR, error.type
        raise upstream_error(error) from error
    except asyncio.CancelledError:
        if shutdown.ended_by_shutdown():  # the drain deadline, not the client, ended it
            status, error_type = UsageStatus.ERROR, "server_shutdown"
        _raise_if_ended_by_shutdown()
        raise
    except Exception as error:
        # aipk's own fault (Redis, the database, a bug) mid-stream: the client gets an
        # error event now, not a stream that never ends. Tokens already relayed are
        # counted. When the provider had already said its last word, the client holds
        # a whole answer: it ends normally (an error event would make the SDKs raise
        # and the app pay again) and the row's error_type names the fault.
        error_type = infrastructure_fault(error)
        log_infrastructure_fault(call, "streaming", error)
        if not finished:
            status = UsageStatus.ERROR
            raise infrastructure_unavailable() from error
        status = UsageStatus.SUCCESS
    finally:
        stream_ended(call.endpoint)
        if status == UsageStatus.CANCELLED and shutdown.ended_by_shutdown():
            status, error_type = UsageStatus.ERROR, "server_shutdown"
        try:
            await _aclose(chunks)
        except Exception as error:  # noqa: BLE001 -- closing must not hide the accounting
            log_infrastructure_fault(call, "closing the upstream stream of", error)
        response = builder.build()
        usage = _usage_or_estimate(
            request, response.usage if response.usage.total_tokens else None, completion_chars
        )
        await asyncio.shield(ledger.close(status=status, usage=usage, error_type=error_type))
        if status == UsageStatus.SUCCESS and key is not None and not ledger.infra_fault:
            response.usage = usage
            try:
                await cache_put(key, response, call.ctx.cache_ttl_seconds)
            except Exception as error:  # noqa: BLE001 -- a cache miss next time, no more
                log_infrastructure_fault(call, "caching the reply of", error)
        shutdown.track_end(tracked_task)
    # A stream the provider finished ends normally even when settling it failed (Redis
    # lost at the end): the client holds a whole answer, and an error event would make
    # the SDKs raise and the app retry -- paying twice. The fault is logged and named in
    # the usage row's error_type, as for a non-stream reply.
