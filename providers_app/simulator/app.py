"""The aiohttp application: one server, one path prefix per provider.

| prefix (base URL)            | wire      |
|------------------------------|-----------|
| /openai/v1                   | OpenAI    |
| /anthropic (SDK adds /v1)    | Anthropic |
| /gemini (SDK adds /v1beta)   | Gemini (+ /gemini/v1internal:* Code Assist) |
| /cerebras/v1, /qwen/v1       | OpenAI-compatible |
| /openrouter/api/v1           | OpenAI-compatible + /key, /credits |

Embeddings (embeddings_wire.py): POST {prefix}/embeddings on /openai/v1, /qwen/v1 and
/openrouter/api/v1 (Cerebras has none), and Gemini's models/{model}:embedContent and
:batchEmbedContents.

Unprefixed aliases: /v1/chat/completions and /v1/embeddings (OpenAI), /v1/messages (Anthropic),
/v1/models (Anthropic if the request has ``anthropic-version``, else OpenAI),
/v1beta/... (Gemini). Test helpers live under /_sim.
"""

from __future__ import annotations

import json

from aiohttp import web

from providers_app.simulator import (
    anthropic_wire,
    embeddings_wire,
    gemini_wire,
    media,
    oauth_server,
    openai_flavours,
    openai_wire,
    openrouter_account,
)
from providers_app.simulator.context import DELAY_S, INVALID_JSON, JSON_KEY, REQUEST_LOG
from providers_app.simulator.request_log import RequestLog

SIM_PREFIX = "/_sim/"
MAX_BODY_BYTES = 32 * 1024 * 1024


@web.middleware
async def read_and_record(request: web.Request, handler):
    """Parse the JSON body once and log the request before the handler runs.

    Logging first means a request that hangs or is cut is still visible in
    /_sim/requests.
    """
    if request.path.startswith(SIM_PREFIX):
        return await handler(request)
    body: object = None
    if request.can_read_body:
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = INVALID_JSON
    request[JSON_KEY] = body
    request.app[REQUEST_LOG].record(
        request.method,
        request.path,
        request.query,
        request.headers,
        None if body is INVALID_JSON else body,
    )
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[REQUEST_LOG].snapshot())


async def clear_requests(request: web.Request) -> web.Response:
    request.app[REQUEST_LOG].clear()
    return web.Response(status=204)


async def unprefixed_models(request: web.Request) -> web.StreamResponse:
    if "anthropic-version" in request.headers:
        return await anthropic_wire.models_handler(request)
    return await _OPENAI_MODELS(request)


async def unprefixed_model(request: web.Request) -> web.StreamResponse:
    if "anthropic-version" in request.headers:
        return await anthropic_wire.model_handler(request)
    return await _OPENAI_MODEL(request)


_OPENAI_MODELS = openai_wire.models_handler(openai_flavours.OPENAI)
_OPENAI_MODEL = openai_wire.model_handler(openai_flavours.OPENAI)

_OPENAI_COMPATIBLE = (
    ("/openai/v1", openai_flavours.OPENAI),
    ("/cerebras/v1", openai_flavours.CEREBRAS),
    ("/qwen/v1", openai_flavours.QWEN),
    ("/openrouter/api/v1", openai_flavours.OPENROUTER),
)


def _routes() -> list[web.RouteDef]:
    routes = [
        web.get("/_sim/health", health),
        web.get("/_sim/requests", list_requests),
        web.delete("/_sim/requests", clear_requests),
        web.get("/_sim/media/{name}", media.media_file),
    ]
    for prefix, flavour in _OPENAI_COMPATIBLE:
        routes += [
            web.post(f"{prefix}/chat/completions", openai_wire.chat_handler(flavour)),
            web.get(f"{prefix}/models", openai_wire.models_handler(flavour)),
            web.get(f"{prefix}/models/{{model:.+}}", openai_wire.model_handler(flavour)),
        ]
        if flavour is not openai_flavours.CEREBRAS:  # Cerebras has no embeddings API
            routes.append(web.post(f"{prefix}/embeddings", embeddings_wire.openai_handler(flavour)))
    routes += [
        web.get("/openrouter/api/v1/key", openrouter_account.key_handler),
        web.get("/openrouter/api/v1/credits", openrouter_account.credits_handler),
    ]
    for prefix in ("/anthropic", ""):
        routes += [
            web.post(f"{prefix}/v1/messages", anthropic_wire.messages_handler),
            web.post(f"{prefix}/v1/messages/count_tokens", anthropic_wire.count_tokens_handler),
        ]
    routes += [
        web.get("/anthropic/v1/models", anthropic_wire.models_handler),
        web.get("/anthropic/v1/models/{model}", anthropic_wire.model_handler),
        web.post("/v1/chat/completions", openai_wire.chat_handler(openai_flavours.OPENAI)),
        web.post("/v1/embeddings", embeddings_wire.openai_handler(openai_flavours.OPENAI)),
        web.get("/v1/models", unprefixed_models),
        web.get("/v1/models/{model}", unprefixed_model),
    ]
    # Unprefixed, only v1beta: /v1/models already belongs to OpenAI / Anthropic.
    for prefix, version in (("/gemini", "{version:v1beta|v1|v1alpha}"), ("", "v1beta")):
        models = f"{prefix}/{version}/models"
        routes += [
            # before the catch-all models/{model_action}: the first matching route wins
            web.post(
                f"{models}/{{model:[^:/]+}}:embedContent", embeddings_wire.gemini_embed_handler
            ),
            web.post(
                f"{models}/{{model:[^:/]+}}:batchEmbedContents",
                embeddings_wire.gemini_batch_handler,
            ),
            web.get(f"{prefix}/{version}/models", gemini_wire.models_handler),
            web.get(f"{prefix}/{version}/models/{{model:[^:/]+}}", gemini_wire.model_get_handler),
            web.post(
                f"{prefix}/{version}/models/{{model_action}}", gemini_wire.model_action_handler
            ),
        ]
    routes.append(web.post("/gemini/v1internal:{method}", gemini_wire.code_assist_handler))
    return routes


def create_app(delay_ms: float = 0) -> web.Application:
    """A fresh simulator app; ``delay_ms`` is the default wait before each streamed chunk."""
    app = web.Application(middlewares=[read_and_record], client_max_size=MAX_BODY_BYTES)
    app[DELAY_S] = max(0.0, float(delay_ms)) / 1000.0
    app[REQUEST_LOG] = RequestLog()
    app.add_routes(_routes())
    oauth_server.setup(app)  # fake OAuth authorisation server: /oauth/..., docs/SIMULATOR.md
    return app
