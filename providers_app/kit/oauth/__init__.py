"""OAuth 2.0 client wire pieces: PKCE, request builders, response parsers.

The OAuth flows (models, callback views, Celery refresh) send these requests
with httpx and keep the results; this package only knows the wire formats, so
it is framework-free and tested against captured transcripts. Time is always
passed in (``now``), never read here, so parsing is deterministic.

authlib supplies PKCE (RFC 7636), random tokens and authorize-URL
construction. It has no client-side parser that takes an injected clock
(``OAuth2Token`` reads ``time.time()`` itself) and no client-side RFC 8628
poller, so those few lines are written here.

``tokens`` holds the RFC 6749 client (errors, PKCE, authorize URL, token
requests and replies), ``device`` the RFC 8628 grant, ``openrouter`` and
``qwen`` what those two providers do their own way. Import from this package.
"""

from .device import (
    DEFAULT_DEVICE_POLL_INTERVAL,
    DEVICE_CODE_GRANT_TYPE,
    SLOW_DOWN_STEP,
    DeviceAuthorization,
    DevicePollResult,
    DevicePollStatus,
    classify_device_poll,
    device_authorization_request,
    device_token_request,
    parse_device_authorization,
)
from .openrouter import (
    OPENROUTER_AUTH_URL,
    OPENROUTER_KEY_EXCHANGE_URL,
    openrouter_authorization_url,
    openrouter_key_exchange_body,
    parse_openrouter_key_exchange,
)
from .qwen import DASHSCOPE_COMPATIBLE_BASE_URL, qwen_base_url
from .tokens import (
    OAuthError,
    OAuthTokens,
    PkcePair,
    authorization_code_request,
    authorization_url,
    new_pkce_pair,
    oauth_error_from_response,
    parse_token_response,
    refresh_token_request,
)

__all__ = [
    "DASHSCOPE_COMPATIBLE_BASE_URL",
    "DEFAULT_DEVICE_POLL_INTERVAL",
    "DEVICE_CODE_GRANT_TYPE",
    "OPENROUTER_AUTH_URL",
    "OPENROUTER_KEY_EXCHANGE_URL",
    "DeviceAuthorization",
    "DevicePollResult",
    "DevicePollStatus",
    "OAuthError",
    "OAuthTokens",
    "PkcePair",
    "SLOW_DOWN_STEP",
    "authorization_code_request",
    "authorization_url",
    "classify_device_poll",
    "device_authorization_request",
    "device_token_request",
    "new_pkce_pair",
    "oauth_error_from_response",
    "openrouter_authorization_url",
    "openrouter_key_exchange_body",
    "parse_device_authorization",
    "parse_openrouter_key_exchange",
    "parse_token_response",
    "qwen_base_url",
    "refresh_token_request",
]
