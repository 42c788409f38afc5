"""What the simulated model answers, independent of any wire format.

Each wire module turns its request into a :class:`Conversation`, asks
:func:`decide` for a :class:`Reply` and renders it. Keeping the decision in one
place makes the three providers answer the same conversation the same way,
which is what lets gateway tests compare them.

The rules (docs/SIMULATOR.md has the user-facing version):

- the last message carries tool results -> text ``"Tool results: r1 | r2"``;
- tools are offered, tool choice is not none and the last message is a user
  message -> call every offered tool named in that message, in order of
  appearance (parallel calls), else the first tool, or the forced one;
- JSON mode (OpenAI ``response_format`` json_object / json_schema, Anthropic
  ``output_config.format``, Gemini ``responseMimeType: application/json``
  with an optional ``responseSchema``) -> the text is JSON: a minimal
  instance of the schema (``arguments_for``'s rule: every property, the first
  enum / const / anyOf branch, strings ``"<name>-value"``, 1, 1.5, true, one
  array item), ``{}`` for "any object";
- otherwise -> text ``"Simulated reply to: <last user text>"``.

Text is emitted one word per chunk (``\\S+\\s*`` pieces, so the pieces
concatenate to the full text) and truncated to ``max_tokens`` words.

Three knobs make the reply less friendly to a gateway's estimates (set by
:func:`shape`): an exact word count (``words-<n>``), one token per character
instead of per word (``dense``; never more than the UTF-8 bytes of the text,
so a reservation by bytes stays an upper bound), and a provider that emits a
tenth more tokens than ``max_tokens`` allowed (``overrun``).

Usage detail (cache and reasoning tokens), so gateways can be tested on what
the real APIs bill differently (:func:`_add_usage_detail`):

- *reasoning*: a request the wire marks as reasoning (OpenAI: a model id like
  ``o1``/``o3-mini`` or containing ``thinking``/``reasoning``, or a
  ``reasoning_effort`` other than ``none``; Anthropic: ``thinking.type`` =
  ``enabled`` or a model id containing ``thinking``; Gemini: a
  ``thinkingConfig`` with a nonzero ``thinkingBudget`` or ``includeThoughts``,
  or a model id containing ``thinking``) spends ``REASONING_TOKENS`` hidden
  output tokens, never more than ``max_tokens`` leaves after the visible reply
  (every provider counts reasoning against that limit);
- *prompt cache*: a process-wide memory of cacheable prompt prefixes. A prefix
  of at least ``CACHE_MIN_TOKENS`` tokens seen before is a cache read; seen for
  the first time it is a cache write (reported by Anthropic only: OpenAI's and
  Gemini's automatic caching does not bill writes). The prefix is the whole
  prompt for OpenAI and Gemini (counted in whole ``CACHE_BLOCK_TOKENS`` blocks,
  as OpenAI does), and for Anthropic everything up to the last block carrying
  ``cache_control`` (nothing is cached without one). Send the same long prompt
  twice to see a read.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

_WORD_RE = re.compile(r"\S+\s*")

# Reply.finish values; each wire module maps them to its own finish reasons.
STOP = "stop"
STOP_SEQUENCE = "stop_sequence"  # one of the request's stop sequences ended the reply
LENGTH = "length"
TOOL_CALLS = "tool_calls"
CONTENT_FILTER = "content_filter"
MALFORMED_FUNCTION_CALL = "malformed_function_call"
PROMPT_BLOCKED = "prompt_blocked"

ARGUMENT_FRAGMENT_CHARS = 8
FILTERED_WORDS = 2  # words a filtered reply shows before it is cut
OVERRUN_RATIO = 0.10  # ``overrun``: completion tokens = max_tokens + 10 % (at least one more)

# Filler for ``words-<n>`` and ``overrun`` replies longer than the natural one.
_FILLER = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua"
).split()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    schema: dict


@dataclass(slots=True)
class Conversation:
    """The provider-neutral reading of a request."""

    last_user_text: str = ""
    last_is_user: bool = True
    tool_results: list[str] | None = None  # set when the last message carries tool results
    prompt_tokens: int = 1
    tools: list[ToolSpec] = field(default_factory=list)
    tool_mode: str = "auto"  # auto | none | required (= any) | forced
    forced_tool: str | None = None
    allowed_tools: frozenset[str] | None = None
    parallel_tool_calls: bool = True
    max_tokens: int | None = None
    prompt_chars: int = 0  # characters of the prompt text, for ``dense`` usage
    reply_words: int | None = None  # ``words-<n>``: the text reply has exactly n words
    dense: bool = False  # usage counts one token per character
    overrun: bool = False  # completion tokens exceed max_tokens by OVERRUN_RATIO
    reasoning: bool = False  # the request asks for (or the model does) hidden reasoning
    # the cacheable prompt prefix: whose cache it is in (the model; None = nothing
    # cacheable) and its texts
    cache_scope: str | None = None
    cache_prefix: list[str] = field(default_factory=list)
    cache_whole_blocks: bool = True  # OpenAI/Gemini count cached tokens in whole blocks
    cache_writes_billed: bool = False  # Anthropic reports (and bills) cache writes
    # JSON mode: the schema the text reply must fit ({} = any JSON object), None = text
    json_schema: dict | None = None
    # the request's stop sequences: the reply ends before the first one it contains
    stop_sequences: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict
    arguments_json: str

    def fragments(self) -> list[str]:
        """The argument JSON split in >= 2 pieces, as real streams do."""
        text = self.arguments_json
        size = (
            ARGUMENT_FRAGMENT_CHARS
            if len(text) > ARGUMENT_FRAGMENT_CHARS
            else max(1, len(text) // 2)
        )
        return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass(slots=True)
class Reply:
    chunks: list[str]
    tool_calls: list[ToolCall]
    finish: str
    prompt_tokens: int
    completion_tokens: int  # the visible reply; reasoning_tokens come on top
    # parts of prompt_tokens
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # finish STOP_SEQUENCE: the sequence that matched (left out of the text, as real APIs do)
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)


REASONING_TOKENS = 32
CACHE_MIN_TOKENS = 1024  # OpenAI's, Anthropic's (Sonnet) and Gemini 2.5 Flash's minimum
CACHE_BLOCK_TOKENS = 128
_CACHE_ENTRIES = 4096


class _PromptCache:
    """Prefix keys seen recently, oldest forgotten first."""

    def __init__(self) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, key: str) -> bool:
        """Whether ``key`` was seen before; remembers it either way."""
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return True
            self._keys[key] = None
            if len(self._keys) > _CACHE_ENTRIES:
                self._keys.popitem(last=False)
            return False


_PROMPT_CACHE = _PromptCache()


def _cache_key(scope: str, texts: list[str]) -> str:
    """A prompt prefix's identity in the simulated cache (per model, as real caches are)."""
    return hashlib.sha256(json.dumps([scope, texts]).encode()).hexdigest()


