"""OpenRouter's PKCE variant: no client_id and no token endpoint.

The user is sent to /auth with a callback URL, and the returned code is
exchanged (JSON, not form) for a plain API key.
"""

from __future__ import annotations

from typing import Any

from authlib.common.urls import add_params_to_uri

from .tokens import OAuthError, PkcePair, error_code_for_status

OPENROUTER_AUTH_URL = "https://openrouter.ai/auth"
OPENROUTER_KEY_EXCHANGE_URL = "https://openrouter.ai/api/v1/auth/keys"


def openrouter_authorization_url(
    auth_base: str, callback_url: str | None, pkce: PkcePair, *, key_label: str | None = None
) -> str:
    """The documented authorize URL.

    ``auth_base`` is the authorize page itself (OPENROUTER_AUTH_URL, or the
    simulator's); no ``callback_url`` means headless: the code is shown on screen.
    """
    params: list[tuple[str, str]] = []
    if callback_url:
        params.append(("callback_url", callback_url))
    params += [("code_challenge", pkce.challenge), ("code_challenge_method", pkce.method)]
    if key_label:
        params.append(("key_label", key_label))
    url: str = add_params_to_uri(auth_base, params)
    return url


def openrouter_key_exchange_body(code: str, pkce: PkcePair) -> dict[str, str]:
    """JSON body for ``POST OPENROUTER_KEY_EXCHANGE_URL``."""
    return {"code": code, "code_verifier": pkce.verifier, "code_challenge_method": pkce.method}


def _openrouter_error_code(status: int) -> str:
    if status == 400:
        return "invalid_grant"  # bad, used or expired code / verifier: authorise again
    if status in (401, 403):
        return "access_denied"
    return error_code_for_status(status)


def parse_openrouter_key_exchange(status: int, body: Any) -> tuple[str, str | None]:
    """``(key, user_id)`` from the exchange reply.

    OpenRouter's ``{"error": {"code": <int>, "message"}}`` envelope raises OAuthError.
    """
    body = body if isinstance(body, dict) else {}
    error = body.get("error")
    if 200 <= status < 300 and not error:
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise OAuthError(
                "invalid_response",
                "key exchange response has no key",
                provider="openrouter",
                status_code=status,
            )
        user_id = body.get("user_id")
        return key, user_id if isinstance(user_id, str) and user_id else None
    message = error.get("message") if isinstance(error, dict) else None
    # Classified by status: the envelope's numeric code, else the HTTP status
    # (a 2xx that carries an error is treated as a server fault).
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and code >= 400:
        error_status = code
    else:
        error_status = status if status >= 400 else 500
    raise OAuthError(
        _openrouter_error_code(error_status),
        message if isinstance(message, str) else f"HTTP {status}",
        provider="openrouter",
        status_code=status,
    )
