"""The Responses stream writer: canonical chunks in, typed Responses events out.

Every event sequence is validated against OpenAI's OpenAPI description, event by event, and
played through the official SDK's stream state, as `client.responses.stream` plays it.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pydantic
import pytest

from stellara.errors import StellaraError, UpstreamRateLimitedError, UpstreamUnavailableError
from stellara.inbound.responses import ResponsesStreamWriter, to_response
from stellara.schema.chat import ChatCompletionChunk, chunk_decoder, completion_decoder
from stellara.wire import responses as wire
from tests.inbound.responses_oracle import as_json, check_response, check_stream

RESPONSE_ID = "resp_" + "a" * 32
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def request(**fields: Any) -> wire.ResponsesRequest:
    body: dict[str, Any] = {"model": "m", "input": "hi", "stream": True}
    body.update(fields)
    return wire.request_decoder.decode(msgspec.json.encode(body))


def writer(**fields: Any) -> ResponsesStreamWriter:
    return ResponsesStreamWriter(
        request(**fields), response_id=RESPONSE_ID, created_at=5, store=True
    )


def chunk(
    delta: dict[str, Any] | None, finish: str | None = None, *, index: int = 0, **extra: Any
) -> ChatCompletionChunk:
    choices = [] if delta is None else [{"index": index, "delta": delta, "finish_reason": finish}]
    body = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "provider-model",
        "choices": choices,
        **extra,
    }
    return chunk_decoder.decode(msgspec.json.encode(body))


def fragment(
    index: int, arguments: str, call_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    call: dict[str, Any] = {"index": index, "function": function}
    if call_id is not None:
        call["id"] = call_id
        call["type"] = "function"
    return {"tool_calls": [call]}


def run(
    chunks: list[ChatCompletionChunk], stream: ResponsesStreamWriter | None = None
) -> tuple[ResponsesStreamWriter, list[wire.StreamEvent]]:
    stream = stream or writer()
    events = stream.start()
    for each in chunks:
        events += stream.feed(each)
    events += stream.finish(completed_at=9)
    return stream, events


def types(events: list[wire.StreamEvent]) -> list[str]:
    return [str(event.__struct_config__.tag) for event in events]


TEXT = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo"}),
    chunk({}, "stop"),
    chunk(None, usage=USAGE),
]


def test_stream_text_events_in_order() -> None:
    stream, events = run(TEXT)
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    played = check_stream(events)
    final = played[-1].response
    assert final.output_text == "Hello"
    assert final.usage.total_tokens == 10
    assert final.completed_at == 9
    assert stream.response.status == "completed"
    assert as_json(events[0])["response"]["status"] == "in_progress"
    assert as_json(events[0])["response"]["output"] == []
    check_response(stream.response)


def test_stream_final_response_matches_the_whole_answer() -> None:
    stream, _ = run(TEXT)
    whole = completion_decoder.decode(
        msgspec.json.encode(
            {
                "id": "chatcmpl-s",
                "object": "chat.completion",
                "created": 1,
                "model": "provider-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": USAGE,
            }
        )
    )
    expected = to_response(
        whole, request(), response_id=RESPONSE_ID, created_at=5, store=True, completed_at=9
    )
    assert stream.response == expected


def test_stream_tool_call() -> None:
    stream, events = run(
        [
            chunk(fragment(0, "", "call_1", "get_weather")),
            chunk(fragment(0, '{"city":')),
            chunk(fragment(0, '"Oslo"}')),
            chunk({}, "tool_calls"),
        ],
        writer(
            tools=[{"type": "function", "name": "get_weather", "parameters": {}, "strict": None}]
        ),
    )
    assert types(events)[2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    played = check_stream(events)
    [item] = played[-1].response.output
    assert (item.call_id, item.name, item.arguments) == ("call_1", "get_weather", '{"city":"Oslo"}')
    done = as_json(events[-3])
    assert done["arguments"] == '{"city":"Oslo"}'
    assert done["name"] == "get_weather"
    assert stream.response.usage is msgspec.UNSET


def test_stream_text_then_parallel_tool_calls_with_interleaved_fragments() -> None:
    _, events = run(
        [
            chunk({"content": "Checking both."}),
            chunk(fragment(0, "", "call_a", "get_weather")),
            chunk(fragment(1, "", "call_b", "get_time")),
            chunk(fragment(0, '{"city":"Oslo"}')),
            chunk(fragment(1, '{"tz":"CET"}')),
            chunk({}, "tool_calls", usage=USAGE),
        ]
    )
    played = check_stream(events)
    output = played[-1].response.output
    assert [item.type for item in output] == ["message", "function_call", "function_call"]
    assert [(item.call_id, item.arguments) for item in output[1:]] == [
        ("call_a", '{"city":"Oslo"}'),
        ("call_b", '{"tz":"CET"}'),
    ]
    done_indexes = [
        as_json(e)["output_index"] for e in events if isinstance(e, wire.OutputItemDoneEvent)
    ]
    assert done_indexes == [0, 1, 2]
    assert len({item.id for item in output}) == 3


def test_stream_tool_call_named_late_and_without_an_id() -> None:
    stream, events = run(
        [chunk(fragment(0, '{"a":')), chunk(fragment(0, "1}", name="f")), chunk({}, "tool_calls")]
    )
    check_stream(events)
    [item] = stream.response.output
    assert isinstance(item, wire.FunctionCall)
    assert item.name == "f"
    assert item.call_id.startswith("call_")
    assert item.arguments == '{"a":1}'


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_stream_cut_short_ends_incomplete(finish: str, reason: str) -> None:
    stream, events = run([chunk({"content": "Hel"}), chunk({}, finish)])
    assert types(events)[-1] == "response.incomplete"
    played = check_stream(events)
    assert played[-1].response.incomplete_details.reason == reason
    assert stream.response.output[0].status == "incomplete"
    assert stream.response.completed_at is None


def test_stream_refusal() -> None:
    _, events = run(
        [chunk({"refusal": "I can't"}), chunk({"refusal": " help."}), chunk({}, "stop")]
    )
    assert "response.refusal.delta" in types(events)
    assert "response.refusal.done" in types(events)
    played = check_stream(events)
    [message] = played[-1].response.output
    assert message.content[0].refusal == "I can't help."


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            UpstreamUnavailableError("provider 'p' reset the connection", provider="p"),
            "server_error",
        ),
        (
            UpstreamRateLimitedError("slow down", provider="p", retry_after_s=1),
            "rate_limit_exceeded",
        ),
    ],
)
def test_stream_failure_ends_with_an_error_and_a_failed_response(
    error: StellaraError, code: str
) -> None:
    stream = writer()
    events = stream.start() + stream.feed(chunk({"content": "Hel"}))
    events += stream.fail(error)
    assert types(events)[-2:] == ["error", "response.failed"]
    played = check_stream(events)
    failed = played[-1].response
    assert failed.status == "failed"
    assert (failed.error.code, failed.error.message) == (code, error.message)
    assert [item.status for item in failed.output] == ["incomplete"]
    assert as_json(events[-2])["message"] == error.message
    assert stream.response.status == "failed"


def test_stream_without_chunks_completes_empty() -> None:
    stream, events = run([])
    assert types(events) == ["response.created", "response.in_progress", "response.completed"]
    check_stream(events)
    assert stream.response.output == []


def test_stream_start_once_and_ignore_other_choices() -> None:
    stream = writer()
    events = stream.feed(chunk({"content": "x"}, index=1))
    assert types(events) == ["response.created", "response.in_progress"]
    assert stream.start() == []
    events += stream.finish()
    check_stream(events)


def test_stream_structured_output_parses_with_the_sdk() -> None:
    class Thing(pydantic.BaseModel):
        a: str

    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    stream = writer(
        text={"format": {"type": "json_schema", "name": "Thing", "schema": schema, "strict": True}}
    )
    _, events = run(
        [chunk({"content": '{"a": '}), chunk({"content": '"b"}'}), chunk({}, "stop")], stream
    )
    played = check_stream(events, text_format=Thing)
    assert played[-1].response.output_parsed == Thing(a="b")
