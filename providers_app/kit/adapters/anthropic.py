"""Anthropic messages: content blocks, a separate system prompt, tool_use /
tool_result blocks, the anthropic-version header and input/output tokens."""

from __future__ import annotations

import json
from typing import Any

from .. import errors, fields, media, tools
from ..sse import SSEEvent
from ..types import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOOL_CALLS,
    AudioPart,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ContentPart,
    ImagePart,
    Message,
    ModelInfo,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    token_count,
)
from .base import BaseAdapter, StreamDecoder, catalog_model

API_VERSION = "2023-06-01"
# Anthropic requires max_tokens; used when the caller gives none.
DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS = {
    "end_turn": FINISH_STOP,
    "stop_sequence": FINISH_STOP,
    "pause_turn": FINISH_STOP,
    "max_tokens": FINISH_LENGTH,
    "model_context_window_exceeded": FINISH_LENGTH,
    "tool_use": FINISH_TOOL_CALLS,
    "refusal": FINISH_CONTENT_FILTER,
}

# error.type in Anthropic's envelope → kit error
ERROR_TYPES: dict[str, type[errors.ProviderError]] = {
    "invalid_request_error": errors.InvalidRequestError,
    "authentication_error": errors.AuthenticationError,
    "permission_error": errors.PermissionDeniedError,
    "billing_error": errors.QuotaExceededError,
    "not_found_error": errors.NotFoundError,
    "request_too_large": errors.InvalidRequestError,
    "rate_limit_error": errors.RateLimitError,
    "api_error": errors.ServerError,
    "timeout_error": errors.TimeoutError,
    "overloaded_error": errors.OverloadedError,
}


