"""Gemini's `Schema` (an OpenAPI 3.0 subset) → JSON Schema, for tool parameters and
`responseSchema`.

The inverse of the outbound provider's `gemini_schema`: types are lowercase (`OBJECT` →
`object`), `nullable: true` becomes a `null` type, `example` becomes `examples`, and the
integer fields protobuf's JSON form writes as strings (`minItems: "1"`) become numbers. Keys
are read in either spelling (`max_length` or `maxLength`), as Google reads them. Every
other key is kept as it is (`propertyOrdering` included: JSON Schema ignores keys it does not
know, and a Gemini upstream reads it back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stellara.errors import InvalidRequestError
from stellara.wire.google_inbound import camel_case

_INTEGER_KEYS = frozenset(
    {"minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength"}
)
_MAX_DEPTH = 64


def json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema for a Gemini `Schema`."""
    return _convert(schema, 0)


def _convert(schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise InvalidRequestError(f"A schema is nested deeper than {_MAX_DEPTH} levels.")
    out: dict[str, Any] = {}
    for spelled, value in schema.items():
        key = camel_case(spelled)  # google-genai sends `property_ordering`, `max_length`, …
        if key == "type":
            kind = str(value).lower()
            if kind != "type_unspecified":
                out["type"] = kind
        elif key == "nullable":
            continue  # below, once the type is known
        elif key == "example":
            out["examples"] = [value]
        elif key in _INTEGER_KEYS and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {
                name: _convert(sub, depth + 1) if isinstance(sub, Mapping) else sub
                for name, sub in value.items()
            }
        elif key == "items" and isinstance(value, Mapping):
            out[key] = _convert(value, depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [_convert(o, depth + 1) if isinstance(o, Mapping) else o for o in value]
        else:
            out[key] = value
    if schema.get("nullable") is True:
        _make_nullable(out)
    return out


def _make_nullable(out: dict[str, Any]) -> None:
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif "anyOf" in out:
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
