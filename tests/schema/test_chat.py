import json
from typing import Any

import msgspec
import pytest

from stellara import _json
from stellara.schema.chat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    NamedToolChoice,
    ResponseMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolMessage,
    UserMessage,
    chunk_decoder,
    completion_decoder,
    request_decoder,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}

FULL_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief.", "name": "sys"},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://x.test/a.png", "detail": "high"},
                },
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
            "name": "alice",
        },
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "It is 21 degrees."},
    ],
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.2,
    "top_p": 0.9,
    "n": 1,
    "stop": ["\n\n", "END"],
    "max_tokens": 100,
    "max_completion_tokens": 200,
    "presence_penalty": -0.5,
    "frequency_penalty": 1.5,
    "logit_bias": {"50256": -100.0},
    "logprobs": True,
    "top_logprobs": 3,
    "seed": 42,
    "user": "user-123",
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "weather",
            "description": "A forecast.",
            "schema": {"type": "object", "properties": {"temp": {"type": "number"}}},
            "strict": True,
        },
    },
    "reasoning_effort": "low",
    "service_tier": "auto",
    "store": False,
    "metadata": {"team": "blue"},
    "modalities": ["text"],
    "prediction": {"type": "content", "content": "It is"},
    "prompt_cache_key": "pck",
    "safety_identifier": "sid",
}

USER_ONLY: list[dict[str, Any]] = [{"role": "user", "content": "Hi"}]


def roundtrip(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_json.encode(request_decoder.decode(json.dumps(body))))
    return result


def test_request_full_openai_request_roundtrips_unchanged():
    assert roundtrip(FULL_REQUEST) == FULL_REQUEST


def test_request_decodes_into_typed_parts():
    request = request_decoder.decode(json.dumps(FULL_REQUEST))
    user = request.messages[2]
    assert isinstance(user, UserMessage)
    assert isinstance(user.content, list)
    text, image, _ = user.content
    assert isinstance(text, TextPart)
    assert isinstance(image, ImagePart)
    assert image.image_url.detail == "high"
    assistant = request.messages[3]
    assert isinstance(assistant, AssistantMessage)
    assert assistant.tool_calls == [
        ToolCall("call_1", "function", FunctionCall("get_weather", '{"city":"Paris"}'))
    ]
    tool = request.messages[4]
    assert isinstance(tool, ToolMessage)
    assert tool.tool_call_id == "call_1"
    assert isinstance(request.tool_choice, NamedToolChoice)
    assert request.tool_choice.function.name == "get_weather"
    assert request.tools is not None
    assert isinstance(request.tools[0], Tool)
    assert request.response_format is not None
    assert request.response_format.json_schema is not None
    assert request.response_format.json_schema.schema == {
        "type": "object",
        "properties": {"temp": {"type": "number"}},
    }


@pytest.mark.parametrize("choice", ["none", "auto", "required"])
def test_request_tool_choice_string_roundtrips(choice):
    body = {"model": "m", "messages": USER_ONLY, "tools": [WEATHER_TOOL], "tool_choice": choice}
    assert roundtrip(body) == body


def test_request_stop_string_roundtrips():
    body = {"model": "m", "messages": USER_ONLY, "stop": "END"}
    assert roundtrip(body) == body


def test_request_audio_and_file_parts_roundtrip():
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "file-1"}},
                ],
            }
        ],
        "audio": {"voice": "alloy", "format": "mp3"},
        "modalities": ["text", "audio"],
    }
    assert roundtrip(body) == body


def test_request_deprecated_function_message_roundtrips():
    body = {
        "model": "m",
        "messages": [
            {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
            {"role": "function", "name": "f", "content": "ok"},
        ],
    }
    assert roundtrip(body) == body


def test_request_minimal_emits_no_absent_fields():
    encoded = json.loads(_json.encode(ChatRequest(model="m", messages=[UserMessage("Hi")])))
    assert encoded == {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


def test_request_null_fields_are_not_emitted():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "Hi", "name": None},
            {"role": "assistant", "content": None, "tool_calls": None, "refusal": None},
        ],
        "temperature": None,
        "stream": None,
        "tools": None,
        "tool_choice": None,
        "response_format": None,
        "stream_options": {"include_usage": None},
    }
    assert roundtrip(body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant"}],
        "stream_options": {},
    }


