"""Two gateway processes sharing Redis see each other's cache entries and invalidations."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import aiohttp
import pytest

from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import MASTER_KEY, RunningGateway, StartGateway, upstream_requests

REDIS_URL = os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
QUESTION: Any = [{"role": "user", "content": "Which planet is the largest?"}]


def shared_config(sim_url: str, user_key: str, user: str) -> dict[str, Any]:
    return {
        "server": {"master_key": MASTER_KEY},
        "state": {"backend": "redis", "redis_url": REDIS_URL},
        "providers": [{"id": "sim", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": "k"}],
        "models": [{"name": "m", "targets": [{"provider": "sim", "model": "gpt-4o-mini"}]}],
        "keys": [{"key": user_key, "user": user}],
        "cache": {},
    }


async def ask(gateway: RunningGateway, key: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.base_url}/chat/completions",
            json={"model": "m", "messages": QUESTION},
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        assert response.status == 200
        return response.headers["x-stellara-cache"]


async def clear(gateway: RunningGateway, user: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/ai-orchestration/cache/clear",
            json={"user": user},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        ) as response,
    ):
        assert response.status == 200


@pytest.fixture
async def pair(
    sim: RunningSimulator, start_gateway: StartGateway
) -> tuple[RunningGateway, RunningGateway, str, str]:
    user, key = f"user-{uuid.uuid4().hex}", f"sk-{uuid.uuid4().hex}"
    first = await start_gateway(shared_config(sim.url, key, user))
    second = await start_gateway(shared_config(sim.url, key, user))
    return first, second, user, key


async def test_shared_cache_entry_stored_by_one_is_a_hit_on_the_other(
    pair: tuple[RunningGateway, RunningGateway, str, str], sim: RunningSimulator
) -> None:
    first, second, user, key = pair
    assert await ask(first, key) == "miss"
    await first.app[RUNTIME].gateway.drain()  # the answer is stored after it was sent
    assert await wait_for(lambda: ask(second, key), "hit")
    assert len(await upstream_requests(sim)) == 1
    await clear(first, user)


async def test_shared_cache_clear_on_one_drops_the_others_copy(
    pair: tuple[RunningGateway, RunningGateway, str, str], sim: RunningSimulator
) -> None:
    first, second, user, key = pair
    await ask(first, key)
    await first.app[RUNTIME].gateway.drain()  # the answer is stored after it was sent
    assert await wait_for(lambda: ask(second, key), "hit")  # now in the second's L1 too
    await clear(first, user)
    # The second heard the broadcast: its L1 copy is gone, so this goes upstream again.
    assert await wait_for(lambda: ask(second, key), "miss")
    assert len(await upstream_requests(sim)) == 2
    await clear(first, user)


async def test_shared_cache_semantic_entry_of_one_serves_the_other(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    user, key = f"user-{uuid.uuid4().hex}", f"sk-{uuid.uuid4().hex}"
    config = {**shared_config(sim.url, key, user), "cache": {"semantic": {"enabled": True}}}
    first = await start_gateway(config)
    second = await start_gateway(config)

    async def ask_about(gateway: RunningGateway, question: str) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{gateway.base_url}/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": question}]},
                headers={"Authorization": f"Bearer {key}"},
            ) as response,
        ):
            assert response.status == 200
            return response.headers["x-stellara-cache"]

    assert await ask_about(first, "How do I turn on the kitchen lights?") == "miss"
    # The second never stored it: it heard the entry (or loaded it at start-up).
    paraphrase = "How can I turn on the kitchen lights?"
    assert await wait_for(lambda: ask_about(second, paraphrase), "semantic", timeout_s=10.0)
    assert len(await upstream_requests(sim)) == 1
    cache = second.app[RUNTIME].gateway.cache
    assert cache is not None
    assert cache.semantic is not None
    assert len(cache.semantic.index) >= 1  # with entries of earlier runs, still unexpired
    await clear(first, user)
    # A clear elsewhere drops the second's index too: its entries may point at nothing.
    deadline = asyncio.get_running_loop().time() + 3.0
    while len(cache.semantic.index):
        assert asyncio.get_running_loop().time() < deadline, "index not cleared"
        await asyncio.sleep(0.02)


async def wait_for(probe: Any, expected: str, timeout_s: float = 3.0) -> bool:
    """The store and the broadcast are asynchronous: poll until `probe` gives `expected`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if await probe() == expected:
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
