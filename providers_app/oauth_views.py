"""The OAuth redirect target: /oauth/callback/<provider>/ (thin: parse → service → render)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from providers_app.services.oauth import OAuthCallbackError, oauth_callback

# Rendering runs context processors, which may load the signed-in user (a query):
# from an async view that has to happen in a thread.
arender = sync_to_async(render)


# What oauth_start hands out (secrets.token_urlsafe) and what providers echo back.
_STATE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _check_state(state: str) -> None:
    """Refuse a state we could never have issued before it reaches the database.

    A NUL in it made PostgreSQL refuse the lookup (a 500); any other character outside
    the URL-safe alphabet cannot match a stored state either.
    """
    if state and not _STATE_CHARS.issuperset(state):
        raise OAuthCallbackError(
            "invalid_state", "The callback's state parameter is malformed. Start again."
        )


async def oauth_callback_view(request: HttpRequest, provider: str) -> HttpResponse:
    """Finish an authorisation started by ``services.oauth.oauth_start``.

    The single-use ``state`` is the proof that this browser started the flow,
    so no login is required here; the flow remembers who started it.
    """
    try:
        _check_state(request.GET.get("state") or "")
        result = await oauth_callback(provider_name=provider, params=request.GET)
    except OAuthCallbackError as exc:
        context: dict[str, Any] = {
            "provider_name": provider,
            "code": exc.code,
            "message": exc.message,
        }
        return await arender(request, "oauth/callback_error.html", context, status=exc.status)
    context = {
        "provider_name": result.provider_name,
        "is_api_key": result.api_key is not None,
        "label": result.label,
        "last4": result.last4,
    }
    return await arender(request, "oauth/callback_success.html", context)
