"""OpenAI chat completions -- and, through ``base_url``, every OpenAI-compatible
endpoint (Groq, Ollama, LM Studio, vLLM ...). Cerebras, Qwen and OpenRouter are
small subclasses in their own modules."""

from __future__ import annotations

from typing import Any, ClassVar

from .. import errors, fields, media, tools
from ..sse import DONE, SSEEvent
from ..types import (
    FINISH_CONTENT_FILTER,
    FINISH_ERROR,
    FINISH_LENGTH,
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
    ResponseFormat,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    token_count,
)
from .base import BaseAdapter, StreamDecoder, catalog_model

FINISH_REASONS = {
    "stop": FINISH_STOP,
    "length": FINISH_LENGTH,
    "tool_calls": FINISH_TOOL_CALLS,
    "function_call": FINISH_TOOL_CALLS,
    "content_filter": FINISH_CONTENT_FILTER,
    "error": FINISH_ERROR,
}

# Error body ``code`` / ``type`` values that say more than the status does.
ERROR_CODES: dict[str, type[errors.ProviderError]] = {
    "context_length_exceeded": errors.ContextLengthError,
    "string_above_max_length": errors.ContextLengthError,
    "insufficient_quota": errors.QuotaExceededError,
    "billing_hard_limit_reached": errors.QuotaExceededError,
    "invalid_api_key": errors.AuthenticationError,
    "model_not_found": errors.NotFoundError,
    "content_filter": errors.ContentFilterError,
    "content_policy_violation": errors.ContentFilterError,
    "rate_limit_exceeded": errors.RateLimitError,
}

# 403 codes that say the whole account (not one model) is refused: key-level evidence.
ACCOUNT_LEVEL_CODES = frozenset({"unsupported_country_region_territory", "account_deactivated"})


