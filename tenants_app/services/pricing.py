"""Model prices and what a request costs.

Prices are read on the request path (routing's cheapest-first ordering, budget
reservations, the usage row), so each process keeps the answers in memory. The
cache holds misses too: a model without a price must not cost a query per
request. Writing a price publishes a change event (aipk_site/infra/change_events.py):
every process drops its copy at once. ``ROUTING_CACHE_SECONDS`` is only a safety
TTL, for an event lost while Redis was away and for discovered models' reply
limits, which discovery refreshes without an event.

What a reply costs: the kit's ``Usage`` counts every input token in
prompt_tokens and every output token in completion_tokens; the parts read from
(``cached_tokens``) or written to (``cache_write_tokens``) the provider's prompt
cache are priced at the price's cache rates, each falling back to the input rate
when unset (a provider with no cache discount), and the rest of the prompt at the
input rate. Reasoning tokens are output (every provider bills them so) and are
inside completion_tokens already.

Money: ``cost_usd`` is the Decimal stored on usage rows and invoices;
``cost_micro`` is the integer the budget counters in the cache add up, rounded
up so a reservation is never smaller than what the call will cost.

Which price applies to (provider, model): the provider's own Pricing row, else
its type's row (the bundled table fills those), else the provider's fallback
price (``settings["fallback_input_per_million"]`` / ``"fallback_output_per_million"``),
else none. Model ids match exactly: a dated snapshot (``gpt-4o-2024-11-20``)
never inherits its base model's price, because snapshots are not always priced
like their base (``gpt-4o-2024-05-13`` costs twice ``gpt-4o``) and guessing
cheaper would let a budget be overspent. While a budget applies, a model with no
price is refused (aipk_site/gateway/dispatch.py).

What a reply may cost at most also needs the model's longest reply:
``amax_output_tokens`` -- the discovered model's ``max_output_tokens``, else the
adapter's static catalogue, else a deliberately high per-type default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Q

from aipk_site.infra import change_events
from aipk_site.infra.audit import audit_record
from aipk_site.infra.errors import InvalidRequest
from aipk_site.infra.snapshots import SnapshotTable
from providers_app.kit.media import media_tokens_bound
from providers_app.kit.providers import ADAPTERS, PROFILES
from providers_app.kit.types import ChatRequest, Usage
from providers_app.models import DiscoveredModel, Provider, ProviderType
from tenants_app.models import Pricing

MILLION = Decimal(1_000_000)
# usage rows store 8 decimal places (UsageRecord.cost_usd)
COST_QUANTUM = Decimal("0.00000001")
# What a reservation assumes a reply may use when the request sets no max_tokens.
# Generous enough for a typical chat answer; the reservation is settled against
# the real usage afterwards, so erring high only delays a near-budget request.
DEFAULT_COMPLETION_ALLOWANCE_TOKENS = 1024

SOURCE_BUNDLED = "bundled"
SOURCE_MANUAL = "manual"
PRICING_TABLE_PATH = Path(__file__).resolve().parents[1] / "pricing_table.json"


@dataclass(frozen=True)
class Price:
    """USD per million tokens. A cache rate left None is the input rate."""

    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = None
    cache_write_per_million: Decimal | None = None

    @property
    def cached_rate(self) -> Decimal:
        if self.cached_input_per_million is None:
            return self.input_per_million
        return self.cached_input_per_million

    @property
    def cache_write_rate(self) -> Decimal:
        if self.cache_write_per_million is None:
            return self.input_per_million
        return self.cache_write_per_million

    @property
    def prompt_bound_rate(self) -> Decimal:
        """The most one prompt token can cost: a reservation made before the reply
        cannot know how much of the prompt the provider will write to its cache
        (Anthropic bills writes at 1.25x input), so it prices every token at the
        dearest of the prompt's rates (a cache read is never dearer than input)."""
        return max(self.input_per_million, self.cache_write_rate)


# (provider pk, provider type, model) -> the price, or None (misses are kept too)
_prices: SnapshotTable[tuple[Any, str, str], Price | None] = SnapshotTable("prices")
# (provider pk, model) -> the discovered model's longest reply, or None
_output_limits: SnapshotTable[tuple[Any, str], int | None] = SnapshotTable("output limits")
TOPIC = "pricing"  # no payload: any price changed


def pricing_cache_clear() -> None:
    """Forget this process's prices (tests; a change calls ``pricing_changed``)."""
    _prices.clear()
    _output_limits.clear()


