"""The top-level request fields ruled by the kit's field table (providers_app/kit/fields.py).

Both formats validate their fields here, into ``ChatRequest`` keyword arguments,
so the shapes (a 400 naming the field for a bad value) live in one place; which
provider may take them is the table's business, checked by each adapter.
"""

from __future__ import annotations

import re
from typing import Any

from aipk_site.infra.errors import InvalidRequest
from providers_app.kit.fields import (
    ANTHROPIC_PASSTHROUGH,
    OPENAI_PASSTHROUGH,
    REASONING_BUDGETS,
    REASONING_EFFORTS,
    UNKNOWN_FIELD,
    unknown_fields,
)
from providers_app.kit.types import Reasoning, ResponseFormat

from .common import (
    INT64_MAX,
    INT64_MIN,
    MAX_OUTPUT_TOKENS,
    bounded_int,
    invalid,
    json_type,
    not_one_of,
    optional_number,
)

_FORMAT_TYPES = ("text", "json_object", "json_schema")
# OpenAI's rule for a schema name
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOP_LOGPROBS = 20
MAX_METADATA_KEYS = 16
_THINKING_TYPES = ("enabled", "disabled")
ANTHROPIC_SERVICE_TIERS = ("auto", "standard_only")


def unknown_top_level(body: dict[str, Any], known: frozenset[str], *, drop: bool) -> list[str]:
    """The top-level fields of ``body`` its format does not know (fields.OPENAI_KNOWN /
    ANTHROPIC_KNOWN). Refused with a 400 naming the first, in the words OpenAI uses for
    its own unknown arguments; under a key's drop option, returned for the
    ``x-aipk-dropped-params`` header instead (the parsers read known fields only, so an
    unknown one never goes further)."""
    unknown = unknown_fields(body, known)
    if unknown and not drop:
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {unknown[0]}",
            param=unknown[0],
            code=UNKNOWN_FIELD,
        )
    return unknown


def openai_fields(body: dict[str, Any]) -> dict[str, Any]:
    """``ChatRequest`` keyword arguments for the OpenAI chat-completions fields of the table."""
    seed = bounded_int(body, "seed", INT64_MIN, INT64_MAX)
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise invalid(f"must be a boolean, got {json_type(logprobs)}", "logprobs")
    top_logprobs = bounded_int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top_logprobs is not None and not logprobs:
        raise invalid("needs logprobs: true", "top_logprobs")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise invalid(not_one_of(effort, REASONING_EFFORTS), "reasoning_effort")
    return {
        "wire_format": "openai",
        "response_format": parse_response_format(body.get("response_format")),
        "reasoning": Reasoning(effort=effort) if effort is not None else None,
        "seed": seed,
        "logprobs": logprobs,
        "top_logprobs": top_logprobs,
        "frequency_penalty": optional_number(body, "frequency_penalty", -2, 2),
        "presence_penalty": optional_number(body, "presence_penalty", -2, 2),
        "service_tier": _optional_string(body, "service_tier"),
        "metadata": _metadata(body.get("metadata")),
        "n": body.get("n"),
        "passthrough": {k: body[k] for k in OPENAI_PASSTHROUGH if body.get(k) is not None},
    }


def anthropic_fields(body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """``ChatRequest`` keyword arguments for the Anthropic messages fields of the table."""
    tier = body.get("service_tier")
    if tier is not None and tier not in ANTHROPIC_SERVICE_TIERS:
        raise invalid(not_one_of(tier, ANTHROPIC_SERVICE_TIERS), "service_tier")
    return {
        "wire_format": "anthropic",
        "response_format": parse_output_format(body),
        "reasoning": parse_thinking(body.get("thinking"), max_tokens),
        "top_k": bounded_int(body, "top_k", 0, 2**31 - 1),
        "service_tier": tier,
        "passthrough": {k: body[k] for k in ANTHROPIC_PASSTHROUGH if body.get(k) is not None},
    }


def parse_response_format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"must be an object, got {json_type(value)}", "response_format")
    kind = value.get("type")
    if kind not in _FORMAT_TYPES:
        raise invalid(not_one_of(kind, _FORMAT_TYPES), "response_format.type")
    if kind != "json_schema":
        return ResponseFormat(type=kind)
    spec = value.get("json_schema")
    where = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise invalid(
            "is required" if spec is None else f"must be an object, got {json_type(spec)}", where
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise invalid(
            "is required"
            if name is None
            else "must be 1-64 letters, digits, underscores or dashes",
            f"{where}.name",
        )
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise invalid(f"must be an object, got {json_type(schema)}", f"{where}.schema")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise invalid(f"must be a boolean, got {json_type(strict)}", f"{where}.strict")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid(f"must be a string, got {json_type(description)}", f"{where}.description")
    return ResponseFormat(
        type="json_schema",
        name=name,
        schema=schema if schema is not None else {"type": "object"},
        strict=strict,
        description=description,
    )


def parse_output_format(body: dict[str, Any]) -> ResponseFormat | None:
    """Anthropic's structured outputs: ``output_config.format`` (GA) or the beta
    ``output_format``, both ``{"type": "json_schema", "schema": {...}}``."""
    config = body.get("output_config")
    where = "output_config.format"
    if config is not None:
        if not isinstance(config, dict):
            raise invalid(f"must be an object, got {json_type(config)}", "output_config")
        value = config.get("format")
    else:
        value, where = body.get("output_format"), "output_format"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"must be an object, got {json_type(value)}", where)
    if value.get("type") != "json_schema":
        raise invalid(not_one_of(value.get("type"), ("json_schema",)), f"{where}.type")
    schema = value.get("schema")
    if not isinstance(schema, dict):
        raise invalid(
            "is required" if schema is None else f"must be an object, got {json_type(schema)}",
            f"{where}.schema",
        )
    return ResponseFormat(type="json_schema", name="output", schema=schema, strict=True)


def parse_thinking(value: Any, max_tokens: int) -> Reasoning | None:
    """Anthropic's ``thinking``: enabled with a budget (>= 1024, below max_tokens), or
    disabled (the neutral value: no reasoning asked for)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"must be an object, got {json_type(value)}", "thinking")
    kind = value.get("type")
    if kind not in _THINKING_TYPES:
        raise invalid(not_one_of(kind, _THINKING_TYPES), "thinking.type")
    if kind == "disabled":
        return None
    low = REASONING_BUDGETS["minimal"]
    try:
        budget = bounded_int(value, "budget_tokens", low, MAX_OUTPUT_TOKENS)
    except Exception as exc:  # the same 400, under the field's full path
        raise invalid(str(exc).split(": ", 1)[-1], "thinking.budget_tokens") from None
    if budget is None:
        raise invalid("is required", "thinking.budget_tokens")
    if budget >= max_tokens:
        raise invalid(f"must be less than max_tokens ({max_tokens})", "thinking.budget_tokens")
    return Reasoning(budget_tokens=budget)


def _optional_string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise invalid(f"must be a non-empty string, got {json_type(value)}", key)
    return value


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"must be an object, got {json_type(value)}", "metadata")
    if len(value) > MAX_METADATA_KEYS:
        raise invalid(f"has {len(value)} keys; the limit is {MAX_METADATA_KEYS}", "metadata")
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid(f"must be a string, got {json_type(item)}", f"metadata.{key}")
    return dict(value)
