"""``ProviderProfile``: everything aipk knows about one provider type, in one value.

The services, the console and the shared test battery read a provider's
profile instead of branching on its type name, so adding a provider means one
module in this package, one entry in its registry, and the battery passing.
Plain data and functions: the kit imports no Django.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import embeddings
from ..adapters.base import BaseAdapter
from ..ratelimit import BucketLimits, RateLimitInfo, header_parser

__all__ = ["OAuthDefaults", "ProviderProfile", "no_client_limits"]

CodeFlow = Literal["authorization_code", "openrouter_pkce"]


@dataclass(frozen=True, slots=True)
class OAuthDefaults:
    """A provider's public OAuth endpoints and which flows it offers (docs/OAUTH.md).

    aipk ships no client id: an admin registers an OAuth client with the
    provider and enters its id; the admin's endpoint values override these.
    """

    authorize_url: str = ""
    token_url: str = ""
    device_url: str = ""
    scopes: str = ""
    # extra authorize-URL parameters the provider needs (e.g. Google's offline access)
    authorize_params: tuple[tuple[str, str], ...] = ()
    # which browser flow the provider speaks; None when it offers the device flow only
    code_flow: CodeFlow | None = "authorization_code"
    # seconds between device polls when the device reply names no interval (None: RFC 8628's)
    device_poll_interval: float | None = None
    # the token URL derived from the provider's API base URL, when the admin named none
    token_url_from_base_url: Callable[[str], str] | None = None

    @property
    def code_needs_client_id(self) -> bool:
        """OpenRouter's PKCE variant needs no registered client; the standard flow does."""
        return self.code_flow != "openrouter_pkce"


def no_client_limits(settings: Mapping[str, Any]) -> BucketLimits | None:
    """For providers that send rate-limit headers: the tracker reads those instead."""
    return None


@dataclass(frozen=True, slots=True)
class ProviderProfile:
    provider_type: str  # the Provider.type value (ProviderType in providers_app.models)
    label: str
    adapter: type[BaseAdapter]
    oauth: OAuthDefaults = field(default_factory=OAuthDefaults)
    # whether every reply carries the limit headers, or only refusals do (OpenRouter)
    rate_limit_headers_on_success: bool = True
    # client-side limits from the provider's settings, for those that send no headers
    client_limits: Callable[[Mapping[str, Any]], BucketLimits | None] = no_client_limits
    # an endpoint-agnostic type has no default host: the admin must name one
    requires_base_url: bool = False
    # the API base URL an OAuth account must use, from the token reply's resource_url
    base_url_for_account: Callable[[str | None], str] | None = None
    # the credential the provider is normally used with (Qwen's portal: the device flow)
    primary_credential: Literal["api_key", "oauth"] = "api_key"
    # its error body names "context too long" with a code (not only in prose)
    context_length_coded: bool = True
    # an exhausted billing quota is answered like a rate limit (Gemini's RESOURCE_EXHAUSTED)
    quota_is_rate_limit: bool = False
    # the longest reply a model of this type may give when neither discovery nor the
    # adapter's catalogue knows the model: deliberately high, since a budget reservation
    # must not fall short. From the largest documented maximum outputs as of 2025-12;
    # types that front many vendors' models keep the default.
    max_output_tokens: int = 131_072
    # seconds to wait read from an error body's structured hint (beyond retry-after headers)
    retry_after_from_error: Callable[[Any], float | None] | None = None

    @property
    def rate_limit_style(self) -> str:
        """Which header parser reads this provider's limits (the adapter's own choice)."""
        return self.adapter.rate_limit_style

    def parse_rate_limits(
        self, headers: Mapping[str, str], *, now: float | None = None
    ) -> RateLimitInfo | None:
        return header_parser(self.rate_limit_style)(headers, now=now)

    @property
    def sends_rate_limit_headers(self) -> bool:
        return self.rate_limit_style != "none"

    @property
    def has_embeddings(self) -> bool:
        """Whether this type's API embeds (``kit/embeddings.py``, by the adapter's wire).
        Per credential, Gemini's Code Assist route does not: ``adapter.embeddings_wire()``
        says so for one adapter."""
        return self.adapter.provider_type in embeddings.WIRES