def pricing_changed() -> None:
    """Call after changing a price: every process drops its copy (this one now and
    again on commit, the others on commit)."""
    change_events.publish(TOPIC)


change_events.subscribe(TOPIC, lambda payload: pricing_cache_clear())


def _cache_key(provider: Provider, model: str) -> tuple[Any, str, str]:
    return (provider.pk, provider.type, model)


def _price_query(provider: Provider, model: str):
    return Pricing.objects.filter(model=model).filter(
        Q(provider_id=provider.pk) | Q(provider__isnull=True, provider_type=provider.type)
    )


def _best(rows: list[Pricing]) -> Price | None:
    # the provider's own row wins over its type's (provider null) row
    rows.sort(key=lambda row: row.provider_id is None)
    if not rows:
        return None
    row = rows[0]
    return Price(
        row.input_per_million,
        row.output_per_million,
        row.cached_input_per_million,
        row.cache_write_per_million,
    )


def fallback_price(provider: Provider) -> Price | None:
    """The provider's price for models with no Pricing row, if an admin set one
    (validated by providers_app.services.provider_settings: both figures or neither)."""
    settings_ = provider.settings or {}
    price_in = settings_.get("fallback_input_per_million")
    price_out = settings_.get("fallback_output_per_million")
    if price_in is None or price_out is None:
        return None
    try:
        return Price(Decimal(str(price_in)), Decimal(str(price_out)))
    except InvalidOperation:
        return None


def price_for(provider: Provider, model: str) -> Price | None:
    price = _prices.get_blocking(
        _cache_key(provider, model), lambda: _best(list(_price_query(provider, model)))
    )
    # read from the provider in hand, not cached: a changed fallback applies at once
    return price or fallback_price(provider)


async def aprice_for(provider: Provider, model: str) -> Price | None:
    """``price_for`` for the event loop: a cache hit costs no thread hop."""
    price = await _prices.get(
        _cache_key(provider, model), lambda: _best(list(_price_query(provider, model)))
    )
    return price or fallback_price(provider)


# For a type no profile knows (none today): the profiles' own default.
DEFAULT_MAX_OUTPUT_TOKENS = 131_072


def _catalogue_max_output(provider_type: str, model: str) -> int | None:
    adapter = ADAPTERS.get(provider_type)
    for info in adapter.static_models if adapter is not None else ():
        if info.id == model and info.max_output_tokens:
            return int(info.max_output_tokens)
    return None


async def amax_output_tokens(provider: Provider, model: str) -> tuple[int, bool]:
    """(the longest reply ``model`` may give on ``provider``, whether that is known).

    Known: from discovery (``DiscoveredModel.max_output_tokens``, cached like prices)
    or the adapter's static catalogue; exact model ids only. Otherwise the per-type
    default, which is an assumption: see docs/GATEWAY.md on the bound that remains."""
    discovered = await _output_limits.get(
        (provider.pk, model),
        lambda: (
            DiscoveredModel.objects.filter(provider_id=provider.pk, model_id=model)
            .values_list("max_output_tokens", flat=True)
            .first()
        ),
    )
    known = discovered or _catalogue_max_output(provider.type, model)
    if known:
        return int(known), True
    profile = PROFILES.get(provider.type)
    # the profile's figure: the longest reply a model of that type may give
    return (profile.max_output_tokens if profile else DEFAULT_MAX_OUTPUT_TOKENS), False


def _exact_cost(price: Price, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """Every prompt token at the input rate (no cache detail known)."""
    return (
        Decimal(max(prompt_tokens, 0)) * price.input_per_million
        + Decimal(max(completion_tokens, 0)) * price.output_per_million
    ) / MILLION


def _usage_cost(price: Price, usage: Usage) -> Decimal:
    """A reply's exact cost: each part of the prompt at its own rate (module docstring).
    Cache counts larger than the prompt (a provider's inconsistent report) are cut to
    it, cache reads first, so no token is billed twice."""
    prompt = max(usage.prompt_tokens, 0)
    cached = min(max(usage.cached_tokens, 0), prompt)
    written = min(max(usage.cache_write_tokens, 0), prompt - cached)
    return (
        Decimal(prompt - cached - written) * price.input_per_million
        + Decimal(cached) * price.cached_rate
        + Decimal(written) * price.cache_write_rate
        + Decimal(max(usage.completion_tokens, 0)) * price.output_per_million
    ) / MILLION


def cost_usd(price: Price | None, usage: Usage) -> Decimal:
    """What a reply costs, as usage rows store it: each part of its ``Usage`` at its rate."""
    if price is None:
        return Decimal(0).quantize(COST_QUANTUM)
    return _usage_cost(price, usage).quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


def charge(price: Price | None, usage: Usage) -> tuple[Decimal, int]:
    """(``cost_usd``, ``cost_micro``) of one reply from one exact cost: what its usage
    row records and what its budget counters are charged, computed once."""
    if price is None:
        return Decimal(0).quantize(COST_QUANTUM), 0
    exact = _usage_cost(price, usage)
    return (
        exact.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP),
        int((exact * MILLION).to_integral_value(rounding=ROUND_CEILING)),
    )


