"""Check the events of an SSE answer against the schema `/openapi.json` gives the route's
`text/event-stream` content: the schema of each event's JSON `data`."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema_rs

from stellara.server.openapi import build_openapi
from stellara.server.routes import ROUTES


@cache
def _validator(path: str) -> Any:
    document = build_openapi(ROUTES)
    content = document["paths"][path]["post"]["responses"]["200"]["content"]
    schema = content["text/event-stream"]["schema"]
    # The schema's refs point into the document's components: validate with them alongside.
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "components": document["components"],
    }
    return jsonschema_rs.validator_for(root)


def event_data(text: str) -> list[str]:
    """The `data` of every event of an SSE body, `[DONE]` included."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            events.append("\n".join(data))
    return events


def stream_schema_errors(path: str, text: str) -> list[str]:
    """Every way the SSE body `text` of `path` departs from its documented event schema."""
    validator = _validator(path)
    errors = []
    for data in event_data(text):
        if data == "[DONE]":
            continue
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            errors.append(f"not JSON: {data[:200]}")
            continue
        errors += [f"{error.message} in {data[:200]}" for error in validator.iter_errors(event)]
    return errors
