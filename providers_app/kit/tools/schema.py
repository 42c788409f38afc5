"""JSON-Schema plumbing for tool definitions: walking by keyword, references, strict mode.

Tool parameters arrive as JSON Schema (OpenAI and Anthropic take it as is).
*Strict* argument checking needs more than pass-through: it must reject
unknown fields at every level even when the author never wrote
``additionalProperties: false``. Gemini's Schema (``gemini_schema``) walks
schemas with the same pieces.

Nothing here mutates its input: every function builds new dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import referencing
import referencing.exceptions
import referencing.jsonschema

Path = tuple[str | int, ...]
# Where a direct subschema sits in its parent: a keyword, then a name or index.
SubPath = tuple[str] | tuple[str, str | int]

# Where subschemas live, and how each applies to the instance:
# "value": to another value (a property's value, an array item, a property name);
# "in_place": to the same instance as its parent (allOf, anyOf, if/then, ...);
# "definition": to nothing until a $ref points at it.
_MAP_KEYWORDS = {
    "properties": "value",
    "patternProperties": "value",
    "$defs": "definition",
    "definitions": "definition",
    "dependentSchemas": "in_place",
}
_SCHEMA_KEYWORDS = {
    "additionalProperties": "value",
    "additionalItems": "value",
    "contains": "value",
    "propertyNames": "value",
    "unevaluatedItems": "value",
    "unevaluatedProperties": "value",
    "contentSchema": "value",
    "not": "in_place",
    "if": "in_place",
    "then": "in_place",
    "else": "in_place",
}
_LIST_KEYWORDS = {
    "allOf": "in_place",
    "anyOf": "in_place",
    "oneOf": "in_place",
    "prefixItems": "value",
}


def iter_subschemas(schema: Any) -> Iterator[tuple[SubPath, Any, str]]:
    """Yield ``(relative path, subschema, kind)`` for the direct subschemas of ``schema``.

    Walking by keyword (rather than every nested dict) matters: a property that
    happens to be *named* ``$ref`` or ``type`` is a name, not a keyword.
    """
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key in _MAP_KEYWORDS and isinstance(value, dict):
            for name, sub in value.items():
                yield (key, name), sub, _MAP_KEYWORDS[key]
        elif key in _SCHEMA_KEYWORDS:
            yield (key,), value, _SCHEMA_KEYWORDS[key]
        elif key in _LIST_KEYWORDS and isinstance(value, list):
            for i, sub in enumerate(value):
                yield (key, i), sub, _LIST_KEYWORDS[key]
        elif key == "items":
            if isinstance(value, list):  # draft 4-7 tuple form
                for i, sub in enumerate(value):
                    yield (key, i), sub, "value"
            else:
                yield (key,), value, "value"
        elif key == "dependencies" and isinstance(value, dict):  # draft 4-7
            for name, sub in value.items():
                if isinstance(sub, (dict, bool)):
                    yield (key, name), sub, "in_place"


def map_subschemas(schema: dict[str, Any], fn: Callable[[Any, str], Any]) -> dict[str, Any]:
    """A shallow copy of ``schema`` whose direct subschemas are replaced by ``fn(sub, kind)``."""
    out = dict(schema)
    for path, sub, kind in iter_subschemas(schema):
        new = fn(sub, kind)
        if len(path) == 1:
            out[path[0]] = new
            continue
        key, inner = path
        if out[key] is schema[key]:
            out[key] = list(schema[key]) if isinstance(schema[key], list) else dict(schema[key])
        out[key][inner] = new
    return out


def iter_refs(schema: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Every ``$ref`` / ``$dynamicRef`` / ``$recursiveRef`` in the schema, with its path."""
    if not isinstance(schema, dict):
        return
    for key in ("$ref", "$dynamicRef", "$recursiveRef"):
        if isinstance(schema.get(key), str):
            yield path + (key,), schema[key]
    for sub_path, sub, _kind in iter_subschemas(schema):
        yield from iter_refs(sub, path + sub_path)


# -- references ------------------------------------------------------------------

_DEFAULT_BASE_URI = "urn:aipk:tool-parameters"


class SchemaReferenceError(ValueError):
    """A ``$ref`` that does not point inside the schema. Remote references are never fetched."""

    def __init__(self, path: Path, ref: str) -> None:
        super().__init__(
            f"cannot resolve $ref {ref!r}: only references inside the schema are supported"
        )
        self.path = path
        self.ref = ref


def specification_of(schema: Any) -> Any:
    dialect = schema.get("$schema") if isinstance(schema, dict) else None
    if isinstance(dialect, str):
        return referencing.jsonschema.specification_with(
            dialect, default=referencing.jsonschema.DRAFT202012
        )
    return referencing.jsonschema.DRAFT202012


def local_resolver(schema: Any) -> Any:
    """A resolver that knows only this schema (and its embedded ``$id`` resources).

    The registry has no ``retrieve`` function, so a reference to anything
    outside the document fails instead of making a network request -- tool
    schemas come from API clients, and must never make the gateway fetch URLs.
    """
    resource = specification_of(schema).create_resource(schema)
    uri = resource.id() or _DEFAULT_BASE_URI
    registry = referencing.Registry().with_resource(uri, resource).crawl()
    return registry.resolver(base_uri=uri)


def find_unresolvable_ref(schema: Any) -> tuple[Path, str] | None:
    """The first reference that cannot be resolved inside the schema, if any."""
    resolver = local_resolver(schema)
    for path, ref in iter_refs(schema):
        if path[-1] == "$recursiveRef" or ref.startswith("#") and path[-1] == "$dynamicRef":
            continue  # resolved dynamically against the document itself
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            return path, ref
    return None


# -- strict mode -------------------------------------------------------------------


def forbid_unknown_properties(schema: Any, *, use_unevaluated: bool = True) -> Any:
    """A copy of ``schema`` in which no object accepts fields its schema does not name.

    With Draft 2019-09 / 2020-12 this adds ``unevaluatedProperties: false`` to
    every schema that applies to its own value (the root, property values,
    array items...) but not to ``allOf``/``anyOf``/``oneOf``/``if`` branches or
    ``$defs`` entries. ``unevaluatedProperties`` sees the properties that
    sibling ``$ref`` and composition branches evaluated, so
    ``allOf: [{$ref: Base}, {properties: {extra}}]`` still accepts ``extra``.

    Older dialects have no ``unevaluatedProperties``; there every object
    schema gets ``additionalProperties: false`` (what OpenAI's strict mode
    demands too). Schemas that already say ``additionalProperties`` or
    ``unevaluatedProperties`` (even ``true``) keep the author's choice.
    """
    return _strict(schema, "root", use_unevaluated)


def _strict(node: Any, kind: str, use_unevaluated: bool) -> Any:
    if not isinstance(node, dict):
        return node
    out = map_subschemas(node, lambda sub, sub_kind: _strict(sub, sub_kind, use_unevaluated))
    if "additionalProperties" in node or "unevaluatedProperties" in node:
        return out
    if use_unevaluated:
        if kind in ("root", "value"):
            out["unevaluatedProperties"] = False
    elif _describes_object(node):
        out["additionalProperties"] = False
    return out


def _describes_object(node: dict[str, Any]) -> bool:
    types = node.get("type")
    return (
        types == "object" or (isinstance(types, list) and "object" in types) or "properties" in node
    )
