"""Gemini `streamGenerateContent?alt=sse` events → canonical chunks."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from stellara.errors import (
    ContentFilterError,
    UpstreamProtocolError,
    UpstreamRateLimitedError,
    UpstreamUnavailableError,
)
from stellara.providers.google.chat import tool_call_id
from stellara.providers.google.stream import GeminiStreamParser
from stellara.schema.chat import ChatCompletionChunk


def event(parts: list[dict[str, Any]], finish: str | None = None, **extra: Any) -> bytes:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
    body = {"candidates": [candidate], "modelVersion": "gemini-2.0-flash", **extra}
    return json.dumps(body).encode()


def parser() -> GeminiStreamParser:
    return GeminiStreamParser("gem", fallback_id="chatcmpl-fallback", created=5, model="asked")


def deltas(chunks: list[ChatCompletionChunk]) -> list[Any]:
    return [msgspec.to_builtins(c.choices[0]) for c in chunks]


def test_stream_parser_text_deltas_first_with_role() -> None:
    p = parser()
    first = p.feed(event([{"text": "Hel"}], responseId="r9"))
    second = p.feed(event([{"text": "lo"}]))
    last = p.feed(
        event(
            [{"text": "!"}],
            "STOP",
            usageMetadata={"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7},
        )
    )
    assert deltas(first + second + last) == [
        {"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None},
        {"index": 0, "delta": {"content": "lo"}, "finish_reason": None},
        {"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"},
    ]
    assert first[0].id == "chatcmpl-r9"
    assert last[0].id == "chatcmpl-r9"
    assert first[0].model == "gemini-2.0-flash"
    assert first[0].created == 5
    assert p.is_done
    usage = p.finish()
    assert usage is not None
    assert usage.choices == []
    assert usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (4, 3)
    assert usage.usage.total_tokens == 7


def test_stream_parser_without_response_id_uses_fallback() -> None:
    [chunk] = parser().feed(event([{"text": "a"}]))
    assert chunk.id == "chatcmpl-fallback"


def test_stream_parser_function_call_is_one_complete_tool_call_delta() -> None:
    p = parser()
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    [chunk] = p.feed(event([call], "STOP", responseId="r1"))
    assert deltas([chunk]) == [
        {
            "index": 0,
            "delta": {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": tool_call_id("chatcmpl-r1", 0, 0),
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ]
    assert p.finish() is None  # no usage was sent


def test_stream_parser_numbers_calls_across_events() -> None:
    p = parser()
    p.feed(event([{"functionCall": {"name": "a", "args": {}}}]))
    [chunk] = p.feed(event([{"functionCall": {"name": "b", "args": {}}}], "STOP"))
    calls = chunk.choices[0].delta.tool_calls
    assert calls is not None
    assert calls[0].index == 1
    assert calls[0].id == tool_call_id("chatcmpl-fallback", 0, 1)
    assert chunk.choices[0].finish_reason == "tool_calls"


def test_stream_parser_skips_thoughts_and_empty_events() -> None:
    p = parser()
    first = p.feed(event([{"text": "plan", "thought": True}]))
    assert deltas(first) == [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
    assert p.feed(event([{"text": "more plan", "thought": True}])) == []
    assert p.feed(json.dumps({"usageMetadata": {"promptTokenCount": 2}}).encode()) == []


def test_stream_parser_max_tokens_is_length() -> None:
    [chunk] = parser().feed(event([{"text": "cut"}], "MAX_TOKENS"))
    assert chunk.choices[0].finish_reason == "length"


def test_stream_parser_ended_without_finish_reason_raises() -> None:
    p = parser()
    p.feed(event([{"text": "Hel"}]))
    with pytest.raises(UpstreamProtocolError):
        p.finish()


def test_stream_parser_empty_stream_raises() -> None:
    with pytest.raises(UpstreamProtocolError):
        parser().finish()


def test_stream_parser_blocked_prompt_raises_content_filter() -> None:
    data = json.dumps({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}).encode()
    with pytest.raises(ContentFilterError):
        parser().feed(data)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}, UpstreamUnavailableError),
        (
            {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"},
            UpstreamRateLimitedError,
        ),
    ],
)
def test_stream_parser_error_event_raises(error: dict[str, Any], kind: type[Exception]) -> None:
    with pytest.raises(kind):
        parser().feed(json.dumps({"error": error}).encode())


def test_stream_parser_invalid_json_is_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        parser().feed(b'{"candidates": [')
