"""The Anthropic simulator thinks as the real API does: signed thinking blocks first, the budget
checked, and a tool loop refused when its thinking block is missing or tampered with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from stellara.sim import SimConfig, start_simulator

MODEL = "claude-sonnet-4-5"
PARIS: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
async def client() -> AsyncIterator[anthropic.AsyncAnthropic]:
    simulator = await start_simulator(SimConfig())
    async with anthropic.AsyncAnthropic(base_url=simulator.url, api_key="x", max_retries=0) as c:
        yield c
    await simulator.close()


@pytest.mark.parametrize(
    ("thinking", "max_tokens", "message"),
    [
        ({"type": "enabled", "budget_tokens": 4000}, 4000, "greater than `thinking.budget"),
        ({"type": "enabled", "budget_tokens": 1000}, 4000, "budget_tokens"),
        ({"type": "enabled"}, 4000, "budget_tokens: Field required"),
    ],
)
async def test_budget_is_checked(
    client: anthropic.AsyncAnthropic, thinking: Any, max_tokens: int, message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=message):
        await client.messages.create(
            model=MODEL, max_tokens=max_tokens, thinking=thinking, messages=PARIS
        )


async def test_adaptive_thinking_answers_with_a_signed_block(
    client: anthropic.AsyncAnthropic,
) -> None:
    answer = await client.messages.create(
        model=MODEL, max_tokens=100, thinking={"type": "adaptive"}, messages=PARIS
    )
    assert [block.type for block in answer.content] == ["thinking", "text"]
    assert answer.usage.output_tokens_details is not None


async def test_disabled_thinking_answers_without_it(client: anthropic.AsyncAnthropic) -> None:
    answer = await client.messages.create(
        model=MODEL, max_tokens=100, thinking={"type": "disabled"}, messages=PARIS
    )
    assert [block.type for block in answer.content] == ["text"]


async def test_tool_turn_without_its_thinking_block_is_refused(
    client: anthropic.AsyncAnthropic,
) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    first = await client.messages.create(
        model=MODEL, max_tokens=2000, thinking=thinking, tools=[WEATHER], messages=PARIS
    )
    call = next(block for block in first.content if block.type == "tool_use")
    result: MessageParam = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}],
    }
    without: list[MessageParam] = [
        *PARIS,
        {"role": "assistant", "content": [b for b in first.content if b.type != "thinking"]},
        result,
    ]
    with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
        await client.messages.create(
            model=MODEL, max_tokens=2000, thinking=thinking, tools=[WEATHER], messages=without
        )
    # With thinking off the same history is fine.
    await client.messages.create(model=MODEL, max_tokens=2000, tools=[WEATHER], messages=without)
