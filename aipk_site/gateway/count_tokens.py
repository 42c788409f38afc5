"""``POST /v1/messages/count_tokens``: how many input tokens a Messages request would use.

Anthropic's SDK asks this (``client.messages.count_tokens``) before a request, to keep a
conversation inside a context window or a budget. The answer is the gateway's own
prompt estimate -- the figure admission reserves for the same body on /v1/messages
(``ledger.estimate_prompt_tokens``: characters / 4, plus each image, document and audio
block at kit/media.py's ``media_tokens`` allowance) -- not a provider's tokenizer: the
model may be an alias served by several providers, each counting differently, and
asking one upstream would spend a provider call (and its rate limit) on every count.
docs/GATEWAY.md ("Counting tokens") says so to callers.

What the request goes through, and why:

- the key is authenticated, and the model resolved, exactly as on /v1/messages: a key
  learns nothing here about models it could not call there (404 / 403 alike);
- the body is checked by /v1/messages' own parser, so every bad field is the same 400;
  ``max_tokens`` (which count_tokens does not take) is filled in when absent;
- it counts as one request against the key's and the tenant's RPM (a free endpoint
  without any limit would let one key keep a worker busy), and as nothing against TPM,
  concurrency or the budget: it sends nothing upstream and costs nothing;
- no usage row: a usage row is a provider call and its cost, and there is neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aipk_site.gateway.admission import Limits, admit, settle, settle_later
from aipk_site.gateway.formats.anthropic_format import parse_messages
from aipk_site.gateway.formats.common import MAX_OUTPUT_TOKENS, InputLimits
from aipk_site.gateway.key_auth import KeyContext
from aipk_site.gateway.ledger import estimate_prompt_tokens
from aipk_site.gateway.redaction import redact_request
from aipk_site.gateway.routing import resolve_model

__all__ = ["TokenCount", "count_message_tokens"]

# count_tokens takes no max_tokens, which /v1/messages' parser requires: any value in
# range does, since the count is of the input only -- the largest, so a thinking budget
# (which must stay below max_tokens) is never refused for it.
_PLACEHOLDER_MAX_TOKENS = MAX_OUTPUT_TOKENS


@dataclass(frozen=True, slots=True)
class TokenCount:
    input_tokens: int
    # the rate-limit headers of the admission (x-ratelimit-*), as /v1/messages sends them
    headers: dict[str, str]

    def body(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens}


async def count_message_tokens(
    ctx: KeyContext, body: Any, limits: InputLimits, *, request_id: str
) -> TokenCount:
    """The estimate for ``body`` (a Messages request), admitted against the RPM limits.

    Raises the gateway's errors (InvalidRequest, NotFound, PermissionDenied,
    LimitExceeded), which the edge renders in Anthropic's shape."""
    if isinstance(body, dict) and "max_tokens" not in body:
        body = {**body, "max_tokens": _PLACEHOLDER_MAX_TOKENS}
    request = parse_messages(body, limits).request
    await resolve_model(
        tenant_id=ctx.tenant_id,
        model=request.model,
        allowed_models=ctx.allowed_models,
        allowed_provider_ids=ctx.allowed_provider_ids,
        ordered=False,  # a count calls no provider: it must not move a rotation
    )
    if ctx.pii_redaction:
        # the count of what a provider would be sent, as /v1/messages estimates it
        redact_request(request)
    headers = await _admit_one_request(ctx, request_id)
    return TokenCount(estimate_prompt_tokens(request), headers)


async def _admit_one_request(ctx: KeyContext, request_id: str) -> dict[str, str]:
    """One request on the RPM counters (LimitExceeded past them), settled at once."""
    if ctx.rpm is None and ctx.tenant_rpm is None:
        return {}  # nothing to count against: no round trip to the store
    admission = await admit(
        request_id=request_id,
        key_id=ctx.key_id,
        tenant_id=ctx.tenant_id,
        # RPM only: a count uses no tokens, stream slot or money
        key_limits=Limits(rpm=ctx.rpm),
        tenant_limits=Limits(rpm=ctx.tenant_rpm),
        estimated_tokens=0,
        estimated_cost_micro=0,
        stream=False,
    )
    try:
        await settle(admission, tokens=0, cost_micro=0)
    except Exception:  # noqa: BLE001 -- the count is known; the store is retried later
        settle_later(admission, tokens=0, cost_micro=0)
    return admission.headers
