"""OpenRouter's account endpoints: ``GET /api/v1/key`` and ``GET /api/v1/credits``.

Static bodies shaped like OpenRouter's OpenAPI examples; the key label shows
only the caller's last 4 characters.
"""

from __future__ import annotations

from aiohttp import web

from providers_app.simulator.credentials import bearer_token, mask
from providers_app.simulator.openai_flavours import OPENROUTER, check_auth
from providers_app.simulator.streaming import bytes_response, dumps, json_response

_KEY_DATA = {
    "byok_usage": 0,
    "byok_usage_daily": 0,
    "byok_usage_monthly": 0,
    "byok_usage_weekly": 0,
    "creator_user_id": "user_simulator",
    "expires_at": None,
    "include_byok_in_limit": False,
    "is_free_tier": False,
    "is_management_key": False,
    "is_provisioning_key": False,
    "limit": 100,
    "limit_remaining": 74.5,
    "limit_reset": "monthly",
    "rate_limit": {
        "interval": "1h",
        "note": "This field is deprecated and safe to ignore.",
        "requests": 1000,
    },
    "usage": 25.5,
    "usage_daily": 25.5,
    "usage_monthly": 25.5,
    "usage_weekly": 25.5,
}
_CREDITS = dumps({"data": {"total_credits": 100, "total_usage": 25.5}}).encode()


async def key_handler(request: web.Request) -> web.Response:
    denied = check_auth(request, OPENROUTER)
    if denied is not None:
        return denied
    label = "sk-or-v1-" + mask(bearer_token(request.headers) or "")
    return json_response({"data": {**_KEY_DATA, "label": label}})


async def credits_handler(request: web.Request) -> web.Response:
    denied = check_auth(request, OPENROUTER)
    if denied is not None:
        return denied
    return bytes_response(_CREDITS)
