"""JSON Schemas for Gemini: sent as JSON Schema where the model takes it, else converted.

Gemini 2.5 and later (see `versions`) take standard JSON Schema (`responseJsonSchema`, a
function's `parametersJsonSchema`), so a schema goes as the client wrote it: `additionalProperties`,
`$ref`/`$defs`, `oneOf` and `prefixItems` keep their meaning. Google documents which keywords it
enforces there; the schema is not trimmed to them.

Earlier models take only Gemini's `Schema` (`responseSchema`, `parameters`), an OpenAPI 3.0
subset, and `gemini_schema` converts to it:

* local `$ref`s to `$defs`/`definitions` are inlined, as is an `allOf` of one schema (how
  pydantic attaches a description to a reference); `const` becomes a one-value `enum`, `oneOf`
  becomes `anyOf`, and a `null` type or option becomes `nullable: true`;
* keywords that only describe (`$schema`, `$id`, `$comment`, `examples`, `deprecated`, …) are
  dropped, and so is `additionalProperties: false`, which Gemini keeps anyway: it generates
  the declared properties only;
* every other keyword — `additionalProperties` other than false, `not`, `allOf` of several,
  `patternProperties`, `uniqueItems`, `multipleOf`, `exclusiveMinimum`, `prefixItems`,
  `if`/`then`/`else`, a recursive `$ref`, … — is refused with a 400 naming the keyword and where
  it is, rather than loosening the schema in silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from stellara.errors import InvalidRequestError

# The fields of Gemini's `Schema` that carry over from JSON Schema as they are; `properties`,
# `items` and `anyOf` are converted recursively instead of copied.
_SCHEMA_KEYS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "required",
        "minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength",
        "pattern", "example", "default", "propertyOrdering", "minimum", "maximum",
    }
)  # fmt: skip
_DESCRIPTIVE_KEYS = frozenset(
    {
        "$schema", "$id", "$comment", "$anchor", "examples", "deprecated", "readOnly",
        "writeOnly", "contentMediaType", "contentEncoding",
    }
)  # fmt: skip
_CONVERTED_KEYS = frozenset(
    {"properties", "items", "anyOf", "oneOf", "const", "$ref", "$defs", "definitions", "allOf"}
)
_KNOWN_KEYS = _SCHEMA_KEYS | _DESCRIPTIVE_KEYS | _CONVERTED_KEYS | {"additionalProperties"}
_MAX_SCHEMA_DEPTH = 32  # deeper is a self-referencing `$ref`


def gemini_schema(schema: Mapping[str, Any], param: str) -> dict[str, Any]:
    """A JSON schema as Gemini's OpenAPI-subset `Schema` (see the module doc).

    Args:
        schema: The client's JSON schema.
        param: Where the schema is in the request (`response_format.json_schema.schema`), for
            the error.

    Raises:
        InvalidRequestError: The schema uses a keyword that `Schema` cannot express.
    """
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            defs.update(found)
    return _SchemaConverter(defs, param).convert(schema, "#", 0)


class _SchemaConverter:
    def __init__(self, defs: Mapping[str, Any], param: str) -> None:
        self._defs = defs
        self._param = param

    def convert(self, schema: Mapping[str, Any], where: str, depth: int) -> dict[str, Any]:
        if depth > _MAX_SCHEMA_DEPTH:
            self._refuse("$ref", where, "a schema that refers to itself")
        schema = self._resolve(schema, where)
        for key in schema:
            if key not in _KNOWN_KEYS:
                self._refuse(key, where)
        if schema.get("additionalProperties", False) is not False:
            self._refuse("additionalProperties", where, "other than false")
        out: dict[str, Any] = {key: value for key, value in schema.items() if key in _SCHEMA_KEYS}
        if "const" in schema and "enum" not in out:
            out["enum"] = [schema["const"]]
        kind = schema.get("type")
        if isinstance(kind, list):
            concrete = [k for k in kind if k != "null"]
            out.pop("type")
            if concrete:
                out["type"] = concrete[0]
            if "null" in kind:
                out["nullable"] = True
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            out["properties"] = {
                name: self.convert(sub, f"{where}/properties/{name}", depth + 1)
                for name, sub in properties.items()
                if isinstance(sub, Mapping)
            }
        items = schema.get("items")
        if isinstance(items, Mapping):
            out["items"] = self.convert(items, f"{where}/items", depth + 1)
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list):
                out.update(self._any_of(options, f"{where}/{key}", depth))
        return out

    def _resolve(self, schema: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        """The schema with a `$ref` or a one-schema `allOf` merged into it."""
        for _ in range(_MAX_SCHEMA_DEPTH):
            all_of = schema.get("allOf")
            ref = schema.get("$ref")
            if all_of is not None:
                if not (isinstance(all_of, list) and len(all_of) == 1):
                    self._refuse("allOf", where, "of more than one schema")
                target = all_of[0]
                key = "allOf"
            elif isinstance(ref, str):
                target = self._defs.get(ref.rpartition("/")[2]) if ref.startswith("#/") else None
                if target is None:
                    self._refuse("$ref", where, f"to {ref!r}, which is not in $defs")
                key = "$ref"
            else:
                return schema
            siblings = {k: v for k, v in schema.items() if k != key}
            schema = {**target, **siblings} if isinstance(target, Mapping) else siblings
        self._refuse("$ref", where, "a schema that refers to itself")

    def _any_of(self, options: list[Any], where: str, depth: int) -> dict[str, Any]:
        """`anyOf`, with a `null` option turned into `nullable` (how pydantic writes `X | None`)."""
        is_nullable = any(isinstance(o, Mapping) and o.get("type") == "null" for o in options)
        kept = [
            self.convert(o, f"{where}/{k}", depth + 1)
            for k, o in enumerate(options)
            if isinstance(o, Mapping) and o.get("type") != "null"
        ]
        out: dict[str, Any] = {"nullable": True} if is_nullable else {}
        if len(kept) == 1:
            out.update(kept[0])
        elif kept:
            out["anyOf"] = kept
        return out

    def _refuse(self, keyword: str, where: str, detail: str = "") -> NoReturn:
        what = f"{keyword!r} ({detail})" if detail else repr(keyword)
        raise InvalidRequestError(
            f"{self._param} uses {what} at {where}, which Gemini's Schema (the OpenAPI subset "
            "models before Gemini 2.5 take) cannot express; the gateway refuses rather than "
            "loosen the schema",
            param=self._param,
        )
