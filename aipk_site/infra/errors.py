"""aipk's one error family. Every service error -- management, credentials, provider
settings, OAuth, the gateway's own refusals -- derives from ``AipkError``, which carries
its message, the field it names (``param``), a machine-readable ``code`` and the HTTP
status; ``type`` follows OpenAI's vocabulary, so the official SDKs raise their matching
exception classes.

Each error is mapped to a presentation once:
- the API error shape ``{"error": {"type", "code", "message", "param"}}``: ``body()``,
  rendered by the management API (aipk_site/api.py) and, in OpenAI's and Anthropic's own
  shapes, by the gateway's formats (aipk_site/gateway/formats/);
- form errors: ``ServiceErrorsMixin`` (aipk_site/infra/forms.py);
- the admin: ``aipk_site/infra/admin.py``.

The provider kit keeps its own ``ProviderError`` family (providers_app/kit/errors.py):
those are facts about a provider's answer, framework-free, which the gateway classifies
into these errors at its edge.
"""

from __future__ import annotations

from typing import Any, TypedDict, Unpack


class ErrorOptions(TypedDict, total=False):
    """The optional fields every error of the family takes (see ``AipkError``)."""

    code: str | None
    param: str | None
    retry_after: float | None
    headers: dict[str, str] | None


class AipkError(Exception):
    """The base of every service error: message, param, code and HTTP status."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.param = param
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
            }
        }


class InvalidRequest(AipkError):
    """A malformed or unacceptable request body; ``param`` names the field."""


class PayloadTooLarge(AipkError):
    status = 413
    code = "payload_too_large"


class AuthenticationFailed(AipkError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(AipkError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(AipkError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class LimitExceeded(AipkError):
    """Admission refused: ``code`` says which limit (e.g. key_rpm, tenant_budget)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(AipkError):
    """Every candidate failed; status is 502, 503 or 504 depending on how."""

    status = 502
    type = "api_error"
    code = "upstream_error"

    def __init__(self, message: str, *, status: int = 502, **kwargs: Unpack[ErrorOptions]) -> None:
        super().__init__(message, **kwargs)
        self.status = status


class UpstreamRefused(AipkError):
    """The provider refused aipk's call with a 401, 402, 403 or a quota 429. Passed on with
    the provider's own status and error type, so the official SDKs raise what they would
    against the provider itself (AuthenticationError, PermissionDeniedError,
    RateLimitError); the ``code`` starts with ``upstream_`` so a caller can still tell
    it from a refusal of its own virtual key or limits. The provider's text is not
    passed on: it may quote the key or name the organisation's projects."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str,  # noqa: A002 - the wire field's name
        **kwargs: Unpack[ErrorOptions],
    ) -> None:
        super().__init__(message, **kwargs)
        self.status = status
        self.type = type
