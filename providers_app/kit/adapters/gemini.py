"""Gemini generateContent / streamGenerateContent?alt=sse.

contents/parts instead of messages, functionDeclarations, functionCall parts
whose ``args`` is an object (and, mostly, no call id), functionResponse parts
for results. Auth by API key header or OAuth bearer; with a ``project_id`` and
OAuth the Code Assist (CloudCode) endpoint is used, which wraps each request
as ``{model, project, request}`` and each reply as ``{response: ...}``.

Finish reasons SAFETY & co. and MALFORMED_FUNCTION_CALL are surfaced as
content_filter / malformed_tool_call -- never as an empty "stop".
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .. import errors, fields, media, tools
from ..ratelimit.headers import finite_number, parse_duration
from ..sse import SSEEvent
from ..tools.gemini_schema import to_gemini_schema
from ..tools.schema import SchemaReferenceError
from ..types import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_MALFORMED_TOOL_CALL,
    FINISH_STOP,
    FINISH_TOOL_CALLS,
    AudioPart,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    ModelInfo,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    Usage,
    token_count,
)
from .base import BaseAdapter, StreamDecoder, catalog_model

CLOUDCODE_BASE_URL = "https://cloudcode-pa.googleapis.com"

FINISH_REASONS = {
    "STOP": FINISH_STOP,
    "MAX_TOKENS": FINISH_LENGTH,
    "SAFETY": FINISH_CONTENT_FILTER,
    "RECITATION": FINISH_CONTENT_FILTER,
    "BLOCKLIST": FINISH_CONTENT_FILTER,
    "PROHIBITED_CONTENT": FINISH_CONTENT_FILTER,
    "SPII": FINISH_CONTENT_FILTER,
    "IMAGE_SAFETY": FINISH_CONTENT_FILTER,
    "MALFORMED_FUNCTION_CALL": FINISH_MALFORMED_TOOL_CALL,
    "UNEXPECTED_TOOL_CALL": FINISH_MALFORMED_TOOL_CALL,
}

# google.rpc status → kit error
STATUSES: dict[str, type[errors.ProviderError]] = {
    "INVALID_ARGUMENT": errors.InvalidRequestError,
    "FAILED_PRECONDITION": errors.InvalidRequestError,
    "OUT_OF_RANGE": errors.InvalidRequestError,
    "UNAUTHENTICATED": errors.AuthenticationError,
    "PERMISSION_DENIED": errors.PermissionDeniedError,
    "NOT_FOUND": errors.NotFoundError,
    "RESOURCE_EXHAUSTED": errors.RateLimitError,
    "INTERNAL": errors.ServerError,
    "UNKNOWN": errors.ServerError,
    "CANCELLED": errors.ServerError,
    "UNAVAILABLE": errors.OverloadedError,
    "DEADLINE_EXCEEDED": errors.TimeoutError,
}

# ErrorInfo.reason values that decide the class whatever the status says
# (an invalid API key comes back as 400 INVALID_ARGUMENT).
REASONS: dict[str, type[errors.ProviderError]] = {
    "API_KEY_INVALID": errors.AuthenticationError,
    "API_KEY_SERVICE_BLOCKED": errors.PermissionDeniedError,
    "SERVICE_DISABLED": errors.PermissionDeniedError,
}
# ErrorInfo reasons that refuse the whole key or project, not one model: key-level evidence.
ACCOUNT_LEVEL_REASONS = frozenset(
    {"API_KEY_SERVICE_BLOCKED", "SERVICE_DISABLED", "CONSUMER_SUSPENDED"}
)


class GeminiAdapter(BaseAdapter):
    provider_type = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"
    default_model_id = "gemini-2.5-flash"
    rate_limit_style = "none"
    static_models = (
        catalog_model(
            "gemini",
            "gemini-2.5-pro",
            "Gemini 2.5 Pro",
            context=1_048_576,
            output=65_536,
            price_in=1.25,
            price_out=10.0,
            vision=True,
        ),
        catalog_model(
            "gemini",
            "gemini-2.5-flash",
            "Gemini 2.5 Flash",
            context=1_048_576,
            output=65_536,
            price_in=0.30,
            price_out=2.50,
            vision=True,
        ),
        catalog_model(
            "gemini",
            "gemini-2.0-flash",
            "Gemini 2.0 Flash",
            context=1_048_576,
            output=8_192,
            price_in=0.10,
            price_out=0.40,
            vision=True,
        ),
    )

    @property
    def uses_cloudcode(self) -> bool:
        return bool(self.config.project_id and self.config.access_token)

    def auth_headers(self) -> dict[str, str]:
        if self.config.access_token:
            return {"Authorization": f"Bearer {self.config.access_token}"}
        return {"x-goog-api-key": self.config.api_key} if self.config.api_key else {}

    # -- request ---------------------------------------------------------------
    def chat_url(self, request: ChatRequest, *, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        if self.uses_cloudcode:
            return f"{self.base_url}/v1internal:{method}"
        model = (request.model or self.default_model).removeprefix("models/")
        return f"{self.base_url}/v1beta/models/{model}:{method}"

    async def prepare_request(self, request: ChatRequest) -> ChatRequest:
        request = await super().prepare_request(request)
        return await media.inline_urls(
            request, self.name, (ImagePart, FilePart), keep_url=_GEMINI_FILE_URIS
        )

    def chat_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        if stream and request.n is not None and request.n > 1:
            # candidateCount is served whole (generateContent) only: the stream decoder
            # reads one candidate, so several would be merged into one answer
            raise fields.UnsupportedFieldError(
                "n", self.name, self.rules_type, "more than one choice in a whole reply only"
            )
        system, contents = messages_to_gemini(request.messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.stop:
            config["stopSequences"] = request.stop
        self._ruled_fields(request, config)
        if config:
            body["generationConfig"] = config
        if request.tools:
            body["tools"] = tools.tools_to_gemini(request.tools)
            tool_config = tools.tool_choice_to_gemini(request.tool_choice)
            if tool_config is not None:
                body["toolConfig"] = tool_config
        body.update(request.extra_body)
        if self.uses_cloudcode:
            return {
                "model": request.model or self.default_model,
                "project": self.config.project_id,
                "request": body,
            }
        return body

    def _ruled_fields(self, request: ChatRequest, config: dict[str, Any]) -> None:
        """The fields of kit/fields.py in Gemini's generationConfig; ``check_fields`` has
        already refused what Gemini cannot take."""
        fmt = request.response_format
        if fmt is not None and fmt.type != "text":
            config["responseMimeType"] = "application/json"
            if fmt.type == "json_schema":
                where = unsupported_in_response_schema(fmt.schema or {})
                if where is not None:
                    path, keyword = where
                    raise fields.UnsupportedFieldError(
                        ".".join(("response_format.json_schema.schema", *path, keyword)),
                        self.name,
                        self.rules_type,
                        "Gemini's response schema cannot express it",
                    )
                try:
                    config["responseSchema"] = to_gemini_schema(fmt.schema or {"type": "object"})
                except SchemaReferenceError as exc:
                    ref_path = ".".join(str(p) for p in exc.path)
                    raise fields.UnsupportedFieldError(
                        "response_format.json_schema.schema" + (f".{ref_path}" if ref_path else ""),
                        self.name,
                        self.rules_type,
                        str(exc),
                    ) from None
        if request.reasoning is not None:
            budget = request.reasoning.budget_tokens or fields.REASONING_BUDGETS.get(
                request.reasoning.effort or "medium", 8192
            )
            # includeThoughts: the thought summaries come back as the reply's reasoning
            config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
        if request.n is not None and request.n > 1:
            config["candidateCount"] = request.n
        if request.logprobs:
            config["responseLogprobs"] = True
            if request.top_logprobs is not None:
                config["logprobs"] = request.top_logprobs
        for key, name in (
            ("seed", "seed"),
            ("top_k", "topK"),
            ("frequency_penalty", "frequencyPenalty"),
            ("presence_penalty", "presencePenalty"),
        ):
            value = getattr(request, key)
            if value is not None:
                config[name] = value

    # -- reply -----------------------------------------------------------------
    def parse_chat(self, body: Any, request: ChatRequest) -> ChatResponse:
        body = self._unwrap(body)
        candidates = body.get("candidates")
        if isinstance(candidates, list) and len(candidates) > 1:
            # candidateCount > 1 (the caller's n): one choice a candidate, in index order
            ordered = sorted(
                (c for c in candidates if isinstance(c, dict)), key=lambda c: c.get("index") or 0
            )
            first = self._candidate({**body, "candidates": ordered[:1]}, request)
            first.extra_choices = [
                self._candidate({**body, "candidates": [c]}, request) for c in ordered[1:]
            ]
            return first
        return self._candidate(body, request)

    def _candidate(self, body: dict[str, Any], request: ChatRequest) -> ChatResponse:
        """The reply of ``body``'s first candidate (usage counts all of them)."""
        reply = ReplyReader()
        chunk = reply.read(body)
        return ChatResponse(
            id=body.get("responseId", ""),
            model=body.get("modelVersion", request.model),
            text=chunk.text,
            tool_calls=reply.calls,
            finish_reason=chunk.finish_reason,
            raw_finish_reason=chunk.raw_finish_reason,
            usage=chunk.usage or Usage(),
            thinking=(
                [ThinkingPart(text=chunk.thinking.text, signature=chunk.thinking.signature)]
                if chunk.thinking is not None
                else []
            ),
            logprobs=chunk.logprobs,
        )

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        return GeminiStreamDecoder(self)

    def _unwrap(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.ProtocolError(
                f"{self.name}: reply is not a JSON object", provider=self.name
            )
        if "error" in body:
            raise self.classify_error(0, body, {})
        if "response" in body and isinstance(body["response"], dict):
            return body["response"]  # Code Assist wrapping
        return body

    # -- errors -------------------------------------------------------------------
    def classify_error(self, status: int, body: Any, headers: Any) -> errors.ProviderError:
        if isinstance(body, list) and body and isinstance(body[0], dict):
            body = body[0]  # some Google front ends wrap the error in a list
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return super().classify_error(status, body, headers)
        code = error.get("code")
        status = status or (code if isinstance(code, int) else 0)
        reasons = [
            d.get("reason")
            for d in error.get("details") or []
            if isinstance(d, dict) and d.get("reason")
        ]
        cls = (
            next((REASONS[r] for r in reasons if r in REASONS), None)
            or STATUSES.get(error.get("status") or "")
            or errors.class_for_status(status if 400 <= status < 600 else 0)
        )
        # a blocked key or project refuses every model: key-level evidence
        account_level = any(r in ACCOUNT_LEVEL_REASONS for r in reasons)
        return cls(
            self.scrub(str(error.get("message") or error.get("status") or f"HTTP {status}")),
            provider=self.name,
            status_code=status if 400 <= status < 600 else cls.default_status,
            code=(reasons[0] if reasons else error.get("status")) or None,
            retry_after=retry_after_from_gemini_error(body),
            permanent=True if account_level else None,
            scope="credential" if account_level else None,
        )

    # -- models ------------------------------------------------------------------
    def models_url(self) -> str:
        return f"{self.base_url}/v1beta/models"

    async def fetch_models(self) -> list[ModelInfo]:
        if self.uses_cloudcode:
            # Code Assist has no model list endpoint
            raise errors.NotFoundError("Code Assist lists no models", provider=self.name)
        return await super().fetch_models()

    def parse_models(self, body: Any) -> list[ModelInfo]:
        models = []
        for entry in (body or {}).get("models") or []:
            methods = entry.get("supportedGenerationMethods") or []
            model_id = (entry.get("name") or "").removeprefix("models/")
            if not model_id or (methods and "generateContent" not in methods):
                continue  # embedding and other non-chat models
            models.append(
                self.model_from_listing(
                    model_id,
                    name=entry.get("displayName"),
                    context_window=entry.get("inputTokenLimit"),
                    max_output_tokens=entry.get("outputTokenLimit"),
                    supports_streaming="streamGenerateContent" in methods if methods else None,
                )
            )
        return models


class ReplyReader:
    """Reads GenerateContentResponse objects -- a whole reply or one stream chunk each."""

    __slots__ = ("calls", "tool_count", "usage", "scope")

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.tool_count = 0
        self.usage: Usage | None = None
        # Gemini sends no call ids; the made-up ones must not repeat across the
        # turns of a conversation, so they carry the response id (or a random one).
        self.scope: str | None = None

    def read(self, body: dict[str, Any]) -> ChatChunk:
        chunk = ChatChunk()
        metadata = body.get("usageMetadata")
        if isinstance(metadata, dict):
            # promptTokenCount already includes cachedContentTokenCount;
            # candidatesTokenCount EXCLUDES thoughtsTokenCount, which is billed
            # as output: the kit's completion total includes it (see Usage)
            thoughts = token_count(metadata.get("thoughtsTokenCount"))
            self.usage = Usage(
                prompt_tokens=token_count(metadata.get("promptTokenCount")),
                completion_tokens=token_count(metadata.get("candidatesTokenCount")) + thoughts,
                cached_tokens=token_count(metadata.get("cachedContentTokenCount")),
                reasoning_tokens=thoughts,
            )
        candidates = body.get("candidates") or []
        if not candidates:
            block = (body.get("promptFeedback") or {}).get("blockReason")
            if block:
                chunk.finish_reason, chunk.raw_finish_reason = FINISH_CONTENT_FILTER, block
                chunk.usage = self.usage
            return chunk
        candidate = candidates[0]
        if self.scope is None:
            self.scope = str(body.get("responseId") or uuid.uuid4().hex[:12])
        texts: list[str] = []
        thought_texts: list[str] = []
        signature: str | None = None
        for part in (candidate.get("content") or {}).get("parts") or []:
            if "functionCall" in part:
                call = tools.tool_call_from_gemini(part, self.tool_count, scope=self.scope)
                call.signature = part.get("thoughtSignature")
                self.calls.append(call)
                chunk.tool_calls.append(
                    ToolCallDelta(
                        index=self.tool_count,
                        id=call.id,
                        name=call.name,
                        arguments=call.arguments,
                        signature=call.signature,
                    )
                )
                self.tool_count += 1
            elif "text" in part and part.get("thought"):
                # a thought summary (includeThoughts): the reasoning, not the answer
                thought_texts.append(part["text"])
                signature = part.get("thoughtSignature") or signature
            elif "text" in part:
                texts.append(part["text"])
        chunk.text = "".join(texts)
        if thought_texts:
            # one reasoning block a reply: Gemini's thought parts are not separate blocks
            chunk.thinking = ThinkingDelta(
                index=0, text="".join(thought_texts), signature=signature
            )
        result = candidate.get("logprobsResult")
        if isinstance(result, dict):
            chunk.logprobs = openai_logprobs(result)
        raw_finish = candidate.get("finishReason")
        if raw_finish and raw_finish != "FINISH_REASON_UNSPECIFIED":
            finish = FINISH_REASONS.get(raw_finish, raw_finish.lower())
            # Gemini says STOP after function calls; callers expect tool_calls
            if finish == FINISH_STOP and self.tool_count:
                finish = FINISH_TOOL_CALLS
            chunk.finish_reason, chunk.raw_finish_reason = finish, raw_finish
            chunk.usage = self.usage
        return chunk


def _logprob_entry(candidate: Any) -> dict[str, Any]:
    token = str(candidate.get("token") or "") if isinstance(candidate, dict) else ""
    logprob = candidate.get("logProbability") if isinstance(candidate, dict) else None
    return {
        "token": token,
        "logprob": float(logprob) if isinstance(logprob, int | float) else 0.0,
        "bytes": list(token.encode("utf-8", "surrogatepass")),
    }


def openai_logprobs(result: dict[str, Any]) -> dict[str, Any]:
    """Gemini's ``logprobsResult`` (one chosen candidate and one list of top candidates a
    decoding step) as OpenAI's ``{"content": [{token, logprob, bytes, top_logprobs}]}``,
    the kit's form for logprobs: OpenAI clients read it unchanged."""
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []
    content = []
    for step, candidate in enumerate(chosen):
        entry = _logprob_entry(candidate)
        top = tops[step] if step < len(tops) and isinstance(tops[step], dict) else {}
        entry["top_logprobs"] = [_logprob_entry(c) for c in top.get("candidates") or []]
        content.append(entry)
    return {"content": content, "refusal": None}


class GeminiStreamDecoder(StreamDecoder):
    """Each SSE event is a whole GenerateContentResponse; no [DONE], the stream just ends."""

    __slots__ = ("reader",)
    adapter: GeminiAdapter  # narrows StreamDecoder.adapter: set by __init__ below

    def __init__(self, adapter: GeminiAdapter) -> None:
        super().__init__(adapter)
        self.reader = ReplyReader()

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        data = self.adapter.decode_json(event.data)
        if isinstance(data, list) and data:
            data = data[0]
        if not isinstance(data, dict):
            raise errors.ProtocolError(
                f"{self.adapter.name}: malformed stream chunk", provider=self.adapter.name
            )
        body = self.adapter._unwrap(data)  # raises the typed error for a (bare) error object
        chunk = self.reader.read(body)
        if chunk.finish_reason:
            self.finished = True
        if chunk.text or chunk.tool_calls or chunk.finish_reason:
            return [chunk]
        return []


# Gemini reads fileData only for files uploaded to its Files API (or gs:// on Vertex);
# every other URL is fetched by aipk and sent inline (prepare_request)
_GEMINI_FILE_URIS = ("https://generativelanguage.googleapis.com/", "gs://")


def _part_to_gemini(part: ContentPart, index: int) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if isinstance(part, AudioPart):
        return {"inlineData": {"mimeType": f"audio/{part.format}", "data": part.data}}
    if isinstance(part, FilePart) and part.file_id:
        raise media.refuse("gemini", "OpenAI file ids (file.file_id)", index)
    if part.url:
        default = "image/jpeg" if isinstance(part, ImagePart) else "application/pdf"
        return {"fileData": {"mimeType": part.media_type or default, "fileUri": part.url}}
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


def messages_to_gemini(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """Gemini roles are user and model; tool results are user functionResponse parts.

    A functionResponse needs the function's name, which OpenAI-style tool
    messages carry only as a call id: it is looked up in the earlier calls.
    """
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names_by_call_id: dict[str, str] = {}
    for index, message in enumerate(messages):
        if message.role == "system":
            system.append(message.content or "")
            continue
        parts: list[dict[str, Any]]
        if message.role == "tool" and message.media():
            # a functionResponse carries JSON only: the image would never reach the model
            raise media.refuse("gemini", "images or files in tool results", index)
        if message.parts and message.role != "tool":
            role = "model" if message.role == "assistant" else "user"
            parts = [_part_to_gemini(p, index) for p in message.parts]
        elif message.role == "tool":
            name = message.name or names_by_call_id.get(message.tool_call_id or "", "")
            role, parts = (
                "user",
                [{"functionResponse": {"name": name, "response": _tool_response(message.content)}}],
            )
        else:
            role = "model" if message.role == "assistant" else "user"
            parts = [{"text": message.content}] if message.content else []
            for call in message.tool_calls:
                names_by_call_id[call.id] = call.name
                part: dict[str, Any] = {
                    "functionCall": {
                        "name": call.name,
                        "args": tools.arguments_to_object(call.arguments),
                    }
                }
                if call.signature:
                    part["thoughtSignature"] = (
                        call.signature
                    )  # thinking models refuse the turn without it
                parts.append(part)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return "\n\n".join(system), contents


def _tool_response(content: str | None) -> dict[str, Any]:
    """functionResponse.response must be an object: JSON objects pass, anything else is wrapped."""
    try:
        value = json.loads(content or "")
    except ValueError:
        return {"result": content or ""}
    return value if isinstance(value, dict) else {"result": value}


# ------------------------------------------------------------------- error bodies (google.rpc)

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


def _gemini_details(body: Any) -> list[dict[str, Any]]:
    """error.details from a google.rpc error body; streaming errors may arrive wrapped in a list."""
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict):
        return []
    error = body.get("error", body)
    if not isinstance(error, dict):
        return []
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def retry_after_from_gemini_error(body: Any) -> float | None:
    """Seconds from the RetryInfo detail's ``retryDelay`` ("40s", "1.5s"): the structured hint.

    The message's "Please retry in 40.02s." is prose and deliberately not read.
    """
    for detail in _gemini_details(body):
        if detail.get("@type") != _RETRY_INFO:
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str):
            return parse_duration(delay)
        if isinstance(delay, dict):  # proto Duration as an object
            seconds = finite_number(str(delay.get("seconds", 0)))
            nanos = finite_number(str(delay.get("nanos", 0)))
            if seconds is not None and nanos is not None and seconds >= 0:
                return seconds + nanos / 1e9
    return None


