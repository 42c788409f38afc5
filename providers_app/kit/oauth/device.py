"""The device authorisation grant (RFC 8628): start it, poll it, read what each poll means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from authlib.oauth2.rfc8628.device_code import DEVICE_CODE_GRANT_TYPE as DEVICE_CODE_GRANT_TYPE

from .tokens import (
    OAuthError,
    OAuthTokens,
    PkcePair,
    hint,
    is_number,
    oauth_error_from_response,
    optional_str,
    parse_token_response,
)

# RFC 8628 §3.5: on slow_down "the interval MUST be increased by 5 seconds for
# this and all subsequent requests". qwen-code multiplies by 1.5 up to 10 s
# instead; the RFC rule is what every conforming server expects, and it is never
# faster than Qwen's own client, so it is the one used here.
SLOW_DOWN_STEP = 5.0
DEFAULT_DEVICE_POLL_INTERVAL = 5.0  # RFC 8628 §3.2; Qwen callers pass 2


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
            f"DeviceAuthorization(device_code={hint(self.device_code)!r}, "
            f"user_code={self.user_code!r}, "
            f"verification_uri={self.verification_uri!r}, "
            f"verification_uri_complete={self.verification_uri_complete!r}, "
            f"expires_at={self.expires_at!r}, interval={self.interval!r})"
        )


def parse_device_authorization(
    body: dict[str, Any], *, now: float, default_interval: float = DEFAULT_DEVICE_POLL_INTERVAL
) -> DeviceAuthorization:
    """The device authorisation reply (RFC 8628 §3.2).

    ``interval`` is optional on the wire; it falls back to the caller's default
    (RFC 8628 says 5 s, Qwen's client polls every 2 s).
    """
    if not isinstance(body, dict):
        raise OAuthError("invalid_response", "device authorization response is not a JSON object")
    if isinstance(body.get("error"), str) and body["error"]:
        raise oauth_error_from_response(200, body)
    device_code = optional_str(body, "device_code")
    user_code = optional_str(body, "user_code")
    # Google's device endpoint spells it verification_url.
    verification_uri = optional_str(body, "verification_uri") or optional_str(
        body, "verification_url"
    )
    expires_in = body.get("expires_in")
    if not (device_code and user_code and verification_uri) or not is_number(expires_in):
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
        verification_uri_complete=optional_str(body, "verification_uri_complete"),
        expires_at=now + float(expires_in),
        interval=(
            float(interval) if is_number(interval) and interval > 0 else float(default_interval)
        ),
    )


DevicePollStatus = Literal["pending", "slow_down", "expired", "denied", "success"]


@dataclass(slots=True, frozen=True)
class DevicePollResult:
    status: DevicePollStatus
    interval: float | None = None  # the interval to use from now on (set for pending and slow_down)
    tokens: OAuthTokens | None = None  # set for success


def classify_device_poll(
    status: int, body: dict[str, Any], *, now: float, interval: float
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
            if is_number(stated):
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


# These return (url, form_fields) for ``httpx.post(url, data=form_fields)``.


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
