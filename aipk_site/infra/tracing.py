"""OpenTelemetry traces of gateway requests, exported over OTLP/HTTP (docs/MONITORING.md).

Configured only by the standard ``OTEL_*`` environment variables, which the SDK reads
itself: ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME`` (default here: "aipk"),
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` (+ ``_ARG``), ``OTEL_BSP_*`` and
``OTEL_SDK_DISABLED``. ``tracing_setup()`` runs once per process at start (the ASGI
application's load, a Celery worker's start).

Off -- no endpoint configured, ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
-- ``enabled`` stays False and the request path tests only that module-level flag: no
span object, no context copy, nothing imported from the SDK. On, spans are ended in
memory and the SDK's BatchSpanProcessor exports them from its own thread, never from
the event loop.

The spans of one request are parented explicitly: the request's server span sits in a
ContextVar of this module (the request's task and the tasks it starts see it), and each
child names its parent. OpenTelemetry's own "current span" is left alone, so a span is
never attached to a context that outlives it (an async generator's frame, a shielded
task), and a websocket turn, which has no server span, gets no stray root spans.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from aipk_site.infra.log_context import bind_trace_id

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "TRACE_ID_HEADER",
    "enabled",
    "tracing_setup",
    "tracing_shutdown",
    "tracing_wanted",
]

# The flag the request path checks; set by tracing_setup() only.
enabled: bool = False

# The response header naming the request's trace (32 hex digits).
TRACE_ID_HEADER = "x-aipk-trace-id"
# W3C Trace Context level 2's response header: the server span, as a traceparent.
TRACE_RESPONSE_HEADER = "traceresponse"

DEFAULT_SERVICE_NAME = "aipk"

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_configured_pid: int | None = None
# OpenTelemetry's global provider may be set once per process (tests set up again)
_global_provider_set = False

# The OpenTelemetry API's pieces the spans below use, bound by tracing_setup(): imported
# once there rather than in each call (only a traced process imports them at all).
_api: Any = None

_request_span: ContextVar[Span | None] = ContextVar("aipk_request_span", default=None)


def tracing_wanted(environ: Any = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is configured and
    neither ``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none`` says otherwise.
    Without an endpoint nothing is traced: the SDK's default (localhost:4318) would
    export into the void on a host that runs no collector."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )
    return bool(endpoint.strip())


def tracing_setup() -> bool:
    """Set up tracing for this process from the environment, once; whether it is on.

    A forked child (a Celery prefork worker) keeps its parent's set-up: the SDK restarts
    its export thread after a fork by itself."""
    global enabled, _tracer, _provider, _configured_pid, _global_provider_set, _api
    if _configured_pid is not None:
        return enabled
    _configured_pid = os.getpid()
    if not tracing_wanted():
        return False
    # imported here: a process that traces nothing never loads the SDK
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    # the sampler (OTEL_TRACES_SAMPLER, _ARG), the exporter's endpoint, headers, timeout
    # and compression, and the batch processor's sizes and delays all come from the env
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if not _global_provider_set:  # for libraries that trace through the API
        trace.set_tracer_provider(provider)
        _global_provider_set = True
    _api = SimpleNamespace(
        extract=propagate.extract,  # OTEL_PROPAGATORS; W3C tracecontext by default
        SpanKind=trace.SpanKind,
        Status=trace.Status,
        StatusCode=trace.StatusCode,
        set_span_in_context=trace.set_span_in_context,
    )
    _provider = provider
    _tracer = provider.get_tracer("aipk")
    enabled = True
    return True


def tracing_flush(timeout_millis: int = 5_000) -> bool:
    """Export every ended span now (tests; a graceful stop)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


def tracing_shutdown() -> None:
    """Export what is pending and stop tracing in this process; ``tracing_setup()`` may
    set it up again (from the environment as it is then)."""
    global enabled, _tracer, _provider, _configured_pid
    enabled = False
    provider, _provider, _tracer, _configured_pid = _provider, None, None, None
    if provider is not None:
        provider.shutdown()


# -- the spans of a request -------------------------------------------------------------


def request_start(method: str, route: str, headers: dict[str, str], request_id: str) -> Span | None:
    """The server span of one request (``headers``: lower-case names), continuing the
    caller's trace when it sent a W3C ``traceparent``; bound as the parent of the
    request's other spans and its trace id bound to its log lines."""
    if _tracer is None:
        return None
    span = _tracer.start_span(
        f"{method} {route}",
        context=_api.extract(headers),
        kind=_api.SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "http.route": route,
            "aipk.request_id": request_id,
        },
    )
    _request_span.set(span)
    bind_trace_id(f"{span.get_span_context().trace_id:032x}")
    return span


def request_span() -> Span | None:
    """The server span of the request this task serves, if it is traced."""
    return _request_span.get()


def response_headers(span: Span) -> list[tuple[bytes, bytes]]:
    """The trace's id (``x-aipk-trace-id``) and the server span (``traceresponse``)."""
    context = span.get_span_context()
    trace_id = f"{context.trace_id:032x}"
    response = f"00-{trace_id}-{context.span_id:016x}-{context.trace_flags:02x}"
    return [
        (TRACE_ID_HEADER.encode(), trace_id.encode()),
        (TRACE_RESPONSE_HEADER.encode(), response.encode()),
    ]


def request_error(error_type: str) -> None:
    """The request's answer is an error of this type (its span ends with status ERROR)."""
    span = _request_span.get()
    if span is not None:
        span.set_attribute("error.type", error_type)


def request_end(span: Span, *, status: int | None, request_id: str) -> None:
    """End the server span: the HTTP status (None: the client left before an answer) and
    the request id the client was given. Any error noted makes the status ERROR."""
    span.set_attribute("aipk.request_id", request_id)
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    error_type = _error_type_of(span)
    if error_type is None and (status is None or status >= 500):
        error_type = "client_disconnected" if status is None else str(status)
        span.set_attribute("error.type", error_type)
    if error_type is not None:
        span.set_status(_api.Status(_api.StatusCode.ERROR, error_type))
    span.end()


def _error_type_of(span: Span) -> str | None:
    attributes = getattr(span, "attributes", None) or {}
    value = attributes.get("error.type")
    return str(value) if value is not None else None


def child_start(
    name: str, parent: Span | None = None, *, start_time: int | None = None, **attributes: Any
) -> Span | None:
    """A span under ``parent`` (default: the request's server span); None when the
    request is not traced (a websocket turn)."""
    parent = parent or _request_span.get()
    if parent is None or _tracer is None:
        return None
    return _tracer.start_span(
        name,
        context=_api.set_span_in_context(parent),
        attributes=_present(attributes),
        start_time=start_time,
    )


def child_end(span: Span, *, error_type: str = "", **attributes: Any) -> None:
    """End a child span with these attributes; an ``error_type`` sets status ERROR."""
    if attributes:
        span.set_attributes(_present(attributes))
    if error_type:
        span.set_attribute("error.type", error_type)
        span.set_status(_api.Status(_api.StatusCode.ERROR, error_type))
    span.end()


def first_token(attempt: Span) -> None:
    """The "first token" span of a stream: from its attempt's start to now."""
    # started at the attempt's start: it measures the whole wait for the first chunk
    span = child_start("first token", attempt, start_time=getattr(attempt, "start_time", None))
    if span is not None:
        span.end()


def annotate(span: Span, **attributes: Any) -> None:
    """Set the attributes whose value is known (None and "" are left out)."""
    span.set_attributes(_present(attributes))


def _present(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        f"aipk.{name}" if "." not in name else name: value
        for name, value in attributes.items()
        if value is not None and value != ""
    }