def prefix_tokens(conv: Conversation, texts: list[str]) -> int:
    """Tokens of a prompt prefix, counted the way ``prompt_tokens`` counts the prompt."""
    return count_chars(*texts) if conv.dense else count_words(*texts)


def _add_usage_detail(conv: Conversation, reply: Reply) -> Reply:
    if conv.reasoning:
        budget = REASONING_TOKENS
        if conv.max_tokens is not None and conv.max_tokens > 0:
            budget = min(budget, max(0, conv.max_tokens - reply.completion_tokens))
        reply.reasoning_tokens = budget
    # counted first: only a prefix long enough to cache is hashed
    prefix = prefix_tokens(conv, conv.cache_prefix) if conv.cache_scope is not None else 0
    if conv.cache_scope is not None and prefix >= CACHE_MIN_TOKENS:
        cached = min(prefix, reply.prompt_tokens)
        if conv.cache_whole_blocks:
            cached -= cached % CACHE_BLOCK_TOKENS
        if _PROMPT_CACHE.seen(_cache_key(conv.cache_scope, conv.cache_prefix)):
            reply.cached_tokens = cached
        elif conv.cache_writes_billed:
            reply.cache_write_tokens = cached
    return reply


def count_words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts if t)


def count_chars(*texts: str) -> int:
    return sum(len(t) for t in texts if t)


def shape(conv: Conversation, *, words: int | None, dense: bool, overrun: bool) -> None:
    """Apply the reply-length knobs of a request to its conversation."""
    conv.reply_words = words
    conv.dense = dense
    conv.overrun = overrun


def prompt_tokens(conv: Conversation) -> int:
    """Prompt tokens as usage reports them: words, or characters when ``dense``."""
    return max(1, conv.prompt_chars) if conv.dense else conv.prompt_tokens


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text)


def decide(conv: Conversation) -> Reply:
    return _add_usage_detail(conv, _decide(conv))


def _decide(conv: Conversation) -> Reply:
    if conv.tool_results is not None:
        return _text_reply(conv, "Tool results: " + " | ".join(conv.tool_results))
    if conv.last_is_user and conv.tools and conv.tool_mode != "none":
        calls = _choose_tools(conv)
        if calls:
            if conv.dense:
                tokens = sum(len(c.arguments_json) for c in calls)
            else:
                tokens = sum(len(c.fragments()) for c in calls)
            return Reply([], calls, TOOL_CALLS, prompt_tokens(conv), tokens)
    if conv.json_schema is not None:
        # spaces after separators, so the word chunks stay small and rejoin to the JSON
        return _text_reply(
            conv, json.dumps(_example(conv.json_schema, "value", 0) if conv.json_schema else {})
        )
    return _text_reply(conv, _reply_text(conv.last_user_text))


