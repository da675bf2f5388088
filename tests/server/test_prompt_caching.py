"""Prompt caching through the gateway to Anthropic (simulated): `cache_control` sent with the
`anthropic` SDK to `/v1/messages`, or on content parts with the `openai` SDK, reaches Claude;
the second call reads from the cache; answers, usage records and `/admin/spend` show the cache
writes and reads, priced at the catalog's cache-write and cached-input rates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from stellara.sim import RunningSimulator
from stellara.sim.text import count_tokens
from tests.conftest import MASTER_KEY, USER_KEY, RunningGateway, StartGateway, upstream_requests
from tests.server.test_anthropic_provider import anthropic_config
from tests.server.test_stream_billing import eventually, get

BOOK = "The quick brown fox jumps over the lazy dog. " * 120
BOOK_TOKENS = count_tokens(BOOK)
EPHEMERAL: Any = {"type": "ephemeral"}
# claude-sonnet-4-5 in the shipped catalog, per million tokens.
INPUT, CACHE_WRITE, CACHE_READ, OUTPUT = 3.00, 3.75, 0.30, 15.00


@pytest.fixture
async def gateway(
    sim: RunningSimulator, start_gateway: StartGateway, tmp_path: Path
) -> RunningGateway:
    config = anthropic_config(sim.url)
    config["models"] = [
        {"name": "smart", "targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]}
    ]
    config["server"] = {"master_key": MASTER_KEY}
    config["usage_store"] = {"url": f"sqlite:///{tmp_path / 'usage.db'}", "flush_interval_s": 0.05}
    return await start_gateway(config)


@pytest.fixture
async def claude(gateway: RunningGateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=USER_KEY, max_retries=0
    ) as client:
        yield client


async def ask(claude: anthropic.AsyncAnthropic, question: str) -> anthropic.types.Message:
    return await claude.messages.create(
        model="smart",
        max_tokens=50,
        system=[{"type": "text", "text": BOOK, "cache_control": EPHEMERAL}],
        messages=[{"role": "user", "content": question}],
    )


async def records(gateway: RunningGateway, count: int) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        return list((await get(gateway, "/admin/usage?user=alice"))["data"])

    found = await eventually(read, lambda rows: len(rows) == count)
    return sorted(found, key=lambda row: row["cache_write_tokens"] or 0)


def cost(row: dict[str, Any]) -> float:
    plain = row["prompt_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]
    return (
        float(
            plain * INPUT
            + row["cache_write_tokens"] * CACHE_WRITE
            + row["cached_tokens"] * CACHE_READ
            + row["completion_tokens"] * OUTPUT
        )
        / 1e6
    )


async def test_messages_second_call_reads_the_cache_and_is_billed_so(
    claude: anthropic.AsyncAnthropic, gateway: RunningGateway, sim: RunningSimulator
) -> None:
    first = await ask(claude, "Who jumps?")
    second = await ask(claude, "Who sleeps?")
    assert first.usage.cache_creation_input_tokens == BOOK_TOKENS
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == BOOK_TOKENS
    assert second.usage.cache_creation_input_tokens == 0
    sent = [request["body"] for request in await upstream_requests(sim)]
    assert sent[0]["system"] == [{"type": "text", "text": BOOK, "cache_control": EPHEMERAL}]

    read, written = await records(gateway, 2)
    assert (written["cache_write_tokens"], written["cached_tokens"]) == (BOOK_TOKENS, 0)
    assert (read["cache_write_tokens"], read["cached_tokens"]) == (0, BOOK_TOKENS)
    for row in (read, written):
        assert row["cost_usd"] == pytest.approx(cost(row))
    assert read["cost_usd"] < written["cost_usd"]
    spend = (await get(gateway, "/admin/spend?group_by=model"))["total"]
    assert spend["cache_write_tokens"] == BOOK_TOKENS
    assert spend["cached_tokens"] == BOOK_TOKENS
    assert spend["cost_usd"] == pytest.approx(cost(read) + cost(written))


async def test_messages_stream_reports_the_cache_read(
    claude: anthropic.AsyncAnthropic, gateway: RunningGateway
) -> None:
    await ask(claude, "Who jumps?")
    async with claude.messages.stream(
        model="smart",
        max_tokens=50,
        system=[{"type": "text", "text": BOOK, "cache_control": EPHEMERAL}],
        messages=[{"role": "user", "content": "Who sleeps?"}],
    ) as stream:
        final = await stream.get_final_message()
    assert final.usage.cache_read_input_tokens == BOOK_TOKENS
    assert final.usage.cache_creation_input_tokens == 0
    read, _ = await records(gateway, 2)
    assert read["cached_tokens"] == BOOK_TOKENS


async def test_openai_sdk_cache_control_parts_reach_claude(
    gateway: RunningGateway, sim: RunningSimulator
) -> None:
    messages: Any = [
        {
            "role": "system",
            "content": [{"type": "text", "text": BOOK, "cache_control": EPHEMERAL}],
        },
        {"role": "user", "content": "Who jumps?"},
    ]
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key=USER_KEY, max_retries=0
    ) as client:
        first = await client.chat.completions.create(model="smart", messages=messages)
        stream = await client.chat.completions.create(
            model="smart", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        usage = [chunk.usage async for chunk in stream if chunk.usage is not None]
    assert first.usage is not None
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cache_write_tokens == BOOK_TOKENS
    [streamed] = usage
    assert streamed.prompt_tokens_details is not None
    assert streamed.prompt_tokens_details.cached_tokens == BOOK_TOKENS
    sent = (await upstream_requests(sim))[0]["body"]
    assert sent["system"] == [{"type": "text", "text": BOOK, "cache_control": EPHEMERAL}]
