"""The Gemini API ⇄ canonical translators, without any server. Every answer is checked with
google-genai's own types (strict, no unknown field)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from google.genai import types

from stellara.errors import InvalidRequestError
from stellara.inbound.gemini import (
    GeminiStreamWriter,
    PublicModelInfo,
    model_page,
    to_batch_embed_response,
    to_chat_request,
    to_embed_response,
    to_embeddings_request,
    to_generate_response,
)
from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    chunk_decoder,
    completion_decoder,
)
from stellara.schema.embeddings import EmbeddingsResponse, embeddings_response_decoder
from stellara.wire import google_inbound as wire

HELLO = [{"role": "user", "parts": [{"text": "hi"}]}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING", "max_length": 40}},
        "required": ["city"],
    },
}


def translate(*, streaming: bool = False, **fields: Any) -> dict[str, Any]:
    """The canonical request, as JSON, for a Gemini request with `fields`."""
    body: dict[str, Any] = {"contents": HELLO, **fields}
    params = wire.generate_decoder.decode(msgspec.json.encode(body))
    out: dict[str, Any] = msgspec.to_builtins(to_chat_request(params, "m", is_streaming=streaming))
    return out


def refusal(**fields: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        translate(**fields)
    return info.value


def decode_refusal(body: dict[str, Any]) -> str:
    with pytest.raises(msgspec.ValidationError) as info:
        wire.generate_decoder.decode(msgspec.json.encode(body))
    return str(info.value)


def completion(message: dict[str, Any], finish: str = "stop", **extra: Any) -> ChatCompletion:
    body = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        **extra,
    }
    return completion_decoder.decode(msgspec.json.encode(body))


def chunk(choices: list[dict[str, Any]], **extra: Any) -> ChatCompletionChunk:
    body = {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": choices,
        **extra,
    }
    return chunk_decoder.decode(msgspec.json.encode(body))


def sdk_response(value: msgspec.Struct) -> types.GenerateContentResponse:
    return types.GenerateContentResponse.model_validate_json(
        msgspec.json.encode(value), strict=True
    )


# ---------------------------------------------------------------- request


def test_gemini_request_maps_generation_config() -> None:
    config = {
        "temperature": 0.4,
        "topP": 0.9,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequency_penalty": -0.5,  # either spelling, as Google reads it
    }
    chat = translate(generationConfig=config)
    assert chat["model"] == "m"
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    assert chat["temperature"] == 0.4
    assert chat["top_p"] == 0.9
    assert chat["max_tokens"] == 50
    assert chat["stop"] == ["END"]
    assert chat["n"] == 2
    assert chat["seed"] == 7
    assert chat["presence_penalty"] == 0.5
    assert chat["frequency_penalty"] == -0.5
    assert "stream" not in chat


def test_gemini_request_streaming_asks_for_usage() -> None:
    chat = translate(streaming=True)
    assert chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True}


def test_gemini_request_system_instruction_and_turns() -> None:
    contents = [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "three"}]},
        {"parts": [{"text": "four"}]},  # no role: the user's
    ]
    system = {"role": "user", "parts": [{"text": "Be brief."}, {"text": "Be kind."}]}
    chat = translate(contents=contents, systemInstruction=system)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief.\nBe kind."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {"role": "assistant", "content": "three"},
        {"role": "user", "content": "four"},
    ]


def test_gemini_request_inline_media_become_parts() -> None:
    parts = [
        {"inline_data": {"mime_type": "image/png", "data": "iVBOR"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg", "mimeType": "image/jpeg"}},
    ]
    chat = translate(contents=[{"role": "user", "parts": parts}])
    assert chat["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"inlineData": {"mimeType": "video/mp4", "data": "AAAA"}}, "inlineData.mimeType"),
        ({"fileData": {"fileUri": "files/abc", "mimeType": "image/png"}}, "fileData"),
        ({"functionCall": {"name": "f", "args": {}}}, "contents[0].parts[0]"),
    ],
)
def test_gemini_request_refuses_parts_it_cannot_carry(part: dict[str, Any], param: str) -> None:
    error = refusal(contents=[{"role": "user", "parts": [part]}])
    assert error.param is not None
    assert error.param.endswith(param)
    assert error.status_code == 400


def test_gemini_request_function_round_pairs_calls_and_responses() -> None:
    contents = [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"result": "sunny"},
                        "id": "c1",
                    }
                },
                {"functionResponse": {"name": "get_weather", "response": {"t": 20}}},
                {"text": "Thanks"},
            ],
        },
    ]
    chat = translate(contents=contents, tools=[{"functionDeclarations": [WEATHER]}])
    _, assistant, first, second, user = chat["messages"]
    [paris, rome] = assistant["tool_calls"]
    assert paris["id"] == "c1"
    assert paris["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert rome["id"]
    assert rome["id"] != "c1"
    # Without an id, a response answers the earliest unanswered call of its name.
    assert first == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}
    assert second == {"role": "tool", "content": '{"t":20}', "tool_call_id": rome["id"]}
    assert user == {"role": "user", "content": "Thanks"}


def test_gemini_request_function_response_without_call_is_refused() -> None:
    contents = [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]
    error = refusal(contents=contents)
    assert error.param == "contents[0].parts[0]"


def test_gemini_request_tools_schema_becomes_json_schema() -> None:
    chat = translate(tools=[{"functionDeclarations": [WEATHER]}])
    [tool] = chat["tools"]
    assert tool["function"]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 40}},
        "required": ["city"],
    }
    assert "tool_choice" not in chat


def test_gemini_request_nullable_schema_and_json_schema_pass() -> None:
    declaration = {
        "name": "f",
        "parametersJsonSchema": {"type": "object", "additionalProperties": False},
    }
    response_schema = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING", "nullable": True},
            "kind": {"type": "STRING", "enum": ["a", "b"], "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": "1"},
        },
        "property_ordering": ["name", "kind", "tags"],
    }
    chat = translate(
        tools=[{"functionDeclarations": [declaration]}],
        generationConfig={
            "responseMimeType": "application/json",
            "responseSchema": response_schema,
        },
    )
    assert chat["tools"][0]["function"]["parameters"] == declaration["parametersJsonSchema"]
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {
                "type": "object",
                "properties": {
                    "name": {"type": ["string", "null"]},
                    "kind": {"type": ["string", "null"], "enum": ["a", "b", None]},
                    "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                },
                "propertyOrdering": ["name", "kind", "tags"],
            },
        },
    }


def test_gemini_request_response_mime_types() -> None:
    json_only = translate(generationConfig={"responseMimeType": "application/json"})
    assert json_only["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    raw = translate(
        generationConfig={"responseMimeType": "application/json", "responseJsonSchema": schema}
    )
    assert raw["response_format"]["json_schema"]["schema"] == schema
    assert "response_format" not in translate(generationConfig={"responseMimeType": "text/plain"})
    error = refusal(generationConfig={"responseMimeType": "text/x.enum"})
    assert error.param == "generationConfig.responseMimeType"
    error = refusal(generationConfig={"responseSchema": {"type": "STRING"}})
    assert error.param == "generationConfig.responseMimeType"


@pytest.mark.parametrize(
    ("calling", "choice", "names"),
    [
        ({"mode": "AUTO"}, "auto", ["get_weather", "get_time"]),
        ({"mode": "NONE"}, "none", ["get_weather", "get_time"]),
        ({"mode": "ANY"}, "required", ["get_weather", "get_time"]),
        (
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
            {"type": "function", "function": {"name": "get_time"}},
            ["get_time"],
        ),
    ],
)
def test_gemini_request_tool_config_becomes_tool_choice(
    calling: dict[str, Any], choice: Any, names: list[str]
) -> None:
    tools = [{"functionDeclarations": [WEATHER, {"name": "get_time"}]}]
    chat = translate(tools=tools, toolConfig={"functionCallingConfig": calling})
    assert chat["tool_choice"] == choice
    assert [tool["function"]["name"] for tool in chat["tools"]] == names


def test_gemini_request_allowed_names_need_mode_any() -> None:
    tools = [{"functionDeclarations": [WEATHER]}]
    calling = {"mode": "AUTO", "allowedFunctionNames": ["get_weather"]}
    error = refusal(tools=tools, toolConfig={"functionCallingConfig": calling})
    assert error.param == "toolConfig.functionCallingConfig.allowedFunctionNames"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"generationConfig": {"topK": 5}}, "topK"),
        ({"generationConfig": {"thinking_config": {"thinkingBudget": 0}}}, "thinkingConfig"),
        ({"safetySettings": []}, "safetySettings"),
        ({"cachedContent": "cachedContents/x"}, "cachedContent"),
        ({"tools": [{"googleSearch": {}}]}, "googleSearch"),
        ({"contents": [{"parts": [{"text": "x", "thought": True}]}]}, "thought"),
    ],
)
def test_gemini_request_refuses_what_it_cannot_carry(fields: dict[str, Any], named: str) -> None:
    message = decode_refusal({"contents": HELLO, **fields})
    assert f"unknown field `{named}`" in message


def test_gemini_request_either_spelling_once() -> None:
    body = {"contents": HELLO, "generationConfig": {"topP": 0.5, "top_p": 0.6}}
    assert "given twice" in decode_refusal(body)


def test_gemini_request_ranges_are_checked() -> None:
    assert "<= 2" in decode_refusal({"contents": HELLO, "generationConfig": {"temperature": 3}})


# ---------------------------------------------------------------- answer


def test_gemini_answer_text_usage_and_ids() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 7,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    answer = to_generate_response(completion({"content": "Hello!"}, usage=usage), model="pub")
    sdk = sdk_response(answer)
    assert sdk.text == "Hello!"
    assert sdk.model_version == "pub"
    assert sdk.response_id == "abc123"
    [candidate] = sdk.candidates or []
    assert candidate.finish_reason == types.FinishReason.STOP
    assert candidate.content is not None
    assert candidate.content.role == "model"
    meta = sdk.usage_metadata
    assert meta is not None
    assert (meta.prompt_token_count, meta.candidates_token_count) == (10, 5)
    assert (meta.thoughts_token_count, meta.cached_content_token_count) == (2, 4)
    assert meta.total_token_count == 17


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("length", types.FinishReason.MAX_TOKENS),
        ("content_filter", types.FinishReason.SAFETY),
        ("tool_calls", types.FinishReason.STOP),
        ("something_new", types.FinishReason.OTHER),
    ],
)
def test_gemini_answer_finish_reasons(finish: str, expected: types.FinishReason) -> None:
    sdk = sdk_response(to_generate_response(completion({"content": "x"}, finish), model="m"))
    assert (sdk.candidates or [])[0].finish_reason == expected


def test_gemini_answer_function_calls_keep_ids_and_raw_arguments() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "not json"}},
    ]
    message = {"content": None, "tool_calls": calls}
    sdk = sdk_response(to_generate_response(completion(message, "tool_calls"), model="m"))
    [first, second] = sdk.function_calls or []
    assert (first.id, first.name, first.args) == ("call_1", "f", {"a": 1})
    assert (second.name, second.args) == ("g", {"_raw_arguments": "not json"})


# ---------------------------------------------------------------- stream


def test_gemini_stream_text_then_calls_finish_and_usage_last() -> None:
    writer = GeminiStreamWriter("pub")
    pieces = [
        *writer.feed(chunk([{"index": 0, "delta": {"role": "assistant", "content": "He"}}])),
        *writer.feed(chunk([{"index": 0, "delta": {"content": "llo"}}])),
        *writer.feed(
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": '{"a":'},
                                }
                            ]
                        },
                    }
                ]
            )
        ),
        *writer.feed(
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
                        "finish_reason": "tool_calls",
                    }
                ]
            )
        ),
        *writer.feed(
            chunk([], usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
        ),
        *writer.finish(),
    ]
    sdk = [sdk_response(piece) for piece in pieces]
    assert [piece.text for piece in sdk[:2]] == ["He", "llo"]
    assert all(piece.response_id == "s1" and piece.model_version == "pub" for piece in sdk)
    assert all(piece.usage_metadata is None for piece in sdk[:-1])
    last = sdk[-1]
    [call] = last.function_calls or []
    assert (call.id, call.name, call.args) == ("call_1", "f", {"a": 1})
    assert (last.candidates or [])[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.total_token_count == 7


def test_gemini_stream_without_chunks_still_finishes() -> None:
    [last] = [sdk_response(piece) for piece in GeminiStreamWriter("m").finish()]
    assert (last.candidates or [])[0].finish_reason == types.FinishReason.STOP


# ---------------------------------------------------------------- embeddings and models


def embeddings(count: int) -> EmbeddingsResponse:
    body = {
        "object": "list",
        "data": [{"index": i, "embedding": [float(i), 0.5]} for i in reversed(range(count))],
        "model": "e",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
    return embeddings_response_decoder.decode(msgspec.json.encode(body))


def test_gemini_embed_single_and_batch() -> None:
    single = wire.embed_decoder.decode(
        b'{"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "output_dimensionality": 8}'
    )
    request = to_embeddings_request(single, "e")
    assert (request.input, request.dimensions) == (["a\nb"], 8)
    answer = types.EmbedContentResponse.model_validate_json(
        msgspec.json.encode(to_batch_embed_response(embeddings(2))), strict=True
    )
    assert [e.values for e in answer.embeddings or []] == [[0.0, 0.5], [1.0, 0.5]]
    one = msgspec.to_builtins(to_embed_response(embeddings(1)))
    assert one == {"embedding": {"values": [0.0, 0.5]}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]},
            "requests[0].model",
        ),
        (
            {
                "requests": [
                    {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8},
                    {"content": {"parts": [{"text": "b"}]}},
                ]
            },
            "requests",
        ),
        (
            {
                "requests": [
                    {"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "A"}}]}}
                ]
            },
            "requests[0].content.parts[0]",
        ),
        ({"requests": [{"content": {"parts": [{"text": ""}]}}]}, "requests[0].content"),
    ],
)
def test_gemini_embed_refusals(body: dict[str, Any], param: str) -> None:
    params = wire.batch_embed_decoder.decode(msgspec.json.encode(body))
    with pytest.raises(InvalidRequestError) as info:
        to_embeddings_request(params, "e")
    assert info.value.param == param


def test_gemini_models_are_paged() -> None:
    infos = [PublicModelInfo(f"m{i}", embeds=i == 0) for i in range(5)]
    first = model_page(infos, "2", None)
    assert [m.name for m in first.models] == ["models/m0", "models/m1"]
    assert "embedContent" in first.models[0].supported_generation_methods
    assert "embedContent" not in first.models[1].supported_generation_methods
    second = model_page(infos, "2", first.next_page_token)
    third = model_page(infos, "2", second.next_page_token)
    assert [m.name for m in third.models] == ["models/m4"]
    assert third.next_page_token is None
    assert len(model_page(infos, None, None).models) == 5
    for size, token in (("-1", None), ("x", None), (None, "bogus")):
        with pytest.raises(InvalidRequestError):
            model_page(infos, size, token)
