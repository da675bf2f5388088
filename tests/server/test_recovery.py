"""What clients and operators are told while a provider is down and once it is back.

The health routes and the `stellara_provider_healthy` gauge follow a recovery within seconds
(not when the failures leave the error-rate window), and a 503 refused because every breaker
is open says when to come back. Same two-provider simulator set-up as `test_routing.py`.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, set_faults
from tests.server.test_routing import (
    AUTH,
    DOWN_A,
    DOWN_B,
    MESSAGES,
    chat,
    get_json,
    reset_sim,
    routing_config,
)
from tests.telemetry.test_metrics import parse, total


async def primary_health(http: aiohttp.ClientSession, gateway: RunningGateway) -> tuple[str, bool]:
    """The primary's status in `/ai-orchestration/health`, and whether it is listed usable."""
    _, health = await get_json(http, gateway, "/ai-orchestration/health", AUTH)
    _, usable = await get_json(http, gateway, "/ai-orchestration/healthy-providers", AUTH)
    return health["providers"]["primary"]["status"], "primary" in usable["providers"]


async def primary_gauge(http: aiohttp.ClientSession, gateway: RunningGateway) -> float:
    async with http.get(f"{gateway.url}/metrics") as response:
        samples = parse(await response.text())
    return total(samples, "stellara_provider_healthy", provider="primary")


async def test_recovered_provider_is_healthy_again_within_seconds(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    config = routing_config(sim.url, failure_threshold=10, open_s=0.5)
    config["resilience"]["health_check"] = {"interval_s": 0.1, "timeout_s": 1}
    gateway = await start_gateway(config)
    await set_faults(sim, DOWN_A)
    for _ in range(5):  # 2 failed attempts each: the tenth failure opens the breaker
        status, _, _ = await chat(http, gateway, "solo")
        assert status == 502
    assert await primary_health(http, gateway) == ("unhealthy", False)
    assert await primary_gauge(http, gateway) == 0

    await reset_sim(sim)
    cleared, sent = time.perf_counter(), 0
    while await primary_health(http, gateway) != ("healthy", True):
        # Ten failures in the window: by the old rule it took 40 answers to look healthy.
        assert time.perf_counter() - cleared < 3, "still not healthy 3 s after recovering"
        await chat(http, gateway, "solo")  # 503 until the breaker half-opens, then answers
        sent += 1
        await asyncio.sleep(0.1)
    assert sent < 20
    assert await primary_gauge(http, gateway) == 1


async def post_messages(
    http: aiohttp.ClientSession, gateway: RunningGateway, model: str
) -> tuple[int, dict[str, str], str]:
    body = {"model": model, "max_tokens": 16, "messages": MESSAGES}
    async with http.post(
        f"{gateway.url}/v1/messages", data=json.dumps(body), headers={"x-api-key": USER_KEY}
    ) as response:
        return response.status, dict(response.headers), await response.text()


async def test_all_breakers_open_503_says_when_the_first_half_opens(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(routing_config(sim.url, failure_threshold=2, open_s=30))
    await set_faults(sim, DOWN_A, DOWN_B)
    assert (await chat(http, gateway, "solo"))[0] == 502  # primary's breaker opens
    await asyncio.sleep(1.1)
    assert (await chat(http, gateway, "spare"))[0] == 502  # backup's, a second later

    status, headers, body = await chat(http, gateway, "guarded")  # primary, then spare
    assert (status, body["error"]["code"]) == (503, "no_healthy_provider")
    assert headers["Retry-After"] in ("28", "29")  # the primary half-opens first
    status, headers, _ = await chat(http, gateway, "spare")
    assert status == 503
    assert headers["Retry-After"] in ("29", "30")

    status, headers, text = await post_messages(http, gateway, "guarded")
    assert status == 503
    assert json.loads(text)["error"]["type"] == "overloaded_error"
    assert headers["Retry-After"] in ("28", "29")