class OpenAIAdapter(BaseAdapter):
    provider_type = "openai"
    default_base_url = "https://api.openai.com/v1"
    default_model_id = "gpt-4o-mini"
    rate_limit_style = "openai"
    # whether Anthropic cache_control marks go out on content parts (OpenRouter only)
    sends_cache_control = False
    static_models: ClassVar[tuple[ModelInfo, ...]] = (
        catalog_model(
            "openai",
            "gpt-4o",
            "GPT-4o",
            context=128_000,
            output=16_384,
            price_in=2.50,
            price_out=10.00,
            vision=True,
        ),
        catalog_model(
            "openai",
            "gpt-4o-mini",
            "GPT-4o mini",
            context=128_000,
            output=16_384,
            price_in=0.15,
            price_out=0.60,
            vision=True,
        ),
        catalog_model(
            "openai",
            "gpt-4.1",
            "GPT-4.1",
            context=1_047_576,
            output=32_768,
            price_in=2.00,
            price_out=8.00,
            vision=True,
        ),
        catalog_model(
            "openai",
            "gpt-4.1-mini",
            "GPT-4.1 mini",
            context=1_047_576,
            output=32_768,
            price_in=0.40,
            price_out=1.60,
            vision=True,
        ),
    )

    def request_headers(self) -> dict[str, str]:
        headers = super().request_headers()
        if self.config.organization:
            headers["OpenAI-Organization"] = self.config.organization
        return headers

    @property
    def max_tokens_field(self) -> str:
        # OpenAI's own API wants max_completion_tokens (reasoning models reject
        # max_tokens); most compatible servers only know max_tokens.
        return (
            "max_completion_tokens"
            if self.base_url == OpenAIAdapter.default_base_url
            else "max_tokens"
        )

    # -- request ---------------------------------------------------------------
    def chat_url(self, request: ChatRequest, *, stream: bool) -> str:
        return f"{self.base_url}/chat/completions"

    async def prepare_request(self, request: ChatRequest) -> ChatRequest:
        request = await super().prepare_request(request)
        return await media.inline_urls(request, self.name, (FilePart,))

    def chat_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model or self.default_model,
            "messages": [
                message_to_openai(m, i, self.name, cache_marks=self.sends_cache_control)
                for i, m in enumerate(request.messages)
            ],
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.max_tokens is not None:
            body[self.max_tokens_field] = request.max_tokens
        for key in ("temperature", "top_p", "stop", "user"):
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        self._ruled_fields(request, body)
        if request.tools:
            body["tools"] = tools.tools_to_openai(request.tools)
            choice = tools.tool_choice_to_openai(request.tool_choice)
            if choice is not None:
                body["tool_choice"] = choice
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        body.update(request.extra_body)
        return body

    def _ruled_fields(self, request: ChatRequest, body: dict[str, Any]) -> None:
        """The fields of kit/fields.py the OpenAI wire has; ``check_fields`` has already
        refused the ones this provider cannot take."""
        fmt = request.response_format
        if fmt is not None and fmt.type != "text":
            body["response_format"] = response_format_to_openai(fmt)
        if request.reasoning is not None:
            effort = request.reasoning.effort or fields.effort_for_budget(
                request.reasoning.budget_tokens or 0
            )
            if self.rules_type == "openrouter":
                # OpenRouter's own normalised form takes a budget as it is
                budget = request.reasoning.budget_tokens
                body["reasoning"] = {"max_tokens": budget} if budget else {"effort": effort}
            else:
                body["reasoning_effort"] = effort
        for key in (
            "seed",
            "logprobs",
            "top_logprobs",
            "frequency_penalty",
            "presence_penalty",
            "service_tier",
            "metadata",
            "top_k",
            "n",
        ):
            value = getattr(request, key)
            if value is not None and fields.allowed(key, self.rules_type):
                body[key] = value
        if request.wire_format == "openai":
            for key, value in request.passthrough.items():
                if fields.allowed(f"passthrough.{key}", self.rules_type):
                    body[key] = value

    # -- reply -----------------------------------------------------------------
    def parse_chat(self, body: Any, request: ChatRequest) -> ChatResponse:
        if not isinstance(body, dict):
            raise errors.ProtocolError(
                f"{self.name}: reply is not a JSON object", provider=self.name
            )
        if body.get("error") and not body.get("choices"):
            # OpenRouter (and some proxies) report failures inside a 200 reply
            raise self.classify_error(_status_of(body["error"]), body, {})
        choices = body.get("choices") or []
        if not choices or not all(isinstance(c, dict) for c in choices):
            raise errors.ProtocolError(f"{self.name}: reply has no choices", provider=self.name)
        choices = sorted(choices, key=lambda c: c.get("index") or 0)
        response = self._choice(body, choices[0], request)
        response.usage = usage_from_openai(body.get("usage")) or Usage()
        # n > 1: the further choices, in index order (usage above counts them all)
        response.extra_choices = [self._choice(body, c, request) for c in choices[1:]]
        return response

    def _choice(self, body: dict[str, Any], choice: Any, request: ChatRequest) -> ChatResponse:
        message = choice.get("message") or {}
        raw_finish = choice.get("finish_reason")
        return ChatResponse(
            id=body.get("id", ""),
            model=body.get("model", request.model),
            text=message.get("content") or "",
            tool_calls=[
                ToolCall(
                    id=call.get("id", ""),
                    name=(call.get("function") or {}).get("name", ""),
                    arguments=(call.get("function") or {}).get("arguments") or "{}",
                )
                for call in message.get("tool_calls") or []
            ],
            finish_reason=FINISH_REASONS.get(raw_finish, raw_finish),
            raw_finish_reason=raw_finish,
            logprobs=choice.get("logprobs"),
            thinking=[ThinkingPart(text=reasoning)] if (reasoning := reasoning_of(message)) else [],
            stop_sequence=_matched_stop(choice),
        )

    def stream_decoder(self, request: ChatRequest) -> StreamDecoder:
        return OpenAIStreamDecoder(self)

    # -- errors -----------------------------------------------------------------
    def classify_error(self, status: int, body: Any, headers: Any) -> errors.ProviderError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return super().classify_error(status, body, headers)
        code = error.get("code")
        kind = error.get("type")
        cls = (
            ERROR_CODES.get(code if isinstance(code, str) else "")
            or ERROR_CODES.get(kind if isinstance(kind, str) else "")
            or errors.class_for_status(status)
        )
        overrides: dict[str, Any] = {}
        if status == 403:
            # OpenAI answers a model the project may not use with 403 + model_not_found:
            # a permission problem of this model, not a missing model nor a bad key.
            cls = errors.PermissionDeniedError
            if code in ACCOUNT_LEVEL_CODES:
                overrides = {"permanent": True, "scope": "credential"}
            elif code == "model_not_found":
                overrides = {"model_specific": True}
        return cls(
            self.scrub(str(error.get("message") or f"HTTP {status}")),
            provider=self.name,
            status_code=status or cls.default_status,
            code=code if isinstance(code, str) else kind,
            **overrides,
        )

    # -- models ------------------------------------------------------------------
    def parse_models(self, body: Any) -> list[ModelInfo]:
        return [
            self.model_from_listing(
                entry["id"],
                name=entry.get("name"),
                # not OpenAI's own, but several compatible servers send one of these
                context_window=entry.get("context_length") or entry.get("context_window"),
            )
            for entry in (body or {}).get("data") or []
            if entry.get("id")
        ]


