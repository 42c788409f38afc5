"""An adapter's configuration: one provider account and its deadlines. Secrets never
appear in a repr, so a logged config cannot leak them."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "LISTING_DEADLINE_SECONDS",
    "POOL_WAIT_SECONDS",
    "Deadlines",
    "ProviderConfig",
    "secret_hint",
]


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How long one request may wait on a provider, in seconds.

    - ``connect``: to open the TCP/TLS connection;
    - ``first_byte``: from sending the request to the first byte of the reply -- for a
      non-stream reply that is the whole generation (its headers come only when it
      is done), for a stream the response headers and the first chunk;
    - ``idle``: between two chunks of a stream;
    - ``total``: the whole request, shared by every retry on another credential and
      every failover to another candidate, so retries cannot multiply it.

    The defaults follow the official openai and anthropic SDKs (``connect=5.0``, every
    read up to 600 s: both ship ``httpx.Timeout(600, connect=5.0)``), so a long
    non-stream generation that succeeds with the SDK also succeeds through aipk.
    ``total`` has no SDK counterpart (theirs is per read); 30 minutes bounds a request
    without cutting long reasoning streams.
    """

    connect: float = 5.0
    first_byte: float = 600.0
    idle: float = 600.0
    total: float = 1800.0


# Waiting for a free connection in aipk's own pool (httpx's default): not the provider's
# fault, reported as LocalCongestionError.
POOL_WAIT_SECONDS = 5.0
# Model listing and health checks are quick calls: they need not wait a generation's 600 s.
LISTING_DEADLINE_SECONDS = 30.0


@dataclass(slots=True)
class ProviderConfig:
    """One provider account. Secrets are excluded from repr so they never reach a log."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    # OAuth bearer token; used instead of the API key when present
    access_token: str | None = field(default=None, repr=False)
    access_token_expires_at: float | None = None
    default_model: str | None = None
    # the whole-request deadline (an admin's single "timeout"); overrides deadlines.total
    timeout: float | None = None
    deadlines: Deadlines | None = None
    name: str = ""
    organization: str | None = None  # OpenAI
    project_id: str | None = None  # Gemini via the Code Assist (CloudCode) endpoint
    site_url: str | None = None  # OpenRouter HTTP-Referer
    site_name: str | None = None  # OpenRouter X-Title
    extra_headers: dict[str, str] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.access_token) if s]


def secret_hint(secret: str | None) -> str:
    return f"…{secret[-4:]}" if secret and len(secret) > 4 else ("…" if secret else "")
