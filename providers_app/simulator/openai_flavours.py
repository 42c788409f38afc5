"""The OpenAI-compatible dialects, and above all how each one answers an error.

Cerebras, Qwen and OpenRouter speak the OpenAI chat-completions protocol; a
:class:`Flavour` holds what differs (models, rate-limit headers, error
envelope, SSE comments), the way the kit's thin adapters are configuration
over the OpenAI one. Most of what differs is the error envelope, so the
envelopes live here with the flavours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from providers_app.simulator import catalog, ratelimit_headers
from providers_app.simulator.context import INVALID_JSON, json_body
from providers_app.simulator.credentials import bearer_token, is_rejected, mask
from providers_app.simulator.failures import (
    DEFAULT_DAILY_RETRY_AFTER,
    DEFAULT_RETRY_AFTER,
    go_duration,
)
from providers_app.simulator.ids import new_id, now
from providers_app.simulator.streaming import json_response


@dataclass(frozen=True)
class Flavour:
    name: str
    models_list: bytes
    models_by_id: dict[str, bytes]
    success_headers: dict[str, str] = field(default_factory=dict)
    openrouter_errors: bool = False
    sse_preamble: bytes = b""
    chunk_extra: dict = field(default_factory=dict)
    system_fingerprint: str | None = None


OPENAI = Flavour(
    "openai",
    catalog.OPENAI_LIST,
    catalog.by_id(catalog.OPENAI_MODELS),
    ratelimit_headers.OPENAI,
    system_fingerprint="fp_sim0001",
)
CEREBRAS = Flavour(
    "cerebras",
    catalog.CEREBRAS_LIST,
    catalog.by_id(catalog.CEREBRAS_MODELS),
    ratelimit_headers.CEREBRAS,
    system_fingerprint="fp_sim0001",
)
QWEN = Flavour("qwen", catalog.QWEN_LIST, catalog.by_id(catalog.QWEN_MODELS))
OPENROUTER = Flavour(
    "openrouter",
    catalog.OPENROUTER_LIST,
    catalog.by_id(catalog.OPENROUTER_MODELS),
    openrouter_errors=True,
    sse_preamble=b": OPENROUTER PROCESSING\n\n",
    chunk_extra={"provider": "Simulator"},
)


# mode -> (status, message, type, param, code) for the OpenAI envelope.
_OPENAI_ERRORS: dict[str, tuple[int, str, str, str | None, str | None]] = {
    "auth": (
        401,
        "Incorrect API key provided: {key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        None,
        "invalid_api_key",
    ),
    "permission": (
        403,
        "You have insufficient permissions for this operation.",
        "invalid_request_error",
        None,
        "insufficient_permissions",
    ),
    # The key works, but its project may not use this one model (captured in public
    # bug reports: 403 with code model_not_found).
    "model_permission": (
        403,
        "Project `proj_simulator` does not have access to model `{model}`",
        "invalid_request_error",
        None,
        "model_not_found",
    ),
    "not_found": (
        404,
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        None,
        "model_not_found",
    ),
    "bad_request": (400, "Invalid request (simulated).", "invalid_request_error", "messages", None),
    "context_length": (
        400,
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 200000 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    ),
    "rate_limit": (
        429,
        "Rate limit reached for {model} in organization org-simulator on requests per min "
        "(RPM): Limit 60, Used 60, Requested 1. Please try again in {retry_in}.",
        "requests",
        None,
        "rate_limit_exceeded",
    ),
    # Same type and code as the per-minute limit; only the message says "per day".
    "daily_quota": (
        429,
        "Rate limit reached for {model} in organization org-simulator on requests per day "
        "(RPD): Limit 200, Used 200, Requested 1. Please try again in {retry_in}. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        "requests",
        None,
        "rate_limit_exceeded",
    ),
    "quota": (
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        None,
        "insufficient_quota",
    ),
    "server": (
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        None,
    ),
    "overloaded": (
        503,
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
        None,
    ),
}

# mode -> (status, message, metadata) for OpenRouter's envelope (numeric code).
_OPENROUTER_ERRORS: dict[str, tuple[int, str, dict]] = {
    "auth": (401, "User not found.", {"error_type": "authentication_error"}),
    "permission": (403, "Your key does not have access to {model}.", {"error_type": "forbidden"}),
    "model_permission": (
        403,
        "Model {model} is not allowed for this API key (its allowed models exclude it).",
        {"error_type": "forbidden"},
    ),
    "not_found": (404, "No endpoints found for {model}.", {"error_type": "not_found"}),
    "bad_request": (400, "Invalid request (simulated).", {"error_type": "bad_request"}),
    "context_length": (
        400,
        "This endpoint's maximum context length is 128000 tokens. However, you requested "
        "about 200000 tokens. Please reduce the length of either one.",
        {"error_type": "context_length_exceeded"},
    ),
    "rate_limit": (429, "Rate limit exceeded", {"error_type": "rate_limit_exceeded"}),
    "daily_quota": (
        429,
        "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model "
        "requests per day",
        {"error_type": "rate_limit_exceeded"},
    ),
    "quota": (
        402,
        "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
        {"error_type": "insufficient_credits"},
    ),
    "server": (500, "Internal Server Error", {"error_type": "server_error"}),
    "overloaded": (
        503,
        "No instances available for {model}; the provider is overloaded.",
        {"error_type": "provider_overloaded", "provider_name": "Simulator"},
    ),
}


# Bodies that differ from OpenAI's for one flavour: (flavour, mode) -> (status, body).
_FLAVOUR_BODIES: dict[tuple[str, str], tuple[int, dict]] = {
    # Cerebras answers its limits with a top-level body, no "error" envelope
    # (seen in public bug reports: "Requests per minute limit exceeded - ...").
    ("cerebras", "daily_quota"): (
        429,
        {
            "message": "Requests per day limit exceeded - too many requests sent.",
            "type": "too_many_requests_error",
            "param": "quota",
            "code": "request_quota_exceeded",
        },
    ),
    # Qwen (DashScope compatible mode): the free daily allocation, spent.
    ("qwen", "daily_quota"): (
        429,
        {
            "error": {
                "message": "Free allocated quota exceeded.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
    ),
}


def error_response(
    flavour: Flavour,
    mode: str,
    *,
    model: str = "",
    key: str = "",
    retry_after: int | None = None,
    message: str | None = None,
    param: str | None = None,
    code: str | None = None,
) -> web.Response:
    """The flavour's error reply for a failure mode (or a validation message)."""
    if retry_after is None:
        retry_after = DEFAULT_DAILY_RETRY_AFTER if mode == "daily_quota" else DEFAULT_RETRY_AFTER
    headers = {"x-request-id": new_id("req_")}
    values = {
        "model": model,
        "key": key,
        "retry_after": retry_after,
        "retry_in": go_duration(retry_after),
    }
    body: dict
    special = _FLAVOUR_BODIES.get((flavour.name, mode))
    if special is not None and message is None:
        status, body = special
    elif flavour.openrouter_errors:
        status, template, metadata = _OPENROUTER_ERRORS[mode]
        body = {
            "error": {
                "code": status,
                "message": message or template.format(**values),
                "metadata": dict(metadata),
            }
        }
    else:
        status, template, type_, default_param, default_code = _OPENAI_ERRORS[mode]
        body = {
            "error": {
                "message": message or template.format(**values),
                "type": type_,
                "param": param if param is not None else default_param,
                "code": code if code is not None else default_code,
            }
        }
    if status == 429 and mode in ("rate_limit", "daily_quota"):
        headers.update(_limit_headers(flavour, mode, retry_after))
        if flavour.name == "openrouter" and mode == "daily_quota":
            body["error"]["metadata"]["headers"] = {
                k: v for k, v in headers.items() if k.startswith("X-RateLimit")
            }
    return json_response(body, status=status, headers=headers)


