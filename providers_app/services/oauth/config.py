"""Which endpoints and client a provider's OAuth flows use, and the errors of a bad setup.

The provider's public endpoints and flow defaults come from its profile
(``kit/providers/<name>.py``, docs/OAUTH.md); an admin's values on the Provider
row override them. aipk ships no client id: an admin registers an OAuth client
with the provider and enters its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings

from aipk_site.infra.errors import AipkError, InvalidRequest
from providers_app.kit.oauth import OAuthError
from providers_app.kit.providers import PROFILES, OAuthDefaults
from providers_app.models import OAuthCredential, Provider


@dataclass(frozen=True, slots=True)
class OAuthEndpoints:
    """One provider's OAuth client configuration: the admin's values, else the defaults."""

    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    device_url: str
    scopes: str
    authorize_params: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # the client secret stays out of reprs and tracebacks
        return (
            f"OAuthEndpoints(client_id={self.client_id!r}, "
            f"client_secret={'***' if self.client_secret else ''!r}, "
            f"authorize_url={self.authorize_url!r}, token_url={self.token_url!r}, "
            f"device_url={self.device_url!r}, scopes={self.scopes!r})"
        )


def oauth_defaults(provider: Provider) -> OAuthDefaults:
    """The profile's OAuth defaults (none for a type without a profile)."""
    profile = PROFILES.get(provider.type)
    return profile.oauth if profile is not None else OAuthDefaults()


def oauth_endpoints(provider: Provider) -> OAuthEndpoints:
    defaults = oauth_defaults(provider)
    token_url = provider.oauth_token_url or defaults.token_url
    if (
        defaults.token_url_from_base_url is not None
        and not provider.oauth_token_url
        and provider.base_url
    ):
        token_url = defaults.token_url_from_base_url(provider.base_url)
    return OAuthEndpoints(
        client_id=provider.oauth_client_id,
        client_secret=provider.oauth_client_secret or "",
        authorize_url=provider.oauth_authorize_url or defaults.authorize_url,
        token_url=token_url,
        device_url=provider.oauth_device_url or defaults.device_url,
        scopes=provider.oauth_scopes or defaults.scopes,
        authorize_params=defaults.authorize_params,
    )


def setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def refresh_buffer() -> timedelta:
    return timedelta(seconds=setting("OAUTH_REFRESH_BUFFER_SECONDS", 300))


# --------------------------------------------------------------------------- errors


class OAuthConfigError(InvalidRequest):
    """The provider's OAuth configuration is incomplete; names the field to fill in."""

    code = "oauth_not_configured"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}", param=field)


class OAuthCallbackError(AipkError):
    """A callback that cannot complete. ``message`` is safe to show; it holds no secret."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message, code=code)
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class OAuthCredentialUnusable(OAuthError):
    """The credential needs re-authorisation (or was revoked); the pool skips it."""

    def __init__(self, credential: OAuthCredential) -> None:
        super().__init__(
            "invalid_grant",
            f"OAuth credential {credential.pk} is {credential.state}; re-authorise it",
            provider=credential.provider.name,
        )


def require(value: str, field: str, what: str) -> str:
    if not value:
        raise OAuthConfigError(field, f"{what} is required for this OAuth flow")
    return value
