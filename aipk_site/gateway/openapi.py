"""The /v1/ API as Django sees it: its OpenAPI description, its docs page, and JSON
answers for unknown paths and wrong methods.

The hot operations are served by the lean ASGI edge (edge.py) before a request ever
reaches Django; they are declared here too so /v1/openapi.json and /v1/docs describe
them (and schemathesis fuzzes them against the running edge). When a /v1/ request does
come through Django's handler after all (the Django test client, a server started on
another entry point than aipk_site.asgi), these views hand it to the same operations,
so there is one implementation of each.

It is a NinjaAPI of its own (not a router on the management API) because its auth,
error shapes and docs differ.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from ninja import Swagger

from aipk_site.gateway import edge
from aipk_site.gateway.edge import EdgeRequest, EdgeResponse, Operation
from aipk_site.infra.errors import AipkError, NotFound
from aipk_site.infra.ninja_fallbacks import JSONFallbackAPI


def _edge_request(request: HttpRequest) -> EdgeRequest:
    async def read_body(limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise edge.too_large()
        try:
            raw = request.body
        except RequestDataTooBig:
            raise edge.too_large() from None
        if len(raw) > limit:
            raise edge.too_large()
        raw_body: bytes = raw
        return raw_body

    headers = {name.lower(): value for name, value in request.headers.items()}
    return EdgeRequest(request.path_info, headers, read_body)


def _django_response(response: EdgeResponse) -> HttpResponseBase:
    if response.stream is None:
        return HttpResponse(
            response.body,
            status=response.status,
            content_type="application/json",
            headers=response.headers,
        )
    return StreamingHttpResponse(
        response.stream,
        status=response.status,
        content_type="text/event-stream; charset=utf-8",
        headers=response.headers,
    )


async def _through_edge(request: HttpRequest, operation: Operation) -> HttpResponseBase:
    edge_request = _edge_request(request)
    try:
        response = await operation(edge_request)
    except Exception as error:  # noqa: BLE001 -- a bug still answers in the caller's format
        response = edge.unexpected_response(edge_request, error)
    return _django_response(response)


class GatewayAPI(JSONFallbackAPI):
    """The gateway's NinjaAPI: unknown paths, wrong methods and unexpected errors are
    JSON in the caller's format, never Django's HTML pages."""

    def fallback_error(
        self, request: HttpRequest, status: int, code: str, message: str
    ) -> HttpResponse:
        error = AipkError(message, code=code)
        error.status = status
        if status == 404:
            error.type = NotFound.type
        response = edge.error_response(error, edge.error_renderer(_edge_request(request)))
        result = _django_response(response)
        assert isinstance(result, HttpResponse)
        return result


gateway_api = GatewayAPI(
    title="aipk gateway",
    version="1",
    description="OpenAI- and Anthropic-compatible endpoints. Authenticate with a virtual key: "
    "`Authorization: Bearer aipk-…` or `x-api-key: aipk-…`.",
    urls_namespace="gateway",
    # offline, like /api/docs (aipk_site/api.py): no validator badge from validator.swagger.io
    docs=Swagger(settings={"validatorUrl": None}),
)

_JSON = "application/json"


@gateway_api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponseBase:
    """A bug answers with a JSON 500 in the caller's format, logged with its traceback."""
    return _django_response(edge.unexpected_response(_edge_request(request), exc))


# Documentation of the bodies for /v1/docs and schema-driven tests. The views parse
# bodies themselves (formats/), so every error names the field in the client's terms.
_MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array"}, {"type": "null"}]},
        "tool_calls": {"type": "array"},
        "tool_call_id": {"type": "string"},
    },
}
_ANTHROPIC_MESSAGE_SCHEMA = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["user", "assistant"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array"}]},
    },
}
_CHAT_BODY = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "description": "an alias or '<provider>/<model id>'",
        },
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE_SCHEMA},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number"},
        "top_p": {"type": "number"},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array"}]},
        "tools": {"type": "array"},
        "tool_choice": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        "aipk": {"type": "object", "properties": {"cache": {"type": "boolean"}}},
    },
}
_MESSAGES_PROPERTIES: dict[str, Any] = {
    "model": {"type": "string", "minLength": 1},
    "max_tokens": {"type": "integer", "minimum": 1},
    "system": {"anyOf": [{"type": "string"}, {"type": "array"}]},
    "messages": {"type": "array", "minItems": 1, "items": _ANTHROPIC_MESSAGE_SCHEMA},
    "stream": {"type": "boolean"},
    "tools": {"type": "array"},
    "tool_choice": {"type": "object"},
    "stop_sequences": {"type": "array"},
    "temperature": {"type": "number"},
}
_MESSAGES_BODY = {
    "type": "object",
    "required": ["model", "messages", "max_tokens"],
    "properties": _MESSAGES_PROPERTIES,
}