class OpenAIStreamDecoder(StreamDecoder):
    __slots__ = ()

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        if event.data == DONE:
            self.finished = True
            return []
        if event.raw:
            raise errors.ProtocolError(
                f"{self.adapter.name}: malformed stream", provider=self.adapter.name
            )
        data = self.adapter.decode_json(event.data)
        if not isinstance(data, dict):
            raise errors.ProtocolError(
                f"{self.adapter.name}: malformed stream chunk", provider=self.adapter.name
            )
        if data.get("error"):
            # mid-stream failure after a 200 (OpenRouter documents this shape)
            raise self.adapter.classify_error(_status_of(data["error"]), data, {})
        out: list[ChatChunk] = []
        # n > 1: the choices come interleaved, each chunk naming its own by index (one
        # event may carry several); each becomes a kit chunk of that choice
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                raise errors.ProtocolError(
                    f"{self.adapter.name}: malformed stream chunk", provider=self.adapter.name
                )
            chunk = self._chunk_of(choice)
            if chunk is not None:
                out.append(chunk)
        usage = usage_from_openai(data.get("usage"))
        if usage is not None:
            # usage counts every choice; it rides on the event's first chunk, or its own
            if out:
                out[0].usage = usage
            else:
                out.append(ChatChunk(usage=usage))
        return out

    def _chunk_of(self, choice: dict[str, Any]) -> ChatChunk | None:
        chunk = ChatChunk()
        index = choice.get("index")
        if index and isinstance(index, int):
            chunk.choice = index
        delta = choice.get("delta") or {}
        chunk.text = delta.get("content") or ""
        reasoning = reasoning_of(delta)
        if reasoning:
            chunk.thinking = ThinkingDelta(index=0, text=reasoning)
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            chunk.tool_calls.append(
                ToolCallDelta(
                    index=call.get("index", 0),
                    id=call.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments") or "",
                )
            )
        chunk.logprobs = choice.get("logprobs")
        raw_finish = choice.get("finish_reason")
        if raw_finish:
            self.finished = True
            chunk.finish_reason = FINISH_REASONS.get(raw_finish, raw_finish)
            chunk.raw_finish_reason = raw_finish
            chunk.stop_sequence = _matched_stop(choice)
        if (
            chunk.text
            or chunk.thinking
            or chunk.tool_calls
            or chunk.finish_reason
            or chunk.logprobs
        ):
            return chunk
        return None


