"""The simulator's Anthropic token counting (`POST /v1/messages/count_tokens`), driven by the
official `anthropic` SDK and by raw HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from stellara.sim import RunningSimulator, SimConfig, start_simulator

MODEL = "claude-sonnet-5-5"
HELLO: list[MessageParam] = [{"role": "user", "content": "How many tokens is this prompt?"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    simulator = await start_simulator(SimConfig())
    yield simulator
    await simulator.close()


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=sim.url, api_key="x", max_retries=0) as c:
        yield c


async def count(sim: RunningSimulator, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{sim.url}/v1/messages/count_tokens", json=body, headers=HEADERS) as response,
    ):
        return response.status, await response.json()


async def test_count_is_the_input_a_message_reports(client: anthropic.AsyncAnthropic) -> None:
    counted = await client.messages.count_tokens(
        model=MODEL, system="Be brief.", messages=HELLO, tools=[WEATHER]
    )
    message = await client.messages.create(
        model=MODEL, max_tokens=50, system="Be brief.", messages=HELLO, tools=[WEATHER]
    )
    assert counted.input_tokens == message.usage.input_tokens
    bare = await client.messages.count_tokens(model=MODEL, messages=HELLO)
    assert 0 < bare.input_tokens < counted.input_tokens  # the system prompt and tool count


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"max_tokens": 10}, "max_tokens"), ({"stream": True}, "stream"), ({"n": 1}, "n")],
)
async def test_count_refuses_generation_fields(
    sim: RunningSimulator, extra: dict[str, Any], field: str
) -> None:
    status, body = await count(sim, {"model": MODEL, "messages": HELLO, **extra})
    assert status == 400
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": f"{field}: Extra inputs are not permitted",
    }


async def test_count_validates_the_prompt_as_messages_does(sim: RunningSimulator) -> None:
    status, body = await count(sim, {"model": MODEL, "messages": []})
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    orphan = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
    ]
    status, body = await count(sim, {"model": MODEL, "messages": orphan})
    assert status == 400
    assert "tool_use_id" in body["error"]["message"]


async def test_count_needs_the_key_and_version(sim: RunningSimulator) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sim.url}/v1/messages/count_tokens",
            json={"model": MODEL, "messages": HELLO},
            headers={"x-api-key": "k"},
        ) as response,
    ):
        assert response.status == 400
        assert "anthropic-version" in (await response.json())["error"]["message"]
