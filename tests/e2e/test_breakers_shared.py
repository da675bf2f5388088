"""Two gateway processes sharing Redis share their circuit breakers: once one trips a provider's
breaker, the other stops sending it traffic too, and a reset on one closes it on both."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import aiohttp
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import (
    MASTER_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    set_faults,
    upstream_requests,
)

REDIS_URL = os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AUTH = {"Authorization": f"Bearer {USER_KEY}"}
MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
DOWN_A = {"kind": "status", "status": 500, "model": "model-a"}

Json = dict[str, Any]


def shared_config(sim_url: str, primary: str, backup: str) -> Json:
    """`chat`: `primary`/model-a, then `backup`/model-b; breakers open for long, no probes.

    Provider ids are unique per test: every gateway on this Redis hears every breaker change.
    """
    providers = [
        {"id": pid, "type": "openai", "base_url": f"{sim_url}/v1", "api_key": "k"}
        for pid in (primary, backup)
    ]
    targets = [{"provider": primary, "model": "model-a"}, {"provider": backup, "model": "model-b"}]
    return {
        "server": {"master_key": MASTER_KEY},
        "state": {"backend": "redis", "redis_url": REDIS_URL},
        "providers": providers,
        "models": [{"name": "chat", "targets": targets}],
        "keys": [{"key": USER_KEY, "user": "alice"}],
        "resilience": {
            "retry": {"max_attempts": 1, "base_delay_ms": 1, "max_delay_ms": 5},
            "circuit_breaker": {"failure_threshold": 2, "open_s": 60},
            "health_check": {"enabled": False},  # probes would reach the primary
        },
    }


async def chat(http: aiohttp.ClientSession, gateway: RunningGateway) -> str:
    """Ask `chat`; the provider that answered."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(f"{gateway.base_url}/chat/completions", json=body, headers=AUTH) as r:
        assert r.status == 200, await r.text()
        return r.headers["x-stellara-provider"]


async def breakers(http: aiohttp.ClientSession, gateway: RunningGateway) -> dict[str, Json]:
    async with http.get(f"{gateway.url}/ai-orchestration/circuit-breakers", headers=MASTER) as r:
        assert r.status == 200
        body: Json = await r.json()
    return dict(body["breakers"])


async def state_of(http: aiohttp.ClientSession, gateway: RunningGateway, breaker: str) -> str:
    return str((await breakers(http, gateway)).get(breaker, {"state": "closed"})["state"])


async def wait_state(
    http: aiohttp.ClientSession, gateway: RunningGateway, breaker: str, want: str
) -> None:
    deadline = time.monotonic() + 5.0
    while (got := await state_of(http, gateway, breaker)) != want:
        assert time.monotonic() < deadline, f"{breaker} stayed {got}, expected {want}"
        await asyncio.sleep(0.02)


async def primary_calls(sim: RunningSimulator) -> int:
    requests = await upstream_requests(sim)
    return sum(1 for r in requests if r["body"] and r["body"].get("model") == "model-a")


@pytest.fixture
async def ids() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"primary-{tag}", f"backup-{tag}"


async def test_breaker_tripped_by_one_gateway_keeps_the_other_off_the_provider(
    sim: RunningSimulator,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    ids: tuple[str, str],
) -> None:
    primary, backup = ids
    first = await start_gateway(shared_config(sim.url, primary, backup))
    second = await start_gateway(shared_config(sim.url, primary, backup))
    await set_faults(sim, DOWN_A)

    assert await chat(http, first) == backup  # primary failed once: still closed
    assert await chat(http, first) == backup  # failure_threshold reached
    assert await state_of(http, first, primary) == "open"
    await wait_state(http, second, primary, "open")
    mine, theirs = (await breakers(http, first))[primary], (await breakers(http, second))[primary]
    assert theirs["opened_at_epoch_s"] == pytest.approx(mine["opened_at_epoch_s"], abs=0.05)
    assert theirs["next_half_open_at_epoch_s"] == pytest.approx(
        mine["next_half_open_at_epoch_s"], abs=0.05
    )

    before = await primary_calls(sim)
    assert before == 2
    for _ in range(3):
        assert await chat(http, second) == backup
    assert await primary_calls(sim) == before  # the second gateway never tried the primary
    assert await state_of(http, first, primary) == "open"  # no echo changed anything back


async def test_breaker_reset_on_one_gateway_closes_it_on_the_other(
    sim: RunningSimulator,
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    ids: tuple[str, str],
) -> None:
    primary, backup = ids
    first = await start_gateway(shared_config(sim.url, primary, backup))
    second = await start_gateway(shared_config(sim.url, primary, backup))
    await set_faults(sim, DOWN_A)
    await chat(http, second)
    await chat(http, second)
    await wait_state(http, first, primary, "open")

    await set_faults(sim)  # the primary recovers, and an operator resets its breaker on `first`
    url = f"{first.url}/ai-orchestration/circuit-breakers/{primary}/reset"
    async with http.post(url, headers=MASTER) as response:
        assert response.status == 200
    await wait_state(http, second, primary, "closed")
    assert await chat(http, second) == primary
