"""The answer cache through the gateway: exact and semantic hits, scopes, streams, control
headers, and the management routes."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import (
    LIMITED_KEY,
    MASTER_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    gateway_config,
    set_faults,
    upstream_requests,
)

HELLO: Any = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
async def cached(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    config = gateway_config(sim.url, cache={})
    config["keys"][1]["models"] = ["test-model", "other-model"]
    return await start_gateway(config)


def client(gateway: RunningGateway, key: str = USER_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


async def ask(sdk: openai.AsyncOpenAI, **extra: Any) -> tuple[str, str]:
    raw = await sdk.chat.completions.with_raw_response.create(
        model="test-model", messages=HELLO, **extra
    )
    return raw.headers["x-stellara-cache"], raw.parse().choices[0].message.content or ""


async def test_cache_second_identical_request_never_reaches_provider(
    cached: RunningGateway, sim: RunningSimulator
) -> None:
    async with client(cached) as sdk:
        first = await ask(sdk)
        second = await ask(sdk)
    assert first[0] == "miss"
    assert second == ("hit", first[1])
    assert len(await upstream_requests(sim)) == 1


async def test_cache_is_scoped_per_user(cached: RunningGateway, sim: RunningSimulator) -> None:
    async with client(cached) as alice, client(cached, LIMITED_KEY) as bob:
        await ask(alice)
        status, _ = await ask(bob)
    assert status == "miss"
    assert len(await upstream_requests(sim)) == 2


async def test_cache_serves_a_stored_answer_as_a_stream(
    cached: RunningGateway, sim: RunningSimulator
) -> None:
    async with client(cached) as sdk:
        _, text = await ask(sdk)
        raw = await sdk.chat.completions.with_raw_response.create(
            model="test-model", messages=HELLO, stream=True
        )
        assert raw.headers["x-stellara-cache"] == "hit"
        streamed = "".join(
            [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]
        )
    assert streamed == text
    assert len(await upstream_requests(sim)) == 1


async def test_cache_stores_a_completed_stream(
    cached: RunningGateway, sim: RunningSimulator
) -> None:
    async with client(cached) as sdk:
        stream = await sdk.chat.completions.create(model="test-model", messages=HELLO, stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        status, text = await ask(sdk)
    assert (status, text) == ("hit", streamed)
    assert len(await upstream_requests(sim)) == 1


async def test_cache_never_stores_a_broken_stream(
    cached: RunningGateway, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 2, "times": 1})
    async with client(cached) as sdk:
        stream = await sdk.chat.completions.create(model="test-model", messages=HELLO, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
        status, _ = await ask(sdk)
    assert status == "miss"


async def test_cache_control_headers_skip_lookup_and_store(
    cached: RunningGateway, sim: RunningSimulator
) -> None:
    async with client(cached) as sdk:
        assert (await ask(sdk, extra_headers={"Cache-Control": "no-store"}))[0] == "miss"
        assert (await ask(sdk))[0] == "miss"  # nothing was stored
        assert (await ask(sdk, extra_headers={"Cache-Control": "no-cache"}))[0] == "miss"
        assert (await ask(sdk))[0] == "hit"
    assert len(await upstream_requests(sim)) == 3


async def test_cache_bypassed_above_max_temperature(cached: RunningGateway) -> None:
    async with client(cached) as sdk:
        await ask(sdk, temperature=1.5)
        assert (await ask(sdk, temperature=1.5))[0] == "miss"


async def test_cache_ttl_header_must_be_positive_seconds(cached: RunningGateway) -> None:
    async with client(cached) as sdk:
        with pytest.raises(openai.BadRequestError):
            await ask(sdk, extra_headers={"x-stellara-cache-ttl": "soon"})


async def master(
    gateway: RunningGateway, method: str, path: str, body: Any = None, key: str = MASTER_KEY
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"{gateway.url}/ai-orchestration/cache/{path}",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        return response.status, await response.json()


async def test_cache_clear_by_user_and_stats(cached: RunningGateway) -> None:
    async with client(cached) as alice, client(cached, LIMITED_KEY) as bob:
        await ask(alice)
        await ask(bob)
        await ask(alice)
        status, stats = await master(cached, "GET", "stats")
        assert status == 200
        assert stats["levels"]["l1"]["entries"] == 2
        assert stats["levels"]["l1"]["hits"] == 1
        status, cleared = await master(cached, "POST", "clear", {"user": "alice"})
        assert (status, cleared) == (200, {"cleared": 1})
        assert (await ask(alice))[0] == "miss"
        assert (await ask(bob))[0] == "hit"


async def test_cache_warm_makes_the_same_request_a_hit(
    cached: RunningGateway, sim: RunningSimulator
) -> None:
    entry = {"user": "alice", "model": "test-model", "messages": HELLO, "response": "Paris."}
    status, body = await master(cached, "POST", "warm", {"entries": [entry]})
    assert (status, body) == (200, {"warmed": 1})
    async with client(cached) as sdk:
        assert await ask(sdk) == ("hit", "Paris.")
    assert await upstream_requests(sim) == []


async def test_cache_management_needs_master_key(cached: RunningGateway) -> None:
    assert (await master(cached, "GET", "stats", key=USER_KEY))[0] == 403
    assert (await master(cached, "POST", "clear", key=USER_KEY))[0] == 403
    assert (await master(cached, "POST", "warm", {"entries": []}, key="nope-nope"))[0] == 401


async def test_cache_hits_count_against_request_rate_limits(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    config = gateway_config(
        sim.url, cache={}, limits={"tiers": {"default": {"rate": {"window_s": 60, "requests": 2}}}}
    )
    gateway = await start_gateway(config)
    async with client(gateway) as sdk:
        await ask(sdk)
        assert (await ask(sdk))[0] == "hit"
        with pytest.raises(openai.RateLimitError):
            await ask(sdk)


async def test_cache_semantic_hit_and_guarded_miss(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(gateway_config(sim.url, cache={"semantic": {"enabled": True}}))
    async with client(gateway) as sdk:
        first = await sdk.chat.completions.create(
            model="test-model",
            messages=[{"role": "user", "content": "How do I turn on the kitchen lights?"}],
        )
        raw = await sdk.chat.completions.with_raw_response.create(
            model="test-model",
            messages=[{"role": "user", "content": "How can I turn on the kitchen lights?"}],
        )
        assert raw.headers["x-stellara-cache"] == "semantic"
        assert raw.parse().choices[0].message.content == first.choices[0].message.content
        negated = await sdk.chat.completions.with_raw_response.create(
            model="test-model",
            messages=[{"role": "user", "content": "How do I turn off the kitchen lights?"}],
        )
        assert negated.headers["x-stellara-cache"] == "miss"
    assert len(await upstream_requests(sim)) == 2
    status, stats = await master(gateway, "GET", "stats")
    assert status == 200
    assert stats["levels"]["semantic"]["hits"] == 1
    assert stats["levels"]["semantic"]["lookups"] == 3