class AnthropicAdapter(BaseAdapter):
    provider_type = "anthropic"
    default_base_url = "https://api.anthropic.com"
    default_model_id = "claude-sonnet-4-20250514"
    rate_limit_style = "anthropic"
    static_models = (
        catalog_model(
            "anthropic",
            "claude-sonnet-4-20250514",
            "Claude Sonnet 4",
            context=200_000,
            output=64_000,
            price_in=3.0,
            price_out=15.0,
            vision=True,
        ),
        catalog_model(
            "anthropic",
            "claude-opus-4-1-20250805",
            "Claude Opus 4.1",
            context=200_000,
            output=32_000,
            price_in=15.0,
            price_out=75.0,
            vision=True,
        ),
        catalog_model(
            "anthropic",
            "claude-3-5-haiku-20241022",
            "Claude Haiku 3.5",
            context=200_000,
            output=8_192,
            price_in=0.80,
            price_out=4.0,
            vision=True,
        ),
    )

    def auth_headers(self) -> dict[str, str]:
        if self.config.access_token:
            # OAuth (Claude subscription) tokens go as a bearer and need the oauth beta flag
            return {
                "Authorization": f"Bearer {self.config.access_token}",
                "anthropic-beta": "oauth-2025-04-20",
            }
        return {"x-api-key": self.config.api_key} if self.config.api_key else {}

    def request_headers(self) -> dict[str, str]:
        return {"anthropic-version": API_VERSION, **super().request_headers()}

    # -- request ---------------------------------------------------------------
    def chat_url(self, request: ChatRequest, *, stream: bool) -> str:
        return f"{self.base_url}/v1/messages"

    def chat_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        system, messages = messages_to_anthropic(request.messages)
        body: dict[str, Any] = {
            "model": request.model or self.default_model,
            "messages": messages,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if system:
            body["system"] = system
        if stream:
            body["stream"] = True
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = request.stop
        if request.user:
            body["metadata"] = {"user_id": request.user}
        if request.tools:
            body["tools"] = tools.tools_to_anthropic(request.tools)
            choice = tools.tool_choice_to_anthropic(
                request.tool_choice, request.parallel_tool_calls
            )
            if choice is not None:
                body["tool_choice"] = choice
        self._ruled_fields(request, body)
        body.update(request.extra_body)
        return body

    refined_fields = ("response_format", "reasoning")

    def refuse_value(self, row: fields.FieldRule, value: Any) -> str | None:
        if row.kit == "response_format" and value.type == "json_object":
            # Anthropic's structured outputs need a schema; "any JSON object" has none
            return "only json_schema is (send a schema)"
        if row.kit == "reasoning" and request_max_tokens_too_small(value, self._max_tokens):
            return f"thinking needs max_tokens above {thinking_budget(value)}"
        return None

    # the caller's max_tokens, seen by refuse_value (set by check_fields)
    _max_tokens: int | None = None

    def check_fields(self, request: ChatRequest) -> None:
        self._max_tokens = request.max_tokens
        super().check_fields(request)

    def _ruled_fields(self, request: ChatRequest, body: dict[str, Any]) -> None:
        """The fields of kit/fields.py in Anthropic's form; ``check_fields`` has already
        refused what Anthropic cannot take."""
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_schema":
            # structured outputs (GA): the reply's text block is JSON fitting the schema
            body["output_config"] = {
                "format": {"type": "json_schema", "schema": fmt.schema or {"type": "object"}}
            }
        if request.reasoning is not None:
            budget = thinking_budget(request.reasoning)
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            if request.max_tokens is None:
                # thinking counts against max_tokens: leave room for the answer too
                body["max_tokens"] = budget + DEFAULT_MAX_TOKENS
        for key in ("top_k", "service_tier"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        if request.wire_format == "anthropic":
            body.update(request.passthrough)

    # -- reply -----------------------------------------------------------------
    def parse_chat(self, body: Any, request: ChatRequest) -> ChatResponse:
        if not isinstance(body, dict) or body.get("type") == "error":
            raise self.classify_error(0, body, {})
        texts, calls, thinking = [], [], []
        for block in body.get("content") or []:
            if block.get("type") == "text":
                texts.append(block.get("text", ""))
            elif block.get("type") == "thinking":
                thinking.append(
                    ThinkingPart(text=block.get("thinking") or "", signature=block.get("signature"))
                )
            elif block.get("type") == "redacted_thinking":
                thinking.append(ThinkingPart(data=block.get("data") or ""))
            elif block.get("type") == "tool_use":
                calls.append(
                    ToolCall(
                        id=block.get("id", ""),
                        name=block.get("name", ""),
                        arguments=json.dumps(block.get("input") or {}),
                    )
                )
        raw_finish = body.get("stop_reason")
        return ChatResponse(
            id=body.get("id", ""),
            model=body.get("model", request.model),
            text="".join(texts),
            tool_calls=calls,
            finish_reason=(
                FINISH_REASONS.get(raw_finish, raw_finish) if raw_finish is not None else None
            ),
            raw_finish_reason=raw_finish,
            usage=usage_from_anthropic(body.get("usage") or {}),
            thinking=thinking,
            stop_sequence=_matched(body.get("stop_sequence")),
        )

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        return AnthropicStreamDecoder(self)

    # -- errors -------------------------------------------------------------------
    def classify_error(self, status: int, body: Any, headers: Any) -> errors.ProviderError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return super().classify_error(status, body, headers)
        kind = error.get("type") or ""
        cls = ERROR_TYPES.get(kind) or errors.class_for_status(status)
        return cls(
            self.scrub(str(error.get("message") or kind or f"HTTP {status}")),
            provider=self.name,
            status_code=status or cls.default_status,
            code=kind or None,
        )

    # -- models ------------------------------------------------------------------
    def models_url(self) -> str:
        return f"{self.base_url}/v1/models"

    def parse_models(self, body: Any) -> list[ModelInfo]:
        models = [
            self.model_from_listing(entry["id"], name=entry.get("display_name"))
            for entry in (body or {}).get("data") or []
            if entry.get("id")
        ]
        for model in models:
            # Anthropic's list has no limits; every current Claude model reads 200k tokens.
            model.context_window = model.context_window or 200_000
        return models


def thinking_budget(reasoning: Any) -> int:
    """Anthropic's budget_tokens for the kit's reasoning (fields.REASONING_BUDGETS)."""
    if reasoning.budget_tokens:
        return int(reasoning.budget_tokens)
    return fields.REASONING_BUDGETS.get(reasoning.effort or "medium", 8192)


def request_max_tokens_too_small(reasoning: Any, max_tokens: int | None) -> bool:
    """Anthropic wants budget_tokens below max_tokens (thinking is part of the output)."""
    return max_tokens is not None and max_tokens <= thinking_budget(reasoning)


class AnthropicStreamDecoder(StreamDecoder):
    """message_start → content_block_* → message_delta → message_stop.

    Tool calls are numbered among tool_use blocks only (0, 1, ...), like OpenAI's
    ``index``, whatever text blocks come between them.
    """

    __slots__ = ("tool_index_by_block", "thinking_index_by_block", "usage")

    def __init__(self, adapter: BaseAdapter) -> None:
        super().__init__(adapter)
        self.tool_index_by_block: dict[int, int] = {}
        # thinking blocks are numbered among themselves too (ThinkingDelta.index)
        self.thinking_index_by_block: dict[int, int] = {}
        self.usage = Usage()

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        if event.raw:
            raise errors.ProtocolError(
                f"{self.adapter.name}: malformed stream", provider=self.adapter.name
            )
        data = self.adapter.decode_json(event.data)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [ChatChunk(text=delta.get("text", ""))]
            if delta.get("type") == "input_json_delta":
                index = self.tool_index_by_block.get(data.get("index"))
                if index is not None:
                    return [
                        ChatChunk(
                            tool_calls=[
                                ToolCallDelta(index=index, arguments=delta.get("partial_json", ""))
                            ]
                        )
                    ]
            if delta.get("type") in ("thinking_delta", "signature_delta"):
                index = self.thinking_index_by_block.get(data.get("index"))
                if index is not None:
                    piece = ThinkingDelta(
                        index=index,
                        text=delta.get("thinking") or "",
                        signature=delta.get("signature"),
                    )
                    return [ChatChunk(thinking=piece)]
            return []
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") in ("thinking", "redacted_thinking"):
                index = len(self.thinking_index_by_block)
                self.thinking_index_by_block[data.get("index")] = index
                redacted = block.get("type") == "redacted_thinking"
                piece = ThinkingDelta(
                    index=index,
                    text=block.get("thinking") or "",
                    # a redacted block arrives whole here; a thinking block's comes later
                    data=(block.get("data") or "") if redacted else None,
                    signature=block.get("signature") or None,
                )
                return [ChatChunk(thinking=piece)]
            if block.get("type") == "tool_use":
                index = len(self.tool_index_by_block)
                self.tool_index_by_block[data.get("index")] = index
                return [
                    ChatChunk(
                        tool_calls=[
                            ToolCallDelta(index=index, id=block.get("id"), name=block.get("name"))
                        ]
                    )
                ]
            if block.get("type") == "text" and block.get("text"):
                return [ChatChunk(text=block["text"])]
            return []
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage") or {}
            self.usage = usage_from_anthropic(usage)
            return []
        if kind == "message_delta":
            # output_tokens here is cumulative; live streams repeat input counts too
            usage = data.get("usage") or {}
            if "input_tokens" in usage:
                # live streams repeat the input and cache counts here: they win
                delta_usage = usage_from_anthropic(usage)
                self.usage.prompt_tokens = delta_usage.prompt_tokens
                self.usage.cached_tokens = delta_usage.cached_tokens
                self.usage.cache_write_tokens = delta_usage.cache_write_tokens
            self.usage.completion_tokens = (
                usage.get("output_tokens", self.usage.completion_tokens) or 0
            )
            if "output_tokens_details" in usage:
                self.usage.reasoning_tokens = _thinking_tokens(usage)
            delta = data.get("delta") or {}
            raw_finish = delta.get("stop_reason")
            if raw_finish:
                self.finished = True
                return [
                    ChatChunk(
                        finish_reason=FINISH_REASONS.get(raw_finish, raw_finish),
                        raw_finish_reason=raw_finish,
                        usage=self.usage,
                        stop_sequence=_matched(delta.get("stop_sequence")),
                    )
                ]
            return []
        if kind == "error" or event.event == "error":
            # in-stream error after a 200: no status, the error type says it all
            raise self.adapter.classify_error(0, data, {})
        if kind is None:
            raise errors.ProtocolError(
                f"{self.adapter.name}: malformed stream chunk", provider=self.adapter.name
            )
        return []  # ping, content_block_stop, message_stop, unknown future events


def usage_from_anthropic(usage: dict[str, Any]) -> Usage:
    """Anthropic's ``input_tokens`` EXCLUDES the cache counts; the kit's prompt
    total includes them (see ``Usage``). Thinking is inside ``output_tokens``;
    ``output_tokens_details.thinking_tokens`` says how much, when it is sent."""
    cached = token_count(usage.get("cache_read_input_tokens"))
    written = token_count(usage.get("cache_creation_input_tokens"))
    return Usage(
        prompt_tokens=token_count(usage.get("input_tokens")) + cached + written,
        completion_tokens=token_count(usage.get("output_tokens")),
        cached_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=_thinking_tokens(usage),
    )


def _thinking_tokens(usage: dict[str, Any]) -> int:
    details = usage.get("output_tokens_details")
    return token_count(details.get("thinking_tokens")) if isinstance(details, dict) else 0


def _part_to_anthropic(part: ContentPart, index: int) -> dict[str, Any]:
    """Image and document blocks; Anthropic fetches http(s) URL sources itself."""
    block = _media_to_anthropic(part, index)
    if part.cache_control:
        block["cache_control"] = part.cache_control
    return block


def _media_to_anthropic(part: ContentPart, index: int) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, AudioPart):
        raise media.refuse("anthropic", "audio input (input_audio parts)", index)
    if isinstance(part, ImagePart):
        if part.url:
            return {"type": "image", "source": {"type": "url", "url": part.url}}
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
        return {"type": "image", "source": source}
    if part.file_id:
        raise media.refuse("anthropic", "OpenAI file ids (file.file_id)", index)
    document: dict[str, Any] = {"type": "document"}
    if part.url:
        document["source"] = {"type": "url", "url": part.url}
    elif part.media_type == "text/plain":
        text = media.text_of(part)
        document["source"] = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        document["source"] = {"type": "base64", "media_type": part.media_type, "data": part.data}
    if part.filename:
        document["title"] = part.filename
    return document


def _thinking_to_anthropic(part: ThinkingPart) -> dict[str, Any]:
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.data}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}


