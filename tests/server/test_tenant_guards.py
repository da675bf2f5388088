"""A tenant cannot make the gateway work for it past its limits, or crowd out the others.

- Over its limit, a tenant flooding huge bodies is refused before a body is read (no state
  call, no decode) and admitted 0 times more, on Redis state as in production.
- A tier's `concurrency` caps the calls one tenant has in flight on a process.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from stellara.events import RequestFailed
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator, SimConfig, start_simulator
from stellara.state.redis import RedisBackend
from stellara.testing import EventRecorder
from tests.conftest import USER_KEY, StartGateway, gateway_config, upstream_requests
from tests.state.conftest import REDIS_URL, drop_keys, redis_or_fail, unique_prefix

AUTH = {"Authorization": f"Bearer {USER_KEY}"}
HUGE_BLOCKS = 110_000  # the probe's body: 3.4 MB of tiny content blocks


def messages_body(blocks: int) -> dict[str, object]:
    content = [{"type": "text", "text": "x"} for _ in range(blocks)]
    return {
        "model": "test-model",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": content}],
    }


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    yield prefix
    await drop_keys(REDIS_URL, prefix)


async def test_a_tenant_over_its_limit_is_refused_before_its_bodies_are_read(
    sim: RunningSimulator, start_gateway: StartGateway, redis_prefix: str
) -> None:
    config = gateway_config(
        sim.url,
        server={"master_key": "sk-test-master-key-9999", "max_body_bytes": 8 * 1024 * 1024},
        limits={
            "tiers": {"free": {"rate": {"window_s": 60, "requests": 5}}},
            "default_tier": "free",
        },
        state={"backend": "redis", "redis_url": REDIS_URL},
    )
    backend = RedisBackend(REDIS_URL, key_prefix=redis_prefix)
    gateway = await start_gateway(config, state_backend=backend)
    recorder = EventRecorder(gateway.app[RUNTIME].events)
    small = {
        "model": "test-model",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    }
    huge = messages_body(HUGE_BLOCKS)
    async with aiohttp.ClientSession() as http:

        async def post(body: dict[str, object]) -> int:
            # A stream: aiohttp warns (an error here) on a large body passed as bytes.
            data = io.BytesIO(json.dumps(body).encode())
            headers = {**AUTH, "Content-Type": "application/json"}
            async with http.post(f"{gateway.url}/v1/messages", data=data, headers=headers) as r:
                await r.read()
                return r.status

        assert [await post(small) for _ in range(6)] == [200] * 5 + [429]

        async def flood() -> list[int]:
            return [await post(huge) for _ in range(5)]

        statuses = [
            s for batch in await asyncio.gather(*(flood() for _ in range(4))) for s in batch
        ]
    assert statuses == [429] * 20
    assert len(await upstream_requests(sim)) == 5  # 0 admitted past the limit
    refused = [e for e in recorder.of(RequestFailed) if e.status == 429]
    assert len(refused) == 21  # every refusal is recorded, the flood's too
    flood_records = refused[1:]
    assert [e.model for e in flood_records] == [""] * 20  # refused before a body named a model
    assert [e.error for e in flood_records] == ["rate_limit_exceeded"] * 20


@pytest.fixture
async def slow_sim() -> AsyncIterator[RunningSimulator]:
    simulator = await start_simulator(SimConfig(latency_ms=300))
    yield simulator
    await simulator.close()


async def test_a_tiers_concurrency_caps_one_tenants_calls_in_flight(
    slow_sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    config = gateway_config(
        slow_sim.url,
        limits={"tiers": {"free": {"concurrency": 2}}, "default_tier": "free"},
    )
    gateway = await start_gateway(config)
    body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http:

        async def post() -> tuple[int, str | None]:
            url = f"{gateway.base_url}/chat/completions"
            async with http.post(url, json=body, headers=AUTH) as response:
                answer = await response.json()
                return response.status, (answer.get("error") or {}).get("code")

        results = await asyncio.gather(*(post() for _ in range(5)))
        assert sorted(results, key=str) == sorted(
            [(200, None)] * 2 + [(429, "concurrency_limit_exceeded")] * 3, key=str
        )
        assert (await post())[0] == 200  # the slots came back when the calls ended
    limiter = gateway.app[RUNTIME].limiter
    assert limiter.guard.in_flight("alice") == 0
