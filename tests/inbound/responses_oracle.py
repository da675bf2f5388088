"""The oracle for Responses shapes: OpenAI's OpenAPI description and the official SDK's types.

`validate` is the one place that loads the spec. Until the vendored copy lands
(`tests/specs/openai_schema.py`, whose `validate(component, value)` this mirrors), it reads the
`openapi.json` that `STELLARA_OPENAI_SPEC` names and skips the test when that is unset.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from openai import omit
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent as SDKStreamEvent
from pydantic import TypeAdapter

from stellara.wire import responses as wire

SPEC_ENV = "STELLARA_OPENAI_SPEC"

# The spec's component for each event type the gateway sends.
EVENT_COMPONENTS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.refusal.delta": "ResponseRefusalDeltaEvent",
    "response.refusal.done": "ResponseRefusalDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "error": "ResponseErrorEvent",
}

_sdk_event = TypeAdapter[Any](SDKStreamEvent)


@functools.cache
def _components(path: str) -> dict[str, Any]:
    components: dict[str, Any] = json.loads(Path(path).read_text())["components"]
    return components


@functools.cache
def _validator(component: str) -> jsonschema_rs.Validator:
    path = os.environ.get(SPEC_ENV)
    if not path:
        pytest.skip(f"{SPEC_ENV} does not name OpenAI's openapi.json")
    document = {"$ref": f"#/components/schemas/{component}", "components": _components(path)}
    return jsonschema_rs.Draft202012Validator(document)


def validate(component: str, value: Any) -> None:
    """Fail unless `value` (JSON as Python builtins) is a valid `component` of the spec."""
    errors = [
        f"{'/'.join(map(str, error.instance_path)) or '(root)'}: {error.message}"
        for error in _validator(component).iter_errors(value)
    ]
    if errors:
        pytest.fail(f"not a valid {component}:\n" + "\n".join(errors))


def as_json(value: msgspec.Struct | list[Any]) -> Any:
    """`value` as the JSON the gateway sends, decoded to builtins."""
    return json.loads(msgspec.json.encode(value))


def check_response(response: wire.Response) -> SDKResponse:
    """Validate a response against the spec and parse it with the SDK's model."""
    body = as_json(response)
    validate("Response", body)
    return SDKResponse.model_validate(body)


def check_stream(events: list[wire.StreamEvent], text_format: type[Any] | None = None) -> list[Any]:
    """Validate every event (its own component and the stream event union), check the
    sequence numbers count from 0, and play the events through the SDK's stream state, as
    `client.responses.stream` does (parsing structured output into `text_format`); the
    SDK's events come back."""
    assert [event.sequence_number for event in events] == list(range(len(events)))
    state = ResponseStreamState[Any](input_tools=omit, text_format=text_format or omit)
    played: list[Any] = []
    for event in events:
        body = as_json(event)
        validate(EVENT_COMPONENTS[body["type"]], body)
        validate("ResponseStreamEvent", body)
        played.extend(state.handle_event(_sdk_event.validate_python(body)))
    return played