def _limit_headers(flavour: Flavour, mode: str, retry_after: int) -> dict[str, str]:
    """retry-after plus each flavour's own rate-limit headers, showing nothing left."""
    headers = {"retry-after": str(retry_after)}
    if flavour.name == "openrouter":
        headers["X-RateLimit-Limit"] = "50" if mode == "daily_quota" else "20"
        headers["X-RateLimit-Remaining"] = "0"
        headers["X-RateLimit-Reset"] = str((now() + retry_after) * 1000)
    elif flavour.success_headers:
        headers.update(flavour.success_headers)
        if flavour.name == "cerebras":
            # Cerebras's only request limit is per day; its reset is float seconds.
            headers["x-ratelimit-remaining-requests-day"] = "0"
            headers["x-ratelimit-reset-requests-day"] = f"{float(retry_after)}"
        else:
            headers["x-ratelimit-remaining-requests"] = "0"
            headers["x-ratelimit-reset-requests"] = go_duration(retry_after)
    return headers


def check_auth(request: web.Request, flavour: Flavour) -> web.Response | None:
    token = bearer_token(request.headers)
    if token is None:
        message = (
            "No auth credentials found"
            if flavour.openrouter_errors
            else "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return error_response(flavour, "auth", message=message)
    if is_rejected(token):
        return error_response(flavour, "auth", key=mask(token))
    return None


def authorised_body(request: web.Request, flavour: Flavour) -> dict[str, Any] | web.Response:
    """The request's JSON object once its key is accepted, or the error response the
    provider answers (a bad key, a body that is not a JSON object): the start of every
    OpenAI-style route."""
    denied = check_auth(request, flavour)
    if denied is not None:
        return denied
    body = json_body(request)
    if body is INVALID_JSON or not isinstance(body, dict):
        return error_response(
            flavour,
            "bad_request",
            message="We could not parse the JSON body of your request.",
            param=None,
        )
    return body