def cost_micro(price: Price | None, prompt_tokens: int, completion_tokens: int) -> int:
    """Micro-dollars, rounded up from the exact cost (not from the 8-decimal one),
    so budget counters never fall short of what the usage rows add up to. The
    prompt is priced at ``prompt_bound_rate``: this is what reservations use, and
    they must hold whatever part of the prompt the provider writes to its cache."""
    if price is None:
        return 0
    bound = Price(price.prompt_bound_rate, price.output_per_million)
    micro = _exact_cost(bound, prompt_tokens, completion_tokens) * MILLION
    return int(micro.to_integral_value(rounding=ROUND_CEILING))


def estimate_cost_micro(
    price: Price | None, prompt_tokens_estimate: int, max_tokens: int | None
) -> int:
    """What to reserve against a budget before the call: the prompt plus the
    longest reply the request allows (or DEFAULT_COMPLETION_ALLOWANCE_TOKENS)."""
    completion = DEFAULT_COMPLETION_ALLOWANCE_TOKENS if max_tokens is None else max_tokens
    return cost_micro(price, prompt_tokens_estimate, completion)


# --- the most a request can cost: what a budget reservation holds -------------------
#
# Byte-level BPE tokenizers (OpenAI's, Anthropic's) never make a token of less than
# one byte, and SentencePiece ones (Gemini's, Llama's) fall back to single bytes, so
# a text's UTF-8 length bounds its token count from above. Chat templates add tokens
# around each message (OpenAI documents 3-4) and before the reply; tool definitions
# are rendered into a system text (Anthropic documents a 346-530 token tool-use
# prompt), so those get generous fixed allowances. Images and files are refused by
# the request parsers, so they need no bound today.
PROMPT_REQUEST_OVERHEAD_TOKENS = 64
PROMPT_MESSAGE_OVERHEAD_TOKENS = 16
PROMPT_TOOLS_OVERHEAD_TOKENS = 1024
# Caps that keep a reservation inside the cache's integer counters whatever a client
# sends (max_tokens of 2**62): far above any budget, so they still refuse.
MAX_RESERVED_TOKENS = 10**12
MAX_RESERVED_MICRO = 10**15


def _utf8(text: str | None) -> int:
    # surrogatepass: a lone surrogate still has a length, never an exception
    return len(text.encode("utf-8", "surrogatepass")) if text else 0


def _json_bytes(value: Any) -> int:
    try:
        return _utf8(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError, RecursionError):
        return _utf8(repr(value)) if not isinstance(value, dict | list) else MAX_RESERVED_TOKENS


def prompt_tokens_upper_bound(request: ChatRequest) -> int:
    """Tokens the prompt cannot exceed on any provider: the UTF-8 bytes of every text
    sent (messages, tool calls and their arguments, tool schemas, pass-through body
    fields) plus per-message, per-request and tool-prompt allowances, and each media
    part's upper bound (``kit.media.media_tokens_bound``)."""
    total = PROMPT_REQUEST_OVERHEAD_TOKENS
    for message in request.messages:
        total += PROMPT_MESSAGE_OVERHEAD_TOKENS + _utf8(message.content)
        total += _utf8(message.name) + _utf8(message.tool_call_id)
        # images, documents, audio: their documented upper bounds (kit/media.py)
        total += sum(media_tokens_bound(part) for part in message.media())
        for call in message.tool_calls:
            total += PROMPT_MESSAGE_OVERHEAD_TOKENS + _utf8(call.id) + _utf8(call.name)
            total += _utf8(call.arguments) + _utf8(call.signature)
    if request.tools:
        total += PROMPT_TOOLS_OVERHEAD_TOKENS
    for tool in request.tools:
        total += PROMPT_MESSAGE_OVERHEAD_TOKENS + _utf8(tool.name) + _utf8(tool.description)
        total += _json_bytes(tool.parameters)
    if request.extra_body:
        total += _json_bytes(request.extra_body)
    return min(total, MAX_RESERVED_TOKENS)