def _matched_stop(choice: dict[str, Any]) -> str | None:
    """The stop string that ended a choice, where the server says which: vLLM (and
    servers built like it) add ``stop_reason``, the matched string (or the token id of
    an end-of-sequence token, which is not a stop sequence). OpenAI itself does not say."""
    reason = choice.get("stop_reason")
    return reason if isinstance(reason, str) and choice.get("finish_reason") == "stop" else None


def _status_of(error: Any) -> int:
    code = error.get("code") if isinstance(error, dict) else None
    # 0 = no HTTP status known (an error inside a 200 stream); classified from the body alone
    return code if isinstance(code, int) and 400 <= code < 600 else 0


def usage_from_openai(usage: Any) -> Usage | None:
    """OpenAI's usage is already the kit's normalisation: cached tokens are part
    of ``prompt_tokens``, reasoning tokens part of ``completion_tokens``.

    Compatible providers (Cerebras, Qwen, OpenRouter) send the same fields, or
    leave the details out (then they are 0); some send ``null`` details.
    """
    if not isinstance(usage, dict):
        return None
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    return Usage(
        prompt_tokens=token_count(usage.get("prompt_tokens")),
        completion_tokens=token_count(usage.get("completion_tokens")),
        cached_tokens=token_count(
            prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else 0
        ),
        reasoning_tokens=token_count(
            completion_details.get("reasoning_tokens")
            if isinstance(completion_details, dict)
            else 0
        ),
    )


def _part_to_openai(part: ContentPart) -> dict[str, Any]:
    """One content part in OpenAI's shapes. File URLs were fetched by ``prepare_request``
    (OpenAI's file part takes only bytes or a file id); a text/plain document goes as
    text, because OpenAI's file input reads PDFs only."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        image: dict[str, Any] = {
            "url": part.url if part.url else f"data:{part.media_type};base64,{part.data}"
        }
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    if part.file_id:
        return {"type": "file", "file": {"file_id": part.file_id}}
    if part.media_type == "text/plain":
        return {"type": "text", "text": media.text_of(part)}
    return {
        "type": "file",
        "file": {
            "file_data": f"data:{part.media_type};base64,{part.data}",
            "filename": part.filename or "document.pdf",
        },
    }


def reasoning_of(message: dict[str, Any]) -> str:
    """The visible reasoning an OpenAI-wire provider returns beside the content:
    ``reasoning_content`` (DeepSeek, Qwen, vLLM) or ``reasoning`` (OpenRouter).
    OpenAI itself returns none in chat completions."""
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) else ""


def message_to_openai(
    message: Message, index: int = 0, provider: str = "openai", *, cache_marks: bool = False
) -> dict[str, Any]:
    """``cache_marks``: keep Anthropic's cache_control on text parts (OpenRouter reads
    them for the Anthropic and Gemini models it serves); OpenAI caches by itself."""
    if message.role == "tool":
        if message.media():
            # chat completions' tool messages take text only: an image would be lost
            raise media.refuse(provider, "images or files in tool results", index)
        result: dict[str, Any] = {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content or "",
        }
        if cache_marks and message.cache_control:
            mark = {"cache_control": message.cache_control}
            result["content"] = [{"type": "text", "text": message.content or "", **mark}]
        return result
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.parts:
        out["content"] = [_part_to_openai(part) for part in message.parts]
        if cache_marks:
            for part, sent in zip(message.parts, out["content"], strict=True):
                if part.cache_control:
                    sent["cache_control"] = part.cache_control
    if cache_marks and message.cache_control and message.content:
        # the mark needs a content part to sit on
        if not isinstance(out["content"], list):
            out["content"] = [{"type": "text", "text": message.content}]
        out["content"][-1]["cache_control"] = message.cache_control
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    elif out["content"] is None:
        out["content"] = ""
    if message.name and message.role != "assistant":
        out["name"] = message.name
    return out


def response_format_to_openai(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    if fmt.description:
        spec["description"] = fmt.description
    return {"type": "json_schema", "json_schema": spec}
