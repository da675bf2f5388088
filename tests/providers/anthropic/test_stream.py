"""Anthropic stream events → canonical chunks, on event sequences shaped like the real API's."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from stellara.errors import (
    UpstreamBadRequestError,
    UpstreamProtocolError,
    UpstreamRateLimitedError,
    UpstreamUnavailableError,
)
from stellara.providers.anthropic.stream import AnthropicStreamParser
from stellara.schema.chat import ChatCompletionChunk

# The API reference's basic streaming example (its `data:` lines, in order).
TEXT_STREAM = [
    b'{"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", '
    b'"type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-6", '
    b'"stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, '
    b'"output_tokens": 1}}}',
    b'{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}',
    b'{"type": "ping"}',
    b'{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", '
    b'"text": "Hello"}}',
    b'{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}',
    b'{"type": "content_block_stop", "index": 0}',
    b'{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, '
    b'"usage": {"output_tokens": 15}}',
    b'{"type": "message_stop"}',
]

# The streaming guide's tool use example: text at block 0, tool_use at block 1.
TOOL_STREAM = [
    b'{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message",'
    b'"role":"assistant","model":"claude-opus-4-6","stop_sequence":null,"usage":{"input_tokens":'
    b'472,"output_tokens":2},"content":[],"stop_reason":null}}',
    b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    b'{"type": "ping"}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let\'s"}}',
    b'{"type":"content_block_stop","index":0}',
    b'{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":'
    b'"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}',
    b'{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":""}}',
    b'{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{\\"location\\":"}}',
    b'{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":" \\"San Francisco, CA\\"}"}}',
    b'{"type":"content_block_stop","index":1}',
    b'{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
    b'"usage":{"output_tokens":89}}',
    b'{"type":"message_stop"}',
]

# The streaming guide's extended thinking example.
THINKING_STREAM = [
    b'{"type": "message_start", "message": {"id": "msg_01T", "type": "message", "role": '
    b'"assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, '
    b'"stop_sequence": null, "usage": {"input_tokens": 20, "output_tokens": 1}}}',
    b'{"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", '
    b'"thinking": ""}}',
    b'{"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", '
    b'"thinking": "Let me solve this step by step"}}',
    b'{"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", '
    b'"signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}',
    b'{"type": "content_block_stop", "index": 0}',
    b'{"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}',
    b'{"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", '
    b'"text": "27 * 453 = 12,231"}}',
    b'{"type": "content_block_stop", "index": 1}',
    b'{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, '
    b'"usage": {"output_tokens": 100}}',
    b'{"type": "message_stop"}',
]


def feed_all(events: list[bytes], parser: AnthropicStreamParser | None = None) -> list[Any]:
    parser = parser or AnthropicStreamParser("claude", created=1_700_000_000)
    chunks: list[ChatCompletionChunk] = []
    for event in events:
        chunks.extend(parser.feed(event))
    return [json.loads(msgspec.json.encode(chunk)) for chunk in chunks]


def test_stream_text_becomes_role_content_finish_and_usage_chunks():
    parser = AnthropicStreamParser("claude", created=1_700_000_000)
    chunks = feed_all(TEXT_STREAM, parser)
    head = {
        "id": "chatcmpl-1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "claude-opus-4-6",
    }
    open_ = {"finish_reason": None}
    assert chunks == [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, **open_}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "Hello"}, **open_}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "!"}, **open_}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            **head,
            "choices": [],
            "usage": {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40},
        },
    ]
    assert parser.is_done
    parser.finish()


def test_stream_tool_use_becomes_tool_call_deltas_indexed_from_zero():
    chunks = feed_all(TOOL_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(call["index"] == 0 for call in calls)
    arguments = "".join(call["function"].get("arguments", "") for call in calls)
    assert json.loads(arguments) == {"location": "San Francisco, CA"}
    assert "".join(d.get("content", "") for d in deltas) == "Okay, let's"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 89


def test_stream_second_tool_use_block_gets_index_one():
    second = [
        b'{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":'
        b'"toolu_2","name":"get_time","input":{}}}',
        b'{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta",'
        b'"partial_json":"{}"}}',
        b'{"type":"content_block_stop","index":2}',
    ]
    chunks = feed_all(TOOL_STREAM[:-2] + second + TOOL_STREAM[-2:])
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [call["index"] for call in calls if "id" in call] == [0, 1]
    assert calls[-1] == {"index": 1, "function": {"arguments": "{}"}}


def test_stream_thinking_is_dropped():
    chunks = feed_all(THINKING_STREAM)
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert contents == ["", "27 * 453 = 12,231", None]


def test_stream_usage_merges_message_delta_counts_with_message_start():
    start = json.loads(TEXT_STREAM[0])
    start["message"]["usage"] = {
        "input_tokens": 10,
        "output_tokens": 1,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 5,
    }
    delta = json.loads(TEXT_STREAM[6])
    delta["usage"] = {"output_tokens": 30, "input_tokens": 12}
    events = [json.dumps(start).encode(), *TEXT_STREAM[1:6], json.dumps(delta).encode()]
    usage = feed_all([*events, TEXT_STREAM[7]])[-1]["usage"]
    assert usage == {
        "prompt_tokens": 117,
        "completion_tokens": 30,
        "total_tokens": 147,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
    }


def test_stream_finish_reason_waits_for_message_stop():
    parser = AnthropicStreamParser("claude", created=1)
    chunks = feed_all(TEXT_STREAM[:7], parser)
    assert all(c["choices"][0].get("finish_reason") is None for c in chunks)
    assert not parser.is_done


def test_stream_cut_before_message_stop_fails_on_finish():
    parser = AnthropicStreamParser("claude", created=1)
    feed_all(TEXT_STREAM[:4], parser)
    with pytest.raises(UpstreamProtocolError) as caught:
        parser.finish()
    assert "before it was complete" in caught.value.message
    assert caught.value.provider == "claude"


def test_stream_empty_stream_fails_on_finish():
    with pytest.raises(UpstreamProtocolError):
        AnthropicStreamParser("claude", created=1).finish()


@pytest.mark.parametrize(
    ("error_type", "kind"),
    [
        ("overloaded_error", UpstreamUnavailableError),
        ("api_error", UpstreamUnavailableError),
        ("rate_limit_error", UpstreamRateLimitedError),
        ("invalid_request_error", UpstreamBadRequestError),
        ("brand_new_error", UpstreamUnavailableError),
    ],
)
def test_stream_error_event_raises_mapped_upstream_error(error_type, kind):
    parser = AnthropicStreamParser("claude", created=1)
    feed_all(TEXT_STREAM[:4], parser)
    event = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    with pytest.raises(kind) as caught:
        parser.feed(json.dumps(event).encode())
    assert caught.value.provider == "claude"
    assert caught.value.upstream_status is None


def test_stream_unknown_event_and_block_types_are_skipped():
    newer = [
        b'{"type": "message_annotation", "note": "from a newer API"}',
        b'{"type": "content_block_start", "index": 1, "content_block": {"type": '
        b'"server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}',
        b'{"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", '
        b'"partial_json": "{\\"query\\": \\"x\\"}"}}',
        b'{"type": "content_block_delta", "index": 1, "delta": {"type": "shiny_delta", "x": 1}}',
        b'{"type": "content_block_stop", "index": 1}',
    ]
    assert feed_all(TEXT_STREAM[:6] + newer + TEXT_STREAM[6:]) == feed_all(TEXT_STREAM)


@pytest.mark.parametrize(
    "event",
    [
        b"not json",
        b"",
        b'{"type": "content_block_delta", "index": 0}',
        b'{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}',
        b'{"type": "message_delta"}',
        b'{"no_type": true}',
    ],
)
def test_stream_garbage_is_protocol_error(event):
    parser = AnthropicStreamParser("claude", created=1)
    feed_all(TEXT_STREAM[:2], parser)
    with pytest.raises(UpstreamProtocolError):
        parser.feed(event)


def test_stream_content_before_message_start_is_protocol_error():
    parser = AnthropicStreamParser("claude", created=1)
    assert parser.feed(TEXT_STREAM[2]) == ()  # a ping is harmless anywhere
    with pytest.raises(UpstreamProtocolError) as caught:
        parser.feed(TEXT_STREAM[3])
    assert "before message_start" in caught.value.message


def test_stream_parsers_are_independent():
    done = AnthropicStreamParser("a", created=1)
    feed_all(TEXT_STREAM, done)
    fresh = AnthropicStreamParser("b", created=1)
    assert done.is_done
    assert not fresh.is_done


def answer_stream(*blocks: list[bytes]) -> list[bytes]:
    """A forced answer tool's stream: message_start, the given blocks, a tool_use stop."""
    stop = (
        b'{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
        b'"usage":{"output_tokens":20}}'
    )
    return [TOOL_STREAM[0], *(event for block in blocks for event in block), stop, TOOL_STREAM[-1]]


