"""What a client is told when a request fails, and what its usage row calls the failure.

Kept apart from the request path because three transports (REST, SSE, websocket)
and the ledger share it: a provider failure keeps the provider's status and class
where the official SDKs depend on them, aipk's own faults are 503s a client may
retry, and a usage row names an infrastructure fault in one word.
"""

from __future__ import annotations

from django.db import DatabaseError
from redis.exceptions import RedisError

from aipk_site.infra.errors import AipkError, LimitExceeded, UpstreamError, UpstreamRefused
from providers_app.kit import errors as kit_errors
from providers_app.kit.errors import ProviderError
from providers_app.kit.fields import UnsupportedFieldError
from providers_app.kit.resilience import CircuitOpenError


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


def infrastructure_unavailable() -> AipkError:
    """What a client is told when aipk's cache or database failed under its request: a
    503 it may retry (an error event once a stream has started)."""
    return UpstreamError(
        "aipk cannot reach its database or cache; retry shortly",
        status=503,
        code="service_unavailable",
        retry_after=1,
    )


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
    if isinstance(error, UnsupportedFieldError):
        # refused before sending (kit/fields.py): the caller's field, named
        return AipkError(str(error), code=error.code, param=error.field)
    if isinstance(error, kit_errors.InvalidRequestError):
        return AipkError(str(error), code="upstream_invalid_request")
    if isinstance(error, kit_errors.NotFoundError):
        return UpstreamError(
            "the provider does not know this model", status=404, code="model_not_found"
        )
    return UpstreamError(f"the provider failed ({error.type})", code="upstream_error")
