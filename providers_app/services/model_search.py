"""Model search by capability, over the discovered catalogue and the kit's model facts.

``DiscoveredModel`` rows hold what discovery learnt (context window, tools,
streaming, prices); what a row does not hold is judged the way the request path
judges it: vision by the adapter's static catalogue, else the model's family
(``BaseAdapter.takes_media``); JSON output and reasoning by the provider type's
field rules (kit/fields.py: ``response_format`` and ``reasoning`` translated or
passed, not refused) and, for reasoning, the model's family
(``model_families.family_reasons``). A capability nobody can vouch for does not
match: search shows models known to have it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db.models import Q

from aipk_site.infra.errors import InvalidRequest
from providers_app.kit.adapters.model_families import family_reasons
from providers_app.kit.fields import FIELDS, Rule
from providers_app.kit.providers import ADAPTERS
from providers_app.models import DiscoveredModel
from providers_app.services.discovery import search_models

_FIELD_RULES = {rule.kit: rule.rules for rule in FIELDS}


def _field_taken(field: str, provider_type: str) -> bool:
    rules = _FIELD_RULES.get(field, {})
    rule = rules.get(provider_type.replace("-", "_"))
    return rule is not None and rule != Rule.REFUSED


def _vision(model: DiscoveredModel) -> bool:
    adapter = ADAPTERS.get(model.provider.type)
    return adapter is not None and adapter.takes_media(model.model_id) is True


def _json(model: DiscoveredModel) -> bool:
    return _field_taken("response_format", model.provider.type)


def _reasoning(model: DiscoveredModel) -> bool:
    return _field_taken("reasoning", model.provider.type) and (
        family_reasons(model.model_id) is True
    )


# capability -> (what it means, the check); the API documents this table
CAPABILITIES: dict[str, tuple[str, Callable[[DiscoveredModel], bool]]] = {
    "tools": ("calls tools (function calling)", lambda m: m.supports_tools),
    "streaming": ("streams its answer", lambda m: m.supports_streaming),
    "vision": ("takes image, document or audio input", _vision),
    "json": ("answers in JSON mode or to a JSON schema (response_format)", _json),
    "reasoning": ("has a reasoning mode (reasoning_effort / thinking)", _reasoning),
}


@dataclass(frozen=True, slots=True)
class ModelFacts:
    model: DiscoveredModel
    capabilities: list[str]


def capabilities_of(model: DiscoveredModel) -> list[str]:
    return [name for name, (_, check) in CAPABILITIES.items() if check(model)]


def models_search(
    *,
    capabilities: Iterable[str] = (),
    provider: str | None = None,
    q: str | None = None,
    min_context: int | None = None,
) -> list[ModelFacts]:
    """Discovered models of enabled providers having every capability asked for, whose
    id or name contains ``q`` (any case), cheapest first. An unknown capability is a 400
    naming it."""
    wanted = list(dict.fromkeys(capabilities))
    unknown = [name for name in wanted if name not in CAPABILITIES]
    if unknown:
        raise InvalidRequest(
            f"unknown capability {unknown[0]!r}: one of {', '.join(CAPABILITIES)}",
            param="capability",
        )
    rows = search_models(min_context=min_context, provider=provider)
    if q:
        rows = rows.filter(Q(model_id__icontains=q) | Q(name__icontains=q))
    found = []
    for row in rows:
        has = capabilities_of(row)
        if all(name in has for name in wanted):
            found.append(ModelFacts(row, has))
    return found
