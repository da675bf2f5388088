"""The cost of every call reaches `request.completed`, priced from the catalog (HTTP level)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from stellara.events import RequestCompleted
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, gateway_config

AUTH = {"Authorization": f"Bearer {USER_KEY}"}
HELLO = {"model": "test-model", "messages": [{"role": "user", "content": "Hello there, gateway"}]}
# gpt-4o-mini, the simulator's model, as OpenAI publishes it: $0.15 in, $0.60 out per million.
GPT_4O_MINI_IN, GPT_4O_MINI_OUT = 0.15, 0.60


def _completed(gateway: RunningGateway) -> list[RequestCompleted]:
    seen: list[RequestCompleted] = []
    gateway.app[RUNTIME].events.subscribe(RequestCompleted, seen.append)
    return seen


async def _post(
    http: aiohttp.ClientSession, gateway: RunningGateway, body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post(f"{gateway.base_url}/chat/completions", json=body, headers=AUTH) as r:
        assert r.status == 200, await r.text()
        if body.get("stream"):
            await r.read()
            return {}
        answer: dict[str, Any] = await r.json()
        return answer


async def test_completed_event_carries_cost_from_catalog(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    seen = _completed(gateway)
    answer = await _post(http, gateway, HELLO)
    [event] = seen
    usage = answer["usage"]
    assert event.prompt_tokens == usage["prompt_tokens"] > 0
    assert event.completion_tokens == usage["completion_tokens"] > 0
    expected = (
        usage["prompt_tokens"] * GPT_4O_MINI_IN + usage["completion_tokens"] * GPT_4O_MINI_OUT
    ) / 1e6
    assert event.cost_usd == pytest.approx(expected)


async def test_streamed_request_is_priced_too(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    seen = _completed(gateway)
    await _post(http, gateway, {**HELLO, "stream": True})
    [event] = seen
    expected = (
        event.prompt_tokens * GPT_4O_MINI_IN + event.completion_tokens * GPT_4O_MINI_OUT
    ) / 1e6
    assert event.cost_usd == pytest.approx(expected)
    assert event.cost_usd > 0


async def test_config_catalog_overrides_the_price(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    catalog = [{"provider_model": "gpt-4o-mini", "input_per_mtok": 1000, "output_per_mtok": 2000}]
    gateway = await start_gateway(gateway_config(sim.url, catalog=catalog))
    seen = _completed(gateway)
    await _post(http, gateway, HELLO)
    [event] = seen
    expected = (event.prompt_tokens * 1000 + event.completion_tokens * 2000) / 1e6
    assert event.cost_usd == pytest.approx(expected)


async def test_unknown_model_costs_nothing(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    raw = gateway_config(sim.url)
    raw["models"][0]["targets"] = [{"provider": "sim", "model": "my-llama"}]
    gateway = await start_gateway(raw)
    seen = _completed(gateway)
    await _post(http, gateway, HELLO)
    [event] = seen
    assert event.completion_tokens > 0
    assert event.cost_usd == 0.0
