import copy
from typing import Any

import pytest

from tests.specs.openai_schema import validate, validate_event

RESPONSE: dict[str, Any] = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response",
    "created_at": 1741476542,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-4.1-2025-04-14",
    "output": [
        {
            "type": "message",
            "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "In a grove…", "annotations": [], "logprobs": []}
            ],
        }
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 36,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 87,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 123,
    },
    "metadata": {},
}
"""A Response as the API reference's example shows it, minus its ``"user": null``: the spec types
``user`` as a string, not nullable, so the reference's own examples fail it (a spec quirk)."""
DELTA = {
    "type": "response.output_text.delta",
    "item_id": "msg_123",
    "output_index": 0,
    "content_index": 0,
    "delta": "In",
    "logprobs": [],
    "sequence_number": 4,
}


def test_validate_response_accepts_a_valid_response():
    validate("Response", RESPONSE)


def test_validate_response_names_the_field_inside_a_union():
    broken = copy.deepcopy(RESPONSE)
    del broken["output"][0]["content"][0]["text"]
    with pytest.raises(AssertionError) as caught:
        validate("Response", broken)
    # OutputItem and OutputMessageContent are oneOf unions: the message points into the message
    # branch, not at "not valid under any of the schemas".
    assert '$.output[0].content[0]: "text" is a required property' in str(caught.value)
    assert "not a valid Response" in str(caught.value)


def test_validate_response_reports_every_problem():
    broken = {**RESPONSE, "status": "done", "usage": {**RESPONSE["usage"], "total_tokens": "123"}}
    with pytest.raises(AssertionError) as caught:
        validate("Response", broken)
    message = str(caught.value)
    assert "$.status:" in message
    assert "$.usage.total_tokens:" in message


def test_validate_response_refuses_null_user_as_the_spec_says():
    with pytest.raises(AssertionError, match=r'\$\.user: null is not of type "string"'):
        validate("Response", {**RESPONSE, "user": None})


def test_validate_unknown_component_is_key_error():
    with pytest.raises(KeyError, match="NoSuchSchema"):
        validate("NoSuchSchema", {})


def test_validate_event_accepts_a_text_delta():
    validate_event(DELTA)
    validate("ResponseStreamEvent", DELTA)


def test_validate_event_checks_the_schema_of_its_type():
    broken = {key: value for key, value in DELTA.items() if key != "sequence_number"}
    with pytest.raises(AssertionError, match=r'\$: "sequence_number" is a required property'):
        validate_event(broken)


def test_validate_event_unknown_type_fails():
    with pytest.raises(
        AssertionError, match=r"'response\.output_text\.delt' is not a stream event"
    ):
        validate_event({**DELTA, "type": "response.output_text.delt"})