def test_request_unknown_top_level_fields_kept_raw_nested_ones_ignored():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi", "mood": "happy"}],
        "routing": {"strategy": "cost"},
        "brand_new_param": [1, 2],
        "temperature": 0.5,
    }
    request = request_decoder.decode(json.dumps(body))
    assert request.model == "m"
    assert request.temperature == 0.5
    assert request.messages == [UserMessage(content="Hi")]
    unknown = request.unknown_params or {}
    assert {name: json.loads(bytes(raw)) for name, raw in unknown.items()} == {
        "routing": {"strategy": "cost"},
        "brand_new_param": [1, 2],
    }


def test_request_without_unknown_fields_has_none():
    assert request_decoder.decode(json.dumps(FULL_REQUEST)).unknown_params is None


def test_request_unknown_field_beside_an_invalid_one_names_the_invalid_one():
    body = {"model": "m", "messages": USER_ONLY, "min_p": 0.1, "temperature": 9}
    with pytest.raises(msgspec.ValidationError, match="temperature"):
        request_decoder.decode(json.dumps(body))


def test_request_constant_fields_are_emitted():
    request = ChatRequest(
        model="m",
        messages=[
            UserMessage("Hi"),
            AssistantMessage(tool_calls=[ToolCall("c1", "function", FunctionCall("f", "{}"))]),
            ToolMessage("done", tool_call_id="c1"),
        ],
        tools=[Tool("function", FunctionDefinition("f"))],
    )
    encoded = json.loads(_json.encode(request))
    assert [m["role"] for m in encoded["messages"]] == ["user", "assistant", "tool"]
    assert encoded["messages"][1]["tool_calls"][0]["type"] == "function"
    assert encoded["tools"] == [{"type": "function", "function": {"name": "f"}}]


def test_response_constant_and_null_content_are_emitted():
    completion = ChatCompletion(
        id="c1",
        object="chat.completion",
        created=1,
        model="m",
        choices=[],
    )
    encoded = json.loads(_json.encode(completion))
    assert encoded == {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [],
    }
    message = json.loads(_json.encode(ResponseMessage(role="assistant", content=None)))
    # OpenAI's spec requires `refusal`, nullable: it goes out as null when nobody set it.
    assert message == {"role": "assistant", "content": None, "refusal": None}


def test_choice_logprobs_is_null_unless_the_provider_sent_some():
    choice = Choice(0, ResponseMessage("assistant", "hi"), "stop")
    assert json.loads(_json.encode(choice))["logprobs"] is None
    relayed = msgspec.json.decode(
        b'{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop",'
        b'"logprobs":{"content":[],"refusal":null}}',
        type=Choice,
    )
    assert json.loads(_json.encode(relayed))["logprobs"] == {"content": [], "refusal": None}


def test_chunk_emits_object_and_null_finish_reason():
    chunk = ChatCompletionChunk(
        id="c1",
        object="chat.completion.chunk",
        created=1,
        model="m",
        choices=[ChunkChoice(index=0, delta=Delta(content="Hel"))],
    )
    encoded = json.loads(_json.encode(chunk))
    assert encoded["object"] == "chat.completion.chunk"
    assert encoded["choices"] == [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]
    assert "usage" not in encoded


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": 5, "messages": USER_ONLY}, "model"),
        ({"model": "m", "messages": USER_ONLY, "temperature": "hot"}, "temperature"),
        ({"model": "m", "messages": USER_ONLY, "stream": "yes"}, "stream"),
        ({"model": "m", "messages": USER_ONLY, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "", "messages": USER_ONLY}, "model"),
        ({"model": "m", "messages": USER_ONLY, "temperature": 2.5}, "temperature"),
        ({"model": "m", "messages": USER_ONLY, "temperature": -0.1}, "temperature"),
        ({"model": "m", "messages": USER_ONLY, "top_p": 1.1}, "top_p"),
        ({"model": "m", "messages": USER_ONLY, "presence_penalty": 3}, "presence_penalty"),
        ({"model": "m", "messages": USER_ONLY, "top_logprobs": 21}, "top_logprobs"),
        ({"model": "m", "messages": USER_ONLY, "tool_choice": "any"}, "tool_choice"),
        (
            {
                "model": "m",
                "messages": USER_ONLY,
                "tools": [{"type": "function", "function": {"name": "x" * 65}}],
            },
            "tools[0].function.name",
        ),
        (
            {
                "model": "m",
                "messages": USER_ONLY,
                "tools": [{"type": "web", "function": {"name": "f"}}],
            },
            "tools[0].type",
        ),
        (
            {"model": "m", "messages": USER_ONLY, "response_format": {"type": "yaml"}},
            "response_format.type",
        ),
    ],
)
def test_request_invalid_values_raise_validation_error_at_path(body, path):
    with pytest.raises(msgspec.ValidationError) as info:
        request_decoder.decode(json.dumps(body))
    assert str(info.value).endswith(f"at `$.{path}`")