@dataclass(frozen=True)
class CostBound:
    """The most a request can cost on the dearest priced candidate (micro-USD), and
    which candidates (by position) have no price at all."""

    cost_micro: int
    unpriced: tuple[int, ...]


async def acost_bound(candidates: list[tuple[Provider, str]], request: ChatRequest) -> CostBound:
    """What to reserve against a budget: the prompt's upper bound plus the longest reply
    the request allows -- ``max_tokens`` (capped by the model's known maximum output),
    else the model's maximum output -- at each candidate's price; the dearest wins,
    since failover may land on it."""
    prompt = prompt_tokens_upper_bound(request)
    most, unpriced = 0, []
    for position, (provider, model) in enumerate(candidates):
        price = await aprice_for(provider, model)
        if price is None:
            unpriced.append(position)
            continue
        longest, known = await amax_output_tokens(provider, model)
        if request.max_tokens is not None:
            # a provider refuses (or clamps) more than its model's known maximum
            longest = min(request.max_tokens, longest) if known else request.max_tokens
        longest = min(longest, MAX_RESERVED_TOKENS)
        most = max(most, cost_micro(price, prompt, longest))
    return CostBound(cost_micro=min(most, MAX_RESERVED_MICRO), unpriced=tuple(unpriced))


async def aprompt_cost_bound(
    candidates: list[tuple[Provider, str]], prompt_tokens: int
) -> CostBound:
    """What to reserve for a request that is all prompt (embeddings: no reply tokens):
    ``prompt_tokens`` (the caller's upper bound) at each candidate's price, the dearest
    winning as in ``acost_bound``."""
    most, unpriced = 0, []
    for position, (provider, model) in enumerate(candidates):
        price = await aprice_for(provider, model)
        if price is None:
            unpriced.append(position)
            continue
        most = max(most, cost_micro(price, min(prompt_tokens, MAX_RESERVED_TOKENS), 0))
    return CostBound(cost_micro=min(most, MAX_RESERVED_MICRO), unpriced=tuple(unpriced))


def unpriced_model_error(*, provider: Provider, model: str, scope: str) -> InvalidRequest:
    """The refusal for a model with no price while a budget applies: names the model and
    what an admin can do about it."""
    return InvalidRequest(
        f"model {model!r} on provider {provider.name!r} has no price, so it cannot be used "
        f"while a monthly budget applies to this {scope}; an admin can set a price for it "
        "or a fallback price for the provider",
        code="model_unpriced",
        param="model",
    )


