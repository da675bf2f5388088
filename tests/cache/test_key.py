"""Exact-cache keys: equal requests → equal keys; any answer-changing field → a different key."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stellara.cache.key import cache_key
from stellara.schema.chat import request_decoder

BASE: dict[str, Any] = {
    "model": "smart",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "temperature": 0.2,
}


def key_of(body: dict[str, Any], scope: str = "alice") -> str:
    return cache_key(scope, request_decoder.decode(orjson.dumps(body)))


def test_cache_key_same_request_same_key() -> None:
    assert key_of(BASE) == key_of(dict(BASE))


def test_cache_key_ignores_delivery_and_bookkeeping_fields() -> None:
    variant = {
        **BASE,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "end-user-42",
        "metadata": {"trace": "x"},
        "store": True,
    }
    assert key_of(variant) == key_of(BASE)


def test_cache_key_single_text_part_equals_string() -> None:
    parts = {
        **BASE,
        "messages": [
            BASE["messages"][0],
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is the capital of France?"}],
            },
        ],
    }
    assert key_of(parts) == key_of(BASE)


def test_cache_key_ignores_json_key_order_in_tools() -> None:
    tool_a = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {}, "b": {}}},
        },
    }
    tool_b = {
        "function": {
            "parameters": {"properties": {"b": {}, "a": {}}, "type": "object"},
            "name": "f",
        },
        "type": "function",
    }
    assert key_of({**BASE, "tools": [tool_a]}) == key_of({**BASE, "tools": [tool_b]})


@pytest.mark.parametrize(
    "change",
    [
        {"model": "other"},
        {"temperature": 0.3},
        {"top_p": 0.5},
        {"max_tokens": 10},
        {"stop": ["\n"]},
        {"seed": 7},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "none"},
        {"messages": [{"role": "user", "content": "What is the capital of Spain?"}]},
        {"messages": [{"role": "system", "content": "Be long."}, BASE["messages"][1]]},
        {"presence_penalty": 1.0},
        {"logit_bias": {"50256": -100}},
    ],
)
def test_cache_key_changes_with_answer_changing_fields(change: dict[str, Any]) -> None:
    assert key_of({**BASE, **change}) != key_of(BASE)


def test_cache_key_differs_per_scope() -> None:
    assert key_of(BASE, "alice") != key_of(BASE, "bob")
