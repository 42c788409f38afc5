"""JSON-Schema plumbing for tool definitions: walking, strict mode, Gemini's Schema.

Tool parameters arrive as JSON Schema (OpenAI and Anthropic take it as is).
Two things need more than pass-through:

- *strict* argument checking, which must reject unknown fields at every level
  even when the author never wrote ``additionalProperties: false``;
- Gemini's ``FunctionDeclaration.parameters``, which is a protobuf ``Schema``
  message (a subset of OpenAPI 3.0), not JSON Schema. See ``to_gemini_schema``.

Nothing here mutates its input: every function builds new dicts.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import referencing
import referencing.exceptions
import referencing.jsonschema

Path = tuple[str | int, ...]

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


def iter_subschemas(schema: Any) -> Iterator[tuple[Path, Any, str]]:
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


def map_subschemas(schema: dict, fn: Callable[[Any, str], Any]) -> dict:
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


def _specification(schema: Any) -> Any:
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
    resource = _specification(schema).create_resource(schema)
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


def _describes_object(node: dict) -> bool:
    types = node.get("type")
    return (
        types == "object" or (isinstance(types, list) and "object" in types) or "properties" in node
    )


# -- Gemini ------------------------------------------------------------------------

#: Fields of Gemini's ``Schema`` message accepted in ``FunctionDeclaration.parameters``.
GEMINI_SCHEMA_FIELDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)

_GEMINI_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
_INT_FIELDS = ("maxItems", "minItems", "minProperties", "maxProperties", "minLength", "maxLength")

# Which keywords belong to which type, to split ``type: ["string", "integer"]``
# into one anyOf branch per type.
_TYPE_KEYWORDS = {
    "string": ("format", "minLength", "maxLength", "pattern", "enum", "const"),
    "number": (
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "enum",
        "const",
    ),
    "integer": (
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "enum",
        "const",
    ),
    "boolean": ("enum", "const"),
    "array": ("items", "prefixItems", "minItems", "maxItems"),
    "object": (
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "propertyOrdering",
        "additionalProperties",
        "patternProperties",
    ),
}
_ALL_TYPED_KEYWORDS = frozenset(k for keys in _TYPE_KEYWORDS.values() for k in keys)

#: How often one ``$ref`` may be expanded inside itself before the recursion is cut.
MAX_REF_EXPANSIONS = 3


def to_gemini_schema(schema: dict) -> dict:
    """Translate a JSON Schema into the Schema message Gemini's ``parameters`` accepts.

    Kept unchanged (Gemini has the same field): ``type`` (upper-cased to the
    ``Type`` enum, e.g. ``STRING``), ``format``, ``title``, ``description``,
    ``nullable``, ``enum``, ``minItems``/``maxItems``, ``properties``,
    ``required``, ``minProperties``/``maxProperties``, ``minLength``/``maxLength``,
    ``pattern``, ``example``, ``anyOf``, ``propertyOrdering``, ``default``,
    ``items``, ``minimum``/``maximum``.

    Converted (Gemini says the same thing another way):

    - ``type: [T, "null"]``, an ``anyOf``/``oneOf`` branch ``{type: null}``, a
      ``null`` enum value → ``type: T`` + ``nullable: true``; a type list with
      several non-null types → ``anyOf`` with one branch per type.
    - ``oneOf`` → ``anyOf`` (Gemini cannot say "exactly one"; "at least one"
      is the closest it has). A single remaining branch is inlined.
    - ``const`` → a one-value ``enum``.
    - ``enum`` values → strings, because Gemini's ``enum`` is a list of
      strings allowed only on ``STRING`` (it answers 400 "enum: only allowed
      for STRING type" otherwise). A number/boolean enum therefore becomes a
      ``STRING`` enum of the JSON texts (``1`` → ``"1"``, ``true`` → ``"true"``);
      the model then answers with those strings.
    - ``$ref`` (``#/$defs/...``, ``#/definitions/...``, ``#``, anchors,
      embedded ``$id``) → the target inlined, sibling keywords overriding it.
      A schema that refers to itself is unrolled ``MAX_REF_EXPANSIONS`` levels
      deep, then cut to its type and description.
    - ``allOf`` → its branches merged into one schema (properties united,
      ``required`` united).
    - ``exclusiveMinimum``/``exclusiveMaximum`` (numbers) → ``minimum``/``maximum``:
      exact for integers (``> 2`` is ``>= 3``), one value looser for numbers.
    - ``examples`` → ``example`` (its first element).
    - ``prefixItems`` / draft-7 tuple ``items: [...]`` → ``items`` whose
      ``anyOf`` lists the positions' schemas (Gemini has no tuples).
    - a missing ``type`` is inferred from the keywords (``properties`` →
      ``OBJECT``, ``items`` → ``ARRAY``, ``enum``/``pattern`` → ``STRING``...).

    Dropped, because Gemini's Schema is a protobuf message and the API rejects
    the whole request for any field it does not define ("Invalid JSON payload
    received. Unknown name ..."): ``$schema``, ``$id``, ``$anchor``,
    ``$comment``, ``$defs``/``definitions`` (inlined first), ``$dynamicRef``,
    ``additionalProperties`` (the Gemini API refuses it outright; free-form
    maps cannot be described), ``patternProperties``, ``propertyNames``,
    ``unevaluated*``, ``dependentRequired``/``dependentSchemas``/``dependencies``,
    ``not``, ``if``/``then``/``else``, ``contains``/``minContains``/``maxContains``,
    ``uniqueItems``, ``multipleOf``, ``readOnly``/``writeOnly``, ``deprecated``,
    ``contentEncoding``/``contentMediaType``, OpenAPI's ``discriminator`` and
    any ``x-`` extension. ``required`` names that are not in ``properties`` are
    dropped too (Gemini answers "property is not defined"). When both ``anyOf``
    and ``oneOf`` appear, ``oneOf`` is dropped: one ``anyOf`` cannot hold both.
    """
    return _GeminiConverter(schema).convert(schema)


class _GeminiConverter:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.spec = _specification(root)
        self.resolver = local_resolver(root)

    def convert(
        self, node: Any, resolver: Any = None, stack: tuple[int, ...] = (), path: Path = ()
    ) -> dict:
        resolver = resolver or self.resolver
        node, resolver, stack = self._expand(node, resolver, stack, path)
        nullable = False

        # anyOf/oneOf: null branches become nullable; a single remaining branch is inlined
        any_of: list[tuple[dict, Any, tuple[int, ...]]] | None = None
        while True:
            branch_key = "anyOf" if isinstance(node.get("anyOf"), list) else "oneOf"
            if not isinstance(node.get(branch_key), list):
                break
            expanded = []
            for i, branch in enumerate(node[branch_key]):
                branch, branch_resolver, branch_stack = self._expand(
                    branch, resolver, stack, path + (branch_key, i)
                )
                if branch.get("type") == "null":
                    nullable = True
                else:
                    expanded.append((branch, branch_resolver, branch_stack))
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
            if len(expanded) == 1 and "type" not in rest:
                branch, resolver, stack = expanded[0]
                node = _merge_all_of(rest, branch)
                continue  # the inlined branch may bring its own anyOf
            node, any_of = rest, expanded or None
            break
        nullable = nullable or node.get("nullable") is True

        types = node.get("type")
        type_list = (
            [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
        )
        if "null" in type_list:
            nullable = True
            type_list = [t for t in type_list if t != "null"]
        if len(type_list) > 1 and any_of is None:
            node, branches = _split_types(node, type_list)
            any_of = [(branch, resolver, stack) for branch in branches]
            type_list = []

        gemini_type = _GEMINI_TYPES.get(type_list[0], type_list[0].upper()) if type_list else None
        enum = [node["const"]] if "const" in node else node.get("enum")
        if isinstance(enum, list):
            nullable = nullable or None in enum
            values = [v for v in enum if v is not None]
            if values and (gemini_type is None or any(not isinstance(v, str) for v in values)):
                if gemini_type not in (None, "STRING"):
                    node = {
                        k: v for k, v in node.items() if k != "format"
                    }  # int32 etc. no longer apply
                gemini_type = "STRING"
            enum = [
                v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values
            ] or None
        else:
            enum = None
        if gemini_type is None and any_of is None:
            gemini_type = _infer_type(node)

        out: dict[str, Any] = {}
        if gemini_type is not None:
            out["type"] = gemini_type
        for key, value in node.items():
            if key in ("type", "nullable"):
                continue  # written once, above and below
            if key in ("enum", "const"):
                if enum is not None:
                    out["enum"] = enum
            elif key == "properties" and isinstance(value, dict):
                out["properties"] = {
                    name: self.convert(sub, resolver, stack, path + ("properties", name))
                    for name, sub in value.items()
                }
            elif key in ("items", "prefixItems"):
                items = self._items(node, resolver, stack, path)
                if items is not None:
                    out["items"] = items
            elif key == "required" and isinstance(value, list):
                props = node.get("properties")
                required = [name for name in value if isinstance(props, dict) and name in props]
                if required:
                    out["required"] = required
            elif key in ("exclusiveMinimum", "exclusiveMaximum"):
                bound = "minimum" if key == "exclusiveMinimum" else "maximum"
                if (
                    bound not in node
                    and isinstance(value, (int, float))
                    and not isinstance(value, bool)
                ):
                    out[bound] = _inclusive(value, gemini_type, upward=bound == "minimum")
            elif key == "examples":
                if "example" not in node and isinstance(value, list) and value:
                    out["example"] = copy.deepcopy(value[0])
            elif key in GEMINI_SCHEMA_FIELDS:
                if key in _INT_FIELDS and isinstance(value, float) and value.is_integer():
                    value = int(value)
                out[key] = copy.deepcopy(value)
        if any_of:
            out["anyOf"] = [
                self.convert(branch, branch_resolver, branch_stack, path + ("anyOf", i))
                for i, (branch, branch_resolver, branch_stack) in enumerate(any_of)
            ]
        if nullable:
            out["nullable"] = True
        return out

    def _items(self, node: dict, resolver: Any, stack: tuple[int, ...], path: Path) -> dict | None:
        items = node.get("items")
        if isinstance(items, dict):
            return self.convert(items, resolver, stack, path + ("items",))
        positional = items if isinstance(items, list) else node.get("prefixItems")
        if isinstance(positional, list) and positional:
            converted = []
            for i, sub in enumerate(positional):
                key = "items" if isinstance(items, list) else "prefixItems"
                schema = self.convert(sub, resolver, stack, path + (key, i))
                if schema not in converted:
                    converted.append(schema)
            return converted[0] if len(converted) == 1 else {"anyOf": converted}
        return None

    def _expand(
        self, node: Any, resolver: Any, stack: tuple[int, ...], path: Path
    ) -> tuple[dict, Any, tuple[int, ...]]:
        """Resolve ``$ref`` and merge ``allOf`` until neither is left at this level."""
        if not isinstance(node, dict):
            return {}, resolver, stack  # boolean schemas: Gemini has no "anything"/"nothing"
        if "$id" in node and node is not self.root:
            resolver = resolver.in_subresource(self.spec.create_resource(node))
        while isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            try:
                resolved = resolver.lookup(ref)
            except referencing.exceptions.Unresolvable:
                raise SchemaReferenceError(path + ("$ref",), ref) from None
            target = resolved.contents if isinstance(resolved.contents, dict) else {}
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            key = id(resolved.contents)
            if stack.count(key) >= MAX_REF_EXPANSIONS:
                target = {k: target[k] for k in ("type", "description") if k in target}
            node = {**target, **siblings}
            resolver, stack = resolved.resolver, stack + (key,)
        if isinstance(node.get("allOf"), list):
            merged = {k: v for k, v in node.items() if k != "allOf"}
            for i, branch in enumerate(node["allOf"]):
                branch, _, branch_stack = self._expand(branch, resolver, stack, path + ("allOf", i))
                stack = branch_stack if len(branch_stack) > len(stack) else stack
                merged = _merge_all_of(merged, branch)
            node, resolver, stack = self._expand(merged, resolver, stack, path)
        return node, resolver, stack


def _merge_all_of(outer: dict, branch: dict) -> dict:
    """Fold ``branch`` into ``outer``.

    Properties and ``required`` are united; for any other key ``outer`` wins.
    """
    merged = dict(outer)
    for key, value in branch.items():
        if key == "properties" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            props = dict(merged[key])
            for name, sub in value.items():
                props[name] = (
                    {"allOf": [props[name], sub]} if name in props and props[name] != sub else sub
                )
            merged[key] = props
        elif key == "required" and isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + [name for name in value if name not in merged[key]]
        elif key not in merged:
            merged[key] = value
    return merged


def _split_types(node: dict, types: list[str]) -> tuple[dict, list[dict]]:
    """``type: [a, b]`` → the shared keywords, and one branch per type with its own keywords."""
    common = {k: v for k, v in node.items() if k != "type" and k not in _ALL_TYPED_KEYWORDS}
    branches = []
    for t in types:
        branch: dict[str, Any] = {"type": t}
        for key in _TYPE_KEYWORDS.get(t, ()):
            if key in node:
                branch[key] = node[key]
        if "enum" in branch:  # keep only the values this type can hold
            branch["enum"] = [v for v in branch["enum"] if _json_type_matches(v, t)]
            if not branch["enum"]:
                del branch["enum"]
        branches.append(branch)
    return common, branches


def _json_type_matches(value: Any, json_type: str) -> bool:
    if json_type == "integer":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            or isinstance(value, float)
            and value.is_integer()
        )
    return {
        "string": isinstance(value, str),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }.get(json_type, False)


def _infer_type(node: dict) -> str | None:
    if any(
        k in node
        for k in (
            "properties",
            "required",
            "minProperties",
            "maxProperties",
            "additionalProperties",
            "patternProperties",
            "propertyOrdering",
        )
    ):
        return "OBJECT"
    if any(k in node for k in ("items", "prefixItems", "minItems", "maxItems")):
        return "ARRAY"
    if any(k in node for k in ("pattern", "minLength", "maxLength")):
        return "STRING"
    if any(
        k in node
        for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
    ):
        return "NUMBER"
    return None


def _inclusive(bound: float, gemini_type: str | None, *, upward: bool) -> float:
    if gemini_type == "INTEGER":
        return math.floor(bound) + 1 if upward else math.ceil(bound) - 1
    return bound
