"""`response_format` → the forced answer tool, beside the client's tools and tool_choice."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from stellara.errors import InvalidRequestError
from stellara.providers.anthropic.chat import build_messages_body
from stellara.providers.anthropic.tools import answer_tool_name
from stellara.schema.chat import ChatRequest, ResponseFormat

HI = [{"role": "user", "content": "The weather in Oslo?"}]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "degrees": {"type": "integer"}},
    "required": ["city", "degrees"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "Weather", "schema": SCHEMA, "strict": True},
}
JSON_OBJECT = {"type": "json_object"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
ANSWER = "stellara_answer_Weather"
DESCRIPTION = (
    "Give your final answer to the user by calling this tool: its input is the whole answer."
)


def wire_body(*, strict_tools: bool = False, **fields: Any) -> dict[str, Any]:
    request = msgspec.convert({"model": "public", "messages": HI, **fields}, ChatRequest)
    body = build_messages_body(
        request, "claude-sonnet-4-5", default_max_tokens=1024, strict_tools=strict_tools
    )
    result: dict[str, Any] = json.loads(body)
    return result


def refusal(**fields: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        wire_body(**fields)
    return caught.value


def test_json_schema_is_a_forced_tool_with_the_schema_as_input():
    body = wire_body(response_format=JSON_SCHEMA)
    assert body["tools"] == [{"name": ANSWER, "input_schema": SCHEMA, "description": DESCRIPTION}]
    assert body["tool_choice"] == {
        "type": "tool",
        "name": ANSWER,
        "disable_parallel_tool_use": True,
    }
    assert "system" not in body


def test_json_object_is_a_forced_tool_taking_any_object():
    body = wire_body(response_format=JSON_OBJECT)
    assert body["tools"] == [
        {"name": "stellara_answer", "input_schema": {"type": "object"}, "description": DESCRIPTION}
    ]
    assert body["tool_choice"]["name"] == "stellara_answer"


def test_json_schema_description_follows_the_answer_sentence():
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "Weather", "description": "Today's weather.", "schema": SCHEMA},
    }
    [tool] = wire_body(response_format=response_format)["tools"]
    assert tool["description"] == f"{DESCRIPTION}\n\nToday's weather."


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Weather", "stellara_answer_Weather"),
        ("my-schema_2", "stellara_answer_my-schema_2"),
        ("has space", "stellara_answer"),
        ("x" * 48, "stellara_answer_" + "x" * 48),
        ("x" * 49, "stellara_answer"),
    ],
)
def test_answer_tool_name_holds_the_schema_name_where_legal(name, expected):
    response_format = msgspec.convert(
        {"type": "json_schema", "json_schema": {"name": name}}, ResponseFormat
    )
    assert answer_tool_name(response_format) == expected


@pytest.mark.parametrize("response_format", [None, {"type": "text"}])
def test_answer_tool_name_is_none_for_text(response_format):
    converted = msgspec.convert(response_format, ResponseFormat | None)
    assert answer_tool_name(converted) is None


def test_schema_without_schema_takes_any_object():
    response_format = {"type": "json_schema", "json_schema": {"name": "Free"}}
    [tool] = wire_body(response_format=response_format)["tools"]
    assert tool["input_schema"] == {"type": "object"}


def test_schema_whose_root_is_not_an_object_is_refused():
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "List", "schema": {"type": "array", "items": {}}},
    }
    assert refusal(response_format=response_format).param == "response_format.json_schema.schema"


@pytest.mark.parametrize("choice", [None, "auto"])
def test_client_tools_beside_the_answer_tool_are_offered_with_any(choice):
    fields = {"tool_choice": choice} if choice else {}
    body = wire_body(response_format=JSON_SCHEMA, tools=[WEATHER], **fields)
    assert [tool["name"] for tool in body["tools"]] == ["get_weather", ANSWER]
    assert body["tool_choice"] == {"type": "any"}


def test_parallel_tool_calls_false_stays_with_the_answer_tool():
    body = wire_body(response_format=JSON_SCHEMA, tools=[WEATHER], parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_choice_none_forces_the_answer_and_keeps_client_tools_listed():
    body = wire_body(response_format=JSON_SCHEMA, tools=[WEATHER], tool_choice="none")
    assert [tool["name"] for tool in body["tools"]] == ["get_weather", ANSWER]
    assert body["tool_choice"]["type"] == "tool"
    assert body["tool_choice"]["name"] == ANSWER


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_a_required_tool_call_leaves_the_answer_tool_out(choice, expected):
    body = wire_body(response_format=JSON_SCHEMA, tools=[WEATHER], tool_choice=choice)
    assert [tool["name"] for tool in body["tools"]] == ["get_weather"]
    assert body["tool_choice"] == expected


def test_tool_choice_without_client_tools_still_forces_the_answer():
    body = wire_body(response_format=JSON_SCHEMA, tool_choice="required")
    assert body["tool_choice"]["name"] == ANSWER


def test_a_client_tool_named_as_the_answer_tool_is_refused():
    tool = {"type": "function", "function": {"name": ANSWER}}
    error = refusal(response_format=JSON_SCHEMA, tools=[WEATHER, tool])
    assert error.param == "tools[1].function.name"
    assert ANSWER in str(error)


def test_strict_is_not_sent_unless_the_provider_takes_it():
    body = wire_body(response_format=JSON_SCHEMA, tools=[WEATHER])
    assert all("strict" not in tool for tool in body["tools"])


def test_strict_is_sent_where_asked_when_the_provider_takes_it():
    loose = {"type": "function", "function": {"name": "get_time"}}
    body = wire_body(response_format=JSON_SCHEMA, tools=[WEATHER, loose], strict_tools=True)
    assert [tool.get("strict") for tool in body["tools"]] == [True, None, True]


def test_strict_false_schema_is_not_strict():
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "Weather", "schema": SCHEMA, "strict": False},
    }
    [tool] = wire_body(response_format=response_format, strict_tools=True)["tools"]
    assert "strict" not in tool
