"""Extended thinking through the gateway to Anthropic (simulated): the `anthropic` SDK's
`thinking` (JSON, streamed, a tool loop handing the signed block back), the `openai` SDK's
`reasoning_effort` on a Claude-backed model (`reasoning_content`, `thinking_blocks` handed back
in a tool loop), a forced tool refused beside thinking, and thinking tokens as reasoning tokens
in the usage record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import MessageParam, ToolParam

from stellara.sim import RunningSimulator
from tests.conftest import MASTER_KEY, USER_KEY, RunningGateway, StartGateway, upstream_requests
from tests.server.test_anthropic_provider import anthropic_config
from tests.server.test_stream_billing import eventually, get

THINKING: Any = {"type": "enabled", "budget_tokens": 2000}
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
PARIS: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]
OPENAI_TOOL: Any = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]},
}


@pytest.fixture
async def gateway(
    sim: RunningSimulator, start_gateway: StartGateway, tmp_path: Path
) -> RunningGateway:
    config = anthropic_config(sim.url)
    config["server"] = {"master_key": MASTER_KEY}
    config["usage_store"] = {"url": f"sqlite:///{tmp_path / 'usage.db'}", "flush_interval_s": 0.05}
    return await start_gateway(config)


@pytest.fixture
async def claude(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as client:
        yield client


async def test_messages_thinking_comes_back_signed_and_counts_as_reasoning(
    claude: anthropic.AsyncAnthropic, gateway: RunningGateway, sim: RunningSimulator
) -> None:
    answer = await claude.messages.create(
        model="smart",
        max_tokens=4000,
        thinking=THINKING,
        messages=PARIS,
        extra_body={"top_k": 20},
    )
    thinking, text = answer.content
    assert thinking.type == "thinking"
    assert thinking.thinking.startswith("The user asks about")
    assert thinking.signature
    assert text.type == "text"
    [sent] = [request["body"] for request in await upstream_requests(sim)]
    assert (sent["thinking"], sent["top_k"]) == (THINKING, 20)
    assert answer.usage.output_tokens_details is not None
    thinking_tokens = answer.usage.output_tokens_details.thinking_tokens
    assert 0 < thinking_tokens < answer.usage.output_tokens

    async def records() -> list[dict[str, Any]]:
        return list((await get(gateway, "/admin/usage?user=alice"))["data"])

    [record] = await eventually(records, lambda rows: len(rows) == 1)
    assert record["reasoning_tokens"] == thinking_tokens


async def test_messages_stream_has_thinking_and_signature_deltas(
    claude: anthropic.AsyncAnthropic,
) -> None:
    async with claude.messages.stream(
        model="smart", max_tokens=4000, thinking=THINKING, messages=PARIS
    ) as stream:
        kinds = [event.delta.type async for event in stream if event.type == "content_block_delta"]
        final = await stream.get_final_message()
    assert "thinking_delta" in kinds
    assert kinds.index("signature_delta") < kinds.index("text_delta")
    thinking = final.content[0]
    assert thinking.type == "thinking"
    assert thinking.signature
    assert thinking.thinking.startswith("The user asks about")


async def test_messages_tool_loop_hands_the_signed_thinking_back(
    claude: anthropic.AsyncAnthropic,
) -> None:
    first = await claude.messages.create(
        model="smart", max_tokens=4000, thinking=THINKING, tools=[WEATHER], messages=PARIS
    )
    assert first.stop_reason == "tool_use"
    assert first.content[0].type == "thinking"
    call = next(block for block in first.content if block.type == "tool_use")
    result: MessageParam = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}],
    }
    history: list[MessageParam] = [*PARIS, {"role": "assistant", "content": first.content}, result]
    second = await claude.messages.create(
        model="smart", max_tokens=4000, thinking=THINKING, tools=[WEATHER], messages=history
    )
    assert second.stop_reason == "end_turn"
    # A history whose thinking block was tampered with is refused, as Anthropic refuses it.
    tampered: Any = [block.model_dump() for block in first.content]
    tampered[0]["thinking"] = "Something else."
    history[1] = {"role": "assistant", "content": tampered}
    with pytest.raises(anthropic.BadRequestError, match="signature"):
        await claude.messages.create(
            model="smart", max_tokens=4000, thinking=THINKING, tools=[WEATHER], messages=history
        )


async def test_forced_tool_with_thinking_is_refused_before_the_call(
    claude: anthropic.AsyncAnthropic, sim: RunningSimulator
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="tool_choice") as caught:
        await claude.messages.create(
            model="smart",
            max_tokens=4000,
            thinking=THINKING,
            tools=[WEATHER],
            tool_choice={"type": "tool", "name": "get_weather"},
            messages=PARIS,
        )
    assert caught.value.status_code == 400
    assert await upstream_requests(sim) == []


async def test_openai_reasoning_effort_thinks_and_the_tool_loop_hands_blocks_back(
    sdk: openai.AsyncOpenAI, sim: RunningSimulator
) -> None:
    question: Any = {"role": "user", "content": "What is the weather in Paris?"}
    first = await sdk.chat.completions.create(
        model="smart", messages=[question], tools=[OPENAI_TOOL], reasoning_effort="low"
    )
    message = first.choices[0].message
    extra = message.model_extra or {}
    assert extra["reasoning_content"].startswith("The user asks about")
    [block] = extra["thinking_blocks"]
    assert block["signature"]
    assert message.tool_calls
    [call] = message.tool_calls
    assistant: Any = message.model_dump(exclude_none=True)
    tool: Any = {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}
    second = await sdk.chat.completions.create(
        model="smart",
        messages=[question, assistant, tool],
        tools=[OPENAI_TOOL],
        reasoning_effort="low",
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.usage is not None
    assert second.usage.completion_tokens_details is not None
    assert second.usage.completion_tokens_details.reasoning_tokens
    sent = [request["body"] for request in await upstream_requests(sim)]
    assert sent[0]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent[1]["messages"][1]["content"][0] == block
    # Without the blocks, the loop breaks as it would on Anthropic: a 400 naming the rule.
    del assistant["thinking_blocks"]
    with pytest.raises(openai.BadRequestError, match="thinking"):
        await sdk.chat.completions.create(
            model="smart",
            messages=[question, assistant, tool],
            tools=[OPENAI_TOOL],
            reasoning_effort="low",
        )


async def test_openai_stream_carries_reasoning_content_and_the_signature(
    sdk: openai.AsyncOpenAI,
) -> None:
    stream = await sdk.chat.completions.create(
        model="smart",
        messages=[{"role": "user", "content": "Hello?"}],
        reasoning_effort="minimal",
        stream=True,
    )
    deltas = [chunk.choices[0].delta.model_extra or {} async for chunk in stream if chunk.choices]
    reasoning = "".join(delta.get("reasoning_content") or "" for delta in deltas)
    signed = [block for delta in deltas for block in delta.get("thinking_blocks") or ()]
    assert reasoning.startswith("The user asks about")
    assert [block["signature"] != "" for block in signed] == [True]
