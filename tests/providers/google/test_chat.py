"""Canonical ⇄ Gemini `generateContent` translation, with bodies shaped like the API reference's."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from stellara.errors import ContentFilterError, InvalidRequestError, UpstreamProtocolError
from stellara.providers.google.chat import (
    build_generate_body,
    parse_generate_response,
    to_completion,
    tool_call_id,
)
from stellara.schema.chat import ChatCompletion, ChatRequest, request_decoder

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def request(**fields: Any) -> ChatRequest:
    body = {"model": "gemini-2.0-flash", **fields}
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return request_decoder.decode(json.dumps(body))


MODEL = "gemini-2.0-flash"


def wire(chat_request: ChatRequest, model: str = MODEL) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(build_generate_body(chat_request, model))
    return result


def completion(body: dict[str, Any], completion_id: str = "chatcmpl-r1") -> ChatCompletion:
    response = parse_generate_response(json.dumps(body).encode(), "gem")
    return to_completion(
        response, provider="gem", completion_id=completion_id, created=7, model="gemini-2.0-flash"
    )


# ---------------------------------------------------------------- request


def test_build_body_plain_chat_is_minimal() -> None:
    assert wire(request()) == {"contents": [{"parts": [{"text": "Hi"}], "role": "user"}]}


def test_build_body_system_and_developer_become_system_instruction() -> None:
    body = wire(
        request(
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": "Hi"},
            ]
        )
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert body["contents"] == [{"parts": [{"text": "Hi"}], "role": "user"}]


def test_build_body_system_only_is_sent_as_user_turn() -> None:
    body = wire(request(messages=[{"role": "system", "content": "Say hi."}]))
    assert body == {"contents": [{"parts": [{"text": "Say hi."}], "role": "user"}]}


def test_build_body_assistant_is_model_and_same_roles_merge() -> None:
    body = wire(
        request(
            messages=[
                {"role": "user", "content": "One"},
                {"role": "user", "content": "Two"},
                {"role": "assistant", "content": "Three"},
                {"role": "user", "content": ""},
                {"role": "user", "content": "Four"},
            ]
        )
    )
    assert body["contents"] == [
        {"parts": [{"text": "One"}, {"text": "Two"}], "role": "user"},
        {"parts": [{"text": "Three"}], "role": "model"},
        {"parts": [{"text": "Four"}], "role": "user"},
    ]


def test_build_body_images_map_to_inline_and_file_data() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://x.test/cat.WEBP?size=2"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/photo"}},
    ]
    body = wire(request(messages=[{"role": "user", "content": content}]))
    assert body["contents"][0]["parts"] == [
        {"text": "Compare"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://x.test/cat.WEBP?size=2", "mimeType": "image/webp"}},
        {"fileData": {"fileUri": "https://x.test/photo", "mimeType": "image/jpeg"}},
    ]


@pytest.mark.parametrize("url", ["data:image/png,abc", "ftp://x.test/a.png", "data:;base64,abc"])
def test_build_body_bad_image_url_is_invalid_request(url: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(InvalidRequestError) as caught:
        build_generate_body(request(messages=[{"role": "user", "content": content}]), MODEL)
    assert caught.value.param == "messages[0].content[0]"


def test_build_body_audio_is_inline_data() -> None:
    content = [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]
    body = wire(request(messages=[{"role": "user", "content": content}]))
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}
    ]


def test_build_body_tool_round_trip() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
    ]
    body = wire(request(messages=messages))
    assert body["contents"][1:] == [
        {
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
            "role": "model",
        },
        {
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": {"temp": 21}}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
            ],
            "role": "user",
        },
    ]


def test_build_body_invalid_tool_arguments_is_invalid_request() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
            ],
        },
    ]
    with pytest.raises(InvalidRequestError) as caught:
        build_generate_body(request(messages=messages), MODEL)
    assert caught.value.status_code == 400
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_build_body_tool_result_for_unknown_call_is_invalid_request() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "tool", "tool_call_id": "x", "content": "1"},
    ]
    with pytest.raises(InvalidRequestError) as caught:
        build_generate_body(request(messages=messages), MODEL)
    assert caught.value.param == "messages[1].tool_call_id"


def test_build_body_tools_are_declarations_without_rejected_schema_keys() -> None:
    body = wire(request(tools=[WEATHER_TOOL], tool_choice="auto"))
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


def test_build_body_function_without_parameters_declares_none() -> None:
    tool = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
    assert wire(request(tools=[tool]))["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_build_body_tool_choice_maps_to_calling_mode(choice: Any, config: dict[str, Any]) -> None:
    body = wire(request(tools=[WEATHER_TOOL], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_build_body_tool_choice_without_tools_is_not_sent() -> None:
    assert "toolConfig" not in wire(request(tool_choice="none"))


def test_build_body_generation_config_and_unsupported_params() -> None:
    body = wire(
        request(
            temperature=0,
            top_p=0.9,
            max_tokens=50,
            max_completion_tokens=40,
            stop="END",
            n=2,
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            logit_bias={"1": 2},
            user="u1",
            parallel_tool_calls=False,
        )
    )
    assert body["generationConfig"] == {
        "temperature": 0,
        "topP": 0.9,
        "maxOutputTokens": 40,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
    }
    assert set(body) == {"contents", "generationConfig"}


def test_build_body_json_object_sets_mime_type() -> None:
    body = wire(request(response_format={"type": "json_object"}))
    assert body["generationConfig"] == {"responseMimeType": "application/json"}


def test_build_body_json_schema_is_converted() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": ["integer", "null"]}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    body = wire(request(response_format=response_format))
    assert body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "nullable": True},
            },
            "required": ["name", "age"],
        },
    }


# ---------------------------------------------------------------- response

TEXT_RESPONSE: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "parts": [
                    {"text": "Thinking about it", "thought": True},
                    {"text": "Hello"},
                    {"text": " there."},
                    {"executableCode": {"language": "PYTHON", "code": "1"}},
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}
            ],
            "avgLogprobs": -0.1,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 10,
        "candidatesTokenCount": 4,
        "totalTokenCount": 20,
        "cachedContentTokenCount": 3,
        "thoughtsTokenCount": 6,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 10}],
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "mFBtaNm2Ec2SnvgPu9ms4Q4",
}


def test_completion_from_text_response() -> None:
    result = completion(TEXT_RESPONSE)
    assert json.loads(msgspec.json.encode(result)) == {
        "id": "chatcmpl-r1",
        "object": "chat.completion",
        "created": 7,
        "model": "gemini-2.5-flash",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there.", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 10,
            "total_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 6},
        },
    }


def test_completion_function_calls_become_tool_calls() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "get_time"}, "thoughtSignature": "c2ln"},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
            }
        ]
    }
    choice = completion(body).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather", '{"city":"Paris"}'),
        ("get_time", "{}"),
    ]
    assert [c.id for c in calls] == [
        tool_call_id("chatcmpl-r1", 0, 0),
        tool_call_id("chatcmpl-r1", 0, 1) + "__thoughtsig__c2ln",
    ]
    assert calls[0].id.startswith("call_")


def test_tool_call_id_is_deterministic_per_completion() -> None:
    assert tool_call_id("chatcmpl-a", 0, 0) == tool_call_id("chatcmpl-a", 0, 0)
    assert tool_call_id("chatcmpl-a", 0, 0) != tool_call_id("chatcmpl-b", 0, 0)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_completion_finish_reason_mapping(reason: str, expected: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert completion(body).choices[0].finish_reason == expected


def test_completion_safety_stop_without_content() -> None:
    body = {"candidates": [{"finishReason": "SAFETY", "index": 0}]}
    choice = completion(body).choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content is None


def test_completion_several_candidates_become_choices() -> None:
    body = {
        "candidates": [
            {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1},
        ]
    }
    choices = completion(body).choices
    assert [(c.index, c.message.content, c.finish_reason) for c in choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


def test_completion_blocked_prompt_raises_content_filter() -> None:
    body = {
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
            ],
        },
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    }
    with pytest.raises(ContentFilterError) as caught:
        completion(body)
    assert caught.value.status_code == 400
    assert caught.value.code == "content_filter"
    assert "SAFETY" in caught.value.message


def test_completion_without_candidates_is_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        completion({"usageMetadata": {"promptTokenCount": 1}})


def test_parse_response_rejects_non_json() -> None:
    with pytest.raises(UpstreamProtocolError):
        parse_generate_response(b'{"candidates": [', "gem")