def test_request_boundaries_are_accepted():
    body = {
        "model": "m",
        "messages": USER_ONLY,
        "temperature": 2,
        "top_p": 0,
        "presence_penalty": -2,
        "top_logprobs": 20,
        "tools": [{"type": "function", "function": {"name": "x" * 64}}],
    }
    assert roundtrip(body) == body


def test_request_missing_model_raises():
    with pytest.raises(msgspec.ValidationError, match="missing required field `model`"):
        request_decoder.decode(json.dumps({"messages": USER_ONLY}))


def test_request_malformed_json_raises_decode_error():
    with pytest.raises(msgspec.DecodeError) as info:
        request_decoder.decode(b'{"model": "m", ')
    assert not isinstance(info.value, msgspec.ValidationError)


COMPLETION_WITH_OPAQUE = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null,'
    b'"annotations":[ {"type" : "url_citation", "url_citation":{"url":"https://x.test"}} ]},'
    b'"finish_reason":"stop","logprobs":{"content":[ {"token":"Hi","logprob":-0.01} ]}},'
    b'{"index":1,"message":{"role":"assistant","content":null,"refusal":null},'
    b'"finish_reason":"length",'
    b'"logprobs":null}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6},'
    b'"system_fingerprint":"fp_1"}'
)


def test_completion_opaque_fields_relayed_byte_for_byte():
    completion = completion_decoder.decode(COMPLETION_WITH_OPAQUE)
    assert _json.encode(completion) == COMPLETION_WITH_OPAQUE


def test_completion_explicit_null_logprobs_kept_and_absent_becomes_null():
    completion = completion_decoder.decode(COMPLETION_WITH_OPAQUE)
    logprobs = completion.choices[1].logprobs
    assert isinstance(logprobs, msgspec.Raw)
    assert bytes(logprobs) == b"null"
    body = (
        b'{"id":"c","object":"chat.completion","created":1,"model":"m",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}]}'
    )
    encoded = json.loads(_json.encode(completion_decoder.decode(body)))
    assert encoded["choices"][0]["logprobs"] is None  # required by OpenAI's spec, nullable
    assert "annotations" not in encoded["choices"][0]["message"]
    assert encoded["choices"][0]["message"]["content"] == "x"


def test_chunk_opaque_logprobs_relayed_byte_for_byte():
    body = (
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},'
        b'"finish_reason":null,"logprobs":{"content": [ ]}}]}'
    )
    assert _json.encode(chunk_decoder.decode(body)) == body


def test_chunk_tool_call_delta_roundtrips():
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
                "finish_reason": None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    encoded = json.loads(_json.encode(chunk_decoder.decode(json.dumps(body))))
    assert encoded == body


def test_completion_wrong_object_rejected():
    body = COMPLETION_WITH_OPAQUE.replace(b'"chat.completion"', b'"chat.completion.chunk"')
    with pytest.raises(msgspec.ValidationError):
        completion_decoder.decode(body)


def test_request_is_streaming():
    assert request_decoder.decode(json.dumps({**FULL_REQUEST, "stream": True})).is_streaming
    assert not request_decoder.decode(json.dumps({**FULL_REQUEST, "stream": False})).is_streaming
    assert not ChatRequest(model="m", messages=[UserMessage("Hi")]).is_streaming


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"include_usage": True}, True),
        ({"include_usage": False}, False),
        ({}, False),
        (None, False),
    ],
)
def test_request_wants_stream_usage(options, expected):
    body: dict[str, Any] = {"model": "m", "messages": USER_ONLY, "stream": True}
    if options is not None:
        body["stream_options"] = options
    assert request_decoder.decode(json.dumps(body)).wants_stream_usage is expected
