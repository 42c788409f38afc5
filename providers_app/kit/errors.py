"""Typed provider errors.

Every failure an adapter can meet becomes one of these classes, chosen from
the HTTP status and the provider's structured error body (type / code /
status fields) -- never from the wording of a message, which providers
change at will.

Two questions callers ask of an error:
- ``retryable``: may the same request succeed later or on another credential?
- ``permanent``: is the credential itself unusable until a person acts
  (bad key, revoked access, no credit)? The key pool disables it.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of all kit errors. ``message`` never contains a secret."""

    type = "provider_error"
    retryable = False
    permanent = False
    default_status = 502

    def __init__(
        self,
        message: str = "",
        *,
        provider: str = "",
        status_code: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message or self.type)
        self.message = message or self.type
        self.provider = provider
        self.status_code = status_code
        self.code = code
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, status={self.status_code}, "
            f"code={self.code!r}, message={self.message!r})"
        )

    def to_dict(self) -> dict:
        """The one JSON error shape used at the API edge."""
        return {"type": self.type, "code": self.code or self.type, "message": self.message}


class AuthenticationError(ProviderError):
    type = "authentication_error"
    permanent = True
    default_status = 401


class PermissionDeniedError(ProviderError):
    type = "permission_error"
    permanent = True
    default_status = 403


class RateLimitError(ProviderError):
    type = "rate_limit_error"
    retryable = True
    default_status = 429


class QuotaExceededError(ProviderError):
    """Billing quota or credit exhausted (OpenAI's 429 insufficient_quota, OpenRouter 402).

    Not a rate limit: waiting a few seconds does not help, so it is not retried
    on the same credential, and the credential is treated as unusable.
    """

    type = "quota_exceeded"
    permanent = True
    default_status = 429


class InvalidRequestError(ProviderError):
    type = "invalid_request_error"
    default_status = 400


class ContextLengthError(InvalidRequestError):
    type = "context_length_exceeded"


class ContentFilterError(ProviderError):
    type = "content_filter"
    default_status = 400


class NotFoundError(ProviderError):
    type = "not_found_error"
    default_status = 404


class ServerError(ProviderError):
    type = "server_error"
    retryable = True
    default_status = 502


class OverloadedError(ServerError):
    type = "overloaded_error"
    default_status = 503


class TimeoutError(ProviderError):  # noqa: A001 - deliberately mirrors the builtin name inside the kit namespace
    type = "timeout_error"
    retryable = True
    default_status = 504


class LocalCongestionError(ProviderError):
    """aipk's own connection pool had no free connection in time. The provider was never
    asked, so neither the credential nor the provider's circuit breaker may be blamed:
    counting it would turn an overload of aipk into an outage of the provider."""

    type = "local_congestion"
    default_status = 503


class NetworkError(ProviderError):
    """Connection refused, reset, or cut before the reply was complete."""

    type = "network_error"
    retryable = True
    default_status = 502


class ProtocolError(ProviderError):
    """The provider sent something that is not its documented wire format (e.g. a malformed chunk)."""

    type = "protocol_error"
    retryable = True
    default_status = 502


class AllKeysExhaustedError(ProviderError):
    """No credential is available; ``retry_after`` says when the earliest one frees up."""

    type = "all_keys_exhausted"
    retryable = True
    default_status = 503


# Status code → class, used when the body says nothing more specific.
STATUS_CLASSES: dict[int, type[ProviderError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: QuotaExceededError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: TimeoutError,
    409: ServerError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
    500: ServerError,
    502: ServerError,
    503: OverloadedError,
    504: TimeoutError,
    529: OverloadedError,
}


def class_for_status(status: int) -> type[ProviderError]:
    """0 means "no HTTP status" (an error reported inside a 200 stream): a server error."""
    if status in STATUS_CLASSES:
        return STATUS_CLASSES[status]
    if status >= 500 or status == 0:
        return ServerError
    return InvalidRequestError
