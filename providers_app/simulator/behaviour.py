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
- otherwise -> text ``"Simulated reply to: <last user text>"``.

Text is emitted one word per chunk (``\\S+\\s*`` pieces, so the pieces
concatenate to the full text) and truncated to ``max_tokens`` words.

Three knobs make the reply less friendly to a gateway's estimates (set by
:func:`shape`): an exact word count (``words-<n>``), one token per character
instead of per word (``dense``; never more than the UTF-8 bytes of the text,
so a reservation by bytes stays an upper bound), and a provider that emits a
tenth more tokens than ``max_tokens`` allowed (``overrun``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

_WORD_RE = re.compile(r"\S+\s*")

# Reply.finish values; each wire module maps them to its own finish reasons.
STOP = "stop"
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
    completion_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.chunks)


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
    return _text_reply(conv, _reply_text(conv.last_user_text))


def filtered(conv: Conversation, finish: str) -> Reply:
    """A reply cut by a (simulated) safety system after a few words."""
    shown = words(_reply_text(conv.last_user_text))[:FILTERED_WORDS]
    if finish in (MALFORMED_FUNCTION_CALL, PROMPT_BLOCKED):
        shown = []
    tokens = len("".join(shown)) if conv.dense else len(shown)
    return Reply(shown, [], finish, prompt_tokens(conv), tokens)


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
    finish = STOP
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
        return Reply(words(text), [], finish, prompt_tokens(conv), len(text))
    chunks = words(text)
    if limit is not None and limit < len(chunks):
        chunks = chunks[:limit]
        chunks[-1] = chunks[-1].rstrip()
        finish = LENGTH
    return Reply(chunks, [], finish, prompt_tokens(conv), len(chunks))


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
