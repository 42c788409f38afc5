"""Provider-neutral value types shared by every adapter.

The kit speaks one vocabulary (close to OpenAI's chat format, because that is
what most clients and most providers use) and each adapter translates it to
and from its own wire protocol. Nothing here imports Django: the kit can be
tested and benchmarked on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]

# Normalised finish reasons. Providers' own values are kept in raw_finish_reason.
FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_TOOL_CALLS = "tool_calls"
FINISH_CONTENT_FILTER = "content_filter"
# Gemini's MALFORMED_FUNCTION_CALL: the model tried to call a tool and produced garbage.
FINISH_MALFORMED_TOOL_CALL = "malformed_tool_call"
FINISH_ERROR = "error"


@dataclass(slots=True)
class ToolCall:
    """A complete tool call. ``arguments`` is the JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str = "{}"
    # Gemini's thoughtSignature: opaque, and must be sent back with the call in later turns
    signature: str | None = None
    # Anthropic's prompt-cache breakpoint on this tool_use block, sent back verbatim
    cache_control: dict[str, Any] | None = None

    def parsed_arguments(self) -> Any:
        return json.loads(self.arguments or "{}")


@dataclass(slots=True, frozen=True)
class TextPart:
    """Text within a message that also carries media, kept in the client's order."""

    text: str
    # Anthropic's prompt-cache breakpoint ({"type": "ephemeral", "ttl"?}) on this block
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class ImagePart:
    """An image: either an http(s) ``url`` or base64 ``data`` with its ``media_type``.

    ``detail`` is OpenAI's low / high / auto hint; other providers ignore it.
    """

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class FilePart:
    """A document (PDF or plain text): base64 ``data``, an http(s) ``url``, or an
    OpenAI ``file_id`` (a file uploaded to the provider, usable there only)."""

    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    media_type: str | None = None
    filename: str | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class AudioPart:
    """Base64 audio and its format (``wav`` or ``mp3``, OpenAI's vocabulary)."""

    data: str
    format: str
    cache_control: dict[str, Any] | None = None


ContentPart = TextPart | ImagePart | FilePart | AudioPart
MediaPart = ImagePart | FilePart | AudioPart


@dataclass(slots=True, frozen=True)
class ThinkingPart:
    """A block of the model's visible reasoning, kept so it can be sent back.

    Anthropic: a ``thinking`` block (``text`` and the ``signature`` that
    authenticates it) or, with ``data`` set, a ``redacted_thinking`` block
    (encrypted; only ``data`` travels). Both must come back unchanged, before
    the tool calls, in the assistant turn of a tool round trip. Gemini: a
    thought part's text (``signature`` its thoughtSignature, if any). An
    OpenAI-wire provider's ``reasoning_content``: text only. A signature is
    valid only for the provider that minted it.
    """

    text: str = ""
    signature: str | None = None
    data: str | None = None

    @property
    def redacted(self) -> bool:
        return self.data is not None


@dataclass(slots=True)
class Message:
    """One turn of the conversation.

    Invariant: ``parts`` is None for a text-only message (then ``content`` is all
    of it). A message with media has ``parts`` in the client's order AND
    ``content`` set to its text parts joined by newlines, so code that only needs
    the text (estimates, logs, providers' text paths) keeps reading ``content``;
    adapters that translate media read ``parts`` instead.
    """

    role: Role
    content: str | None = None
    # assistant turns that called tools
    tool_calls: list[ToolCall] = field(default_factory=list)
    # tool turns: which call this result answers, and (for Gemini) the tool's name
    tool_call_id: str | None = None
    name: str | None = None
    # user messages with images, files or audio (see the invariant above); also set,
    # text parts only, when a text block carries its own cache_control
    parts: list[ContentPart] | None = None
    # assistant turns: the reasoning blocks the reply began with, sent back in order
    # before the text and tool calls (providers that cannot take them leave them out)
    thinking: list[ThinkingPart] = field(default_factory=list)
    # Anthropic's prompt-cache breakpoint on the message's last block (a system block,
    # a tool result, a text-only turn); None = no breakpoint
    cache_control: dict[str, Any] | None = None

    def media(self) -> list[MediaPart]:
        """The non-text parts, in order (empty for a text-only message)."""
        return [p for p in self.parts or () if not isinstance(p, TextPart)]


