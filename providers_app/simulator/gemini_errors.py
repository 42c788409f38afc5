"""How Gemini answers an error: google.rpc status envelopes, with their details.

Quota errors carry ``QuotaFailure``/``Help``/``RetryInfo`` details as the real
API sends them; a bad API key is a 400 ``API_KEY_INVALID``, not a 401.
"""

from __future__ import annotations

from aiohttp import web

from providers_app.simulator.credentials import bearer_token, is_rejected, mask
from providers_app.simulator.failures import DEFAULT_RETRY_AFTER
from providers_app.simulator.streaming import json_response

_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_HELP = "type.googleapis.com/google.rpc.Help"
_RATE_LIMIT_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"

# mode -> (code, status, message)
_ERRORS: dict[str, tuple[int, str, str]] = {
    "auth": (
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    ),
    "permission": (403, "PERMISSION_DENIED", "The caller does not have permission"),
    "model_permission": (
        403,
        "PERMISSION_DENIED",
        "Permission denied: this project does not have access to models/{model}.",
    ),
    "not_found": (
        404,
        "NOT_FOUND",
        "models/{model} is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    ),
    "bad_request": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "context_length": (
        400,
        "INVALID_ARGUMENT",
        "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).",
    ),
    "rate_limit": (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: " + _RATE_LIMIT_DOCS + ".\n* Quota exceeded for "
        "metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: "
        "10\nPlease retry in {retry_after}s.",
    ),
    # As captured in public reports: the per-day quota, with a RetryInfo of seconds.
    "daily_quota": (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: " + _RATE_LIMIT_DOCS + ". To monitor your current "
        "usage, head to: https://ai.dev/rate-limit. \n* Quota exceeded for metric: "
        "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 20, "
        "model: {model}\nPlease retry in {retry_after}s.",
    ),
    "quota": (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: " + _RATE_LIMIT_DOCS + ".\n* Quota exceeded for "
        "metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: "
        "250",
    ),
    "server": (
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    "overloaded": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
}

_API_KEY_INVALID = "API key not valid. Please pass a valid API key."
MIDSTREAM_ERROR = {
    "error": {
        "code": 503,
        "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.DebugInfo",
                "detail": "[ORIGINAL ERROR] generic::unavailable: The model is overloaded.",
            }
        ],
    }
}


def _quota_violation(quota_id: str, model: str, value: str) -> dict:
    return {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": value,
    }


# Real Gemini answers a spent per-DAY quota with a RetryInfo of seconds (36 s and 47 s in
# public reports), not hours: only the quotaId says the wait is until tomorrow.
DEFAULT_DAILY_RETRY_DELAY = 36


def error_response(
    mode: str,
    *,
    model: str = "",
    retry_after: int | None = None,
    message: str | None = None,
    reason: str = "ACCESS_TOKEN_TYPE_UNSUPPORTED",
) -> web.Response:
    if retry_after is None:
        retry_after = DEFAULT_DAILY_RETRY_DELAY if mode == "daily_quota" else DEFAULT_RETRY_AFTER
    code, status, template = _ERRORS[mode]
    error: dict = {
        "code": code,
        "message": message or template.format(model=model, retry_after=retry_after),
        "status": status,
    }
    if mode == "rate_limit":
        error["details"] = [
            {
                "@type": _QUOTA_FAILURE,
                "violations": [
                    _quota_violation(
                        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", model, "10"
                    )
                ],
            },
            {
                "@type": _HELP,
                "links": [
                    {"description": "Learn more about Gemini API quotas", "url": _RATE_LIMIT_DOCS}
                ],
            },
            {"@type": _RETRY_INFO, "retryDelay": f"{retry_after}s"},
        ]
    elif mode == "daily_quota":
        error["details"] = [
            {
                "@type": _QUOTA_FAILURE,
                "violations": [
                    _quota_violation(
                        "GenerateRequestsPerDayPerProjectPerModel-FreeTier", model, "20"
                    )
                ],
            },
            {
                "@type": _HELP,
                "links": [
                    {"description": "Learn more about Gemini API quotas", "url": _RATE_LIMIT_DOCS}
                ],
            },
            {"@type": _RETRY_INFO, "retryDelay": f"{retry_after}s"},
        ]
    elif mode == "quota":
        error["details"] = [
            {
                "@type": _QUOTA_FAILURE,
                "violations": [
                    _quota_violation(
                        "GenerateRequestsPerDayPerProjectPerModel-FreeTier", model, "250"
                    )
                ],
            },
            {
                "@type": _HELP,
                "links": [
                    {"description": "Learn more about Gemini API quotas", "url": _RATE_LIMIT_DOCS}
                ],
            },
        ]
    elif mode == "auth":
        error["details"] = [
            {
                "@type": _ERROR_INFO,
                "reason": reason,
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    return json_response({"error": error}, status=code, indent=2)


def _api_key_invalid(key: str) -> web.Response:
    """The real 400 INVALID_ARGUMENT / API_KEY_INVALID envelope (captured mock response)."""
    body = {
        "error": {
            "code": 400,
            "message": _API_KEY_INVALID,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": _ERROR_INFO,
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": _API_KEY_INVALID,
                },
                {
                    "@type": "type.googleapis.com/google.rpc.DebugInfo",
                    "detail": f"Invalid API key: {mask(key)}",
                },
            ],
        }
    }
    return json_response(body, status=400, indent=2)


_MISSING_CREDENTIAL = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def check_auth(request: web.Request, *, bearer_only: bool = False) -> web.Response | None:
    token = bearer_token(request.headers)
    key = (
        None if bearer_only else (request.headers.get("x-goog-api-key") or request.query.get("key"))
    )
    if key:
        return _api_key_invalid(key) if is_rejected(key) else None
    if token is None:
        return error_response("auth", message=_MISSING_CREDENTIAL, reason="CREDENTIALS_MISSING")
    if is_rejected(token):
        return error_response("auth")
    return None
