"""Extended thinking to Anthropic: `thinking` and `top_k` as sent, `reasoning_effort` as a budget
within `max_tokens`, a forced tool refused beside thinking, thinking blocks first in their turn."""

from __future__ import annotations

from typing import Any

import pytest

from stellara.errors import InvalidRequestError
from stellara.providers.anthropic.thinking import EFFORT_BUDGETS
from tests.providers.anthropic.test_chat import refusal, wire_body

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


def test_thinking_and_top_k_are_sent_as_they_came() -> None:
    body = wire_body(thinking={"type": "enabled", "budget_tokens": 2000}, top_k=5, max_tokens=3000)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert (body["top_k"], body["max_tokens"]) == (5, 3000)
    assert wire_body(thinking={"type": "adaptive"})["thinking"] == {"type": "adaptive"}


def test_top_k_is_not_sent_to_an_api_version_that_refuses_sampling() -> None:
    assert "top_k" not in wire_body(top_k=5, allows_sampling=False)


@pytest.mark.parametrize("effort", sorted(EFFORT_BUDGETS))
def test_reasoning_effort_becomes_a_budget_above_the_default_answer_room(effort: str) -> None:
    body = wire_body(reasoning_effort=effort)
    budget = EFFORT_BUDGETS[effort]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == 4096 + budget  # the default answer room stays


def test_reasoning_effort_budget_fits_below_the_clients_max_tokens() -> None:
    body = wire_body(reasoning_effort="high", max_completion_tokens=5000)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4999}
    assert body["max_tokens"] == 5000


def test_reasoning_effort_none_sends_no_thinking() -> None:
    assert "thinking" not in wire_body(reasoning_effort="none")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": "low", "max_tokens": 800}, "reasoning_effort"),
        (
            {"reasoning_effort": "low", "tools": [WEATHER_TOOL], "tool_choice": "required"},
            "tool_choice",
        ),
        (
            {
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "response_format": {"type": "json_object"},
            },
            "response_format",
        ),
        (
            {
                "thinking": {"type": "adaptive"},
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
            "tool_choice",
        ),
    ],
)
def test_what_anthropic_would_refuse_is_refused_before_the_call(
    fields: dict[str, Any], param: str
) -> None:
    error = refusal(**fields)
    assert isinstance(error, InvalidRequestError)
    assert error.param == param


def test_forced_tool_without_thinking_or_with_it_disabled_is_sent() -> None:
    body = wire_body(thinking={"type": "disabled"}, tools=[WEATHER_TOOL], tool_choice="required")
    assert body["tool_choice"]["type"] == "any"


def test_thinking_blocks_open_the_assistant_turn() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
            "thinking_blocks": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "c2ln"},
                {"type": "redacted_thinking", "data": "ZW5j"},
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "Sunny"},
    ]
    assistant = wire_body(messages)["messages"][1]
    assert [block["type"] for block in assistant["content"]] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
    ]
    assert assistant["content"][0] == {
        "type": "thinking",
        "thinking": "Use the tool.",
        "signature": "c2ln",
    }