@dataclass(slots=True)
class Tool:
    """A universal tool: a name, a description and a JSON-Schema for its input."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool = False
    # Anthropic's prompt-cache breakpoint after this tool definition
    cache_control: dict[str, Any] | None = None


ToolChoiceMode = Literal["auto", "required", "none", "function"]


@dataclass(slots=True, frozen=True)
class ToolChoice:
    """auto, required, none, or one named function."""

    mode: ToolChoiceMode = "auto"
    name: str | None = None

    @classmethod
    def function(cls, name: str) -> ToolChoice:
        return cls(mode="function", name=name)


ResponseFormatType = Literal["text", "json_object", "json_schema"]


@dataclass(slots=True, frozen=True)
class ResponseFormat:
    """OpenAI's ``response_format``: plain text, any JSON object, or JSON fitting ``schema``.

    Adapters send it in the provider's form (kit/fields.py says which); the reply's
    text is the JSON either way."""

    type: ResponseFormatType = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


@dataclass(slots=True, frozen=True)
class Reasoning:
    """How much the model may think: an OpenAI effort, or an Anthropic budget in tokens.

    The caller gives one; ``fields.REASONING_BUDGETS`` converts to the other, so
    each provider gets its own form (reasoning_effort, thinking.budget_tokens,
    thinkingConfig.thinkingBudget)."""

    effort: str | None = None
    budget_tokens: int | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    user: str | None = None
    # provider-specific body fields passed through untouched (e.g. OpenRouter's "provider")
    extra_body: dict[str, Any] = field(default_factory=dict)
    # -- request fields ruled by kit/fields.py (each adapter checks them before sending) --
    # which caller format the request came in ("openai" or "anthropic"), so a refusal
    # names the field as the caller spelt it
    wire_format: str = "openai"
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    service_tier: str | None = None
    metadata: dict[str, str] | None = None
    n: int | None = None
    top_k: int | None = None
    # caller-format fields carried verbatim to the providers whose rule is "passed"
    # (fields.OPENAI_PASSTHROUGH / ANTHROPIC_PASSTHROUGH)
    passthrough: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Usage:
    """Token counts of one reply, in ONE normalisation whatever the provider said.

    OpenAI's meaning is the kit's, because most providers and clients use it:
    ``prompt_tokens`` is every input token, including the ones read from the
    provider's prompt cache (``cached_tokens``) and the ones written to it
    (``cache_write_tokens``); ``completion_tokens`` is every output token,
    including hidden reasoning (``reasoning_tokens``). The three details are
    parts of those totals, never additions to them, so a total is never counted
    twice; they exist because each part is billed at its own rate (Anthropic
    bills cache reads at 0.1x and writes at 1.25x of input). Adapters convert:
    Anthropic's ``input_tokens`` excludes both cache counts, Gemini's
    ``candidatesTokenCount`` excludes ``thoughtsTokenCount``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    # True when the provider reported nothing and the numbers are our estimate
    estimated: bool = False
    # parts of prompt_tokens: read from / written to the provider's prompt cache
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    # part of completion_tokens: hidden reasoning ("thinking") billed as output
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_prompt_tokens(self) -> int:
        """Input tokens billed at the plain input rate (Anthropic's ``input_tokens``)."""
        return max(0, self.prompt_tokens - self.cached_tokens - self.cache_write_tokens)


def token_count(value: Any) -> int:
    """A token count from a provider's JSON: anything but a positive int is 0, so
    a ``null`` or malformed detail never breaks a reply that was otherwise fine."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


CACHE_TTLS = ("5m", "1h")


def cache_control_problem(value: Any) -> str | None:
    """What is wrong with an Anthropic ``cache_control`` value, or None if it is valid.

    Anthropic takes ``{"type": "ephemeral"}`` with an optional ``ttl`` of 5m or 1h
    and rejects anything else; checked at the edge so a bad one is the caller's
    400 rather than a provider's."""
    if not isinstance(value, dict):
        return "must be an object"
    if value.get("type") != "ephemeral":
        return "type must be 'ephemeral'"
    if "ttl" in value and value["ttl"] not in CACHE_TTLS:
        return "ttl must be '5m' or '1h'"
    extra = sorted(set(value) - {"type", "ttl"})
    if extra:
        return f"unknown field {extra[0]!r}"
    return None


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call; ``index`` identifies the call within the reply."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    signature: str | None = None


@dataclass(slots=True)
class ThinkingDelta:
    """A fragment of a streamed reasoning block; ``index`` numbers the reply's thinking
    blocks (0, 1, ...) so a consumer can tell one block from the next. ``signature``
    (Anthropic's signature_delta) and ``data`` (a redacted block, whole) come once."""

    index: int
    text: str = ""
    signature: str | None = None
    data: str | None = None


@dataclass(slots=True)
class ChatChunk:
    """One normalised streaming event. Any field may be empty."""

    text: str = ""
    thinking: ThinkingDelta | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    raw_finish_reason: str | None = None
    # the provider's own logprobs object for this chunk's tokens, passed back as sent
    logprobs: Any = None
    # with the finish: the stop sequence that ended the reply, where the provider says
    # which (Anthropic; vLLM-style OpenAI-wire servers); None when unknown
    stop_sequence: str | None = None
    # which choice this chunk belongs to when the request asked for several (``n``); the
    # provider interleaves them. Usage, when present, counts every choice.
    choice: int = 0


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    raw_finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    # rate-limit state read from the response headers, when the provider sends any
    rate_limit: Any = None
    # the provider's logprobs object (OpenAI's {"content": [...]}), passed back as sent
    logprobs: Any = None
    # the stop sequence that ended the reply, where the provider says which (ChatChunk)
    stop_sequence: str | None = None
    # the choices after the first when the request asked for several (``n``): each its
    # text, tool calls, finish and logprobs; ``usage`` above counts them all
    extra_choices: list[ChatResponse] = field(default_factory=list)
    # the reasoning blocks, in order (they come before the text and tool calls)
    thinking: list[ThinkingPart] = field(default_factory=list)

    @property
    def thinking_text(self) -> str:
        """The readable reasoning (redacted blocks have none), for OpenAI's reasoning_content."""
        return "".join(p.text for p in self.thinking)


