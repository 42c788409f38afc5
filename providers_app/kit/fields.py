"""The rule for every request field, per provider type: translated, passed through, or refused.

Why one table: a field the caller sends must never vanish on its way to a
provider. Before this table the formats listed fields as "ignored", and a
client that asked for JSON mode or a seed got an answer that silently did not
honour it. Now each field the two request formats (OpenAI chat completions,
Anthropic messages) know has one row here, and every adapter consults the
table before it sends anything (``check``): a refused field is a 400 that
names the field and the provider, never a silent drop.

- ``translated``: the adapter rewrites the field into the provider's own form
  (``stop`` -> Gemini ``generationConfig.stopSequences``);
- ``passed``: the provider's wire has the same field, sent as it came;
- ``refused``: the provider has no counterpart; the request fails with a 400.

A row's ``neutral`` value is the one that asks for nothing (``n=1``,
``parallel_tool_calls=true``, ``response_format={"type": "text"}``): every
provider honours it by doing nothing, so it is never refused. ``droppable``
marks the rows a per-key "drop instead of refuse" option (``fit``; the gateway
names them in an ``x-aipk-dropped-params`` header) may drop: those whose absence
changes the answer's wording, not its shape. Fields that change the shape (JSON mode,
tools, logprobs) are never droppable.

Framework-free: the kit and the simulator import it; docs/SUPPORT_MATRIX.md is
rendered from it (``render_markdown``, scripts/support_matrix.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .errors import InvalidRequestError


class Rule(StrEnum):
    TRANSLATED = "translated"
    PASSED = "passed"
    REFUSED = "refused"


# The provider types of the registry (kit/providers), with "openai-compatible" spelt as a
# Python name. The OpenAI-wire family first: they share the OpenAIAdapter.
PROVIDER_TYPES = (
    "openai",
    "openai_compatible",
    "cerebras",
    "qwen",
    "openrouter",
    "anthropic",
    "gemini",
)
OPENAI_WIRE = ("openai", "openai_compatible", "cerebras", "qwen", "openrouter")

T, P, R = Rule.TRANSLATED, Rule.PASSED, Rule.REFUSED

UNSUPPORTED_FIELD = "unsupported_parameter"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One request field. ``kit`` is its ``ChatRequest`` attribute, or ``passthrough.<name>``
    for a field the kit carries verbatim; ``openai`` / ``anthropic`` are its names in the
    two caller formats (None: that format has no such field)."""

    kit: str
    openai: str | None
    anthropic: str | None
    rules: dict[str, Rule]
    neutral: tuple[Any, ...] = ()
    droppable: bool = False
    note: str = ""

    def value(self, request: Any) -> Any:
        if self.kit.startswith("passthrough."):
            return request.passthrough.get(self.kit.split(".", 1)[1])
        return getattr(request, self.kit, None)

    def label(self, wire_format: str) -> str:
        """The field's name as the caller spelt it."""
        if wire_format == "responses" and self.kit in RESPONSES_NAMES:
            return RESPONSES_NAMES[self.kit]
        name = self.anthropic if wire_format == "anthropic" else self.openai
        return name or self.openai or self.anthropic or self.kit


# OpenAI's Responses API (POST /v1/responses, aipk_site/gateway/responses.py) names some
# chat-completions fields otherwise; a refusal names the field as that caller spelt it.
# Rows not listed here have the chat-completions name there too.
RESPONSES_NAMES = {
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
    "reasoning": "reasoning.effort",
}


def _rules(default: Rule, *, openai_wire: Rule | None = None, **by_type: Rule) -> dict[str, Rule]:
    out = {t: default for t in PROVIDER_TYPES}
    if openai_wire is not None:
        out.update({t: openai_wire for t in OPENAI_WIRE})
    out.update(by_type)
    return out


def _rf_neutral(value: Any) -> bool:
    return getattr(value, "type", None) == "text"


