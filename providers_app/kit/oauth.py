"""OAuth 2.0 client wire pieces: PKCE, request builders, response parsers.

The OAuth flows (models, callback views, Celery refresh) send these requests
with httpx and keep the results; this module only knows the wire formats, so
it is framework-free and tested against captured transcripts. Time is always
passed in (``now``), never read here, so parsing is deterministic.

authlib supplies PKCE (RFC 7636), random tokens and authorize-URL
construction. It has no client-side parser that takes an injected clock
(``OAuth2Token`` reads ``time.time()`` itself) and no client-side RFC 8628
poller, so those few lines are written here.

Error codes are compared case-insensitively: RFC 6749 codes are lower case,
but Qwen's server answers e.g. ``INVALID_GRANT``. Nothing is ever decided
from an error's description text.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oauth2.rfc8628.device_code import DEVICE_CODE_GRANT_TYPE

from .errors import ProviderError

__all__ = [
    "DASHSCOPE_COMPATIBLE_BASE_URL",
    "DEVICE_CODE_GRANT_TYPE",
    "OPENROUTER_AUTH_URL",
    "OPENROUTER_KEY_EXCHANGE_URL",
    "DeviceAuthorization",
    "DevicePollResult",
    "OAuthError",
    "OAuthTokens",
    "PkcePair",
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

DASHSCOPE_COMPATIBLE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
OPENROUTER_AUTH_URL = "https://openrouter.ai/auth"
OPENROUTER_KEY_EXCHANGE_URL = "https://openrouter.ai/api/v1/auth/keys"

# RFC 7636 §4.1: the verifier uses the unreserved characters [A-Za-z0-9-._~].
_PKCE_VERIFIER_CHARS = string.ascii_letters + string.digits + "-._~"
_PKCE_VERIFIER_LENGTH = 64  # within 43..128; ~380 bits of entropy

# The credential cannot be used again until a person re-authorises it.
_PERMANENT_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied"}
)
# The authorisation server is busy or failing; the same request may succeed later.
_RETRYABLE_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})

# RFC 8628 §3.5: on slow_down "the interval MUST be increased by 5 seconds for
# this and all subsequent requests". qwen-code multiplies by 1.5 up to 10 s
# instead; the RFC rule is what every conforming server expects, and it is never
# faster than Qwen's own client, so it is the one used here.
SLOW_DOWN_STEP = 5.0
DEFAULT_DEVICE_POLL_INTERVAL = 5.0  # RFC 8628 §3.2; Qwen callers pass 2


def _hint(secret: str | None) -> str | None:
    """The only part of a secret that may be shown: its last four characters."""
    if not secret:
        return None
    return f"…{secret[-4:]}" if len(secret) > 4 else "…"


# --------------------------------------------------------------------------- errors


class OAuthError(ProviderError):
    """An RFC 6749 §5.2 error (or a malformed answer) from an authorisation server.

    ``permanent`` means the stored credential needs re-authorisation;
    ``retryable`` means try the same request again later.
    """

    type = "oauth_error"

    def __init__(
        self,
        error: str,
        description: str = "",
        *,
        provider: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.error = (error or "invalid_response").strip().lower()
        self.description = description or ""
        message = f"{self.error}: {self.description}" if self.description else self.error
        super().__init__(
            message,
            provider=provider,
            status_code=status_code,
            code=self.error,
            retry_after=retry_after,
        )
        self.permanent = self.error in _PERMANENT_ERRORS
        self.retryable = self.error in _RETRYABLE_ERRORS
        # about this credential's tokens: another credential may well serve the request
        self.scope = "credential"


def _error_code_for_status(status: int) -> str:
    """An RFC 6749 code for an error reply that carries none in its body."""
    if status >= 500:
        return "server_error"
    if status == 429:
        return "temporarily_unavailable"
    if status == 401:
        return "invalid_client"  # RFC 6749 §5.2: failed client authentication may answer 401
    return "invalid_request"


def oauth_error_from_response(status: int, body: Any, *, provider: str = "") -> OAuthError:
    """The OAuthError for a token-endpoint reply: from its ``error`` field, else from the status."""
    if isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]:
        description = body.get("error_description")
        return OAuthError(
            body["error"],
            description if isinstance(description, str) else "",
            provider=provider,
            status_code=status,
        )
    return OAuthError(
        _error_code_for_status(status), f"HTTP {status}", provider=provider, status_code=status
    )


# --------------------------------------------------------------------------- PKCE


@dataclass(slots=True, frozen=True, repr=False)
class PkcePair:
    verifier: str
    challenge: str
    method: Literal["S256"] = "S256"

    def __repr__(self) -> str:
        return (
            f"PkcePair(verifier={_hint(self.verifier)!r}, challenge={self.challenge!r}, "
            f"method={self.method!r})"
        )


def new_pkce_pair() -> PkcePair:
    """A fresh RFC 7636 verifier and its S256 challenge (authlib computes both)."""
    verifier = generate_token(_PKCE_VERIFIER_LENGTH, chars=_PKCE_VERIFIER_CHARS)
    return PkcePair(verifier=verifier, challenge=create_s256_code_challenge(verifier))


# --------------------------------------------------------------------------- tokens

_TOKEN_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "scope",
        "id_token",
        "resource_url",
    }
)


@dataclass(slots=True, repr=False)
class OAuthTokens:
    access_token: str
    refresh_token: str | None = None
    token_type: str = "Bearer"
    expires_at: float | None = None  # unix time; None when the server gave no lifetime
    scope: str | None = None
    id_token: str | None = None
    resource_url: str | None = None  # Qwen: the API host this account must use
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # extra may hold provider-specific secrets too, so only its keys are shown.
        return (
            f"OAuthTokens(access_token={_hint(self.access_token)!r}, "
            f"refresh_token={_hint(self.refresh_token)!r}, token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, scope={self.scope!r}, "
            f"id_token={_hint(self.id_token)!r}, "
            f"resource_url={self.resource_url!r}, extra_keys={sorted(self.extra)!r})"
        )

    def expires_within(self, seconds: float, *, now: float) -> bool:
        """True when the access token is expired or will be within ``seconds`` (refresh ahead)."""
        return self.expires_at is not None and self.expires_at - seconds <= now


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional_str(body: dict, key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def parse_token_response(
    body: dict, *, now: float, previous_refresh_token: str | None = None
) -> OAuthTokens:
    """Tokens from a successful token-endpoint reply (RFC 6749 §5.1).

    A refresh reply may omit ``refresh_token`` (Google always does): the
    previous one stays valid and is kept. A rotating server sends a new one,
    which replaces it.
    """
    if not isinstance(body, dict):
        raise OAuthError("invalid_response", "token response is not a JSON object")
    if isinstance(body.get("error"), str) and body["error"]:
        raise oauth_error_from_response(200, body)
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise OAuthError("invalid_response", "token response has no access_token")

    expires_at = None
    expires_in = body.get("expires_in")
    if expires_in is not None and not isinstance(expires_in, bool):
        try:
            expires_at = now + float(expires_in)  # some servers send the number as a string
        except (TypeError, ValueError):
            raise OAuthError(
                "invalid_response", "token response has a non-numeric expires_in"
            ) from None

    scope = body.get("scope")
    if isinstance(scope, list):
        scope = " ".join(str(s) for s in scope)

    return OAuthTokens(
        access_token=access_token,
        refresh_token=_optional_str(body, "refresh_token") or previous_refresh_token,
        token_type=_optional_str(body, "token_type") or "Bearer",
        expires_at=expires_at,
        scope=scope if isinstance(scope, str) and scope else None,
        id_token=_optional_str(body, "id_token"),
        resource_url=_optional_str(body, "resource_url"),
        extra={k: v for k, v in body.items() if k not in _TOKEN_FIELDS},
    )


# --------------------------------------------------------------------------- device flow (RFC 8628)


@dataclass(slots=True, repr=False)
class DeviceAuthorization:
    device_code: str
    user_code: str  # shown to the user, not a secret
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    interval: float

    def __repr__(self) -> str:
        return (
            f"DeviceAuthorization(device_code={_hint(self.device_code)!r}, "
            f"user_code={self.user_code!r}, "
            f"verification_uri={self.verification_uri!r}, "
            f"verification_uri_complete={self.verification_uri_complete!r}, "
            f"expires_at={self.expires_at!r}, interval={self.interval!r})"
        )


def parse_device_authorization(
    body: dict, *, now: float, default_interval: float = DEFAULT_DEVICE_POLL_INTERVAL
) -> DeviceAuthorization:
    """The device authorisation reply (RFC 8628 §3.2).

    ``interval`` is optional on the wire; it falls back to the caller's default
    (RFC 8628 says 5 s, Qwen's client polls every 2 s).
    """
    if not isinstance(body, dict):
        raise OAuthError("invalid_response", "device authorization response is not a JSON object")
    if isinstance(body.get("error"), str) and body["error"]:
        raise oauth_error_from_response(200, body)
    device_code = _optional_str(body, "device_code")
    user_code = _optional_str(body, "user_code")
    # Google's device endpoint spells it verification_url.
    verification_uri = _optional_str(body, "verification_uri") or _optional_str(
        body, "verification_url"
    )
    expires_in = body.get("expires_in")
    if not (device_code and user_code and verification_uri) or not _is_number(expires_in):
        raise OAuthError(
            "invalid_response",
            "device authorization response lacks device_code, user_code, "
            "verification_uri or expires_in",
        )
    interval = body.get("interval")
    return DeviceAuthorization(
        device_code=device_code,
        user_code=user_code,
        verification_uri=verification_uri,
        verification_uri_complete=_optional_str(body, "verification_uri_complete"),
        expires_at=now + float(expires_in),
        interval=(
            float(interval) if _is_number(interval) and interval > 0 else float(default_interval)
        ),
    )


DevicePollStatus = Literal["pending", "slow_down", "expired", "denied", "success"]


@dataclass(slots=True, frozen=True)
class DevicePollResult:
    status: DevicePollStatus
    interval: float | None = None  # the interval to use from now on (set for pending and slow_down)
    tokens: OAuthTokens | None = None  # set for success


def classify_device_poll(
    status: int, body: dict, *, now: float, interval: float
) -> DevicePollResult:
    """What one device-token poll (RFC 8628 §3.4/3.5) means for the polling loop.

    Decided by the ``error`` field, not the HTTP status: Qwen answers
    authorization_pending with 400 and slow_down with 429. ``interval`` is the
    current polling interval; slow_down raises it by 5 s (RFC rule, see
    SLOW_DOWN_STEP). Any other error raises OAuthError.
    """
    body = body if isinstance(body, dict) else {}
    error = body.get("error")
    if isinstance(error, str) and error:
        code = error.strip().lower()
        if code == "authorization_pending":
            return DevicePollResult("pending", interval=interval)
        if code == "slow_down":
            new_interval = interval + SLOW_DOWN_STEP
            # GitHub-style servers state the new interval; never poll faster than they ask.
            stated = body.get("interval")
            if _is_number(stated):
                new_interval = max(new_interval, float(stated))
            return DevicePollResult("slow_down", interval=new_interval)
        if code == "expired_token":
            return DevicePollResult("expired")
        if code == "access_denied":
            return DevicePollResult("denied")
        raise oauth_error_from_response(status, body)
    if 200 <= status < 300:
        return DevicePollResult("success", tokens=parse_token_response(body, now=now))
    raise oauth_error_from_response(status, body)


def qwen_base_url(resource_url: str | None) -> str:
    """The OpenAI-compatible base URL for a Qwen OAuth account.

    qwen-code's rule: a bare host becomes ``https://<host>/v1``; a value that
    already has a scheme keeps it (its own test mock returns
    ``https://new-endpoint.com``), and ``/v1`` is not doubled.
    """
    if not resource_url or not resource_url.strip():
        return DASHSCOPE_COMPATIBLE_BASE_URL
    url = resource_url.strip().rstrip("/")
    if not url.lower().startswith(("http://", "https://")):
        url = f"https://{url}"
    return url if url.endswith("/v1") else f"{url}/v1"


# --------------------------------------------------------------------------- request builders
# These return (url, form_fields) for ``httpx.post(url, data=form_fields)``.
# authlib's prepare_token_request returns an already-encoded string and drops
# the caller's field choices, so the few fields are written out here.


def device_authorization_request(
    endpoint: str, client_id: str, scope: str, pkce: PkcePair | None
) -> tuple[str, dict[str, str]]:
    fields = {"client_id": client_id, "scope": scope}
    if pkce is not None:
        fields.update(code_challenge=pkce.challenge, code_challenge_method=pkce.method)
    return endpoint, fields


def device_token_request(
    endpoint: str, client_id: str, device_code: str, code_verifier: str | None
) -> tuple[str, dict[str, str]]:
    fields = {
        "grant_type": DEVICE_CODE_GRANT_TYPE,
        "client_id": client_id,
        "device_code": device_code,
    }
    if code_verifier:
        fields["code_verifier"] = code_verifier
    return endpoint, fields


def refresh_token_request(
    endpoint: str, client_id: str, refresh_token: str, client_secret: str | None = None
) -> tuple[str, dict[str, str]]:
    # client_secret in the body (client_secret_post): Google expects it even for installed apps.
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if client_secret:
        fields["client_secret"] = client_secret
    return endpoint, fields


def authorization_code_request(
    endpoint: str,
    client_id: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    client_secret: str | None = None,
) -> tuple[str, dict[str, str]]:
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": code_verifier,
    }
    if client_secret:
        fields["client_secret"] = client_secret
    return endpoint, fields


_AUTHORIZE_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)


def authorization_url(
    authorize_endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str | list[str],
    state: str,
    pkce: PkcePair,
    extra_params: dict[str, str] | None = None,
) -> str:
    """The RFC 6749 §4.1.1 authorize URL with an S256 challenge (built by authlib)."""
    extra = dict(extra_params or {})
    clash = _AUTHORIZE_PARAMS.intersection(extra)
    if clash:
        raise ValueError(f"extra_params may not override {', '.join(sorted(clash))}")
    return prepare_grant_uri(
        authorize_endpoint,
        client_id,
        "code",
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        code_challenge=pkce.challenge,
        code_challenge_method=pkce.method,
        **extra,
    )


# ----------------------------------------------------------------- OpenRouter PKCE variant
# No client_id and no token endpoint: the user is sent to /auth with a callback
# URL, and the returned code is exchanged (JSON, not form) for a plain API key.


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
    return add_params_to_uri(auth_base, params)


def openrouter_key_exchange_body(code: str, pkce: PkcePair) -> dict[str, str]:
    """JSON body for ``POST OPENROUTER_KEY_EXCHANGE_URL``."""
    return {"code": code, "code_verifier": pkce.verifier, "code_challenge_method": pkce.method}


def _openrouter_error_code(status: int) -> str:
    if status == 400:
        return "invalid_grant"  # bad, used or expired code / verifier: authorise again
    if status in (401, 403):
        return "access_denied"
    return _error_code_for_status(status)


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
