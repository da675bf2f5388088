"""The Responses ⇄ canonical translators for requests, whole answers and stored conversations.

Every response and stored item made here is validated against OpenAI's OpenAPI description
and parsed with the official SDK's models (`responses_oracle`).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from stellara.errors import InvalidRequestError
from stellara.inbound import responses as inbound
from stellara.inbound.bounds import check_bounds
from stellara.inbound.responses import conversation, input_items, to_chat_request, to_response
from stellara.schema.chat import (
    AssistantMessage,
    ChatCompletion,
    FunctionCall,
    Message,
    ToolCall,
    UserMessage,
    completion_decoder,
)
from stellara.wire import responses as wire
from tests.inbound.responses_oracle import as_json, check_response
from tests.specs.openai_schema import validate

RESPONSE_ID = "resp_" + "0" * 32
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


def request(**fields: Any) -> wire.ResponsesRequest:
    body: dict[str, Any] = {"model": "m", "input": "hi"}
    body.update(fields)
    return wire.request_decoder.decode(msgspec.json.encode(body))


def items_of(req: wire.ResponsesRequest) -> list[wire.InputItem]:
    return input_items(req, response_id=RESPONSE_ID)


def translate(history: list[Message] | None = None, **fields: Any) -> dict[str, Any]:
    """The canonical request, as JSON, for a Responses request with `fields`."""
    req = request(**fields)
    chat = to_chat_request(req, items_of(req), history or [])
    out: dict[str, Any] = msgspec.to_builtins(chat)
    return out


def refused(**fields: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        translate(**fields)
    return caught.value


def completion(message: dict[str, Any], finish: str = "stop", **extra: Any) -> ChatCompletion:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "provider-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        **extra,
    }
    return completion_decoder.decode(msgspec.json.encode(body))


def answer(
    message: dict[str, Any], finish: str = "stop", *, req: wire.ResponsesRequest | None = None
) -> wire.Response:
    return to_response(
        completion(message, finish),
        req or request(),
        response_id=RESPONSE_ID,
        created_at=100,
        store=True,
        completed_at=101,
    )


def call(call_id: str, name: str = "get_weather", arguments: str = "{}") -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def output(call_id: str, result: Any = "sunny") -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": result}


# ---------------------------------------------------------------- input items


def test_input_items_string_is_one_user_message_with_an_id() -> None:
    items = items_of(request(input="hello"))
    assert as_json(items) == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hello"}],
            "id": items[0].id,
            "status": "completed",
        }
    ]
    assert re.fullmatch(r"msg_[0-9a-f]{32}", items[0].id or "")


def test_input_items_keep_given_ids_and_derive_missing_ones_stably() -> None:
    req = request(
        input=[
            {"role": "user", "content": "a", "id": "msg_client"},
            {"role": "user", "content": "b"},
            call("call_1"),
            output("call_1"),
        ]
    )
    first, second = items_of(req), items_of(req)
    ids = [item.id for item in first]
    assert ids == [item.id for item in second]
    assert ids[0] == "msg_client"
    assert [(i or "").split("_")[0] for i in ids[1:]] == ["msg", "fc", "fco"]
    assert len(set(ids)) == 4
    other = input_items(req, response_id="resp_" + "1" * 32)
    assert ids[1:] != [item.id for item in other][1:]


def test_input_items_are_stored_in_the_shape_openai_lists_them() -> None:
    req = request(
        input=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"role": "assistant", "content": "hello"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "input_text", "text": "x"}],
            },
            call("call_1"),
            output("call_1"),
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ]
    )
    items = as_json(items_of(req))
    assert items[2]["content"] == [
        {"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}
    ]
    assert items[3]["content"][0]["type"] == "output_text"
    for item in items:
        validate("ItemResource", item)
    assert wire.items_decoder.decode(msgspec.json.encode(items)) == items_of(req)


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "web_search_call", "id": "ws_1"}, "input[0].type"),
        (
            {"role": "user", "content": [{"type": "input_text", "text": 3}]},
            "input[0].content[0].text",
        ),
        ({"role": "user", "content": [{"type": "input_audio"}]}, "input[0].content[0].type"),
        ({"role": "robot", "content": "x"}, "input[0].role"),
        ({"type": "function_call_output", "output": "x"}, "input[0].call_id"),
        ({"type": "item_reference", "id": "msg_1"}, "input[0]"),
        ("just a string", "input[0]"),
    ],
)
def test_input_items_refuse_bad_items_naming_the_field(item: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        items_of(request(input=[item]))
    assert caught.value.param == param
    assert caught.value.status_code == 400


def test_input_items_refuse_more_content_parts_than_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("stellara.inbound.responses._items.MAX_CONTENT_PARTS", 2)
    parts = [{"type": "input_text", "text": "x"}] * 3
    with pytest.raises(InvalidRequestError) as caught:
        items_of(request(input=[{"role": "user", "content": parts}]))
    assert caught.value.code == "array_above_max_length"


def test_bounds_refuse_too_many_items_and_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stellara.inbound.bounds.MAX_MESSAGES", 2)
    monkeypatch.setattr("stellara.inbound.bounds.MAX_TOOLS", 1)
    check_bounds(request(input=["a", "b"], tools=[WEATHER]))
    for fields, param in (
        ({"input": ["a", "b", "c"]}, "input"),
        ({"tools": [WEATHER] * 2}, "tools"),
    ):
        with pytest.raises(InvalidRequestError) as caught:
            check_bounds(request(**fields))
        assert caught.value.param == param


# ---------------------------------------------------------------- request


def test_request_string_input_is_one_user_message() -> None:
    out = translate(input="hello")
    assert out["messages"] == [{"role": "user", "content": "hello"}]
    assert out["model"] == "m"


def test_request_instructions_come_first_then_history_then_the_turn() -> None:
    history: list[Message] = [UserMessage(content="before"), AssistantMessage(content="ok")]
    out = translate(history, instructions="Be brief.", input="now")
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "before"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "now"},
    ]


def test_request_roles_and_parts() -> None:
    out = translate(
        input=[
            {"role": "developer", "content": "rules"},
            {
                "role": "system",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://x/cat.png", "detail": "auto"},
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,AA",
                        "detail": "low",
                    },
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,JVB",
                        "filename": "a.pdf",
                    },
                    {"type": "input_file", "file_id": "file-1"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "one ", "annotations": []},
                    {"type": "output_text", "text": "two"},
                ],
            },
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        ]
    )
    assert out["messages"] == [
        {"role": "developer", "content": "rules"},
        {
            "role": "system",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AA", "detail": "low"},
                },
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVB", "filename": "a.pdf"},
                },
                {"type": "file", "file": {"file_id": "file-1"}},
            ],
        },
        {"role": "assistant", "content": "one two"},
        {"role": "assistant", "content": "", "refusal": "no"},
    ]


@pytest.mark.parametrize(
    ("content", "param"),
    [
        ([{"type": "input_image", "file_id": "file-1"}], "input[0].content[0].image_url"),
        (
            [{"type": "input_image", "image_url": "https://x", "detail": "original"}],
            "input[0].content[0].detail",
        ),
        ([{"type": "input_file", "file_url": "https://x/a.pdf"}], "input[0].content[0].file_url"),
        ([{"type": "input_file", "filename": "a.pdf"}], "input[0].content[0].file_data"),
        ([{"type": "output_text", "text": "x"}], "input[0].content[0].type"),
    ],
)
def test_request_refuses_user_parts_it_cannot_send(content: list[Any], param: str) -> None:
    assert refused(input=[{"role": "user", "content": content}]).param == param


def test_request_refuses_media_in_system_and_assistant_messages() -> None:
    image = {"type": "input_image", "image_url": "https://x"}
    assert (
        refused(input=[{"role": "system", "content": [image]}]).param == "input[0].content[0].type"
    )
    assert (
        refused(input=[{"role": "assistant", "content": [image]}]).param
        == "input[0].content[0].type"
    )


def test_request_function_calls_join_the_assistant_message_before_them() -> None:
    out = translate(
        input=[
            {"role": "user", "content": "weather?"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "hm"}],
            },
            {"role": "assistant", "content": "Checking."},
            call("call_1", arguments='{"city":"Oslo"}'),
            call("call_2", arguments='{"city":"Rome"}'),
            output("call_1", "cold"),
            output("call_2", [{"type": "input_text", "text": "warm"}]),
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "content": "cold", "tool_call_id": "call_1"},
        {"role": "tool", "content": "warm", "tool_call_id": "call_2"},
    ]


def test_request_media_in_tool_outputs_follow_the_tool_messages() -> None:
    image = {"type": "input_image", "image_url": "https://x/chart.png"}
    out = translate(
        input=[
            call("call_1"),
            call("call_2"),
            output("call_1", [{"type": "input_text", "text": "see"}, image]),
            output("call_2", "done"),
            {"role": "user", "content": "and?"},
        ]
    )
    assert [m["role"] for m in out["messages"]] == ["assistant", "tool", "tool", "user", "user"]
    assert out["messages"][3] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "https://x/chart.png"}}],
    }


def test_request_function_call_output_must_answer_an_earlier_call() -> None:
    error = refused(input=[output("call_9")])
    assert error.param == "input[0].call_id"
    assert "call_9" in error.message
    assert refused(input=[output("call_1"), call("call_1")]).param == "input[0].call_id"


def test_request_function_call_output_answers_a_call_in_the_history() -> None:
    history: list[Message] = [
        UserMessage(content="weather?"),
        AssistantMessage(
            tool_calls=[ToolCall("call_1", "function", FunctionCall("get_weather", "{}"))]
        ),
    ]
    out = translate(history, input=[output("call_1")])
    assert out["messages"][-1] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


def test_request_needs_input() -> None:
    assert refused(input=[]).param == "input"
    assert translate([UserMessage(content="again")], input=[])["messages"] == [
        {"role": "user", "content": "again"}
    ]


def test_request_parameters_map_to_their_canonical_fields() -> None:
    out = translate(
        max_output_tokens=100,
        temperature=0.5,
        top_p=0.9,
        user="u1",
        safety_identifier="s1",
        prompt_cache_key="k1",
        service_tier="flex",
        reasoning={"effort": "low", "summary": "auto"},
        text={"verbosity": "low"},
        metadata={"run": "7"},
        store=True,
        previous_response_id="resp_x",
        truncation="disabled",
        max_tool_calls=3,
        include=["reasoning.encrypted_content", "message.input_image.image_url"],
        stream_options={"include_obfuscation": False},
        background=False,
        conversation=None,
    )
    assert out == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "user": "u1",
        "reasoning_effort": "low",
        "verbosity": "low",
        "service_tier": "flex",
        "prompt_cache_key": "k1",
        "safety_identifier": "s1",
    }


def test_request_stream_asks_for_usage() -> None:
    out = translate(stream=True)
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_request_text_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = translate(
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}}
    )
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    assert translate(text={"format": {"type": "json_object"}})["response_format"] == {
        "type": "json_object"
    }
    assert "response_format" not in translate(text={"format": {"type": "text"}})


def test_request_function_tools_keep_strict() -> None:
    out = translate(
        tools=[WEATHER, {**WEATHER, "name": "other", "strict": True}], parallel_tool_calls=False
    )
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["parameters"],
                "strict": False,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "other",
                "description": "Weather for a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        },
    ]
    assert out["parallel_tool_calls"] is False


def test_request_tool_options_without_tools_are_not_sent() -> None:
    out = translate(tool_choice="auto", parallel_tool_calls=True)
    assert "tool_choice" not in out
    assert "parallel_tool_calls" not in out


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_request_tool_choice(choice: Any, expected: Any) -> None:
    assert translate(tools=[WEATHER], tool_choice=choice)["tool_choice"] == expected


def test_request_allowed_tools_narrow_the_tools_sent() -> None:
    out = translate(
        tools=[WEATHER, {**WEATHER, "name": "other"}],
        tool_choice={
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "other"}],
        },
    )
    assert [tool["function"]["name"] for tool in out["tools"]] == ["other"]
    assert out["tool_choice"] == "required"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [WEATHER, {"type": "mcp", "server_label": "x"}]}, "tools[1].type"),
        ({"tools": [{"type": "function", "parameters": {}}]}, "tools[0].name"),
        ({"tools": [{**WEATHER, "defer_loading": True}]}, "tools[0].defer_loading"),
        ({"tools": [{**WEATHER, "output_schema": {}}]}, "tools[0].output_schema"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}},
            "tool_choice.name",
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "mcp"}],
                },
            },
            "tool_choice.tools[0]",
        ),
    ],
)
def test_request_refuses_tools_it_cannot_run(fields: dict[str, Any], param: str) -> None:
    assert refused(**fields).param == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"context_management": [{"type": "compaction"}]}, "context_management"),
        ({"moderation": {"model": "x"}}, "moderation"),
        ({"prompt_cache_options": {"ttl": "12h"}}, "prompt_cache_options"),
        ({"prompt_cache_retention": "24h"}, "prompt_cache_retention"),
        ({"truncation": "auto"}, "truncation"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"reasoning": {"mode": "pro"}}, "reasoning.mode"),
        ({"reasoning": {"context": "all_turns"}}, "reasoning.context"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
    ],
)
def test_request_refuses_parameters_without_an_equivalent(
    fields: dict[str, Any], param: str
) -> None:
    error = refused(**fields)
    assert error.param == param
    assert error.message.startswith(f"{param}: ")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"frobnicate": 1}, "frobnicate"),
        ({"max_output_tokens": 8}, "max_output_tokens"),
        ({"include": ["everything"]}, "include[0]"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "schema"),
        ({"reasoning": {"effort": "low", "extra": 1}}, "extra"),
    ],
)
def test_request_decoder_names_unknown_or_invalid_fields(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(named)):
        request(**fields)


# ---------------------------------------------------------------- response


def test_response_text_answer() -> None:
    req = request(instructions="Be brief.", metadata={"run": "7"}, temperature=0.2, user="u1")
    response = answer({"content": "Hello!"}, req=req)
    sdk = check_response(response)
    assert sdk.output_text == "Hello!"
    body = as_json(response)
    assert body["status"] == "completed"
    assert body["completed_at"] == 101
    assert body["model"] == "m"
    assert body["instructions"] == "Be brief."
    assert body["metadata"] == {"run": "7"}
    assert body["temperature"] == 0.2
    assert body["user"] == "u1"
    assert body["store"] is True
    assert body["tool_choice"] == "auto"
    assert body["text"] == {"format": {"type": "text"}}
    assert body["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    [message] = body["output"]
    assert re.fullmatch(r"msg_[0-9a-f]{32}", message["id"])
    assert message["content"] == [
        {"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}
    ]
    assert wire.response_decoder.decode(msgspec.json.encode(response)) == response


def test_response_tool_calls_are_function_call_items() -> None:
    req = request(tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"})
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
    ]
    response = answer({"content": None, "tool_calls": calls}, "tool_calls", req=req)
    sdk = check_response(response)
    assert sdk.status == "completed"
    body = as_json(response)
    assert [(item["type"], item["call_id"], item["status"]) for item in body["output"]] == [
        ("function_call", "call_a", "completed"),
        ("function_call", "call_b", "completed"),
    ]
    assert body["output"][0]["arguments"] == '{"city":"Oslo"}'
    assert body["output"][0]["id"].startswith("fc_")
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": WEATHER["parameters"],
            "strict": False,
            "description": "Weather for a city",
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_response_cut_short_is_incomplete(finish: str, reason: str) -> None:
    response = answer({"content": "Hel"}, finish)
    check_response(response)
    assert response.status == "incomplete"
    assert response.incomplete_details == wire.IncompleteDetails(reason)  # type: ignore[arg-type]
    assert response.completed_at is None
    assert [item.status for item in response.output] == ["incomplete"]


def test_response_refusal_is_a_refusal_part() -> None:
    response = answer({"content": None, "refusal": "I can't."})
    check_response(response)
    assert as_json(response)["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't."}]


def test_response_usage_details_and_service_tier() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    body = completion({"content": "x"}, usage=usage, service_tier="default")
    response = to_response(body, request(), response_id=RESPONSE_ID, created_at=1, store=False)
    check_response(response)
    out = as_json(response)
    assert out["usage"]["input_tokens_details"]["cached_tokens"] == 4
    assert out["usage"]["input_tokens_details"]["cache_write_tokens"] == 3
    assert out["usage"]["output_tokens_details"]["reasoning_tokens"] == 2
    assert out["service_tier"] == "default"
    assert out["store"] is False
    unknown_tier = completion({"content": "x"}, service_tier="standard")
    response = to_response(
        unknown_tier, request(), response_id=RESPONSE_ID, created_at=1, store=True
    )
    assert response.service_tier is None


def test_response_echoes_structured_output_and_reasoning_requests() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    req = request(
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema}},
        reasoning={"effort": "high"},
        previous_response_id="resp_prev",
        max_output_tokens=64,
    )
    response = answer({"content": '{"a": "b"}'}, req=req)
    check_response(response)
    body = as_json(response)
    assert body["text"]["format"]["name"] == "thing"
    assert body["reasoning"] == {"effort": "high"}
    assert body["previous_response_id"] == "resp_prev"
    assert body["max_output_tokens"] == 64


def test_response_without_choices_is_empty() -> None:
    empty = completion_decoder.decode(
        b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[]}'
    )
    response = to_response(empty, request(), response_id=RESPONSE_ID, created_at=1, store=True)
    check_response(response)
    assert response.output == []
    assert "usage" not in as_json(response)


# ---------------------------------------------------------------- stored conversation


def test_conversation_stores_the_turn_and_the_answer_but_not_instructions() -> None:
    req = request(instructions="Be brief.", input="weather in Oslo?", tools=[WEATHER])
    items = items_of(req)
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ]
    response = answer({"content": "Let me check.", "tool_calls": calls}, "tool_calls", req=req)
    stored = conversation([], items, response)
    assert msgspec.to_builtins(stored) == [
        {"role": "user", "content": "weather in Oslo?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
    ]
    # The next turn answers the call through previous_response_id's history.
    out = translate(stored, input=[output("call_a", "cold")], previous_response_id=RESPONSE_ID)
    assert out["messages"][-1] == {"role": "tool", "content": "cold", "tool_call_id": "call_a"}


def test_conversation_grows_from_the_history() -> None:
    history: list[Message] = [UserMessage(content="one"), AssistantMessage(content="1")]
    req = request(input="two")
    stored = conversation(history, items_of(req), answer({"content": "2"}, req=req))
    assert [m.content for m in stored] == ["one", "1", "two", "2"]


def test_public_names_are_sorted() -> None:
    assert inbound.__all__ == sorted(inbound.__all__)
