"""JSON Schema → Gemini's ``FunctionDeclaration.parameters`` Schema message.

Gemini's parameters are a protobuf ``Schema`` message (a subset of OpenAPI
3.0), not JSON Schema, and the API refuses a whole request for one field it
does not define; see ``to_gemini_schema``.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import referencing.exceptions

from .schema import Path, SchemaReferenceError, local_resolver, specification_of

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


def to_gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
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
        self.spec = specification_of(root)
        self.resolver = local_resolver(root)

    def convert(
        self, node: Any, resolver: Any = None, stack: tuple[int, ...] = (), path: Path = ()
    ) -> dict[str, Any]:
        resolver = resolver or self.resolver
        node, resolver, stack = self._expand(node, resolver, stack, path)
        nullable = False

        # anyOf/oneOf: null branches become nullable; a single remaining branch is inlined
        any_of: list[tuple[dict[str, Any], Any, tuple[int, ...]]] | None = None
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

    def _items(
        self, node: dict[str, Any], resolver: Any, stack: tuple[int, ...], path: Path
    ) -> dict[str, Any] | None:
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
    ) -> tuple[dict[str, Any], Any, tuple[int, ...]]:
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


def _merge_all_of(outer: dict[str, Any], branch: dict[str, Any]) -> dict[str, Any]:
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


def _split_types(
    node: dict[str, Any], types: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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


def _infer_type(node: dict[str, Any]) -> str | None:
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