def _money(value: Any, field: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise InvalidRequest(f"{field} must be a number", param=field) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidRequest(f"{field} must be a non-negative number", param=field)
    # Pricing columns: 12 digits, 6 after the point
    if amount >= Decimal(10**6):
        raise InvalidRequest(f"{field} must be below 1000000", param=field)
    return amount.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def _drop_cache_now_and_on_commit() -> None:
    # now: this request's later reads see the change; on commit (change_events does
    # both): a read that ran between now and the commit may have cached the old row
    # again, and the other processes must not reload before the row is committed
    pricing_changed()


@transaction.atomic
def pricing_set(
    *,
    provider_type: str,
    provider: Provider | None = None,
    model: str,
    input_per_million: Any,
    output_per_million: Any,
    cached_input_per_million: Any = None,
    cache_write_per_million: Any = None,
    actor: Any,
    ip_address: str | None = None,
) -> Pricing:
    """Set a manual price for a provider type (provider None) or one provider account.

    The cache rates are optional: one left None is the input rate. A price set
    without them has no cache discount, even where the bundled row it overrides had
    one: a discount that belonged to the old input price must not outlive it."""
    if provider_type not in ProviderType.values:
        raise InvalidRequest(f"unknown provider_type {provider_type!r}", param="provider_type")
    if provider is not None and provider.type != provider_type:
        raise InvalidRequest(
            f"provider {provider.name!r} is of type {provider.type!r}", param="provider_type"
        )
    model = (model or "").strip()
    if not model or len(model) > 200:
        raise InvalidRequest("model must be 1 to 200 characters", param="model")
    price_in = _money(input_per_million, "input_per_million")
    price_out = _money(output_per_million, "output_per_million")
    cache_rates = {
        field: None if value is None else _money(value, field)
        for field, value in (
            ("cached_input_per_million", cached_input_per_million),
            ("cache_write_per_million", cache_write_per_million),
        )
    }

    if provider is not None:
        lookup = {"provider": provider, "model": model}
    else:
        lookup = {"provider": None, "provider_type": provider_type, "model": model}
    existing = Pricing.objects.select_for_update().filter(**lookup).first()
    before = (
        {
            "input_per_million": str(existing.input_per_million),
            "output_per_million": str(existing.output_per_million),
            "cached_input_per_million": _text(existing.cached_input_per_million),
            "cache_write_per_million": _text(existing.cache_write_per_million),
            "source": existing.source,
        }
        if existing
        else None
    )
    pricing, created = Pricing.objects.update_or_create(
        **lookup,
        defaults={
            "provider_type": provider_type,
            "input_per_million": price_in,
            "output_per_million": price_out,
            **cache_rates,
            "source": SOURCE_MANUAL,
        },
    )
    audit_record(
        action="pricing.create" if created else "pricing.update",
        obj=pricing,
        actor=actor,
        ip_address=ip_address,
        changes={
            "provider_type": provider_type,
            "provider": provider.name if provider else None,
            "model": model,
            "input_per_million": str(price_in),
            "output_per_million": str(price_out),
            "cached_input_per_million": _text(pricing.cached_input_per_million),
            "cache_write_per_million": _text(pricing.cache_write_per_million),
            "before": before,
        },
    )
    _drop_cache_now_and_on_commit()
    return pricing


@transaction.atomic
def pricing_delete(*, pricing: Pricing, actor: Any) -> None:
    changes = {
        "provider_type": pricing.provider_type,
        "provider": pricing.provider.name if pricing.provider_id else None,
        "model": pricing.model,
        "input_per_million": str(pricing.input_per_million),
        "output_per_million": str(pricing.output_per_million),
        "source": pricing.source,
    }
    object_id = str(pricing.pk)
    object_repr = str(pricing)
    pricing.delete()
    audit_record(
        action="pricing.delete",
        object_type=Pricing._meta.label,
        object_id=object_id,
        actor=actor,
        changes={**changes, "repr": object_repr},
    )
    _drop_cache_now_and_on_commit()


def bundled_price_table(path: Path | str = PRICING_TABLE_PATH) -> dict[str, dict[str, Price]]:
    """{provider type: {model: Price}} from the JSON shipped with aipk; the cache rates
    (``cached_input``, ``cache_write``) are optional per model."""
    with open(path, encoding="utf-8") as handle:
        table = json.load(handle)

    def optional(entry: dict[str, Any], key: str) -> Decimal | None:
        return Decimal(entry[key]) if entry.get(key) is not None else None

    return {
        provider_type: {
            model: Price(
                Decimal(entry["input"]),
                Decimal(entry["output"]),
                optional(entry, "cached_input"),
                optional(entry, "cache_write"),
            )
            for model, entry in models.items()
        }
        for provider_type, models in table["prices"].items()
    }


_PRICE_COLUMNS = (
    "input_per_million",
    "output_per_million",
    "cached_input_per_million",
    "cache_write_per_million",
)


@transaction.atomic
def pricing_load_bundled(path: Path | str = PRICING_TABLE_PATH) -> dict[str, int]:
    """Bring the provider-type rows in line with the bundled table. A row someone set
    by hand (source manual) is left alone: the operator's figure beats ours."""
    counts = {"created": 0, "updated": 0, "unchanged": 0, "kept_manual": 0}
    for provider_type, models in bundled_price_table(path).items():
        for model, price in models.items():
            row = (
                Pricing.objects.select_for_update()
                .filter(provider__isnull=True, provider_type=provider_type, model=model)
                .first()
            )
            if row is None:
                Pricing.objects.create(
                    provider_type=provider_type,
                    model=model,
                    source=SOURCE_BUNDLED,
                    **{column: getattr(price, column) for column in _PRICE_COLUMNS},
                )
                counts["created"] += 1
            elif row.source != SOURCE_BUNDLED:
                counts["kept_manual"] += 1
            elif all(getattr(row, c) == getattr(price, c) for c in _PRICE_COLUMNS):
                counts["unchanged"] += 1
            else:
                for column in _PRICE_COLUMNS:
                    setattr(row, column, getattr(price, column))
                row.save(update_fields=[*_PRICE_COLUMNS, "updated_at"])
                counts["updated"] += 1
    _drop_cache_now_and_on_commit()
    return counts