# fmt: off
FIELDS: tuple[FieldRule, ...] = (
    FieldRule("model", "model", "model", _rules(P)),
    FieldRule("messages", "messages", "messages", _rules(T, openai_wire=P),
              note="Anthropic `system` becomes a system message."),
    FieldRule("max_tokens", "max_tokens / max_completion_tokens", "max_tokens",
              _rules(T, openai_wire=P), note="Gemini maxOutputTokens."),
    FieldRule("temperature", "temperature", "temperature", _rules(T, openai_wire=P)),
    FieldRule("top_p", "top_p", "top_p", _rules(T, openai_wire=P), note="Gemini topP."),
    FieldRule("stop", "stop", "stop_sequences", _rules(T, openai_wire=P),
              note="Anthropic stop_sequences, Gemini stopSequences."),
    FieldRule("user", "user", "metadata.user_id", _rules(P, anthropic=T, gemini=T),
              droppable=True, note="Anthropic metadata.user_id. Gemini has no end-user id: "
                                   "there it is kept by aipk only, not sent. Kept on the "
                                   "usage row (end_user) for attribution everywhere."),
    FieldRule("tools", "tools", "tools", _rules(T, openai_wire=P)),
    FieldRule("tool_choice", "tool_choice", "tool_choice", _rules(T, openai_wire=P)),
    FieldRule("parallel_tool_calls", "parallel_tool_calls",
              "tool_choice.disable_parallel_tool_use", _rules(P, anthropic=T, gemini=R),
              neutral=(True,), note="Only `true` (the default) on Gemini."),
    FieldRule("response_format", "response_format", "output_config.format",
              _rules(P, anthropic=T, gemini=T),
              note="Anthropic output_config.format (json_schema only); Gemini "
                   "responseMimeType + responseSchema."),
    FieldRule("reasoning", "reasoning_effort", "thinking",
              _rules(P, qwen=R, openrouter=T, anthropic=T, gemini=T), droppable=True,
              note="Effort <-> budget: see REASONING_BUDGETS. OpenRouter reasoning.effort, "
                   "Anthropic thinking.budget_tokens, Gemini thinkingConfig.thinkingBudget."),
    FieldRule("seed", "seed", None, _rules(P, anthropic=R, gemini=T), droppable=True,
              note="Gemini generationConfig.seed."),
    FieldRule("logprobs", "logprobs", None, _rules(P, anthropic=R, gemini=T),
              neutral=(False,), note="Returned logprobs are passed back in the reply; Gemini "
                                     "responseLogprobs, its logprobsResult rendered as "
                                     "OpenAI's logprobs.content."),
    FieldRule("top_logprobs", "top_logprobs", None, _rules(P, anthropic=R, gemini=T),
              note="Gemini generationConfig.logprobs."),
    FieldRule("frequency_penalty", "frequency_penalty", None,
              _rules(P, anthropic=R, gemini=T), neutral=(0, 0.0), droppable=True,
              note="Gemini frequencyPenalty."),
    FieldRule("presence_penalty", "presence_penalty", None,
              _rules(P, anthropic=R, gemini=T), neutral=(0, 0.0), droppable=True,
              note="Gemini presencePenalty."),
    FieldRule("service_tier", "service_tier", "service_tier",
              _rules(R, openai=P, openai_compatible=P, anthropic=P), neutral=("auto",),
              droppable=True, note="Passed as sent: the value sets differ between OpenAI "
                                   "and Anthropic."),
    FieldRule("metadata", "metadata", None,
              _rules(R, openai=P, openai_compatible=P, openrouter=P), droppable=True,
              note="OpenAI's stored-completion tags (Anthropic's metadata is `user` above)."),
    FieldRule("n", "n", None, _rules(R, openai_wire=P, gemini=T), neutral=(1, None),
              note="Gemini candidateCount, in a whole reply only (a Gemini stream with n > 1 "
                   "is refused naming it). OpenAI-wire streams carry the choices interleaved, "
                   "each chunk naming its index."),
    FieldRule("top_k", None, "top_k",
              _rules(R, openai_compatible=P, openrouter=P, anthropic=P, gemini=T),
              droppable=True, note="Gemini topK."),
    FieldRule("passthrough.logit_bias", "logit_bias", None,
              _rules(R, openai=P, openai_compatible=P, openrouter=P), droppable=True),
    FieldRule("passthrough.store", "store", None, _rules(R, openai=P, openai_compatible=P),
              neutral=(False,), droppable=True),
    FieldRule("passthrough.prompt_cache_key", "prompt_cache_key", None,
              _rules(R, openai=P, openai_compatible=P), droppable=True),
    FieldRule("passthrough.safety_identifier", "safety_identifier", None,
              _rules(R, openai=P, openai_compatible=P), droppable=True),
    FieldRule("passthrough.verbosity", "verbosity", None,
              _rules(R, openai=P, openai_compatible=P), droppable=True),
    FieldRule("passthrough.modalities", "modalities", None,
              _rules(R, openai=P, openai_compatible=P), neutral=(["text"],)),
    FieldRule("passthrough.audio", "audio", None, _rules(R, openai=P, openai_compatible=P)),
    FieldRule("passthrough.prediction", "prediction", None,
              _rules(R, openai=P, openai_compatible=P), droppable=True),
    FieldRule("passthrough.web_search_options", "web_search_options", None,
              _rules(R, openai=P, openai_compatible=P, openrouter=P)),
    FieldRule("passthrough.container", None, "container", _rules(R, anthropic=P)),
    FieldRule("passthrough.mcp_servers", None, "mcp_servers", _rules(R, anthropic=P)),
    FieldRule("passthrough.context_management", None, "context_management",
              _rules(R, anthropic=P), droppable=True),
    # -- the rest of OpenAI's chat-completions fields (openai-python completion_create_params)
    FieldRule("passthrough.prompt_cache_retention", "prompt_cache_retention", None,
              _rules(R, openai=P, openai_compatible=P), droppable=True),
    FieldRule("passthrough.prompt_cache_options", "prompt_cache_options", None,
              _rules(R, openai=P, openai_compatible=P), droppable=True),
    FieldRule("passthrough.moderation", "moderation", None,
              _rules(R, openai=P, openai_compatible=P)),
    FieldRule("passthrough.functions", "functions", None, _rules(R),
              note="OpenAI's legacy function calling: send `tools` instead."),
    FieldRule("passthrough.function_call", "function_call", None, _rules(R),
              note="OpenAI's legacy function calling: send `tool_choice` instead."),
    # -- OpenRouter's own fields (sent through the openai SDK's extra_body)
    FieldRule("passthrough.models", "models", None, _rules(R, openrouter=P),
              note="OpenRouter's model fallback list."),
    FieldRule("passthrough.provider", "provider", None, _rules(R, openrouter=P),
              droppable=True, note="OpenRouter's provider preferences (order, only, ...)."),
    FieldRule("passthrough.transforms", "transforms", None, _rules(R, openrouter=P),
              droppable=True, note="OpenRouter's prompt transforms."),
    FieldRule("passthrough.route", "route", None, _rules(R, openrouter=P), droppable=True,
              note="OpenRouter's routing (\"fallback\")."),
    FieldRule("passthrough.plugins", "plugins", None, _rules(R, openrouter=P),
              note="OpenRouter's plugins (web search, file parsing)."),
    # -- the rest of Anthropic's messages fields (anthropic-sdk-python message_create_params)
    FieldRule("passthrough.inference_geo", None, "inference_geo", _rules(R, anthropic=P),
              droppable=True),
    FieldRule("passthrough.speed", None, "speed", _rules(R, anthropic=P), droppable=True),
    FieldRule("passthrough.diagnostics", None, "diagnostics", _rules(R, anthropic=P),
              droppable=True),
    FieldRule("passthrough.workspace_id", None, "workspace_id", _rules(R, anthropic=P),
              droppable=True),
    FieldRule("passthrough.user_profile_id", None, "user_profile_id", _rules(R, anthropic=P),
              droppable=True),
    # carried inside messages / tools (not ChatRequest attributes): never refused
    FieldRule("messages.cache_control", None, "cache_control (system, content blocks, tools)",
              _rules(T, anthropic=P, openrouter=P),
              note="Anthropic: on the block it was given for. OpenRouter: on the content "
                   "part (it forwards it to Anthropic and Gemini models). OpenAI, "
                   "OpenAI-compatible, Cerebras, Qwen and Gemini cache prompt prefixes "
                   "automatically: the breakpoint has no wire counterpart and is met by that "
                   "caching, so a client written for Claude keeps working on any route "
                   "(cached reads still show in usage)."),
    FieldRule("passthrough.cache_control", None, "cache_control", _rules(T, anthropic=P),
              note="Anthropic's automatic caching: one breakpoint the provider moves to the "
                   "last cacheable block as the conversation grows; sent as given. The "
                   "others cache prompt prefixes automatically (see the block-level row)."),
    FieldRule("messages.thinking", None, "thinking / redacted_thinking blocks (assistant)",
              _rules(T, anthropic=P),
              note="Sent back first in the turn, unchanged, to Anthropic. Left out for every "
                   "other provider, by design: their signatures are valid only for the "
                   "provider that produced them (the one place a field is dropped). Replies' "
                   "thinking: Anthropic blocks on /v1/messages, `reasoning_content` on "
                   "/v1/chat/completions, `reasoning` items on /v1/responses (signed blocks "
                   "in `encrypted_content`)."),
)
# fmt: on

