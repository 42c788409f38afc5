"""OAuth flows: authorization code + PKCE, OpenRouter's key exchange, device grant, refresh.

One concept per module: ``config`` (endpoints from the provider's profile and
the admin's values; the errors of a bad setup), ``code_flow`` (the browser
flows and their callback), ``device_flow`` (RFC 8628), ``refresh`` (tokens kept
fresh under a lock), ``store`` (OAuthFlow and OAuthCredential rows, the audit
log, disconnecting), ``transport`` (one POST to an authorisation server) and
``clock``. The wire formats live in ``providers_app.kit.oauth``.

ORM access from async code goes through the async ORM API or ``sync_to_async``.
Tokens never appear in logs, audit records, exceptions or pages: only labels
and last four characters.
"""

from __future__ import annotations

from . import clock
from .code_flow import OAuthCallbackResult, oauth_callback, oauth_start
from .config import (
    OAuthCallbackError,
    OAuthConfigError,
    OAuthCredentialUnusable,
    OAuthEndpoints,
    oauth_endpoints,
    refresh_buffer,
)
from .device_flow import DEVICE_STATUSES, device_poll, device_start
from .refresh import (
    ensure_fresh_token,
    fresh_credential,
    oauth_credential_refresh_now,
    oauth_refresh_expiring,
)
from .store import oauth_credential_disconnect

__all__ = [
    "DEVICE_STATUSES",
    "OAuthCallbackError",
    "OAuthCallbackResult",
    "OAuthConfigError",
    "OAuthCredentialUnusable",
    "OAuthEndpoints",
    "clock",
    "device_poll",
    "device_start",
    "ensure_fresh_token",
    "fresh_credential",
    "oauth_callback",
    "oauth_credential_disconnect",
    "oauth_credential_refresh_now",
    "oauth_endpoints",
    "oauth_refresh_expiring",
    "oauth_start",
    "refresh_buffer",
]
