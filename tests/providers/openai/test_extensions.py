"""OpenAI caches prompt prefixes by itself and refuses fields it does not know: the canonical
`cache_control` marks and Anthropic's thinking blocks never reach it, and nothing else in the
request changes."""

from __future__ import annotations

import json

import msgspec

from stellara.providers.openai.chat import build_chat_body
from stellara.schema.chat import ChatRequest

EPHEMERAL = {"type": "ephemeral"}


def test_cache_control_is_taken_off_for_openai() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "Book.", "cache_control": EPHEMERAL}],
            },
            {"role": "user", "content": [{"type": "text", "text": "Q?"}]},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                        "cache_control": EPHEMERAL,
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok", "cache_control": EPHEMERAL},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": EPHEMERAL}],
    }
    sent = json.loads(build_chat_body(msgspec.convert(body, ChatRequest), "gpt-4o"))
    assert "cache_control" not in json.dumps(sent)
    unmarked = json.loads(json.dumps(body).replace(', "cache_control": {"type": "ephemeral"}', ""))
    assert sent == unmarked | {"model": "gpt-4o"}


def test_request_without_cache_control_is_encoded_as_it_came() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    sent = json.loads(build_chat_body(msgspec.convert(body, ChatRequest), "gpt-4o"))
    assert sent == body | {"model": "gpt-4o"}


def test_thinking_blocks_are_taken_off_and_a_thinking_only_turn_left_out() -> None:
    thinking = [{"type": "thinking", "thinking": "Hm.", "signature": "c2ln"}]
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "thinking_blocks": thinking},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c", "thinking_blocks": thinking},
            {"role": "user", "content": "d"},
        ],
    }
    sent = json.loads(build_chat_body(msgspec.convert(body, ChatRequest), "gpt-4o"))
    assert sent["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    ]