BY_KIT = {row.kit: row for row in FIELDS}
# the caller-format fields the kit carries verbatim in ChatRequest.passthrough
OPENAI_PASSTHROUGH = tuple(
    row.openai for row in FIELDS if row.kit.startswith("passthrough.") and row.openai
)
ANTHROPIC_PASSTHROUGH = tuple(
    row.anthropic for row in FIELDS if row.kit.startswith("passthrough.") and row.anthropic
)


def _names(label: str | None) -> tuple[str, ...]:
    """The top-level body fields a row's caller-format label names: ``max_tokens /
    max_completion_tokens`` is two, ``metadata.user_id`` and ``output_config.format``
    live under ``metadata`` and ``output_config``."""
    if not label:
        return ()
    return tuple(part.strip().split(".", 1)[0] for part in label.split("/"))


# Every top-level field each caller format knows: the table's rows plus the fields that
# are the format's own business (streaming, the system prompt, aipk's extension). A
# field outside these is refused by name ("Unrecognized request argument supplied"), or
# dropped under a key's drop option: never ignored silently.
# Rows carried inside messages or tools ("messages.*") name no top-level field.
_TOP_LEVEL = [row for row in FIELDS if not row.kit.startswith("messages.")]
OPENAI_KNOWN = frozenset(
    {n for row in _TOP_LEVEL for n in _names(row.openai)} | {"stream", "stream_options", "aipk"}
)
ANTHROPIC_KNOWN = frozenset(
    {n for row in _TOP_LEVEL for n in _names(row.anthropic)}
    | {"system", "stream", "output_format", "aipk"}
)
UNKNOWN_FIELD = "unknown_parameter"

