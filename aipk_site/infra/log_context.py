"""Structured logs: a request id on every record, JSON or line output, secrets masked.

The request id lives in a ``ContextVar``: asyncio gives every task its own copy
of the context, so concurrent requests on one event loop never see each
other's id, and anything a request awaits -- including a shielded task it
starts -- inherits it. ``RequestIdMiddleware`` (aipk_site/middleware.py) binds
it per HTTP request; the gateway binds its own completion id, so a gateway
request's log lines carry the id its client got in ``x-request-id``.

The filters go on *handlers* (settings.LOGGING), not loggers: a logger's filter
sees only records logged on that very logger, a handler's sees every record
that reaches it. ``SecretMaskFilter`` is a last line of defence -- code must not
log secrets in the first place (docs/MONITORING.md).
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

_request_id: ContextVar[str | None] = ContextVar("aipk_request_id", default=None)
# the request's OpenTelemetry trace id, when it is traced (aipk_site/infra/tracing.py)
_trace_id: ContextVar[str | None] = ContextVar("aipk_trace_id", default=None)


def bind_request_id(request_id: str | None) -> None:
    """Every log record from here on in this task (and tasks it starts) carries this id."""
    _request_id.set(request_id)


def current_request_id() -> str | None:
    return _request_id.get()


def bind_trace_id(trace_id: str | None) -> None:
    """Every log record from here on in this task carries this trace id (``trace_id``)."""
    _trace_id.set(trace_id)


# -- secret masking ---------------------------------------------------------------------

# aipk's virtual keys and admin tokens, OpenAI/Anthropic-style keys, Google API keys and
# any bearer token. A match keeps its recognisable prefix and its last 4 characters.
_SECRET = re.compile(
    r"(?P<prefix>\baipkadm-|\baipk-|\bsk-|\bAIza|\b[Bb]earer\s+)(?P<body>[A-Za-z0-9._~+/=-]{8,})"
)


def _mask_match(match: re.Match[str]) -> str:
    return f"{match.group('prefix')}…{match.group('body')[-4:]}"


def mask_secrets(text: str) -> str:
    """``text`` with anything that looks like a secret reduced to its prefix and last 4."""
    if not text:
        return text
    return _SECRET.sub(_mask_match, text)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request) to every record a handler sees, and
    ``trace_id`` to the records of a traced request (JSON lines show it as a field)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        if getattr(record, "trace_id", None) is None:
            trace_id = _trace_id.get()
            if trace_id is not None:
                record.trace_id = trace_id
        return True


# LogRecord's own attributes: everything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class SecretMaskFilter(logging.Filter):
    """Masks secret-looking strings in the message, its arguments and string extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the formatter to report
            return True
        masked = mask_secrets(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, mask_secrets(value))
        return True


# -- formatters ---------------------------------------------------------------------------


class _MaskingMixin:
    """Tracebacks and stack dumps are rendered by the formatter: mask them there."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return mask_secrets(super().formatException(ei))  # type: ignore[misc]

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return mask_secrets(super().formatStack(stack_info))  # type: ignore[misc]


class JsonFormatter(_MaskingMixin, _LibraryJsonFormatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request_id,
    then any ``extra=`` fields (and exc_info as text when there is one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", ["levelname", "name", "message", "request_id"])
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        time = log_data.pop("time", None)
        if time is not None:  # first, and with milliseconds: easier to read and to sort
            stamp = time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            log_data_items = list(log_data.items())
            log_data.clear()
            log_data["time"] = stamp
            log_data.update(log_data_items)


class LineFormatter(_MaskingMixin, logging.Formatter):
    """The human-readable format for development (LOG_FORMAT=line)."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
            try:
                return super().format(record)
            finally:
                record.request_id = None
        return super().format(record)
