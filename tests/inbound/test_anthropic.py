"""The Anthropic Messages ⇄ canonical translators, without any server."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from stellara.errors import InvalidRequestError, UpstreamProtocolError
from stellara.inbound.anthropic import (
    RAW_ARGUMENTS_KEY,
    AnthropicStreamWriter,
    to_chat_request,
    to_message,
    tool_input,
)
from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    chunk_decoder,
    completion_decoder,
)
from stellara.wire import anthropic as wire

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def translate(**fields: Any) -> dict[str, Any]:
    """The canonical request, as JSON, for a Messages request with `fields`."""
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    chat: ChatRequest = to_chat_request(wire.request_decoder.decode(msgspec.json.encode(body)))
    out: dict[str, Any] = msgspec.to_builtins(chat)
    return out


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


def chunk(
    delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
) -> ChatCompletionChunk:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": choices,
        **extra,
    }
    return chunk_decoder.decode(msgspec.json.encode(body))


# ---------------------------------------------------------------- request


def test_request_system_string_becomes_first_message() -> None:
    out = translate(system="Be brief.")
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


def test_request_system_blocks_are_joined_with_newlines() -> None:
    out = translate(system=[{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}])
    assert out["messages"][0] == {"role": "system", "content": "One.\nTwo."}


def test_request_parameters_map_to_canonical_names() -> None:
    out = translate(
        max_tokens=77,
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "u-1"},
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert out == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 77,
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u-1",
    }


def test_request_stream_asks_for_usage_chunk() -> None:
    out = translate(stream=True)
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_request_images_become_image_url_parts() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]
    out = translate(messages=[{"role": "user", "content": content}])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]


def test_request_pdf_document_becomes_file_part() -> None:
    doc = {
        "type": "document",
        "title": "spec.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    out = translate(messages=[{"role": "user", "content": [doc]}])
    assert out["messages"][0]["content"] == [
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "spec.pdf"},
        }
    ]


def test_request_url_document_is_refused() -> None:
    doc = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    with pytest.raises(InvalidRequestError) as caught:
        translate(messages=[{"role": "user", "content": [doc]}])
    assert caught.value.param == "messages[0].content[0].source"


def test_request_tool_round_trip_history_becomes_tool_calls_and_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "no"}, {"type": "text", "text": "data"}],
                    "is_error": True,
                },
                {"type": "text", "text": "Summarise."},
            ],
        },
    ]
    out = translate(messages=messages)
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "content": "18 C", "tool_call_id": "toolu_1"},
        {"role": "tool", "content": "Error: no\ndata", "tool_call_id": "toolu_2"},
        {"role": "user", "content": [{"type": "text", "text": "Summarise."}]},
    ]


def test_request_tool_result_image_moves_to_following_user_message() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
    }
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "text", "text": "screenshot:"}, image],
    }
    out = translate(messages=[{"role": "user", "content": [result]}])
    assert out["messages"] == [
        {"role": "tool", "content": "screenshot:", "tool_call_id": "toolu_1"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}],
        },
    ]


def test_request_assistant_with_only_thinking_is_dropped() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}]},
        {"role": "user", "content": "b"},
    ]
    out = translate(messages=messages)
    assert [m["role"] for m in out["messages"]] == ["user", "user"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_request_tool_choice_maps_to_openai(choice: dict[str, Any], expected: object) -> None:
    out = translate(tools=[WEATHER], tool_choice=choice)
    assert out["tool_choice"] == expected
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert "parallel_tool_calls" not in out


def test_request_strict_tool_stays_strict() -> None:
    out = translate(tools=[{**WEATHER, "strict": True}])
    assert out["tools"][0]["function"]["strict"] is True


def test_request_disable_parallel_tool_use_turns_parallel_calls_off() -> None:
    out = translate(
        tools=[WEATHER], tool_choice={"type": "auto", "disable_parallel_tool_use": True}
    )
    assert out["parallel_tool_calls"] is False


def test_request_tool_choice_without_tools_is_dropped() -> None:
    out = translate(tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert "tool_choice" not in out
    assert "parallel_tool_calls" not in out


def test_request_named_tool_choice_without_name_is_invalid() -> None:
    with pytest.raises(InvalidRequestError):
        translate(tools=[WEATHER], tool_choice={"type": "tool"})


def test_request_without_messages_is_invalid() -> None:
    with pytest.raises(InvalidRequestError):
        translate(messages=[])


def test_request_tool_result_in_assistant_message_is_invalid() -> None:
    block = {"type": "tool_result", "tool_use_id": "t", "content": "x"}
    with pytest.raises(InvalidRequestError) as caught:
        translate(messages=[{"role": "assistant", "content": [block]}])
    assert caught.value.param == "messages[0].content[0]"


def test_request_metadata_with_bad_user_id_is_invalid() -> None:
    with pytest.raises(InvalidRequestError):
        translate(metadata={"user_id": 5})


# ---------------------------------------------------------------- response


def test_message_has_text_tool_use_and_mapped_usage() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    }
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "total_tokens": 107,
        "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 15},
    }
    message = to_message(
        completion({"content": "Checking.", "tool_calls": [call]}, "tool_calls", usage=usage),
        model="smart",
    )
    assert msgspec.to_builtins(message) == {
        "id": "msg_abc123",
        "type": "message",
        "role": "assistant",
        "model": "smart",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 25,
            "output_tokens": 7,
            "cache_creation_input_tokens": 15,
            "cache_read_input_tokens": 60,
        },
    }


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_message_stop_reason_follows_finish_reason(finish: str, reason: str) -> None:
    assert to_message(completion({"content": "x"}, finish), model="m").stop_reason == reason


def test_message_stop_on_a_named_stop_sequence_says_which() -> None:
    answer = completion({"content": "x"})
    answer.choices[0].stop_reason = "###"
    message = to_message(answer, model="m")
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "###")


@pytest.mark.parametrize("stop_reason", [None, 50256])
def test_message_stop_without_a_stop_string_is_end_turn(stop_reason: int | None) -> None:
    # vLLM's `stop_reason`: null for an end-of-sequence token, an int for a stop token id.
    body = msgspec.json.encode(completion({"content": "x"}))
    raw = msgspec.json.decode(body)
    raw["choices"][0]["stop_reason"] = stop_reason
    message = to_message(completion_decoder.decode(msgspec.json.encode(raw)), model="m")
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


def test_message_length_cut_keeps_no_stop_sequence() -> None:
    answer = completion({"content": "x"}, "length")
    answer.choices[0].stop_reason = "###"
    message = to_message(answer, model="m")
    assert (message.stop_reason, message.stop_sequence) == ("max_tokens", None)


def test_message_refusal_is_text_with_refusal_stop_reason() -> None:
    message = to_message(completion({"content": None, "refusal": "I can't."}), model="m")
    assert message.content == [wire.TextBlock("I can't.")]
    assert message.stop_reason == "refusal"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("", {}),
        ("{not json", {RAW_ARGUMENTS_KEY: "{not json"}),
        ("[1, 2]", {RAW_ARGUMENTS_KEY: "[1, 2]"}),
    ],
)
def test_tool_input_keeps_what_is_not_an_object(arguments: str, expected: dict[str, Any]) -> None:
    assert tool_input(arguments) == expected


# ---------------------------------------------------------------- stream

# Recorded from the OpenAI-format simulator's shape: text, then two tool calls, then the
# usage-only chunk the gateway asks for.
RECORDED = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": ':"Oslo"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz":'},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": '"UTC"}'}}]}),
    chunk({}, "tool_calls"),
    chunk(
        None,
        usage={
            "prompt_tokens": 50,
            "completion_tokens": 20,
            "total_tokens": 70,
            "prompt_tokens_details": {"cached_tokens": 10},
        },
    ),
]


def run_writer(chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    writer = AnthropicStreamWriter("smart", provider="sim")
    events = [event for c in chunks for event in writer.feed(c)]
    events.extend(writer.finish())
    out: list[dict[str, Any]] = msgspec.to_builtins(events)
    return out


def test_stream_writer_turns_text_and_two_tool_calls_into_blocks() -> None:
    events = run_writer(RECORDED)
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    start = events[0]["message"]
    assert start["id"] == "msg_s1"
    assert start["model"] == "smart"
    assert start["content"] == []
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    assert events[5]["content_block"] == {
        "type": "tool_use",
        "id": "call_a",
        "name": "get_weather",
        "input": {},
    }
    assert events[9]["content_block"]["name"] == "get_time"
    assert "".join(e["delta"]["text"] for e in events[2:4]) == "Let me check."
    assert "".join(e["delta"]["partial_json"] for e in events[6:8]) == '{"city":"Oslo"}'
    assert "".join(e["delta"]["partial_json"] for e in events[10:12]) == '{"tz":"UTC"}'
    assert events[13]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[13]["usage"] == {
        "output_tokens": 20,
        "input_tokens": 40,
        "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": 0,
    }


def test_stream_writer_without_usage_leaves_input_tokens_out() -> None:
    events = run_writer([chunk({"role": "assistant", "content": "hi"}), chunk({}, "length")])
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    assert "input_tokens" not in events[-2]["usage"]  # unknown: message_start's value stands


def test_stream_writer_stop_sequence_goes_into_message_delta() -> None:
    finish = chunk({}, "stop")
    finish.choices[0].stop_reason = "###"
    events = run_writer([chunk({"role": "assistant", "content": "hi"}), finish])
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "###"}


def test_stream_writer_refusal_is_text_with_refusal_stop_reason() -> None:
    events = run_writer([chunk({"role": "assistant", "refusal": "No."}), chunk({}, "stop")])
    assert events[2]["delta"] == {"type": "text_delta", "text": "No."}
    assert events[-2]["delta"]["stop_reason"] == "refusal"


def test_stream_writer_refuses_tool_call_resumed_after_next_block() -> None:
    writer = AnthropicStreamWriter("m", provider="sim")
    call = {"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}
    writer.feed(chunk({"tool_calls": [call]}))
    writer.feed(chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g"}}]}))
    with pytest.raises(UpstreamProtocolError):
        writer.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}))
