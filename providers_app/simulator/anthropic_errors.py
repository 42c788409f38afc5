"""How Anthropic answers an error: its ``{"type": "error", "error": {...}}`` envelope.

Also the order in which the real API checks a request's credential and
version header, since the first failing check decides the error.
"""

from __future__ import annotations

from aiohttp import web

from providers_app.simulator import ratelimit_headers
from providers_app.simulator.credentials import bearer_token, is_rejected
from providers_app.simulator.failures import (
    DEFAULT_DAILY_RETRY_AFTER,
    DEFAULT_RETRY_AFTER,
)
from providers_app.simulator.ids import new_id
from providers_app.simulator.streaming import json_response

_ERRORS: dict[str, tuple[int, str, str]] = {
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "permission": (
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    # The key works, but the organisation may not use this model.
    "model_permission": (
        403,
        "permission_error",
        "Your organization does not have access to model: {model}",
    ),
    "not_found": (404, "not_found_error", "model: {model}"),
    "bad_request": (400, "invalid_request_error", "Invalid request (simulated)."),
    "context_length": (
        400,
        "invalid_request_error",
        "prompt is too long: 200001 tokens > 200000 maximum",
    ),
    "rate_limit": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
    ),
    # Worded like the recorded per-hour 429 (tests/fixtures/wire), for a daily window.
    "daily_quota": (
        429,
        "rate_limit_error",
        "This request would exceed your organization's rate limit of 1,000 requests per day "
        "(model: {model}). For details, refer to: https://docs.claude.com/en/api/rate-limits. "
        "You can see the response headers for current usage. Please try again later.",
    ),
    "quota": (
        402,
        "billing_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
    ),
    "server": (500, "api_error", "Internal server error"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
}

MIDSTREAM_ERROR = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def error_response(
    mode: str, *, model: str = "", retry_after: int | None = None, message: str | None = None
) -> web.Response:
    if retry_after is None:
        retry_after = DEFAULT_DAILY_RETRY_AFTER if mode == "daily_quota" else DEFAULT_RETRY_AFTER
    status, type_, template = _ERRORS[mode]
    request_id = new_id("req_011C")
    headers = {
        "request-id": request_id,
        "x-should-retry": "true" if status in (429, 500, 529) else "false",
    }
    if mode in ("rate_limit", "daily_quota"):
        headers["retry-after"] = str(retry_after)
        headers.update(ratelimit_headers.anthropic_exhausted(retry_after))
    body = {
        "type": "error",
        "error": {"type": type_, "message": message or template.format(model=model)},
        "request_id": request_id,
    }
    return json_response(body, status=status, headers=headers)


def check_request(request: web.Request) -> web.Response | None:
    """Credential, then the version header, in the order the real API checks them."""
    key = request.headers.get("x-api-key")
    token = bearer_token(request.headers)
    if not key and token is None:
        return error_response("auth", message="x-api-key header is required")
    if key and is_rejected(key):
        return error_response("auth")
    if not key and token is not None and is_rejected(token):
        return error_response("auth", message="Invalid bearer token")
    if not request.headers.get("anthropic-version"):
        return error_response("bad_request", message="anthropic-version: header is required")
    return None
