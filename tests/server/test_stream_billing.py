"""A stream that ends early is not free: through real sockets, a client that hangs up
mid-answer, a provider that cuts the stream and one that stalls past the timeout are each
charged the prompt and what was relayed, in the usage record and in the caller's limits; a
stream that ends normally keeps the provider's own numbers."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from stellara.catalog import Catalog
from stellara.schema.chat import ChatRequest, Usage, UserMessage
from stellara.sim import RunningSimulator, SimConfig, start_simulator
from stellara.tokens import TokenCounter
from tests.conftest import (
    MASTER_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    gateway_config,
    set_faults,
)

PROMPT = "Tell me about the rivers of France, and which of them is the longest."
MODEL, PROVIDER_MODEL = "test-model", "gpt-4o-mini"  # gateway_config's
ANSWER_CHUNKS = 24  # the simulator's answer: 24 content chunks, one token each by its measure
TOKENS = TokenCounter()
T = TypeVar("T")
TIER = {
    "rate": {"window_s": 60, "requests": 100, "tokens": 1_000_000},
    "quota": {"daily": {"tokens": 1_000_000, "cost_usd": 100}},
}


@pytest.fixture
async def slow_sim() -> AsyncIterator[RunningSimulator]:
    """A simulator that streams a content chunk every 20 ms: a client can leave midway."""
    simulator = await start_simulator(SimConfig(per_token_ms=20))
    yield simulator
    await simulator.close()


@pytest.fixture
async def gateway(
    slow_sim: RunningSimulator, start_gateway: StartGateway, tmp_path: Path
) -> RunningGateway:
    config = gateway_config(
        slow_sim.url,
        limits={"tiers": {"default": TIER}},
        usage_store={"url": f"sqlite:///{tmp_path / 'usage.db'}", "flush_interval_s": 0.05},
        # Time enough for the 24 chunks 20 ms apart on a loaded machine; the stall test waits it.
        resilience={"timeout_s": 3, "retry": {"base_delay_ms": 1, "max_delay_ms": 5}},
    )
    return await start_gateway(config)


async def stream_answer(gateway: RunningGateway, *, stop_after: int | None = None) -> str:
    """Ask for a streamed answer and read it as a client does: every content chunk, or only
    the first `stop_after` events before hanging up. Returns the text received."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    received: list[str] = []
    events = 0
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status == 200
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue  # the blank line after each event, `data: [DONE]`
            chunk = json.loads(line.removeprefix(b"data: "))
            received += [c["delta"].get("content") or "" for c in chunk.get("choices", ())]
            events += 1
            if events == stop_after:
                response.close()  # hang up mid-answer
                break
    return "".join(received)


async def eventually(read: Callable[[], Awaitable[T]], check: Callable[[T], bool]) -> T:
    """`read()`'s value once `check` holds (the usage writer and the settle run behind)."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        value = await read()
        if check(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"never came: {value}"
        await asyncio.sleep(0.05)


async def get(gateway: RunningGateway, path: str, key: str = MASTER_KEY) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(gateway.url + path, headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        assert response.status == 200, await response.text()
        if response.content_type == "text/csv":
            return list(csv.DictReader(io.StringIO(await response.text())))
        return await response.json()


async def the_record(gateway: RunningGateway) -> dict[str, Any]:
    async def records() -> list[dict[str, Any]]:
        return list((await get(gateway, "/admin/usage?user=alice"))["data"])

    (record,) = await eventually(records, lambda found: len(found) == 1)
    return record


async def limits_moved_to(gateway: RunningGateway, record: dict[str, Any]) -> None:
    """The caller's token window, token quota and cost quota settled to the record."""
    tokens = record["prompt_tokens"] + record["completion_tokens"]

    async def status() -> tuple[Any, Any]:
        quotas = await get(gateway, "/ai-orchestration/quotas/alice", USER_KEY)
        rates = await get(gateway, "/ai-orchestration/rate-limits/alice", USER_KEY)
        return quotas["windows"]["daily"], rates["windows"]["rate"]

    daily, rate = await eventually(status, lambda s: s[1]["tokens"]["used"] == tokens)
    assert rate["tokens"]["used"] == daily["tokens"]["used"] == tokens
    assert daily["cost_usd"]["used"] == pytest.approx(record["cost_usd"])


def assert_estimated(record: dict[str, Any], received: str, *, extra_tokens: int = 0) -> None:
    """The prompt counted locally and the completion counted from the text relayed (up to
    `extra_tokens` more than `received`: chunks sent before the hang-up was noticed), priced
    as any usage and flagged as an estimate."""
    request = ChatRequest(model=MODEL, messages=[UserMessage(content=PROMPT)], stream=True)
    assert record["prompt_tokens"] == TOKENS.count_prompt(request, PROVIDER_MODEL) > 0
    received_tokens = TOKENS.count_text(received, PROVIDER_MODEL)
    assert received_tokens <= record["completion_tokens"] <= received_tokens + extra_tokens
    prompt, completion = record["prompt_tokens"], record["completion_tokens"]
    usage = Usage(prompt, completion, prompt + completion)
    price = Catalog.shipped().cost_usd("openai", PROVIDER_MODEL, usage)
    assert price > 0
    assert record["cost_usd"] == pytest.approx(price)
    assert record["usage_estimated"] is True


async def test_client_hanging_up_mid_stream_is_charged_what_it_received(
    gateway: RunningGateway,
) -> None:
    received = await stream_answer(gateway, stop_after=13)
    assert 0 < len(received.split()) < ANSWER_CHUNKS
    record = await the_record(gateway)
    assert (record["status"], record["error"], record["stream"]) == (
        499,
        "client_closed_request",
        True,
    )
    assert_estimated(record, received, extra_tokens=4)
    await limits_moved_to(gateway, record)
    (exported,) = await get(gateway, "/admin/usage?format=csv")
    assert exported["usage_estimated"] == "True"


async def test_stream_cut_by_the_provider_is_charged_what_was_relayed(
    gateway: RunningGateway, slow_sim: RunningSimulator
) -> None:
    await set_faults(slow_sim, {"kind": "cut_stream", "after_chunks": 5})
    received = await stream_answer(gateway)
    assert len(received.split()) == 5
    record = await the_record(gateway)
    assert record["status"] == 502
    assert_estimated(record, received)
    await limits_moved_to(gateway, record)


async def test_stream_timing_out_after_its_first_byte_is_charged_what_was_relayed(
    gateway: RunningGateway, slow_sim: RunningSimulator
) -> None:
    await set_faults(slow_sim, {"kind": "stall", "after_chunks": 3, "delay_ms": 10_000})
    received = await stream_answer(gateway)
    record = await the_record(gateway)
    assert (record["status"], record["error"]) == (504, "upstream_timeout")
    assert_estimated(record, received)
    await limits_moved_to(gateway, record)


async def test_complete_stream_records_the_providers_own_usage(gateway: RunningGateway) -> None:
    received = await stream_answer(gateway)
    assert len(received.split()) == ANSWER_CHUNKS
    record = await the_record(gateway)
    assert (record["status"], record["completion_tokens"]) == (200, ANSWER_CHUNKS)
    assert record["usage_estimated"] is False
    await limits_moved_to(gateway, record)
