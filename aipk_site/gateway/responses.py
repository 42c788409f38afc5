"""``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``: OpenAI's Responses
API served by any chat provider.

The body is parsed by formats/responses_format.py into the kit's ``ChatRequest``; the
request then walks chat's whole path (dispatch.py ``gateway_reply`` /
``gateway_stream``): routing and aliases, admission (RPM, TPM, concurrency, budgets),
the response cache, the candidate loop with failover before the first byte, the
shutdown drain and the ``Ledger``'s one usage row (endpoint ``responses``, the
request id being the response's id). The answer is rendered as a ``response``
object or its typed event stream.

What the Responses API adds to chat is its memory: a response is stored for the
tenant unless ``store`` is false (response_store.py, off the event loop), and a later
request naming it in ``previous_response_id`` continues that conversation -- its
input items and output items come before the new input, as OpenAI does (the earlier
``instructions`` are not carried over). A tenant can only read, continue or delete
its own responses; any other id is a 404, the same as an unknown one.

The model's reasoning is kept with the conversation in full: a stored reasoning item
keeps its ``encrypted_content`` (the provider's signed thinking blocks) even when the
client did not ask for it in ``include`` and so never saw it, so a tool round trip
continued by ``previous_response_id`` gives Anthropic its signed blocks back. The
stored response object (what ``GET`` answers) is the one the client was sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aipk_site.gateway.dispatch import StreamReply, gateway_reply, gateway_stream
from aipk_site.gateway.formats.common import InputLimits
from aipk_site.gateway.formats.responses_format import (
    ResponseFrame,
    ResponsesBody,
    ResponsesStreamEncoder,
    messages_from_items,
    parse_responses,
    public,
    render_response,
)
from aipk_site.gateway.key_auth import KeyContext
from aipk_site.gateway.ledger import GatewayCall
from aipk_site.gateway.response_store import (
    MAX_ID_CHARS,
    response_delete,
    response_find,
    response_keep,
)
from aipk_site.infra.errors import NotFound

__all__ = [
    "ENDPOINT",
    "ID_PREFIX",
    "PATH_PREFIX",
    "Prepared",
    "open_stream",
    "prepare",
    "reply",
    "retrieve",
    "delete",
]

ENDPOINT = "responses"  # the usage rows' and metrics' endpoint
ID_PREFIX = "resp_"  # the response's id, which is also its request id (x-request-id)
PATH_PREFIX = "/v1/responses/"


@dataclass(slots=True)
class Prepared:
    """A parsed Responses request on its way: the gateway call and how to render it."""

    call: GatewayCall
    body: ResponsesBody
    frame: ResponseFrame
    # the stored conversation this request continues (empty for a new one)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stream(self) -> bool:
        return self.call.parsed.stream


def _not_found(response_id: str, param: str) -> NotFound:
    shown = response_id[:MAX_ID_CHARS]
    return NotFound(f"No response found with id '{shown}'.", param=param, code="response_not_found")


async def prepare(ctx: KeyContext, raw: Any, limits: InputLimits, request_id: str) -> Prepared:
    """Parse the body and, when it continues a stored response, put that conversation
    first. Raises AipkError (a 400 naming the field, a 404 for an unknown
    ``previous_response_id``)."""
    body = parse_responses(raw, limits)
    history: list[dict[str, Any]] = []
    if body.previous_response_id is not None:
        stored = await response_find(ctx.tenant_id, body.previous_response_id)
        if stored is None:
            raise _not_found(body.previous_response_id, "previous_response_id")
        history = stored.items
        body.parsed.request.messages = messages_from_items(
            [*history, *body.items], limits, instructions=body.instructions
        )
    call = GatewayCall(ctx, body.parsed, ENDPOINT, request_id)
    frame = ResponseFrame(request_id, body.parsed.request.model, int(time.time()), body)
    return Prepared(call, body, frame, history)


def _keep(prepared: Prepared, kept: dict[str, Any]) -> None:
    """Store the response: ``kept`` is its kept form (reasoning items with their
    encrypted_content), whose output continues the conversation."""
    if not prepared.body.store:
        return
    ctx = prepared.call.ctx
    response_keep(
        response_id=prepared.frame.response_id,
        tenant_id=ctx.tenant_id,
        key_id=ctx.key_id,
        model=prepared.frame.model,
        items=[*prepared.history, *prepared.body.items, *kept["output"]],
        response=public(prepared.frame, kept),
    )


async def reply(prepared: Prepared) -> tuple[dict[str, Any], dict[str, str]]:
    """The whole ``response`` object and the answer's headers; stored when asked."""
    answered = await gateway_reply(prepared.call)
    kept = render_response(prepared.frame, answered.response)
    _keep(prepared, kept)
    return public(prepared.frame, kept), answered.headers


async def open_stream(prepared: Prepared) -> tuple[StreamReply, ResponsesStreamEncoder]:
    """The opened stream and its encoder, which stores the response once it completes."""
    streamed = await gateway_stream(prepared.call)
    encoder = ResponsesStreamEncoder(prepared.frame, lambda final: _keep(prepared, final))
    return streamed, encoder


def response_id_from(path: str) -> str | None:
    """The id of ``/v1/responses/{id}``; None for any deeper path (not served here)."""
    rest = path[len(PATH_PREFIX) :]
    return rest if rest and "/" not in rest else None


async def retrieve(ctx: KeyContext, response_id: str) -> dict[str, Any]:
    stored = await response_find(ctx.tenant_id, response_id)
    if stored is None:
        raise _not_found(response_id, "response_id")
    return stored.response


async def delete(ctx: KeyContext, response_id: str) -> dict[str, Any]:
    if not await response_delete(ctx.tenant_id, response_id):
        raise _not_found(response_id, "response_id")
    return {"id": response_id, "object": "response", "deleted": True}
