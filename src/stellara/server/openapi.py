"""The API's own description, built from the route table (`GET /openapi.json`).

Every path, method, access and body comes from the routes' declarations, and every schema
from the very msgspec structs that decode requests and encode answers, so the description
cannot drift from what the server does. Anthropic's and Gemini's wire types share names with
the canonical ones (Usage, Message, ErrorDetail), so the components of their routes carry an
`Anthropic` or `Gemini` prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from aiohttp import web

from stellara import __version__, _json
from stellara.server.schemas import ErrorBody
from stellara.server.spec import Access, Dialect, Route, Schema
from stellara.wire import anthropic, google

OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)

_PREFIX = {Dialect.OPENAI: "", Dialect.ANTHROPIC: "Anthropic", Dialect.GEMINI: "Gemini"}
_ERROR_SCHEMA: Mapping[Dialect, type] = {
    Dialect.OPENAI: ErrorBody,
    Dialect.ANTHROPIC: anthropic.ErrorEvent,
    Dialect.GEMINI: google.GoogleErrorBody,
}
_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_MODEL_CALL_ERRORS = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    403: "The key may not use this model",
    404: "Unknown model",
    413: "Body larger than server.max_body_bytes",
    429: "Rate limit (`rate_limit_exceeded`) or quota (`insufficient_quota`); see Retry-After",
    502: "Provider error after all attempts",
    503: "No healthy provider (see Retry-After), or state backend down with `on_failure: closed`",
    504: "Timed out",
}
_ACCESS_ERRORS: Mapping[Access, Mapping[int, str]] = {
    Access.PUBLIC: {},
    Access.COOKIE: {401: "Not signed in"},
    Access.KEYED: {401: "Missing or invalid API key"},
    Access.OWN_USER: {401: "Missing or invalid API key"},
    Access.MASTER: {401: "Missing or invalid API key", 403: "Not the master key"},
    Access.MODEL: _MODEL_CALL_ERRORS,
}
_BODY_ERRORS = {400: "Invalid request body", 413: "Body larger than the route allows"}


def build_openapi(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`."""
    components: dict[str, Any] = {}
    for dialect in Dialect:
        own = [r for r in routes if r.dialect is dialect or r.speaks_client_dialect]
        components.update(_components(dialect, _types(own, dialect)))
    paths: dict[str, Any] = {}
    for route in routes:
        path = _PARAMETER.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stellara",
            "version": __version__,
            "description": "An AI gateway speaking the OpenAI, Anthropic and Gemini APIs.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "googApiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
                "keyQuery": {"type": "apiKey", "in": "query", "name": "key"},
            },
        },
    }


def encoded_openapi(routes: Sequence[Route]) -> bytes:
    return _json.dumps(build_openapi(routes))


def _types(routes: Iterable[Route], dialect: Dialect) -> list[type]:
    """Every struct `routes` name, once each, in order of appearance."""
    found: dict[type, None] = {_ERROR_SCHEMA[dialect]: None}
    for route in routes:
        if route.dialect is dialect:
            schemas = (route.body, route.reply.schema, *route.reply.stream)
        else:  # a route speaking the client's dialect, this being its other one
            schemas = (route.reply.in_dialect(dialect),)
        for schema in schemas:
            shapes = schema if isinstance(schema, tuple) else (schema,)
            found.update((shape, None) for shape in shapes if isinstance(shape, type))
    return list(found)


def _components(dialect: Dialect, types: Sequence[type]) -> dict[str, Any]:
    prefix = _PREFIX[dialect]
    _, components = msgspec.json.schema_components(
        types, ref_template=f"#/components/schemas/{prefix}{{name}}"
    )
    return {f"{prefix}{name}": schema for name, schema in components.items()}


def _schema(schema: Schema, dialect: Dialect) -> dict[str, Any]:
    if isinstance(schema, type):
        return {"$ref": f"#/components/schemas/{_PREFIX[dialect]}{schema.__name__}"}
    if isinstance(schema, tuple):
        return {"anyOf": [_schema(shape, dialect) for shape in schema]}
    return dict(schema)


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary, "x-stellara-access": route.access.value}
    if route.access.needs_key:
        security: list[dict[str, list[str]]] = [{"bearer": []}]
        if route.dialect is Dialect.ANTHROPIC or route.speaks_client_dialect:
            security.append({"apiKey": []})
        if route.dialect is Dialect.GEMINI or route.speaks_client_dialect:
            security += [{"googApiKey": []}, {"keyQuery": []}]
        operation["security"] = security
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAMETER.findall(route.path)
    ]
    parameters += [
        {"name": name, "in": "query", "schema": {"type": "string"}} for name in route.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        media: dict[str, Any] = {"schema": _schema(route.body, route.dialect)}
        if route.example is not None:
            media["example"] = dict(route.example)
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {route.body_media: media},
        }
    operation["responses"] = {**_reply(route), **_errors(route)}
    return operation


def _reply(route: Route) -> dict[str, Any]:
    reply = route.reply
    answer: dict[str, Any] = {"description": reply.description}
    content: dict[str, Any] = {}
    if reply.schema is not None:
        schema = _schema(reply.schema, route.dialect)
        others = [(d, reply.in_dialect(d)) for d in Dialect if d is not route.dialect]
        shapes = [_schema(other, d) for d, other in others if other is not None]
        if shapes:
            schema = {"anyOf": [schema, *shapes]}
        content[reply.media] = {"schema": schema}
    if reply.stream:
        events = [_schema(event, route.dialect) for event in reply.stream]
        content["text/event-stream"] = {"schema": {"anyOf": events}}
    if content:
        answer["content"] = content
    return {str(reply.status): answer}


def _errors(route: Route) -> dict[str, Any]:
    errors: dict[int, str | None] = dict(_ACCESS_ERRORS[route.access])
    if route.body is not None and route.access is not Access.PUBLIC:
        errors = {**_BODY_ERRORS, **errors}
    errors.update(route.errors)
    answered = {status: text for status, text in errors.items() if text is not None}
    dialects = tuple(Dialect) if route.speaks_client_dialect else (route.dialect,)
    shapes = [_schema(_ERROR_SCHEMA[dialect], dialect) for dialect in dialects]
    schema = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    content = {"application/json": {"schema": schema}}
    return {
        str(status): {"description": text, "content": content}
        for status, text in sorted(answered.items())
    }
