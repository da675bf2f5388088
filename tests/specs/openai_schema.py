"""OpenAI's OpenAPI description as a test oracle: is this value what the spec says it should be?

Use :func:`validate` for a whole object (``validate("Response", body)``) and
:func:`validate_event` for one streamed event: it validates the event against the schema of its
own ``type``, so a failure names the field at fault instead of "not valid under any of the
schemas" of the 58-way ``ResponseStreamEvent`` union.

The spec is the vendored ``openai/openapi.json`` (see ``openai/SOURCE.md``), read once per
process; nothing is ever fetched (``offline=True``). Its OpenAPI 3.0 ``nullable: true`` marks
are read as "or null", as its authors mean them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

_SPEC_PATH = Path(__file__).parent / "openai" / "openapi.json"
# The name the document is registered under for `$ref`s; a URN so nothing could resolve it online.
_BASE_URI = "urn:stellara:openai-openapi"
_MAX_PROBLEMS = 12
_MAX_REASON_CHARS = 240
_UNIONS = (jsonschema_rs.ValidationErrorKind.AnyOf, jsonschema_rs.ValidationErrorKind.OneOfNotValid)


def validate(component: str, value: object) -> None:
    """Assert that ``value`` is valid under ``components.schemas[component]`` of the spec.

    Args:
        component: A schema name, e.g. ``"Response"`` or ``"ResponseStreamEvent"``.
        value: The decoded JSON to check.

    Raises:
        AssertionError: One line per problem: its path in ``value`` (``$.output[0].content``)
            and the reason.
        KeyError: The spec has no schema of that name.
    """
    errors = list(_validator(component).iter_errors(value))
    if errors:
        problems = [problem for error in errors for problem in _explain(error)]
        lines = "\n".join(f"  {problem}" for problem in problems[:_MAX_PROBLEMS])
        more = len(problems) - _MAX_PROBLEMS
        tail = f"\n  … and {more} more" if more > 0 else ""
        raise AssertionError(f"not a valid {component}:\n{lines}{tail}")


def validate_event(event: Mapping[str, object]) -> None:
    """Assert that one streamed Responses API event is valid under the schema for its ``type``.

    Raises:
        AssertionError: The event's ``type`` is not one the spec streams, or the event breaks
            that type's schema (one line per problem, as :func:`validate`).
    """
    kind = event.get("type")
    component = _event_components().get(kind) if isinstance(kind, str) else None
    if component is None:
        raise AssertionError(f"{kind!r} is not a stream event type of ResponseStreamEvent")
    validate(component, event)


@functools.cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = _honour_nullable(orjson.loads(_SPEC_PATH.read_bytes()))
    return spec


def _honour_nullable(node: Any) -> Any:
    """The spec still marks some fields `nullable: true` (OpenAPI 3.0), a keyword JSON Schema
    2020-12 ignores; it means "or null", so each such schema becomes `anyOf: [it, null]`."""
    if isinstance(node, list):
        return [_honour_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {name: _honour_nullable(value) for name, value in node.items()}
    if schema.pop("nullable", False) is True:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


@functools.cache
def _registry() -> jsonschema_rs.Registry:
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; one registry so the 3 MB document is
    # converted once, not once per component.
    return jsonschema_rs.Registry([(_BASE_URI, _spec())], draft=jsonschema_rs.Draft202012)


@functools.cache
def _validator(component: str) -> jsonschema_rs.Validator:
    if component not in _spec()["components"]["schemas"]:
        raise KeyError(f"the spec has no schema {component!r} under components.schemas")
    reference = {"$ref": f"{_BASE_URI}#/components/schemas/{component}"}
    return jsonschema_rs.validator_for(reference, registry=_registry(), offline=True)


@functools.cache
def _event_components() -> dict[str, str]:
    """Map each streamed event ``type`` to the name of its schema."""
    schemas = _spec()["components"]["schemas"]
    components = {}
    for branch in schemas["ResponseStreamEvent"]["anyOf"]:
        name = branch["$ref"].rpartition("/")[2]
        (kind,) = schemas[name]["properties"]["type"]["enum"]
        components[kind] = name
    return components


def _explain(error: jsonschema_rs.ValidationError) -> list[str]:
    """Say what is wrong, looking inside a union for the branch the value was meant to match."""
    if isinstance(error.kind, _UNIONS):
        branch = _meant_branch(error.kind.context, error.instance_path)
        if branch is not None:
            return [problem for inner in branch for problem in _explain(inner)]
    reason = error.message
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[:_MAX_REASON_CHARS] + "…"
    return [f"{_path(error.instance_path)}: {reason}"]


def _meant_branch(
    branches: Sequence[Sequence[jsonschema_rs.ValidationError]], at: Sequence[str | int]
) -> Sequence[jsonschema_rs.ValidationError] | None:
    # A branch whose `type` tag differs, or that wants another JSON type altogether, is not the
    # one the value was written for; of the rest, the one with the fewest problems is.
    tag = [*at, "type"]
    candidates = [
        branch
        for branch in branches
        if not any(
            (error.instance_path == tag and error.kind.name in ("enum", "const"))
            or (error.instance_path == list(at) and error.kind.name == "type")
            for error in branch
        )
    ]
    return min(candidates, key=len, default=None)


def _path(instance_path: Sequence[str | int]) -> str:
    return "$" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in instance_path
    )
