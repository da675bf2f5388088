"""`/v1/responses` gets what `/v1/chat/completions` gets: limits (refused with 429 and its
headers), the answer cache (a repeated request is a hit, streamed or not), fallbacks to the next
target, and one usage record per call; and a stored response continues on another gateway
process sharing Redis."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from stellara.assembly.config import check_config
from stellara.server import create_app
from stellara.sim import RunningSimulator
from stellara.state.redis import RedisBackend
from tests.conftest import (
    MASTER_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    gateway_config,
    set_faults,
    upstream_requests,
)
from tests.state.conftest import drop_keys, redis_or_fail, unique_prefix

REDIS_URL = os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def client(gateway: RunningGateway, key: str = USER_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


async def usage_records(gateway: RunningGateway) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gateway.url}/admin/usage?user=alice", headers=headers) as answer,
    ):
        assert answer.status == 200, await answer.text()
        return list((await answer.json())["data"])


async def test_responses_are_limited_like_chat_completions(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    limits = {"tiers": {"default": {"rate": {"window_s": 60, "requests": 2}}}}
    gateway = await start_gateway(gateway_config(sim.url, limits=limits))
    async with client(gateway) as sdk:
        for remaining in ("1", "0"):
            raw = await sdk.responses.with_raw_response.create(model="test-model", input="hi")
            assert raw.headers["x-ratelimit-remaining-requests"] == remaining
        with pytest.raises(openai.RateLimitError) as info:
            await sdk.responses.create(model="test-model", input="hi")
        with pytest.raises(openai.RateLimitError):  # one window for every route
            await sdk.chat.completions.create(
                model="test-model", messages=[{"role": "user", "content": "hi"}]
            )
    assert int(info.value.response.headers["Retry-After"]) >= 1
    assert info.value.body == {
        "message": info.value.body["message"],  # type: ignore[index]
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert len(await upstream_requests(sim)) == 2  # the two Responses calls, counted as calls


async def test_responses_repeated_is_a_cache_hit_streamed_or_not(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(gateway_config(sim.url, cache={}))
    async with client(gateway) as sdk:
        first = await sdk.responses.with_raw_response.create(
            model="test-model", input="What is the capital of France?"
        )
        again = await sdk.responses.with_raw_response.create(
            model="test-model", input="What is the capital of France?"
        )
        async with sdk.responses.stream(
            model="test-model", input="What is the capital of France?"
        ) as stream:
            streamed = await stream.get_final_response()
    assert first.headers["x-stellara-cache"] == "miss"
    assert again.headers["x-stellara-cache"] == "hit"
    assert again.parse().output_text == first.parse().output_text == streamed.output_text
    assert again.parse().id != first.parse().id  # a new response, with the cached answer
    assert len(await upstream_requests(sim)) == 1


async def test_responses_fall_back_to_the_next_target(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    config = gateway_config(sim.url)
    config["models"][0]["targets"].append({"provider": "sim", "model": "gpt-4o"})
    gateway = await start_gateway(config)
    await set_faults(sim, {"kind": "status", "status": 503, "model": "gpt-4o-mini"})
    async with client(gateway) as sdk:
        raw = await sdk.responses.with_raw_response.create(model="test-model", input="hi")
    assert raw.parse().status == "completed"
    assert raw.headers["x-stellara-attempts"] != "1"
    models = [r["body"]["model"] for r in await upstream_requests(sim)]
    assert models[-1] == "gpt-4o"
    assert set(models[:-1]) == {"gpt-4o-mini"}  # every attempt on the primary, then the next


async def test_responses_leave_one_usage_record_per_call(
    sim: RunningSimulator, start_gateway: StartGateway, tmp_path: Any
) -> None:
    usage_store = {"url": f"sqlite:///{tmp_path / 'usage.db'}", "flush_interval_s": 0.05}
    gateway = await start_gateway(gateway_config(sim.url, usage_store=usage_store))
    async with client(gateway) as sdk:
        made = await sdk.responses.with_raw_response.create(model="test-model", input="hi")
        async with sdk.responses.stream(model="test-model", input="more") as stream:
            await stream.get_final_response()
    request_id = made.headers["x-stellara-request-id"]
    for _ in range(100):
        records = await usage_records(gateway)
        if len(records) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(r["stream"] for r in records) == [False, True]
    (json_record,) = [r for r in records if r["request_id"] == request_id]
    usage = made.parse().usage
    assert usage is not None
    assert json_record["prompt_tokens"] == usage.input_tokens
    assert json_record["completion_tokens"] == usage.output_tokens
    assert json_record["cost_usd"] > 0


@pytest.fixture
async def two_processes(sim: RunningSimulator) -> AsyncIterator[tuple[str, str]]:
    """Two gateway apps, each with Redis clients of its own, on one private key prefix."""
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    raw = gateway_config(sim.url)
    raw["state"] = {"backend": "redis", "redis_url": REDIS_URL}
    runners = []
    urls = []
    for _ in range(2):
        backend = RedisBackend(REDIS_URL, key_prefix=prefix)
        runner = aiohttp.web.AppRunner(create_app(check_config(raw), state_backend=backend))
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/v1")
    yield urls[0], urls[1]
    for runner in runners:
        await runner.cleanup()
    await drop_keys(REDIS_URL, prefix)


async def test_responses_continue_and_delete_across_processes(
    two_processes: tuple[str, str], sim: RunningSimulator
) -> None:
    first_url, second_url = two_processes
    async with (
        openai.AsyncOpenAI(base_url=first_url, api_key=USER_KEY, max_retries=0) as one,
        openai.AsyncOpenAI(base_url=second_url, api_key=USER_KEY, max_retries=0) as two,
    ):
        first = await one.responses.create(model="test-model", input="My name is Ada.")
        second = await two.responses.create(
            model="test-model", input="What is my name?", previous_response_id=first.id
        )
        assert second.previous_response_id == first.id
        upstream = (await upstream_requests(sim))[-1]["body"]["messages"]
        assert [m["role"] for m in upstream] == ["user", "assistant", "user"]
        assert upstream[0]["content"] == "My name is Ada."
        assert upstream[1]["content"] == first.output_text
        items = await two.responses.input_items.list(first.id)
        assert [item.id for item in items.data]
        await two.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            await one.responses.retrieve(first.id)
        assert (await one.responses.retrieve(second.id)).id == second.id
