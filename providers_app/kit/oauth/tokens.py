"""The OAuth 2.0 client's wire (RFC 6749): errors, PKCE (RFC 7636), authorize URL, tokens.

Error codes are compared case-insensitively: RFC 6749 codes are lower case,
but Qwen's server answers e.g. ``INVALID_GRANT``. Nothing is ever decided
from an error's description text.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from ..errors import ProviderError

# RFC 7636 §4.1: the verifier uses the unreserved characters [A-Za-z0-9-._~].
_PKCE_VERIFIER_CHARS = string.ascii_letters + string.digits + "-._~"
_PKCE_VERIFIER_LENGTH = 64  # within 43..128; ~380 bits of entropy

# The credential cannot be used again until a person re-authorises it.
_PERMANENT_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied"}
)
# The authorisation server is busy or failing; the same request may succeed later.
_RETRYABLE_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


def hint(secret: str | None) -> str | None:
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


def error_code_for_status(status: int) -> str:
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
        error_code_for_status(status), f"HTTP {status}", provider=provider, status_code=status
    )


# --------------------------------------------------------------------------- PKCE


@dataclass(slots=True, frozen=True, repr=False)
class PkcePair:
    verifier: str
    challenge: str
    method: Literal["S256"] = "S256"

    def __repr__(self) -> str:
        return (
            f"PkcePair(verifier={hint(self.verifier)!r}, challenge={self.challenge!r}, "
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
            f"OAuthTokens(access_token={hint(self.access_token)!r}, "
            f"refresh_token={hint(self.refresh_token)!r}, token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, scope={self.scope!r}, "
            f"id_token={hint(self.id_token)!r}, "
            f"resource_url={self.resource_url!r}, extra_keys={sorted(self.extra)!r})"
        )

    def expires_within(self, seconds: float, *, now: float) -> bool:
        """True when the access token is expired or will be within ``seconds`` (refresh ahead)."""
        return self.expires_at is not None and self.expires_at - seconds <= now


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def parse_token_response(
    body: dict[str, Any], *, now: float, previous_refresh_token: str | None = None
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
        refresh_token=optional_str(body, "refresh_token") or previous_refresh_token,
        token_type=optional_str(body, "token_type") or "Bearer",
        expires_at=expires_at,
        scope=scope if isinstance(scope, str) and scope else None,
        id_token=optional_str(body, "id_token"),
        resource_url=optional_str(body, "resource_url"),
        extra={k: v for k, v in body.items() if k not in _TOKEN_FIELDS},
    )


# These return (url, form_fields) for ``httpx.post(url, data=form_fields)``.
# authlib's prepare_token_request returns an already-encoded string and drops
# the caller's field choices, so the few fields are written out here.


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
    url: str = prepare_grant_uri(
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
    return url
