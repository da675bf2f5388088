"""`cache_control` from an Anthropic client, and from an OpenAI client on content parts and tools,
reaches an Anthropic target on the block made from what carried it."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from stellara.inbound.anthropic import to_chat_request
from stellara.providers.anthropic.chat import build_messages_body
from stellara.schema.chat import ChatRequest
from stellara.wire import anthropic as wire

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
TOOL = {
    "name": "lookup",
    "description": "Look a word up.",
    "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}},
}
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
    "AAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def anthropic_body(chat: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        build_messages_body(chat, "claude-sonnet-4-5", default_max_tokens=1024)
    )
    return body


def through_the_gateway(**fields: Any) -> dict[str, Any]:
    """What an Anthropic target receives for a `/v1/messages` request with `fields`."""
    body = {"model": "m", "max_tokens": 10, **fields}
    chat = to_chat_request(wire.request_decoder.decode(msgspec.json.encode(body)))
    return anthropic_body(chat)


def test_cache_control_on_every_block_kind_reaches_anthropic_unchanged() -> None:
    system = [
        {"type": "text", "text": "Rules."},
        {"type": "text", "text": "Book.", "cache_control": HOUR},
    ]
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look up two words.", "cache_control": EPHEMERAL},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    "cache_control": EPHEMERAL,
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking.", "cache_control": EPHEMERAL},
                {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"word": "a"}}
                | {"cache_control": EPHEMERAL},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "A letter."}
                | {"cache_control": HOUR}
            ],
        },
    ]
    sent = through_the_gateway(
        system=system, messages=messages, tools=[TOOL | {"cache_control": HOUR}]
    )
    assert sent["system"] == system
    assert sent["tools"][0]["cache_control"] == HOUR
    user, assistant, results = sent["messages"]
    assert [block["cache_control"] for block in user["content"]] == [EPHEMERAL, EPHEMERAL]
    assert [block["cache_control"] for block in assistant["content"]] == [EPHEMERAL, EPHEMERAL]
    assert assistant["content"][0]["text"] == "Looking."
    assert results["content"][0]["cache_control"] == HOUR


def test_system_without_cache_control_is_still_one_string() -> None:
    system = [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]
    sent = through_the_gateway(system=system, messages=[{"role": "user", "content": "hi"}])
    assert sent["system"] == "One.\nTwo."
    assert sent["messages"] == [{"role": "user", "content": "hi"}]


def test_request_level_cache_control_marks_the_last_block() -> None:
    sent = through_the_gateway(
        cache_control=EPHEMERAL, messages=[{"role": "user", "content": "A long question."}]
    )
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "A long question.", "cache_control": EPHEMERAL}],
        }
    ]
    assert "cache_control" not in sent


@pytest.mark.parametrize("ttl", ["2h", "forever"])
def test_unknown_ttl_is_refused_by_the_decoder(ttl: str) -> None:
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
        "system": [
            {"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": ttl}}
        ],
    }
    with pytest.raises(msgspec.ValidationError, match="ttl"):
        wire.request_decoder.decode(msgspec.json.encode(body))


def test_openai_shaped_cache_control_on_parts_and_tools_reaches_anthropic() -> None:
    chat = msgspec.convert(
        {
            "model": "m",
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "Book.", "cache_control": HOUR}],
                },
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Q?", "cache_control": EPHEMERAL}],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": "{}"},
                        }
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": "c1",
                    "content": [{"type": "text", "text": "found", "cache_control": EPHEMERAL}],
                },
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "lookup", "parameters": TOOL["input_schema"]},
                    "cache_control": EPHEMERAL,
                }
            ],
        },
        ChatRequest,
    )
    sent = anthropic_body(chat)
    assert sent["system"] == [{"type": "text", "text": "Book.", "cache_control": HOUR}]
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "Q?", "cache_control": EPHEMERAL}
    ]
    # Anthropic refuses cache_control inside a tool_result's content: it goes on the result.
    [result] = sent["messages"][2]["content"]
    assert result == {
        "type": "tool_result",
        "tool_use_id": "c1",
        "content": [{"type": "text", "text": "found"}],
        "cache_control": EPHEMERAL,
    }
    assert sent["tools"][0]["cache_control"] == EPHEMERAL