@dataclass(slots=True)
class ModelInfo:
    id: str
    name: str
    provider: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    supports_streaming: bool = True
    supports_tools: bool = True
    # takes images / documents / audio: False only where the catalogue knows it does not
    # (such a model gets a 400 for media); None = unknown, and the request is tried
    supports_vision: bool | None = None
    # USD per million tokens, when known
    input_price_per_million: float | None = None
    output_price_per_million: float | None = None
    # "fetched" from the provider, or "static" from the adapter's fallback list
    source: Literal["fetched", "static"] = "fetched"


@dataclass(slots=True)
class HealthStatus:
    healthy: bool
    latency_ms: float
    error_type: str | None = None
    detail: str = ""


@dataclass(slots=True)
class AuthState:
    """How an adapter authenticates, without ever exposing the secret itself."""

    method: Literal["api_key", "oauth", "none"]
    configured: bool
    # label safe to show: last four characters of the secret
    hint: str = ""
    expires_at: float | None = None  # unix time, for OAuth tokens


class ToolCallAccumulator:
    """Merges streamed tool-call fragments into complete calls.

    Fragments are keyed by ``index`` because OpenAI sends the id only in a
    call's first fragment; the id and name from that first fragment are kept.
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, ToolCall] = {}

    def add(self, delta: ToolCallDelta) -> None:
        call = self._calls.get(delta.index)
        if call is None:
            self._calls[delta.index] = ToolCall(
                id=delta.id or "",
                name=delta.name or "",
                arguments=delta.arguments,
                signature=delta.signature,
            )
            return
        if delta.id and not call.id:
            call.id = delta.id
        if delta.name and not call.name:
            call.name = delta.name
        if delta.signature and not call.signature:
            call.signature = delta.signature
        call.arguments += delta.arguments

    def calls(self) -> list[ToolCall]:
        return [self._calls[i] for i in sorted(self._calls)]


class ResponseBuilder:
    """Folds a stream of chunks into the ChatResponse a non-streaming call would give.

    Chunks of a further choice (``n`` > 1, ``ChatChunk.choice``) fold into a builder of
    their own, built into ``extra_choices``; the first choice -- the only one in the
    common case -- costs one int comparison a chunk more.
    """

    __slots__ = (
        "_id",
        "_model",
        "_text",
        "_tools",
        "_finish",
        "_raw_finish",
        "_stop_sequence",
        "_usage",
        "_thinking",
        "_others",
    )

    def __init__(self, response_id: str = "", model: str = "") -> None:
        self._id = response_id
        self._model = model
        self._text: list[str] = []
        self._tools = ToolCallAccumulator()
        self._finish: str | None = None
        self._raw_finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None
        # per thinking block: [text pieces, signature, data]
        self._thinking: dict[int, list[Any]] = {}
        # the further choices by index, made when their first chunk arrives
        self._others: dict[int, ResponseBuilder] | None = None

    def add(self, chunk: ChatChunk) -> None:
        if chunk.choice:
            self._add_other(chunk)
            return
        if chunk.text:
            self._text.append(chunk.text)
        if chunk.thinking is not None:
            d = chunk.thinking
            block = self._thinking.setdefault(d.index, [[], None, None])
            if d.text:
                block[0].append(d.text)
            if d.signature:
                block[1] = d.signature
            if d.data is not None:
                block[2] = d.data
        for delta in chunk.tool_calls:
            self._tools.add(delta)
        if chunk.finish_reason:
            self._finish = chunk.finish_reason
            self._raw_finish = chunk.raw_finish_reason
            self._stop_sequence = chunk.stop_sequence
        if chunk.usage is not None:
            self._usage = chunk.usage

    def _add_other(self, chunk: ChatChunk) -> None:
        if chunk.usage is not None:
            # usage counts every choice: it belongs to the reply, whichever chunk carries it
            self._usage = chunk.usage
        if self._others is None:
            self._others = {}
        other = self._others.get(chunk.choice)
        if other is None:
            other = self._others[chunk.choice] = ResponseBuilder(self._id, self._model)
        other.add(replace(chunk, choice=0, usage=None))

    def build(self) -> ChatResponse:
        response = ChatResponse(
            id=self._id,
            model=self._model,
            text="".join(self._text),
            tool_calls=self._tools.calls(),
            finish_reason=self._finish,
            raw_finish_reason=self._raw_finish,
            usage=self._usage or Usage(),
            thinking=[
                ThinkingPart(text="".join(b[0]), signature=b[1], data=b[2])
                for _, b in sorted(self._thinking.items())
            ],
            stop_sequence=self._stop_sequence,
        )
        if self._others:
            # in index order; a choice whose chunks never came is left out, not invented
            response.extra_choices = [b.build() for _, b in sorted(self._others.items())]
        return response