def filtered(conv: Conversation, finish: str) -> Reply:
    """A reply cut by a (simulated) safety system after a few words."""
    shown = words(_reply_text(conv.last_user_text))[:FILTERED_WORDS]
    if finish in (MALFORMED_FUNCTION_CALL, PROMPT_BLOCKED):
        shown = []
    tokens = len("".join(shown)) if conv.dense else len(shown)
    reply = Reply(shown, [], finish, prompt_tokens(conv), tokens)
    # a blocked prompt never reached the model: nothing was read, cached or reasoned
    return reply if finish == PROMPT_BLOCKED else _add_usage_detail(conv, reply)


def _reply_text(user_text: str) -> str:
    user_text = user_text.strip()
    return f"Simulated reply to: {user_text}" if user_text else "Simulated reply."


def _exactly(text: str, count: int) -> str:
    """``text`` cut or extended with filler words to exactly ``count`` words."""
    pieces = text.split()
    if len(pieces) < count:
        pieces += [_FILLER[i % len(_FILLER)] for i in range(count - len(pieces))]
    return " ".join(pieces[:count])


def _text_reply(conv: Conversation, text: str) -> Reply:
    """The text reply, cut by max_tokens, counted in words or (``dense``) characters.

    With ``overrun`` the limit becomes max_tokens + 10 % and the text is
    padded to reach it, so the provider always "ignores" max_tokens by that
    much: the case a gateway's reservation must survive.
    """
    if conv.reply_words is not None:
        text = _exactly(text, conv.reply_words)
    text, matched = _cut_at_stop(text, conv.stop_sequences)
    finish = STOP if matched is None else STOP_SEQUENCE
    limit = conv.max_tokens if conv.max_tokens is not None and conv.max_tokens > 0 else None
    if limit is not None and conv.overrun:
        limit += max(1, math.ceil(limit * OVERRUN_RATIO))
        size = len(text) if conv.dense else len(text.split())
        if size < limit:
            text = _exactly(text, len(text.split()) + limit)  # long enough in words and chars
        finish = LENGTH
    if conv.dense:
        if limit is not None and len(text) > limit:
            text = text[:limit]
            finish = LENGTH
        reply = Reply(words(text), [], finish, prompt_tokens(conv), len(text))
    else:
        chunks = words(text)
        if limit is not None and limit < len(chunks):
            chunks = chunks[:limit]
            chunks[-1] = chunks[-1].rstrip()
            finish = LENGTH
        reply = Reply(chunks, [], finish, prompt_tokens(conv), len(chunks))
    # max_tokens reached first: the sequence was never generated
    reply.stop_sequence = matched if finish == STOP_SEQUENCE else None
    return reply


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """``text`` up to the earliest stop sequence in it (the first listed on a tie), and
    that sequence; unchanged and None when it holds none."""
    found = [(text.find(s), i, s) for i, s in enumerate(stops) if s and s in text]
    if not found:
        return text, None
    position, _, matched = min(found)
    return text[:position], matched


def _choose_tools(conv: Conversation) -> list[ToolCall]:
    tools = conv.tools
    if conv.allowed_tools is not None:
        tools = [t for t in tools if t.name in conv.allowed_tools]
    if not tools:
        return []
    if conv.tool_mode == "forced":
        chosen = [t for t in tools if t.name == conv.forced_tool][:1]
        if not chosen:
            return []
    else:
        text = conv.last_user_text
        positions = [(text.find(t.name), i, t) for i, t in enumerate(tools) if t.name]
        named = sorted((p for p in positions if p[0] >= 0), key=lambda p: (p[0], p[1]))
        chosen = [t for _, _, t in named] or [tools[0]]
    if not conv.parallel_tool_calls:
        chosen = chosen[:1]
    calls = []
    for tool in chosen:
        args = arguments_for(tool.schema)
        calls.append(
            ToolCall(tool.name, args, json.dumps(args, ensure_ascii=False, separators=(",", ":")))
        )
    return calls


def arguments_for(schema: dict) -> dict:
    """Deterministic arguments for a tool's JSON Schema (or Gemini Schema)."""
    value = _example(schema, "value", 0)
    return value if isinstance(value, dict) else {}


def _example(schema: object, name: str, depth: int) -> object:
    if not isinstance(schema, dict) or depth > 12:
        return f"{name}-value"
    enum = schema.get("enum")
    if enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf", "any_of"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, dict) and _type_of(o) == "null")]
            return _example((usable or options)[0], name, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _example(sub, key, depth + 1) for key, sub in props.items()}
    if kind == "array":
        return [_example(schema.get("items") or {}, name, depth + 1)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"{name}-value"


def _type_of(schema: dict) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null" if kind else None)
    if isinstance(kind, str) and kind and kind.upper() != "TYPE_UNSPECIFIED":
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"
