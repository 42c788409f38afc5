"""Sending one embeddings request to a provider through its pool of credentials.

The embeddings half of the provider request path. It is chat's path (services/chat.py):
the same credential loop (``_over_credentials``: key pool, OAuth refresh, the
rate-limit tracker and pacing, the circuit breaker, retries on the next credential,
a bad key persisted, the provider metrics) under the same one deadline, with the
adapter's ``embed`` as the call. Kept apart so chat's module need not know embeddings
beyond the request type its loop accepts.
"""

from __future__ import annotations

from providers_app.kit.adapters import BaseAdapter
from providers_app.kit.embeddings import EmbeddingRequest, EmbeddingResponse
from providers_app.kit.types import Usage
from providers_app.models import Provider
from providers_app.services.chat import _Attempt, _over_credentials, request_deadline

__all__ = ["provider_embed"]


async def provider_embed(
    provider: Provider,
    request: EmbeddingRequest,
    *,
    tenant_id: int | None = None,
    trace: dict[str, str] | None = None,
    deadline: float | None = None,
) -> EmbeddingResponse:
    """One vector per input from ``provider``, with the organisation's credentials and
    ``tenant_id``'s own; ``trace`` and ``deadline`` as in ``provider_chat``. A provider
    type that cannot embed raises the kit's ``InvalidRequestError`` (code
    ``embeddings_not_supported``) before anything is sent; it is not retried."""
    until = request_deadline(provider, deadline)

    async def embed(
        attempt: _Attempt, adapter: BaseAdapter, cred: str, tracked: str, started: float
    ) -> EmbeddingResponse:
        response = await adapter.embed(request, deadline=until)
        await attempt.res.tracker.update(tracked, response.rate_limit)
        attempt.succeeded(cred, Usage(prompt_tokens=response.prompt_tokens), started)
        return response

    _, response = await _over_credentials(
        provider, request, tenant_id=tenant_id, trace=trace, deadline=until, use=embed
    )
    return response
