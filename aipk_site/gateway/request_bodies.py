"""The request log's captured bodies: what a request sent and got back, for a tenant or
key that turned ``capture_bodies`` on (off by default).

The request path only appends a tuple to a queue (``body_capture``, from the ledger's
close); a daemon writer thread, like the stored responses' (response_store.py), turns
each into a row -- the parsed request as JSON, PII-redacted and with key-shaped strings
masked (redaction.py ``redact_for_log``), then each side cut to
REQUEST_LOG_BODY_MAX_BYTES -- and bulk-inserts them every
``REQUEST_LOG_FLUSH_INTERVAL_SECONDS`` (and at exit). The serialising and the regexes
run on that thread, never on the event loop, and only for requests that capture.

What is captured is the request as the gateway parsed it (model, messages, tools,
options), not the raw HTTP body, and of its headers only the values of an allow-list
(``SHOWN_HEADERS``: client, SDK, API version, tracing ids); every other header is kept by
name with its value hidden, so no Authorization, x-api-key or cookie value, and no
provider credential (the gateway adds those only when it calls a provider). Media parts
are named by kind, their bytes left out. The answer is its text (a stream's: what the
relay had assembled for the usage count, cut to the cap here).

Not spooled to disk as usage rows are: a body lost to a database outage leaves its
usage row (the request log entry) without a body, nothing more. Rows past their
``expires_at`` (REQUEST_LOG_BODY_RETENTION_DAYS after the request) are deleted by the
daily retention run (tenants_app/services/retention.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from aipk_site.gateway.redaction import mask_secrets, redact_for_log
from aipk_site.infra.batch_writer import BatchWriter
from providers_app.kit.types import ChatRequest, Message, TextPart
from tenants_app.models import RequestBody

BATCH_SIZE = 100
DEFAULT_MAX_BYTES = 32 * 1024
DEFAULT_RETENTION_DAYS = 7
TRUNCATED_MARK = "…[truncated]"
# REQUEST_LOG_BODY_RETENTION_DAYS 0 keeps bodies, as 0 does for the other retentions
KEEP_FOREVER_DAYS = 100 * 365

# request id, tenant id, the parsed request, the answer's text, when, the HTTP headers
Captured = tuple[str, int, ChatRequest, str, datetime, dict[str, str] | None]

# Request headers whose values the log shows: what tells which client sent what (SDK and
# its version, API version, betas, tracing ids). Every other header is listed by name
# only -- an allow-list, because a header that carries a credential can have any name
# (Authorization, x-api-key, api-key, cookies, a proxy's own).
SHOWN_HEADERS = frozenset(
    {
        "user-agent",
        "content-type",
        "content-length",
        "accept",
        "accept-encoding",
        "anthropic-version",
        "anthropic-beta",
        "openai-beta",
        "x-request-id",
        "idempotency-key",
        "traceparent",
        "tracestate",
    }
)
SHOWN_HEADER_PREFIXES = ("x-stainless-", "x-aipk-")
HEADER_VALUE_CHARS = 256
HIDDEN_HEADER = "(not shown)"


def _interval() -> float:
    return max(0.0, float(getattr(settings, "REQUEST_LOG_FLUSH_INTERVAL_SECONDS", 0.5)))


def max_bytes() -> int:
    return max(256, int(getattr(settings, "REQUEST_LOG_BODY_MAX_BYTES", DEFAULT_MAX_BYTES)))


def retention_days() -> int:
    return int(getattr(settings, "REQUEST_LOG_BODY_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))


# -- what is kept -----------------------------------------------------------------------


def _message(message: Message) -> dict[str, Any]:
    doc: dict[str, Any] = {"role": message.role}
    if message.name:
        doc["name"] = message.name
    if message.parts is not None:
        # text parts as text; media by kind only (their bytes would fill the cap)
        doc["content"] = [
            {"type": "text", "text": part.text}
            if isinstance(part, TextPart)
            else {"type": type(part).__name__.removesuffix("Part").lower()}
            for part in message.parts
        ]
    elif message.content is not None:
        doc["content"] = message.content
    if message.tool_calls:
        doc["tool_calls"] = [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        doc["tool_call_id"] = message.tool_call_id
    return doc


_OPTIONS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "n",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "service_tier",
    "user",
    "metadata",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
)


def request_document(request: ChatRequest) -> dict[str, Any]:
    """The parsed request as the log shows it, before redaction."""
    doc: dict[str, Any] = {"model": request.model}
    doc["messages"] = [_message(m) for m in request.messages]
    if request.tools:
        doc["tools"] = [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in request.tools
        ]
    for name in _OPTIONS:
        value = getattr(request, name)
        if value is not None:
            doc[name] = value
    return doc


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` within ``limit`` UTF-8 bytes (never splitting a character), and whether
    it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text, False
    mark = TRUNCATED_MARK.encode()
    return data[: limit - len(mark)].decode(errors="ignore") + TRUNCATED_MARK, True


def shown_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """The request's headers as the log keeps them: the allowed ones' values (key-shaped
    strings masked all the same, cut), every other one's name with its value hidden."""
    shown: dict[str, str] = {}
    for name, value in sorted((headers or {}).items()):
        name = name.lower()[:HEADER_VALUE_CHARS]
        if name in SHOWN_HEADERS or name.startswith(SHOWN_HEADER_PREFIXES):
            shown[name] = mask_secrets(value[:HEADER_VALUE_CHARS])[0]
        else:
            shown[name] = HIDDEN_HEADER
    return shown


def body_row(captured: Captured) -> dict[str, Any]:
    request_id, tenant_id, request, response_text, created_at, headers = captured
    limit, days = max_bytes(), retention_days()
    request_text, request_cut = cut(
        json.dumps(redact_for_log(request_document(request)), ensure_ascii=False, default=str),
        limit,
    )
    # redacted before it is cut: a key split by the cut would no longer look like one
    response, response_cut = cut(redact_for_log(response_text), limit)
    return {
        "request_id": request_id,
        "tenant_id": tenant_id,
        "request": request_text,
        "request_truncated": request_cut,
        "headers": shown_headers(headers),
        "response": response,
        "response_truncated": response_cut,
        "created_at": created_at,
        "expires_at": created_at + timedelta(days=days if days > 0 else KEEP_FOREVER_DAYS),
    }


_writer: BatchWriter[Captured] = BatchWriter(
    name="request-bodies",
    model=RequestBody,
    interval=_interval,
    build=body_row,
    describe=lambda captured: f"the body of {captured[0]}",
    batch_size=BATCH_SIZE,
)


def body_capture(
    *,
    request_id: str,
    tenant_id: int,
    request: ChatRequest,
    response_text: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Keep this request's body, headers and answer for the request log. Never blocks:
    called from the event loop as the request is accounted; the work (the header filter
    included) happens on the writer thread."""
    _writer.add((request_id, tenant_id, request, response_text, timezone.now(), headers))


def request_bodies_flush() -> int:
    """Write whatever is queued now (tests, shutdown); the number of rows written."""
    return _writer.flush()
