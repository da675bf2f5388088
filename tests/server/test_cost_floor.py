"""`strategy: cost` with a latency floor, end to end: the gateway on a socket, a fast and a
slow simulator, prices from the config's `catalog:` so which target is cheaper is plain."""

from __future__ import annotations

import re

import aiohttp

from stellara.routing.stats import PerformanceSettings
from stellara.sim import RunningSimulator, SimConfig, start_simulator
from tests.conftest import StartGateway

from .test_strategies import AUTH, MESSAGES, chat, prompt_tokens, strategy_config, target

CATALOG = [  # $ per million tokens: input, output
    {"provider_model": "cheap-model", "input_per_mtok": 0.1, "output_per_mtok": 0.4},
    {"provider_model": "dear-model", "input_per_mtok": 5.0, "output_per_mtok": 15.0},
]
SLOW_MS = 80.0
FLOOR_MS = 50.0
MAX_TOKENS = 10


def estimate(input_per_mtok: float, output_per_mtok: float) -> str:
    prompt = prompt_tokens("dear-model")  # the model's first target's tokenizer
    usd = (prompt * input_per_mtok + MAX_TOKENS * output_per_mtok) / 1_000_000
    return f"cheapest estimate ${usd:.3g} ({prompt} prompt + {MAX_TOKENS} output tokens)"


async def test_cost_floor_skips_the_cheap_target_that_is_too_slow(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    async with await start_simulator(SimConfig(latency_ms=SLOW_MS)) as slow:
        gateway = await start_gateway(
            strategy_config(
                {"fast": sim.url, "slow": slow.url},
                {
                    "name": "chat",
                    "strategy": "cost",
                    "cost_floor": {"p95_ms": FLOOR_MS},
                    "targets": [target("fast", "dear-model"), target("slow", "cheap-model")],
                },
                catalog=CATALOG,
            )
        )
        # The cheap target is unjudged until it has answered enough times: it gets them.
        warm_up = PerformanceSettings().latency_min_samples
        cheap = ("slow", f"chat: cost: slow/cheap-model, {estimate(0.1, 0.4)}")
        for _ in range(warm_up):
            assert await chat(http, gateway, max_tokens=MAX_TOKENS) == cheap
        after = [await chat(http, gateway, max_tokens=MAX_TOKENS) for _ in range(3)]
        body = {"model": "chat", "messages": MESSAGES, "max_tokens": MAX_TOKENS, "stream": True}
        async with http.post(f"{gateway.base_url}/chat/completions", json=body, headers=AUTH) as r:
            assert r.status == 200
            assert (await r.text()).rstrip().endswith("data: [DONE]")
            after.append((r.headers["x-stellara-provider"], r.headers["x-stellara-route"]))
    skipped = re.compile(
        rf"chat: cost: fast/dear-model, {re.escape(estimate(5.0, 15.0))}; "
        rf"below the floor: slow/cheap-model p95 (\d[\d,]*) ms > {FLOOR_MS:g} ms"
    )
    for provider, route in after:
        assert provider == "fast"
        found = skipped.fullmatch(route)
        assert found is not None, route
        assert int(found.group(1).replace(",", "")) >= SLOW_MS