def gemini_quota_is_daily(body: Any) -> bool:
    """True when a QuotaFailure violation's quotaId names a per-day quota (e.g. ...PerDay...).

    A per-day quota will not come back in seconds, so callers move on to
    another credential instead of waiting out the retry delay.
    """
    for detail in _gemini_details(body):
        if detail.get("@type") != _QUOTA_FAILURE:
            continue
        for violation in detail.get("violations") or []:
            quota_id = violation.get("quotaId") if isinstance(violation, dict) else None
            if isinstance(quota_id, str) and "PerDay" in quota_id:
                return True
    return False


# JSON Schema keywords whose constraint Gemini's responseSchema cannot carry. The tool
# converter drops them (a tool's arguments are validated by the caller anyway); for a
# response schema dropping them would hand back JSON the caller's schema rejects, so the
# request is refused instead, naming where.
_RESPONSE_SCHEMA_REFUSED = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "propertyNames",
        "uniqueItems",
        "multipleOf",
        "contains",
        "minContains",
        "maxContains",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "unevaluatedProperties",
        "unevaluatedItems",
    }
)


def unsupported_in_response_schema(
    schema: Any, path: tuple[str, ...] = ()
) -> tuple[tuple[str, ...], str] | None:
    """The first (path, keyword) of ``schema`` Gemini's responseSchema cannot express:
    a refused keyword, or ``additionalProperties`` as a schema (a free-form map)."""
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            found = unsupported_in_response_schema(item, (*path, str(i)))
            if found:
                return found
        return None
    if not isinstance(schema, dict):
        return None
    for keyword in schema:
        if keyword in _RESPONSE_SCHEMA_REFUSED:
            return path, keyword
    if isinstance(schema.get("additionalProperties"), dict):
        return path, "additionalProperties"
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                found = unsupported_in_response_schema(sub, (*path, key, name))
                if found:
                    return found
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "allOf"):
            found = unsupported_in_response_schema(value, (*path, key))
            if found:
                return found
    return None