def tool_block(index: int, name: str, fragments: list[str]) -> list[bytes]:
    start = {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": {}},
    }
    deltas = [
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "input_json_delta", "partial_json": fragment},
        }
        for fragment in fragments
    ]
    stop = {"type": "content_block_stop", "index": index}
    return [json.dumps(event).encode() for event in (start, *deltas, stop)]


ANSWER_FRAGMENTS = ["", '{"city": ', '"Oslo", "deg', 'rees": 7}']


def test_stream_answer_tool_input_becomes_content_deltas():
    parser = AnthropicStreamParser("claude", created=1, answer_tool="stellara_answer")
    chunks = feed_all(answer_stream(tool_block(0, "stellara_answer", ANSWER_FRAGMENTS)), parser)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert all("tool_calls" not in delta for delta in deltas)
    assert [d.get("content") for d in deltas] == ["", *ANSWER_FRAGMENTS[1:], None]
    assert json.loads("".join(d.get("content", "") for d in deltas)) == {
        "city": "Oslo",
        "degrees": 7,
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_client_tool_beside_the_answer_tool_stays_a_tool_call_at_index_zero():
    parser = AnthropicStreamParser("claude", created=1, answer_tool="stellara_answer")
    events = answer_stream(
        tool_block(0, "stellara_answer", ANSWER_FRAGMENTS),
        tool_block(1, "get_weather", ['{"city": "Oslo"}']),
    )
    chunks = feed_all(events, parser)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [call["index"] for call in calls] == [0, 0]
    assert calls[0]["function"]["name"] == "get_weather"
    assert "".join(d.get("content", "") for d in deltas) == "".join(ANSWER_FRAGMENTS)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_without_answer_tool_a_tool_of_that_name_is_a_tool_call():
    chunks = feed_all(answer_stream(tool_block(0, "stellara_answer", ANSWER_FRAGMENTS)))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert any("tool_calls" in delta for delta in deltas)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_stop_sequence_rides_on_the_finish_chunk():
    stop = (
        b'{"type": "message_delta", "delta": {"stop_reason": "stop_sequence", '
        b'"stop_sequence": "###"}, "usage": {"output_tokens": 15}}'
    )
    chunks = feed_all([*TEXT_STREAM[:6], stop, TEXT_STREAM[7]])
    assert chunks[-2]["choices"] == [
        {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "###"}
    ]
    assert all("stop_reason" not in c["choices"][0] for c in chunks[:-2])
