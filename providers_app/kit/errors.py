"""Typed provider errors.

Every failure an adapter can meet becomes one of these classes, chosen from
the HTTP status and the provider's structured error body (type / code /
status fields) -- never from the wording of a message, which providers
change at will.

Three questions callers ask of an error:
- ``retryable``: may the same request succeed later or on another credential?
- ``permanent``: is the credential itself unusable until a person acts
  (bad key, revoked access)? The key pool disables it.
- ``scope``: what is the error evidence about? Only ``credential`` errors may
  change a shared credential's state and only ``provider`` errors count for
  the circuit breaker; ``request`` and ``model`` errors are one request's
  (or one model's) business, so one tenant's requests can never take a
  shared key or provider away from another tenant.

``permanent``, ``retryable`` and ``scope`` are class defaults an adapter may
override per instance when the provider's error body says more (an
account-level 403 is permanent, a model-level one is not).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, Unpack

# request: this request only (bad input, a slow generation that hit its deadline);
# model: this credential may not use this model; credential: the key or account
# (invalid key, account-level permission, quota, rate limit); provider: the provider
# is unwell (5xx, overloaded, connection failures, no first byte); local: aipk itself.
Scope = Literal["request", "model", "credential", "provider", "local"]


class ErrorFields(TypedDict, total=False):
    """The keyword arguments of ``ProviderError``, for subclasses that add their own."""

    provider: str
    status_code: int | None
    code: str | None
    retry_after: float | None
    permanent: bool | None
    retryable: bool | None
    scope: Scope | None


class ProviderError(Exception):
    """Base of all kit errors. ``message`` never contains a secret."""

    type = "provider_error"
    retryable = False
    permanent = False
    scope: Scope = "request"
    default_status = 502

    def __init__(
        self,
        message: str = "",
        *,
        provider: str = "",
        status_code: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        permanent: bool | None = None,
        retryable: bool | None = None,
        scope: Scope | None = None,
    ) -> None:
        super().__init__(message or self.type)
        self.message = message or self.type
        self.provider = provider
        self.status_code = status_code
        self.code = code
        self.retry_after = retry_after
        # instance overrides of the class defaults, when the body says more
        if permanent is not None:
            self.permanent = permanent
        if retryable is not None:
            self.retryable = retryable
        if scope is not None:
            self.scope = scope

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, status={self.status_code}, "
            f"code={self.code!r}, message={self.message!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The one JSON error shape used at the API edge."""
        return {"type": self.type, "code": self.code or self.type, "message": self.message}


class AuthenticationError(ProviderError):
    type = "authentication_error"
    permanent = True
    scope: Scope = "credential"
    default_status = 401


class PermissionDeniedError(ProviderError):
    """A 403. By default it is about one model (a project that may not use it): the
    request fails, the credential stays. Adapters mark it ``permanent`` with scope
    ``credential`` only when the provider's body says the account itself is blocked;
    the key pool also escalates the same 403 seen on two models of one credential."""

    type = "permission_error"
    scope: Scope = "model"
    default_status = 403

    def __init__(
        self, message: str = "", *, model_specific: bool = False, **kwargs: Unpack[ErrorFields]
    ) -> None:
        super().__init__(message, **kwargs)
        # the body names this model as the one refused (OpenAI's 403 model_not_found):
        # never escalated to the credential however many models a project may not use
        self.model_specific = model_specific


class RateLimitError(ProviderError):
    type = "rate_limit_error"
    retryable = True
    scope: Scope = "credential"
    default_status = 429


class QuotaExceededError(ProviderError):
    """Billing quota or credit exhausted (OpenAI's 429 insufficient_quota, OpenRouter 402),
    or a daily quota.

    Not a rate limit: waiting a few seconds does not help, so it is not retried on
    the same credential; the key pool cools the credential down until its reset
    (``retry_after``) or for a long default, never marks it invalid for good --
    quotas come back (a new day, a top-up) without anyone re-enabling the key.
    """

    type = "quota_exceeded"
    scope: Scope = "credential"
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
    scope: Scope = "provider"
    default_status = 502


class OverloadedError(ServerError):
    type = "overloaded_error"
    default_status = 503


TimeoutPhase = Literal["connect", "headers", "first_byte", "idle", "total", "upstream"]


class TimeoutError(ProviderError):  # noqa: A001 - deliberately mirrors the builtin name inside the kit namespace
    """A deadline passed. ``phase`` says which one, and decides who is to blame:

    - ``connect``, and ``headers`` (a stream's response headers did not come within
      the first-byte deadline; a stream's headers come before generation starts):
      the provider is not answering -- a provider fault, retried on another
      credential within the budget;
    - ``first_byte`` (a non-stream reply -- its headers only come once the whole
      generation is done, so a hung provider and a long generation look the same --
      or a stream's first body byte after its headers), ``idle`` and ``total``: the request's
      own generation was slower than its deadline -- request scope: never held
      against the credential or the breaker, not retried (it would be as slow again);
    - ``upstream``: the provider said it timed out (504, DEADLINE_EXCEEDED).
    """

    type = "timeout_error"
    retryable = True
    scope: Scope = "provider"
    default_status = 504

    def __init__(
        self, message: str = "", *, phase: TimeoutPhase = "upstream", **kwargs: Unpack[ErrorFields]
    ) -> None:
        provider_fault = phase in ("connect", "headers", "upstream")
        kwargs.setdefault("scope", "provider" if provider_fault else "request")
        kwargs.setdefault("retryable", provider_fault)
        super().__init__(message, **kwargs)
        self.phase = phase


class LocalCongestionError(ProviderError):
    """aipk's own connection pool had no free connection in time. The provider was never
    asked, so neither the credential nor the provider's circuit breaker may be blamed:
    counting it would turn an overload of aipk into an outage of the provider."""

    type = "local_congestion"
    scope: Scope = "local"
    default_status = 503


class NetworkError(ProviderError):
    """Connection refused, reset, or cut before the reply was complete."""

    type = "network_error"
    retryable = True
    scope: Scope = "provider"
    default_status = 502


class ProtocolError(ProviderError):
    """The provider sent something that is not its documented wire format (e.g. a malformed
    chunk)."""

    type = "protocol_error"
    retryable = True
    scope: Scope = "provider"
    default_status = 502


class AllKeysExhaustedError(ProviderError):
    """No credential is available; ``retry_after`` says when the earliest one frees up."""

    type = "all_keys_exhausted"
    retryable = True
    scope: Scope = "local"
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