# count_tokens takes a Messages body without max_tokens (nor stream)
_COUNT_TOKENS_BODY = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        name: schema
        for name, schema in _MESSAGES_PROPERTIES.items()
        if name not in ("max_tokens", "stream")
    },
}

# OpenAI's embeddings body (aipk_site/gateway/embeddings.py parses it)
_EMBEDDINGS_BODY = {
    "type": "object",
    "required": ["model", "input"],
    "additionalProperties": False,
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "description": "an alias or '<provider>/<embedding model id>'",
        },
        "input": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "integer", "minimum": 0},
                    },
                },
            ]
        },
        "dimensions": {"type": "integer", "minimum": 1},
        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        "user": {"type": "string"},
    },
}


# OpenAI's Responses body (formats/responses_format.py parses it; any other field is a
# 400 naming it, and truncation / background take only their default value)
_RESPONSES_BODY = {
    "type": "object",
    "required": ["model", "input"],
    "additionalProperties": False,
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "description": "an alias or '<provider>/<model id>'",
        },
        "input": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "minItems": 1, "items": {"type": "object"}},
            ],
            "description": "a user message, or message / function_call / "
            "function_call_output / reasoning items",
        },
        "instructions": {"type": "string"},
        "max_output_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "name"],
                "properties": {
                    "type": {"type": "string", "enum": ["function"]},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "parameters": {"type": "object"},
                    "strict": {"type": "boolean"},
                },
            },
        },
        "tool_choice": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        "parallel_tool_calls": {"type": "boolean"},
        "text": {"type": "object", "properties": {"format": {"type": "object"}}},
        "reasoning": {
            "type": "object",
            "properties": {
                "effort": {"type": "string", "enum": ["minimal", "low", "medium", "high"]},
                "summary": {"type": "string", "enum": ["auto", "concise", "detailed"]},
            },
        },
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "user": {"type": "string"},
        "service_tier": {"type": "string"},
        "store": {"type": "boolean", "description": "false: not kept (default true)"},
        "previous_response_id": {"type": "string", "minLength": 1},
        "stream": {"type": "boolean"},
        "include": {
            "type": "array",
            "items": {"type": "string", "enum": ["reasoning.encrypted_content"]},
            "description": "reasoning.encrypted_content: reasoning items carry the "
            "signed thinking blocks to send back",
        },
        "truncation": {"type": "string", "enum": ["disabled"]},
        "background": {"type": "boolean", "enum": [False]},
    },
}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {_JSON: {"schema": schema}}}}


@gateway_api.post(
    "/chat/completions",
    summary="Create a chat completion (OpenAI format)",
    openapi_extra=_body_doc(_CHAT_BODY),
)
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await _through_edge(request, edge.chat_completions)


@gateway_api.post(
    "/messages",
    summary="Create a message (Anthropic format)",
    openapi_extra=_body_doc(_MESSAGES_BODY),
)
async def messages(request: HttpRequest) -> HttpResponseBase:
    return await _through_edge(request, edge.messages)


@gateway_api.post(
    "/messages/count_tokens",
    summary="Count a message's input tokens (Anthropic format; aipk's estimate)",
    openapi_extra=_body_doc(_COUNT_TOKENS_BODY),
)
async def messages_count_tokens(request: HttpRequest) -> HttpResponseBase:
    return await _through_edge(request, edge.messages_count_tokens)


@gateway_api.post(
    "/embeddings",
    summary="Create embeddings (OpenAI format)",
    openapi_extra=_body_doc(_EMBEDDINGS_BODY),
)
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    return await _through_edge(request, edge.embeddings)


@gateway_api.get("/models", summary="Models this key may call (OpenAI or Anthropic list format)")
async def models(request: HttpRequest) -> HttpResponseBase:
    return await _through_edge(request, edge.models)


# ``path``: a model id holds "/" ("openai/gpt-4o-mini"); the rest of the path is the id
@gateway_api.get(
    "/models/{path:model_id}",
    summary="One model this key may call (OpenAI or Anthropic model object)",
)
async def model_retrieve(request: HttpRequest, model_id: str) -> HttpResponseBase:
    return await _through_edge(request, edge.model_retrieve)


@gateway_api.post(
    "/responses",
    summary="Create a response (OpenAI Responses API), served by any chat provider",
    openapi_extra=_body_doc(_RESPONSES_BODY),
)
async def responses_create(request: HttpRequest) -> HttpResponseBase:
    return await _through_edge(request, edge.responses_create)


@gateway_api.get(
    "/responses/{response_id}",
    summary="A response this key's tenant stored (OpenAI Responses API)",
)
async def response_retrieve(request: HttpRequest, response_id: str) -> HttpResponseBase:
    return await _through_edge(request, edge.response_retrieve)


@gateway_api.delete(
    "/responses/{response_id}",
    summary="Delete a response this key's tenant stored (OpenAI Responses API)",
)
async def response_delete(request: HttpRequest, response_id: str) -> HttpResponseBase:
    return await _through_edge(request, edge.response_delete)
