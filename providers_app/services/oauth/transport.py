"""Talking to an authorisation server: one POST, and a token reply read or refused.

HTTP goes through httpx.AsyncClient. Transport failures never quote the
request (it may hold a code, a verifier or a refresh token).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from providers_app.kit import oauth as wire
from providers_app.kit.oauth import OAuthError

HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


async def post(
    url: str, *, provider: str, form: dict | None = None, json_body: dict | None = None
) -> tuple[int, Any]:
    """POST to an authorisation server; transport failures become a retryable OAuthError."""
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.post(
                url, data=form, json=json_body, headers={"Accept": "application/json"}
            )
    except httpx.HTTPError as exc:
        # The exception text may quote the request; only its type is kept.
        raise OAuthError(
            "temporarily_unavailable",
            f"{type(exc).__name__} talking to the authorisation server",
            provider=provider,
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def token_reply(
    status: int, body: Any, *, provider: str, previous_refresh_token: str | None = None
) -> wire.OAuthTokens:
    if status != 200:
        raise wire.oauth_error_from_response(status, body, provider=provider)
    return wire.parse_token_response(
        body, now=time.time(), previous_refresh_token=previous_refresh_token
    )
