"""Accounting one gateway request exactly once: one settle of its admission and one
usage record, whatever ends it -- success, provider error, refusal, cache hit, client
disconnect, cancel or shutdown.

Apart from the request path (dispatch) because every path out of it, and the stream
relay long after dispatch has returned, ends here; the rule "once" lives in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aipk_site.gateway import shutdown
from aipk_site.gateway.admission import Admission, settle, settle_later
from aipk_site.gateway.error_mapping import infrastructure_fault
from aipk_site.gateway.formats.common import ParsedRequest
from aipk_site.gateway.key_auth import KeyContext
from aipk_site.gateway.request_bodies import body_capture
from aipk_site.gateway.routing import Candidate, record_latency
from aipk_site.gateway.usage import usage_record
from aipk_site.infra import tracing
from aipk_site.infra.errors import AipkError
from aipk_site.infra.metrics import record_gateway_request
from providers_app.kit.errors import ProviderError
from providers_app.kit.media import media_tokens
from providers_app.kit.types import ChatRequest, Usage
from tenants_app.models import RouteStrategy, UsageStatus
from tenants_app.services.pricing import Price, charge

if TYPE_CHECKING:
    from opentelemetry.trace import Span

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # the kit's estimate when a provider reports no usage


@dataclass(slots=True)
class GatewayCall:
    ctx: KeyContext
    parsed: ParsedRequest
    endpoint: str  # "chat.completions", "messages", "ws"
    request_id: str
    # the HTTP request's headers, kept only when the request log captures this request's
    # bodies (request_bodies.py shows the safe ones); a reference, never copied here
    headers: dict[str, str] | None = None


END_USER_CHARS = 256  # UsageRecord.end_user


def _end_user(user: str | None) -> str:
    """The caller's end-user id as the usage row holds it: NUL escaped (PostgreSQL
    refuses NUL in text), cut to the column's length."""
    if not user:
        return ""
    return user.replace("\x00", "\\u0000")[:END_USER_CHARS]


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """Characters / 4, plus each image, document and audio part's documented allowance
    (kit/media.py ``media_tokens``), so a budget reservation is not undercounted by media."""
    chars = sum(len(m.content or "") for m in request.messages)
    chars += sum(len(c.arguments) for m in request.messages for c in m.tool_calls)
    chars += sum(len(t.name) + len(t.description) + len(str(t.parameters)) for t in request.tools)
    media = sum(media_tokens(p) for m in request.messages for p in m.media())
    return max(1, chars // CHARS_PER_TOKEN) + media


def usage_or_estimate(request: ChatRequest, usage: Usage | None, completion_chars: int) -> Usage:
    """The provider's usage, or the kit's estimate when it reported none."""
    if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
        return usage
    return Usage(
        prompt_tokens=estimate_prompt_tokens(request),
        completion_tokens=(completion_chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN,
        estimated=True,
    )


@dataclass(slots=True)
class Ledger:
    """Accounts one request exactly once: settle the admission, write the usage record."""

    call: GatewayCall
    started: float = field(default_factory=time.perf_counter)
    alias: str = ""
    # the route's strategy ("" for provider/model ids): only a route that orders its
    # candidates by latency needs their latencies measured
    strategy: str = ""
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
    # the fields the answering candidate's type could not take, dropped under the key's
    # drop option (kit/fields.py ``fit``)
    dropped: list[str] = field(default_factory=list)
    # the span of the candidate being tried, when the request is traced; it lasts until
    # its answer is whole (a stream: its end), so the close ends it
    attempt_span: Span | None = None
    # the request log's candidates tried, in order (UsageRecord.attempts): a small dict
    # each, stored with the usage row by the same batched insert
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # the answer's text when the request log captures bodies (ctx.capture_bodies)
    response_text: str = ""

    def attempt_ended(
        self,
        candidate: Candidate,
        began: float,
        *,
        credential_id: str,
        status: str,
        error_type: str = "",
        http_status: int | None = None,
    ) -> None:
        """One candidate tried (``began``: its ``perf_counter``), for the request log.
        ``status``: "answered" (its answer is the request's), "error", or "skipped" (its
        provider's type could not take a field; nothing was sent). A failed candidate's
        trace span ends here (the next one may be tried); the answering one's lasts
        until its answer is whole and ends at the close."""
        if status == "error" and self.attempt_span is not None:
            span, self.attempt_span = self.attempt_span, None
            tracing.child_end(
                span,
                error_type=error_type,
                credential_id=credential_id,
                upstream_status=http_status,
            )
        self.attempts.append(
            {
                "provider": candidate.provider.name,
                "credential_id": credential_id,
                "model": candidate.model,
                "status": status,
                "http_status": http_status,
                "error_type": error_type,
                "latency_ms": round((time.perf_counter() - began) * 1000, 1),
                "answered": status == "answered",
            }
        )

    def first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000
            if self.attempt_span is not None and self.call.parsed.stream:
                tracing.first_token(self.attempt_span)

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
        if cached:
            cost, spent_micro, spent_tokens = Decimal(0), 0, 0
        else:
            cost, spent_micro = charge(self.price, usage)
            spent_tokens = usage.total_tokens
        latency_ms = (time.perf_counter() - self.started) * 1000
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
                end_user=_end_user(self.call.parsed.request.user),
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                tokens_estimated=usage.estimated,
                cost_usd=cost,
                cost_saved_usd=cost_saved,
                latency_ms=latency_ms,
                ttft_ms=self.ttft_ms,
                status=status,
                error_type=error_type[:64],
                cached=cached,
                streamed=self.call.parsed.stream,
                attempts=self.attempts,
            )
            if ctx.capture_bodies:
                body_capture(
                    request_id=self.call.request_id,
                    tenant_id=ctx.tenant_id,
                    request=self.call.parsed.request,
                    response_text=self.response_text,
                    headers=self.call.headers,
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
            if tracing.enabled:  # after the accounting, which nothing may skip
                self._trace_close(status, usage, error_type, cached)
        measured = self.strategy == RouteStrategy.LOWEST_LATENCY
        if measured and status == UsageStatus.SUCCESS and candidate is not None and not cached:
            # a shared-store round trip per request: only where a route reads the average
            try:
                await record_latency(
                    provider_id=candidate.provider.pk, model=candidate.model, latency_ms=latency_ms
                )
            except Exception as error:  # noqa: BLE001 -- routing hint only; logged
                log_infrastructure_fault(self.call, "recording latency", error)

    def _trace_close(self, status: str, usage: Usage, error_type: str, cached: bool) -> None:
        """The request's outcome on its spans: the answering attempt ends, and the
        server span gets who called what (ids, never names, secrets or prompts)."""
        failed = status != UsageStatus.SUCCESS
        attempt, self.attempt_span = self.attempt_span, None
        if attempt is not None:
            tracing.child_end(
                attempt,
                error_type=(error_type or status) if failed else "",
                credential_id=self.credential_id,
                status=status,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
        span = tracing.request_span()
        if span is None:
            return
        ctx, candidate = self.call.ctx, self.candidate
        tracing.annotate(
            span,
            request_id=self.call.request_id,
            endpoint=self.call.endpoint,
            tenant_id=ctx.tenant_id,
            key_id=ctx.key_id,
            model_alias=self.alias,
            provider=candidate.provider.name if candidate else None,
            model=candidate.model if candidate else None,
            credential_id=self.credential_id,
            stream=self.call.parsed.stream,
            status=status,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cache_hit=cached,
        )
        if failed:
            tracing.request_error(error_type or status)


def error_type_of(error: BaseException) -> str:
    """A failure in one word, as spans name it: the error family's code, the kit's type,
    a cancel, or which of aipk's own parts failed."""
    if isinstance(error, AipkError):
        return error.code
    if isinstance(error, ProviderError):
        return error.type
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    return infrastructure_fault(error)


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


async def close_on_exit(ledger: Ledger, error: BaseException) -> None:
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
