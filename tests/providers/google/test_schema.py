"""JSON schemas to Gemini: JSON Schema as given for 2.5+, else `Schema`, refusing what it lacks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stellara.errors import InvalidRequestError
from stellara.providers.google.chat import build_generate_body
from stellara.providers.google.schema import gemini_schema
from stellara.schema.chat import request_decoder

PARAM = "response_format.json_schema.schema"
PERSON = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name", "tags"],
    "additionalProperties": False,
}


def generation_config(model: str, schema: dict[str, Any], **fields: Any) -> dict[str, Any]:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "p", "schema": schema, "strict": True},
    }
    body = {
        "model": "alias",
        "messages": [{"role": "user", "content": "Hi"}],
        "response_format": response_format,
        **fields,
    }
    sent: dict[str, Any] = json.loads(
        build_generate_body(request_decoder.decode(json.dumps(body)), model)
    )
    return sent


@pytest.mark.parametrize(
    "model", ["gemini-2.5-flash", "models/gemini-3-pro-preview", "gemini-flash-latest"]
)
def test_json_schema_goes_untouched_to_models_that_take_json_schema(model: str) -> None:
    sent = generation_config(model, PERSON)
    assert sent["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": PERSON,
    }


def test_tool_parameters_go_as_parameters_json_schema_to_models_that_take_it() -> None:
    tool = {"type": "function", "function": {"name": "tag", "parameters": PERSON, "strict": True}}
    sent = generation_config(
        "gemini-2.5-pro", {"type": "object", "properties": {"a": {"type": "string"}}}, tools=[tool]
    )
    assert sent["tools"] == [
        {"functionDeclarations": [{"name": "tag", "parametersJsonSchema": PERSON}]}
    ]


def test_json_schema_for_older_model_is_converted_to_gemini_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": ["integer", "null"]}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    sent = generation_config("gemini-2.0-flash", schema)
    assert sent["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "nullable": True},
            },
            "required": ["name", "age"],
        },
    }


def test_gemini_schema_inlines_refs_and_folds_optional_any_of() -> None:
    schema = {
        "$defs": {"City": {"type": "object", "properties": {"name": {"const": "Paris"}}}},
        "type": "object",
        "properties": {
            "city": {"$ref": "#/$defs/City", "description": "where"},
            "home": {"allOf": [{"$ref": "#/$defs/City"}], "description": "home"},
            "note": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "default": None,
                "examples": ["x"],
            },
            "kind": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        },
    }
    city = {"type": "object", "properties": {"name": {"enum": ["Paris"]}}}
    assert gemini_schema(schema, PARAM) == {
        "type": "object",
        "properties": {
            "city": {**city, "description": "where"},
            "home": {**city, "description": "home"},
            "note": {"type": "string", "nullable": True, "default": None},
            "kind": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
    }


@pytest.mark.parametrize(
    ("schema", "keyword", "where"),
    [
        (PERSON, "'additionalProperties' (other than false)", "#/properties/tags"),
        (
            {"type": "array", "items": {"type": "integer", "multipleOf": 2}},
            "'multipleOf'",
            "#/items",
        ),
        ({"type": "array", "uniqueItems": True, "items": {"type": "string"}}, "'uniqueItems'", "#"),
        ({"not": {"type": "string"}}, "'not'", "#"),
        (
            {"allOf": [{"type": "string"}, {"minLength": 2}]},
            "'allOf' (of more than one schema)",
            "#",
        ),
        (
            {"$ref": "https://example.com/s.json"},
            "'$ref' (to 'https://example.com/s.json', which is not in $defs)",
            "#",
        ),
    ],
)
def test_gemini_schema_refuses_what_it_cannot_express(
    schema: dict[str, Any], keyword: str, where: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        gemini_schema(schema, PARAM)
    assert caught.value.param == PARAM
    assert f"uses {keyword} at {where}," in str(caught.value)


def test_gemini_schema_refuses_a_recursive_schema() -> None:
    schema = {
        "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
        "$ref": "#/$defs/N",
    }
    with pytest.raises(InvalidRequestError, match="refers to itself"):
        gemini_schema(schema, PARAM)


def test_tool_schema_refusal_names_the_tool() -> None:
    tool = {"type": "function", "function": {"name": "tag", "parameters": PERSON}}
    with pytest.raises(InvalidRequestError) as caught:
        generation_config(
            "gemini-2.0-flash",
            {"type": "object", "properties": {"a": {"type": "string"}}},
            tools=[tool],
        )
    assert caught.value.param == "tools[0].function.parameters"
