import json

import pytest

from stellara.errors import UpstreamError, UpstreamProtocolError
from stellara.providers.openai.stream import OpenAIStreamParser
from stellara.schema.chat import ChatCompletionChunk


def chunk_bytes(**delta: object) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
    ).encode()


def test_stream_parser_decodes_chunks():
    parser = OpenAIStreamParser("p1")
    first = parser.feed(chunk_bytes(role="assistant", content=""))
    second = parser.feed(chunk_bytes(content="Hel"))
    assert isinstance(first, ChatCompletionChunk)
    assert first.choices[0].delta.role == "assistant"
    assert second is not None
    assert second.choices[0].delta.content == "Hel"
    assert parser.is_done is False


def test_stream_parser_usage_chunk_with_no_choices():
    parser = OpenAIStreamParser("p1")
    data = json.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10},
        }
    ).encode()
    chunk = parser.feed(data)
    assert chunk is not None
    assert chunk.choices == []
    assert chunk.usage is not None
    assert chunk.usage.total_tokens == 10


def test_stream_parser_done_returns_none_and_marks_done():
    parser = OpenAIStreamParser("p1")
    parser.feed(chunk_bytes(content="x"))
    assert parser.feed(b"[DONE]") is None
    assert parser.is_done is True
    parser.finish()


def test_stream_parser_finish_without_done_raises_protocol_error():
    parser = OpenAIStreamParser("p1")
    parser.feed(chunk_bytes(content="x"))
    with pytest.raises(UpstreamProtocolError) as info:
        parser.finish()
    assert info.value.provider == "p1"
    assert "before it was complete" in info.value.message


def test_stream_parser_finish_on_empty_stream_raises():
    with pytest.raises(UpstreamProtocolError):
        OpenAIStreamParser("p1").finish()


def test_stream_parser_error_event_raises_upstream_error():
    parser = OpenAIStreamParser("p1")
    data = b'{"error": {"message": "The server had an error", "type": "server_error"}}'
    with pytest.raises(UpstreamError) as info:
        parser.feed(data)
    assert not isinstance(info.value, UpstreamProtocolError)
    assert info.value.provider == "p1"
    assert "server_error" in info.value.message
    assert info.value.is_retryable is True
    assert parser.is_done is False


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"",
        b'{"id": "c", "object"',
        b"[DONE] ",
        b'{"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": []}',
        b'{"error": "a string, not an object"}',
    ],
)
def test_stream_parser_garbage_raises_protocol_error(data):
    parser = OpenAIStreamParser("p1")
    with pytest.raises(UpstreamProtocolError) as info:
        parser.feed(data)
    assert info.value.provider == "p1"
    assert parser.is_done is False


def test_stream_parser_instances_are_independent():
    done = OpenAIStreamParser("a")
    fresh = OpenAIStreamParser("b")
    done.feed(b"[DONE]")
    assert done.is_done is True
    assert fresh.is_done is False
