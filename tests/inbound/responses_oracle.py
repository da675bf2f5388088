"""The oracle for Responses shapes: OpenAI's OpenAPI description (vendored in `tests/specs/`)
and the official SDK's types."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from openai import omit
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent as SDKStreamEvent
from pydantic import TypeAdapter

from stellara.wire import responses as wire
from tests.specs.openai_schema import validate

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
