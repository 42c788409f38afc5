"""JSON Schema becomes the OpenAPI-subset Schema Gemini's function declarations accept."""

import copy

import pytest

from providers_app.kit.tools import ToolValidationError, tools_to_gemini
from providers_app.kit.tools.gemini_schema import (
    GEMINI_SCHEMA_FIELDS,
    MAX_REF_EXPANSIONS,
    to_gemini_schema,
)
from providers_app.kit.types import Tool

RICH = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.com/book-trip.json",
    "title": "BookTrip",
    "type": "object",
    "description": "Book a trip",
    "properties": {
        "traveller": {"$ref": "#/$defs/Person", "description": "Who travels"},
        "companions": {
            "type": "array",
            "items": {"$ref": "#/$defs/Person"},
            "minItems": 0,
            "maxItems": 4,
            "uniqueItems": True,
        },
        "class": {"enum": ["economy", "business"], "default": "economy"},
        "nights": {"type": "integer", "minimum": 1, "maximum": 30, "multipleOf": 1},
        "budget": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "kind": {"const": "trip"},
        "stars": {"type": "integer", "enum": [3, 4, 5]},
        "pickup": {
            "oneOf": [{"$ref": "#/$defs/Address"}, {"type": "string", "format": "date-time"}]
        },
        "notes": {"anyOf": [{"type": "string", "maxLength": 500}, {"type": "null"}]},
        "options": {
            "type": "object",
            "properties": {"wifi": {"type": "boolean"}, "pets": {"type": "boolean"}},
            "additionalProperties": False,
            "patternProperties": {"^x-": {"type": "string"}},
        },
    },
    "required": ["traveller", "nights", "ghost"],
    "additionalProperties": False,
    "$defs": {
        "Person": {
            "type": "object",
            "title": "Person",
            "properties": {
                "name": {"type": "string", "minLength": 1, "pattern": "^[A-Z]"},
                "age": {"type": "integer", "examples": [42, 7]},
            },
            "required": ["name"],
        },
        "Address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            "required": ["street", "city"],
            "$comment": "internal",
        },
    },
}

PERSON = {
    "type": "OBJECT",
    "title": "Person",
    "properties": {
        "name": {"type": "STRING", "minLength": 1, "pattern": "^[A-Z]"},
        "age": {"type": "INTEGER", "example": 42},
    },
    "required": ["name"],
}


def _keys(schema):
    """Every key used as a Schema field anywhere in a converted schema."""
    keys = set(schema)
    for sub in (schema.get("properties") or {}).values():
        keys |= _keys(sub)
    if "items" in schema:
        keys |= _keys(schema["items"])
    for sub in schema.get("anyOf", []):
        keys |= _keys(sub)
    return keys


def test_it_converts_a_rich_schema():
    assert to_gemini_schema(RICH) == {
        "type": "OBJECT",
        "title": "BookTrip",
        "description": "Book a trip",
        "properties": {
            "traveller": {**PERSON, "description": "Who travels"},
            "companions": {"type": "ARRAY", "items": PERSON, "minItems": 0, "maxItems": 4},
            "class": {"type": "STRING", "enum": ["economy", "business"], "default": "economy"},
            "nights": {"type": "INTEGER", "minimum": 1, "maximum": 30},
            "budget": {"type": "NUMBER", "minimum": 0, "nullable": True},
            "kind": {"type": "STRING", "enum": ["trip"]},
            "stars": {"type": "STRING", "enum": ["3", "4", "5"]},
            "pickup": {
                "anyOf": [
                    {
                        "type": "OBJECT",
                        "properties": {"street": {"type": "STRING"}, "city": {"type": "STRING"}},
                        "required": ["street", "city"],
                    },
                    {"type": "STRING", "format": "date-time"},
                ]
            },
            "notes": {"type": "STRING", "maxLength": 500, "nullable": True},
            "options": {
                "type": "OBJECT",
                "properties": {"wifi": {"type": "BOOLEAN"}, "pets": {"type": "BOOLEAN"}},
            },
        },
        "required": ["traveller", "nights"],
    }


