"""Canonical requests → Anthropic Messages requests, and Anthropic messages → completions."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from stellara.errors import InvalidRequestError, UpstreamProtocolError
from stellara.providers.anthropic.chat import (
    build_messages_body,
    completion_id,
    finish_reason_of,
    parse_message,
)
from stellara.schema.chat import ChatRequest

HI = [{"role": "user", "content": "hi"}]
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
    "AAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def wire_body(
    messages: list[Any] | None = None,
    *,
    allows_sampling: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    request = msgspec.convert(
        {"model": "public", "messages": messages or HI, **fields}, ChatRequest
    )
    body = build_messages_body(
        request, "claude-sonnet-4-5", default_max_tokens=4096, allows_sampling=allows_sampling
    )
    result: dict[str, Any] = json.loads(body)
    return result


def refusal(messages: list[Any] | None = None, **fields: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        wire_body(messages, **fields)
    return caught.value


# ---------------------------------------------------------------- request


def test_request_minimal_has_model_messages_and_default_max_tokens():
    assert wire_body() == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4096,
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 50}, 50),
        ({"max_tokens": 100, "max_completion_tokens": 50}, 50),
    ],
)
def test_request_max_tokens_prefers_max_completion_tokens(fields, expected):
    assert wire_body(**fields)["max_tokens"] == expected


def test_request_system_and_developer_messages_become_top_level_system():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
    ]
    body = wire_body(messages)
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"])])
def test_request_stop_becomes_stop_sequences(stop, expected):
    body = wire_body(stop=stop)
    assert body["stop_sequences"] == expected
    assert "stop" not in body


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
def test_request_temperature_is_sent_as_given(temperature):
    # Above 1 the parameter policy refuses or drops it before the translator (tests/pipeline).
    assert wire_body(temperature=temperature)["temperature"] == temperature


def test_request_sampling_is_dropped_when_the_api_version_refuses_it():
    body = wire_body(temperature=0.5, top_p=0.9, allows_sampling=False)
    assert "temperature" not in body
    assert "top_p" not in body


def test_request_user_becomes_metadata_user_id():
    assert wire_body(user="u-42")["metadata"] == {"user_id": "u-42"}
    assert wire_body(safety_identifier="s-1")["metadata"] == {"user_id": "s-1"}


def test_request_parameters_anthropic_lacks_are_not_sent():
    body = wire_body(
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        logit_bias={"1": 1.0},
        logprobs=True,
        top_logprobs=2,
        n=1,
        store=True,
        service_tier="flex",
        stream_options={"include_usage": True},
    )
    assert set(body) == {"model", "messages", "max_tokens"}


def test_request_n_above_one_is_invalid():
    error = refusal(n=2)
    assert error.param == "n"
    assert error.status_code == 400


def test_request_stream_flag_is_sent():
    assert wire_body(stream=True)["stream"] is True


def test_request_consecutive_same_role_messages_are_merged():
    messages = [
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "three"},
        {"role": "assistant", "content": "four"},
    ]
    assert wire_body(messages)["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}],
        },
    ]


def test_request_conversation_starting_with_assistant_is_sent_as_is():
    messages = [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "hi"}]
    assert wire_body(messages)["messages"] == [
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "hi"},
    ]


def test_request_empty_messages_and_text_parts_are_left_out():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "x"}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "y"},
    ]
    assert wire_body(messages)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}
    ]


def test_request_images_become_base64_and_url_sources():
    content = [
        {"type": "text", "text": "Compare these."},
        {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
        },
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    [message] = wire_body([{"role": "user", "content": content}])["messages"]
    assert message["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "url",
    ["data:image/png,notbase64", "data:;base64,AAAA", "data:image/png;base64,", "ftp://x/y.png"],
)
def test_request_bad_image_url_is_invalid(url):
    content = [{"type": "image_url", "image_url": {"url": url}}]
    error = refusal([{"role": "user", "content": content}])
    assert error.param == "messages[0].content[0]"


def test_request_pdf_file_becomes_document_block():
    file = {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}
    [message] = wire_body([{"role": "user", "content": [{"type": "file", "file": file}]}])[
        "messages"
    ]
    assert message["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "a.pdf",
        }
    ]


@pytest.mark.parametrize(
    "part",
    [
        {"type": "file", "file": {"file_id": "file-abc"}},
        {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ],
)
def test_request_unsupported_parts_are_invalid(part):
    error = refusal([{"role": "user", "content": [part]}])
    assert error.param == "messages[0].content[0]"


def tool_call(arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    function = {"name": "get_weather", "arguments": arguments}
    return {"id": call_id, "type": "function", "function": function}


def test_request_tool_round_trip_becomes_tool_use_and_tool_result():
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [tool_call('{"city": "Paris"}'), tool_call('{"city":"Rome"}', "call_2")],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"role": "user", "content": "Thanks, which is warmer?"},
    ]
    assert wire_body(messages)["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "21C"}],
                },
                {"type": "text", "text": "Thanks, which is warmer?"},
            ],
        },
    ]


def test_request_empty_tool_result_is_sent_without_content():
    messages = [
        *HI,
        {"role": "assistant", "tool_calls": [tool_call("{}")]},
        {"role": "tool", "tool_call_id": "call_1", "content": ""},
    ]
    assert wire_body(messages)["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "call_1"}],
    }


def test_request_empty_tool_arguments_become_empty_input():
    messages = [*HI, {"role": "assistant", "tool_calls": [tool_call("")]}]
    assert wire_body(messages)["messages"][1]["content"][0]["input"] == {}


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]", "42"])
def test_request_tool_arguments_not_a_json_object_are_invalid(arguments):
    messages = [*HI, {"role": "assistant", "tool_calls": [tool_call(arguments)]}]
    error = refusal(messages)
    assert error.param == "messages[1].tool_calls[0].function.arguments"


def test_request_function_messages_are_invalid():
    messages = [*HI, {"role": "function", "name": "f", "content": "x"}]
    assert refusal(messages).param == "messages[1]"


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


def test_request_tools_become_input_schemas():
    assert wire_body(tools=[WEATHER, CLOCK])["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "description": "Current weather.",
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {"type": "tool", "name": "get_weather"},
        ),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
        ({"parallel_tool_calls": True}, None),
    ],
)
def test_request_tool_choice_maps_to_anthropic(fields, expected):
    assert wire_body(tools=[WEATHER], **fields).get("tool_choice") == expected


def test_request_tool_choice_without_tools_is_not_sent():
    body = wire_body(tool_choice="required")
    assert "tool_choice" not in body
    assert "tools" not in body


def test_request_text_format_changes_nothing():
    assert wire_body(response_format={"type": "text"}) == wire_body()


# ---------------------------------------------------------------- response

# From the API reference's example response.
TEXT_MESSAGE = b"""{
  "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
  "type": "message",
  "role": "assistant",
  "content": [{"type": "text", "text": "Hi! My name is Claude."}],
  "model": "claude-sonnet-4-5-20250929",
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {
    "input_tokens": 2095,
    "output_tokens": 503,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "service_tier": "standard"
  }
}"""

# From the tool use guide: Claude says what it will do, then calls the tool.
TOOL_MESSAGE = b"""{
  "id": "msg_01Aq9w938a90dw8q",
  "model": "claude-sonnet-4-5",
  "stop_reason": "tool_use",
  "stop_sequence": null,
  "role": "assistant",
  "type": "message",
  "content": [
    {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
    {
      "type": "tool_use",
      "id": "toolu_01A09q90qw90lq917835lq9",
      "name": "get_weather",
      "input": {"location": "San Francisco, CA", "unit": "celsius"}
    }
  ],
  "usage": {"input_tokens": 384, "output_tokens": 85}
}"""

# From the extended thinking guide.
THINKING_MESSAGE = b"""{
  "id": "msg_01ThinK",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5",
  "content": [
    {"type": "thinking", "thinking": "Let me analyze this step by step...", "signature": "WaU"},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
    {"type": "text", "text": "Based on my analysis..."}
  ],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {"input_tokens": 50, "output_tokens": 300}
}"""


def test_response_text_message_becomes_completion():
    completion = parse_message(TEXT_MESSAGE, "claude", created=1_700_000_000)
    assert json.loads(msgspec.json.encode(completion)) == {
        "id": "chatcmpl-013Zva2CMHLNnXjNJJKqJ2EF",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi! My name is Claude.",
                    "refusal": None,
                },
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 2095,
            "completion_tokens": 503,
            "total_tokens": 2598,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_response_tool_use_becomes_tool_calls():
    completion = parse_message(TOOL_MESSAGE, "claude", created=1)
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the current weather in San Francisco for you."
    [call] = choice.message.tool_calls or []
    assert call.id == "toolu_01A09q90qw90lq917835lq9"
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"location":"San Francisco, CA","unit":"celsius"}'


def test_response_tool_use_only_has_null_content():
    body = json.loads(TOOL_MESSAGE)
    body["content"] = body["content"][1:]
    completion = parse_message(json.dumps(body).encode(), "claude", created=1)
    assert completion.choices[0].message.content is None


def test_response_thinking_blocks_become_reasoning_content_and_thinking_blocks():
    completion = parse_message(THINKING_MESSAGE, "claude", created=1)
    message = completion.choices[0].message
    assert message.content == "Based on my analysis..."
    assert message.reasoning_content == "Let me analyze this step by step..."
    assert msgspec.to_builtins(message.thinking_blocks) == [
        {"type": "thinking", "thinking": "Let me analyze this step by step...", "signature": "WaU"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
    ]


def test_response_usage_counts_cached_input_as_prompt_tokens():
    body = json.loads(TEXT_MESSAGE)
    body["usage"] = {
        "input_tokens": 100,
        "output_tokens": 10,
        "cache_read_input_tokens": 50,
        "cache_creation_input_tokens": 25,
    }
    usage = parse_message(json.dumps(body).encode(), "claude", created=1).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (175, 10, 185)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 50
    assert usage.prompt_tokens_details.cache_write_tokens == 25


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_response_stop_reason_maps_to_finish_reason(stop_reason, finish_reason):
    assert finish_reason_of(stop_reason, has_tool_calls=True) == finish_reason


def test_response_tool_use_without_client_tool_calls_is_a_stop():
    assert finish_reason_of("tool_use", has_tool_calls=False) == "stop"


def test_response_stop_sequence_is_the_choices_stop_reason():
    body = json.loads(TEXT_MESSAGE)
    body.update(stop_reason="stop_sequence", stop_sequence="###")
    completion = parse_message(json.dumps(body).encode(), "claude", created=1)
    encoded = json.loads(msgspec.json.encode(completion))
    assert encoded["choices"][0]["finish_reason"] == "stop"
    assert encoded["choices"][0]["stop_reason"] == "###"


def test_response_without_stop_sequence_has_no_stop_reason():
    encoded = json.loads(msgspec.json.encode(parse_message(TEXT_MESSAGE, "claude", created=1)))
    assert "stop_reason" not in encoded["choices"][0]


def answer_message(*blocks: dict[str, Any], stop_reason: str = "tool_use") -> bytes:
    body = json.loads(TOOL_MESSAGE)
    body.update(content=list(blocks), stop_reason=stop_reason)
    return json.dumps(body).encode()


ANSWER_USE = {
    "type": "tool_use",
    "id": "toolu_01",
    "name": "stellara_answer_weather",
    "input": {"city": "Oslo", "degrees": 7},
}


def test_response_answer_tool_input_is_the_text_content():
    body = answer_message(ANSWER_USE)
    completion = parse_message(body, "claude", created=1, answer_tool="stellara_answer_weather")
    [choice] = completion.choices
    assert choice.message.content == '{"city":"Oslo","degrees":7}'
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"


def test_response_answer_tool_beside_client_tool_calls_keeps_them_tool_calls():
    client_use = {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {}}
    body = answer_message(client_use, ANSWER_USE)
    completion = parse_message(body, "claude", created=1, answer_tool="stellara_answer_weather")
    [choice] = completion.choices
    assert choice.message.content == '{"city":"Oslo","degrees":7}'
    assert [call.function.name for call in choice.message.tool_calls or []] == ["get_weather"]
    assert choice.finish_reason == "tool_calls"


def test_response_answer_tool_cut_by_max_tokens_is_length():
    body = answer_message(ANSWER_USE, stop_reason="max_tokens")
    completion = parse_message(body, "claude", created=1, answer_tool="stellara_answer_weather")
    assert completion.choices[0].finish_reason == "length"


def test_response_tool_of_the_answer_name_is_a_tool_call_without_response_format():
    completion = parse_message(answer_message(ANSWER_USE), "claude", created=1)
    [choice] = completion.choices
    assert choice.message.content is None
    assert choice.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"id": "msg_1"}', b'{"type": "error", "error": {"type": "x"}}'],
)
def test_response_invalid_message_is_protocol_error(body):
    with pytest.raises(UpstreamProtocolError) as caught:
        parse_message(body, "claude", created=1)
    assert caught.value.provider == "claude"


def test_completion_id_replaces_msg_prefix():
    assert completion_id("msg_01ABC") == "chatcmpl-01ABC"
    assert completion_id("other") == "chatcmpl-other"