def _system_to_anthropic(system: list[Message]) -> str | list[dict[str, Any]]:
    """One string, unless a system block carries a cache breakpoint: then the blocks
    as text blocks, each with its own cache_control, so the cached prefix ends
    where the caller put it."""
    if not any(m.cache_control for m in system):
        return "\n\n".join(m.content or "" for m in system)
    blocks: list[dict[str, Any]] = []
    for m in system:
        block: dict[str, Any] = {"type": "text", "text": m.content or ""}
        if m.cache_control:
            block["cache_control"] = m.cache_control
        blocks.append(block)
    return blocks


def _tool_result_to_anthropic(message: Message, index: int) -> dict[str, Any]:
    content: str | list[dict[str, Any]] = message.content or ""
    if message.parts:
        # images (and documents) inside a tool result, as Anthropic takes them
        content = [_part_to_anthropic(p, index) for p in message.parts]
    return {"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": content}


def messages_to_anthropic(
    messages: list[Message],
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """System text apart; tool results become user turns of tool_result blocks.

    Consecutive turns of one role are merged, which is how the results of
    parallel calls must arrive: all in the one user turn after the calls.
    An assistant turn's thinking blocks go first, unchanged: with thinking on,
    Anthropic refuses a tool round trip whose assistant turn does not start
    with them. ``cache_control`` goes on the block it was given for
    (``Message.cache_control``: the message's last block).
    """
    system: list[Message] = []
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role == "system":
            system.append(message)
            continue
        blocks: list[dict[str, Any]]
        if message.role == "tool":
            role, blocks = "user", [_tool_result_to_anthropic(message, index)]
        elif message.parts:
            role, blocks = message.role, [_part_to_anthropic(p, index) for p in message.parts]
        else:
            role = message.role
            blocks = [{"type": "text", "text": message.content}] if message.content else []
        if message.role == "assistant":
            # an unsigned thinking block (another provider's reasoning) is never valid
            # here: Anthropic would refuse the whole request for it
            blocks[:0] = [
                _thinking_to_anthropic(p) for p in message.thinking if p.redacted or p.signature
            ]
            for call in message.tool_calls:
                use: dict[str, Any] = {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": tools.arguments_to_object(call.arguments),
                }
                if call.cache_control:
                    use["cache_control"] = call.cache_control
                blocks.append(use)
        if message.cache_control and blocks and "cache_control" not in blocks[-1]:
            blocks[-1]["cache_control"] = message.cache_control
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return _system_to_anthropic(system), out


def _matched(value: Any) -> str | None:
    """Anthropic's ``stop_sequence``: the sequence that matched, null otherwise."""
    return value if isinstance(value, str) else None