def test_the_converted_schema_uses_only_fields_gemini_accepts():
    assert _keys(to_gemini_schema(RICH)) <= GEMINI_SCHEMA_FIELDS


def test_it_keeps_every_keyword_gemini_accepts():
    schema = {
        "type": "object",
        "title": "T",
        "description": "D",
        "nullable": True,
        "minProperties": 1,
        "maxProperties": 3,
        "propertyOrdering": ["s", "n", "a"],
        "example": {"s": "x"},
        "default": {"s": "y"},
        "properties": {
            "s": {
                "type": "string",
                "format": "email",
                "minLength": 1,
                "maxLength": 9,
                "pattern": "@",
                "enum": ["a@b"],
                "example": "a@b",
                "default": "a@b",
            },
            "n": {"type": "number", "minimum": 0.5, "maximum": 9.5, "format": "double"},
            "a": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2},
            "u": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "required": ["s"],
    }
    expected = copy.deepcopy(schema)
    expected["type"] = "OBJECT"
    expected["properties"]["s"]["type"] = "STRING"
    expected["properties"]["n"]["type"] = "NUMBER"
    expected["properties"]["a"]["type"] = "ARRAY"
    expected["properties"]["a"]["items"]["type"] = "BOOLEAN"
    expected["properties"]["u"]["anyOf"] = [{"type": "STRING"}, {"type": "INTEGER"}]

    assert to_gemini_schema(schema) == expected


@pytest.mark.parametrize(
    "keyword",
    [
        "$schema",
        "$id",
        "$comment",
        "$anchor",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "dependentRequired",
        "not",
        "if",
        "uniqueItems",
        "multipleOf",
        "contains",
        "readOnly",
        "deprecated",
        "x-internal",
    ],
)
def test_it_drops_keywords_gemini_rejects(keyword):
    value = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:x",
        "$comment": "c",
        "$anchor": "top",
        "additionalProperties": False,
        "patternProperties": {"^a": {}},
        "propertyNames": {"maxLength": 3},
        "unevaluatedProperties": False,
        "dependentRequired": {"a": ["b"]},
        "not": {"required": ["z"]},
        "if": {"required": ["a"]},
        "uniqueItems": True,
        "multipleOf": 2,
        "contains": {"type": "string"},
        "readOnly": True,
        "deprecated": True,
        "x-internal": True,
    }[keyword]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, keyword: value}

    assert to_gemini_schema(schema) == {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": ["string", "null"]},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        {"oneOf": [{"type": "null"}, {"type": "string"}]},
        {"type": "string", "nullable": True},
    ],
    ids=["type list", "anyOf null", "oneOf null", "already nullable"],
)
def test_every_spelling_of_nullable_becomes_nullable(schema):
    assert to_gemini_schema(schema) == {"type": "STRING", "nullable": True}


def test_a_null_enum_value_becomes_nullable():
    assert to_gemini_schema({"enum": ["a", None]}) == {
        "type": "STRING",
        "enum": ["a"],
        "nullable": True,
    }


def test_a_union_of_several_types_becomes_any_of_with_each_types_keywords():
    schema = {
        "type": ["string", "integer", "null"],
        "minLength": 2,
        "maximum": 9,
        "description": "id",
    }

    assert to_gemini_schema(schema) == {
        "description": "id",
        "anyOf": [{"type": "STRING", "minLength": 2}, {"type": "INTEGER", "maximum": 9}],
        "nullable": True,
    }


def test_one_of_becomes_any_of():
    schema = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    assert to_gemini_schema(schema) == {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}


def test_const_becomes_a_single_value_enum():
    assert to_gemini_schema({"type": "string", "const": "v1"}) == {"type": "STRING", "enum": ["v1"]}
    assert to_gemini_schema({"const": 2}) == {"type": "STRING", "enum": ["2"]}