# Reasoning effort <-> thinking budget (tokens). Anthropic's smallest budget is 1024;
# the other steps double from there, so a budget read back maps to the same effort.
REASONING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
REASONING_EFFORTS = tuple(REASONING_BUDGETS)


def effort_for_budget(budget: int) -> str:
    """The smallest effort whose budget covers ``budget`` ("high" past the top)."""
    for effort, tokens in REASONING_BUDGETS.items():
        if budget <= tokens:
            return effort
    return "high"


class UnsupportedFieldError(InvalidRequestError):
    """A field the table refuses for this provider: a 400 naming both."""

    def __init__(self, field: str, provider: str, provider_type: str, detail: str = "") -> None:
        message = f"{field} is not supported by provider '{provider}' (type {provider_type})"
        super().__init__(
            f"{message}: {detail}" if detail else message,
            provider=provider,
            code=UNSUPPORTED_FIELD,
        )
        self.field = field


def is_set(row: FieldRule, value: Any) -> bool:
    """Whether the caller asked for something: not absent and not the neutral value."""
    if value is None or (isinstance(value, (dict, list)) and not value and row.kit != "stop"):
        return False
    if row.kit == "response_format":
        return not _rf_neutral(value)
    return not any(value == neutral and type(value) is type(neutral) for neutral in row.neutral)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What ``check`` and ``fit`` look at for one provider type, worked out once: the rows
    that type refuses (or an adapter refines), in table order, split into ChatRequest
    attributes (a getattr each) and passthrough fields (looked up only when the request
    carries any). A request with no special field costs a handful of attribute reads,
    not a walk over the whole table."""

    attrs: tuple[FieldRule, ...]
    passthrough: tuple[tuple[str, FieldRule], ...]


_PLANS: dict[tuple[str, tuple[str, ...]], _Plan] = {}


def _plan(rule_type: str, refined: tuple[str, ...] = ()) -> _Plan:
    plan = _PLANS.get((rule_type, refined))
    if plan is None:
        rows = [
            row
            for row in FIELDS
            if row.rules.get(rule_type, Rule.REFUSED) is Rule.REFUSED or row.kit in refined
        ]
        plan = _PLANS[(rule_type, refined)] = _Plan(
            attrs=tuple(r for r in rows if not r.kit.startswith("passthrough.")),
            passthrough=tuple(
                (r.kit.split(".", 1)[1], r) for r in rows if r.kit.startswith("passthrough.")
            ),
        )
    return plan


def _set_rows(request: Any, plan: _Plan) -> list[tuple[FieldRule, Any]]:
    """The rows of ``plan`` that ``request`` sets (not absent, not neutral), in table order
    (attributes first: a refusal names the same field on every run)."""
    found = []
    for row in plan.attrs:
        value = getattr(request, row.kit, None)
        if value is not None and is_set(row, value):
            found.append((row, value))
    passthrough = request.passthrough
    if passthrough:
        for name, row in plan.passthrough:
            value = passthrough.get(name)
            if value is not None and is_set(row, value):
                found.append((row, value))
    return found


def check(
    request: Any,
    provider_type: str,
    provider: str,
    *,
    extra: Callable[[FieldRule, Any], str | None] | None = None,
    refined: tuple[str, ...] = (),
) -> None:
    """Raise ``UnsupportedFieldError`` for the first field ``request`` sets that the
    table refuses for ``provider_type``. ``extra`` lets an adapter refuse a value its
    rule otherwise allows (returns a reason, or None); it is asked about the rows named
    in ``refined`` (kit names), the only ones it looks at."""
    rule_type = provider_type.replace("-", "_")
    wire_format = getattr(request, "wire_format", "openai")
    for row, value in _set_rows(request, _plan(rule_type, refined if extra else ())):
        if row.rules.get(rule_type, Rule.REFUSED) is Rule.REFUSED:
            raise UnsupportedFieldError(row.label(wire_format), provider, rule_type)
        if extra is not None:
            reason = extra(row, value)
            if reason:
                raise UnsupportedFieldError(row.label(wire_format), provider, rule_type, reason)


def fit(request: Any, provider_type: str, provider: str, *, drop: bool) -> tuple[Any, list[str]]:
    """``request`` as ``provider_type`` can take it, and the fields dropped to get there.

    Without ``drop`` this is ``check``: the first refused field raises. With it (a key's
    "drop unsupported parameters" option), a refused *droppable* field is removed from
    a copy of the request and named in the list (the gateway reports it in the
    ``x-aipk-dropped-params`` header); a refused field that changes the answer's shape
    still raises. The request itself is never changed: the next candidate of a route,
    of another type, may take the field."""
    rule_type = provider_type.replace("-", "_")
    found = _set_rows(request, _plan(rule_type))
    if not found:
        return request, []
    wire_format = getattr(request, "wire_format", "openai")
    clear: dict[str, Any] = {}
    passthrough: dict[str, Any] | None = None
    dropped: list[str] = []
    for row, _ in found:
        if not (drop and row.droppable):
            raise UnsupportedFieldError(row.label(wire_format), provider, rule_type)
        dropped.append(row.label(wire_format))
        if row.kit.startswith("passthrough."):
            if passthrough is None:
                passthrough = dict(request.passthrough)
            passthrough.pop(row.kit.split(".", 1)[1], None)
        else:
            clear[row.kit] = None
    if passthrough is not None:
        clear["passthrough"] = passthrough
    return replace(request, **clear), dropped


def unknown_fields(body: dict[str, Any], known: frozenset[str]) -> list[str]:
    """The top-level fields of ``body`` outside ``known``, sorted (usually none: a set
    difference of a few keys)."""
    if known.issuperset(body):
        return []
    return sorted(k for k in body if k not in known)


def allowed(kit: str, provider_type: str) -> bool:
    """Whether the rule for ``kit`` lets ``provider_type`` have the field at all. A refused
    field can only get past ``check`` with its neutral value, which asks for nothing: the
    adapter leaves it out rather than send a provider a field it does not know."""
    row = BY_KIT.get(kit)
    return row is None or row.rules.get(provider_type.replace("-", "_")) is not Rule.REFUSED


def render_markdown() -> str:
    """docs/SUPPORT_MATRIX.md: the table, one row a field, one column a provider type."""
    head = [
        "# Request field support matrix",
        "",
        "Generated from `providers_app/kit/fields.py` by `scripts/support_matrix.py`; do not",
        "edit by hand (a test fails when this file and the table differ).",
        "",
        "- **translated**: rewritten into the provider's own form;",
        "- **passed**: sent as it came, the provider's wire has the same field;",
        "- **refused**: a 400 naming the field and the provider (`unsupported_parameter`).",
        "",
        "A field sent with its neutral value (the one that asks for nothing) is accepted",
        "everywhere. *Droppable* fields are the ones a key with `unsupported_params: drop`",
        "drops instead of refusing (named in the `x-aipk-dropped-params` header). A",
        "top-level field its format does not have is a 400 `unknown_parameter`",
        "(`Unrecognized request argument supplied: <field>`), or dropped and named the same",
        "way under the drop option.",
        "",
        "Reasoning effort <-> budget tokens: "
        + ", ".join(f"{e} = {b}" for e, b in REASONING_BUDGETS.items())
        + "; a budget maps to the smallest effort that covers it.",
        "",
    ]
    columns = ["OpenAI field", "Anthropic field", *PROVIDER_TYPES, "neutral", "droppable", "notes"]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in FIELDS:
        neutral = ", ".join(f"`{_neutral_text(v)}`" for v in row.neutral if v is not None)
        if row.kit == "response_format":
            neutral = '`{"type": "text"}`'
        cells = [
            f"`{row.openai}`" if row.openai else "-",
            f"`{row.anthropic}`" if row.anthropic else "-",
            *(row.rules[t].value for t in PROVIDER_TYPES),
            neutral,
            "yes" if row.droppable else "",
            row.note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(head + lines) + "\n"


def _neutral_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return str(value)