def test_enum_values_become_strings_because_gemini_only_has_string_enums():
    assert to_gemini_schema({"type": "boolean", "enum": [True]}) == {
        "type": "STRING",
        "enum": ["true"],
    }
    assert to_gemini_schema({"enum": [1.5, "x"]}) == {"type": "STRING", "enum": ["1.5", "x"]}
    assert to_gemini_schema({"type": "integer", "format": "int32", "enum": [1, 2]}) == {
        "type": "STRING",
        "enum": ["1", "2"],
    }


def test_draft_7_definitions_are_inlined():
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"when": {"$ref": "#/definitions/Date"}},
        "definitions": {"Date": {"type": "string", "format": "date-time"}},
    }
    assert to_gemini_schema(schema) == {
        "type": "OBJECT",
        "properties": {"when": {"type": "STRING", "format": "date-time"}},
    }


def test_a_reference_to_the_root_is_inlined():
    schema = {"type": "object", "properties": {"parent": {"$ref": "#"}, "name": {"type": "string"}}}

    converted = to_gemini_schema(schema)

    assert converted["properties"]["parent"]["properties"]["name"] == {"type": "STRING"}


def test_a_recursive_schema_is_unrolled_a_few_levels_then_cut():
    schema = {
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/Node"}},
        "$defs": {
            "Node": {
                "type": "object",
                "description": "A tree node",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
    }

    node = to_gemini_schema(schema)["properties"]["root"]
    for _ in range(MAX_REF_EXPANSIONS):
        assert node["properties"]["label"] == {"type": "STRING"}
        node = node["properties"]["children"]["items"]
    assert node == {"type": "OBJECT", "description": "A tree node"}


def test_mutually_recursive_definitions_terminate():
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}},
        "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}},
        },
    }
    assert to_gemini_schema(schema)["type"] == "OBJECT"


def test_all_of_is_merged_into_one_schema():
    schema = {
        "type": "object",
        "properties": {
            "item": {
                "allOf": [
                    {"$ref": "#/$defs/Base"},
                    {"properties": {"extra": {"type": "integer"}}, "required": ["extra"]},
                ],
                "description": "An item",
            }
        },
        "$defs": {
            "Base": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
        },
    }

    assert to_gemini_schema(schema)["properties"]["item"] == {
        "description": "An item",
        "type": "OBJECT",
        "properties": {"id": {"type": "STRING"}, "extra": {"type": "INTEGER"}},
        "required": ["id", "extra"],
    }


def test_exclusive_bounds_become_inclusive_ones():
    assert to_gemini_schema({"type": "integer", "exclusiveMinimum": 2, "exclusiveMaximum": 10}) == {
        "type": "INTEGER",
        "minimum": 3,
        "maximum": 9,
    }
    assert to_gemini_schema({"type": "number", "exclusiveMinimum": 0}) == {
        "type": "NUMBER",
        "minimum": 0,
    }


def test_tuples_become_items_listing_the_positions_schemas():
    schema = {
        "type": "array",
        "prefixItems": [{"type": "number"}, {"type": "string"}],
        "minItems": 2,
    }
    assert to_gemini_schema(schema) == {
        "type": "ARRAY",
        "items": {"anyOf": [{"type": "NUMBER"}, {"type": "STRING"}]},
        "minItems": 2,
    }


def test_a_missing_type_is_inferred_from_the_keywords():
    schema = {"properties": {"tags": {"items": {"maxLength": 5}}, "n": {"minimum": 1}}}
    assert to_gemini_schema(schema) == {
        "type": "OBJECT",
        "properties": {
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "maxLength": 5}},
            "n": {"type": "NUMBER", "minimum": 1},
        },
    }


def test_conversion_never_mutates_the_callers_schema():
    before = copy.deepcopy(RICH)

    converted = to_gemini_schema(RICH)
    converted["properties"]["traveller"]["properties"]["name"]["type"] = "INTEGER"

    assert RICH == before


def test_an_unresolvable_reference_is_a_tool_validation_error():
    tool = Tool(
        name="t", parameters={"type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}}
    )

    with pytest.raises(ToolValidationError) as caught:
        tools_to_gemini([tool])

    assert caught.value.param == "parameters.properties.a.$ref"
    assert caught.value.tool == "t"
