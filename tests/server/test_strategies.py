"""Each routing strategy end to end: gateway on a socket, simulators as providers, catalog prices.

Every test reads the choice from `x-stellara-provider` and checks that `x-stellara-route` names
the same target and the strategy's reason for it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import aiohttp
import msgspec
import pytest

from stellara.schema.chat import ChatRequest
from stellara.sim import RunningSimulator, SimConfig, start_simulator
from stellara.tokens import TokenCounter
from tests.conftest import (
    MASTER_KEY,
    UPSTREAM_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    set_faults,
    upstream_requests,
)

AUTH = {"Authorization": f"Bearer {USER_KEY}"}
MESSAGES = [{"role": "user", "content": "Which is the cheapest way there?"}]
RESERVE = 1024  # limits.default_max_tokens_reserve: the output of a request without max_tokens
MINI_PER_MTOK = (0.15, 0.60)  # gpt-4o-mini in the shipped catalog: input, output

Json = dict[str, Any]


def target(provider: str, model: str, weight: float = 1.0) -> Json:
    return {"provider": provider, "model": model, "weight": weight}


def strategy_config(providers: dict[str, str], *models: Json, **overrides: Any) -> Json:
    """OpenAI-type providers (id → simulator URL) and `models`; one attempt per target and no
    health probes, so each request reaches exactly the target the strategy chose."""
    config: Json = {
        "server": {"master_key": MASTER_KEY},
        "providers": [
            {"id": pid, "type": "openai", "base_url": f"{url}/v1", "api_key": UPSTREAM_KEY}
            for pid, url in providers.items()
        ],
        "models": list(models),
        "keys": [{"key": USER_KEY, "user": "alice"}],
        "resilience": {
            "retry": {"max_attempts": 1, "base_delay_ms": 1, "max_delay_ms": 5},
            "health_check": {"enabled": False},
        },
    }
    config.update(overrides)
    return config


async def chat(
    http: aiohttp.ClientSession, gateway: RunningGateway, model: str = "chat", **extra: Any
) -> tuple[str, str]:
    """One chat request: the provider that answered and the route."""
    body = {"model": model, "messages": MESSAGES, **extra}
    async with http.post(f"{gateway.base_url}/chat/completions", json=body, headers=AUTH) as r:
        assert r.status == 200, await r.text()
        await r.read()
        return r.headers["x-stellara-provider"], r.headers["x-stellara-route"]


@functools.cache
def prompt_tokens(tokenizer_model: str) -> int:
    """The prompt tokens of `MESSAGES` as the gateway counts them (its model's first target's
    tokenizer)."""
    request = msgspec.convert({"model": "chat", "messages": MESSAGES}, ChatRequest)
    return TokenCounter().count_prompt(request, tokenizer_model)


def mini_estimate(prompt: int, output: int) -> str:
    usd = (prompt * MINI_PER_MTOK[0] + output * MINI_PER_MTOK[1]) / 1_000_000
    return f"cheapest estimate ${usd:.3g} ({prompt} prompt + {output} output tokens)"


# --- cost -----------------------------------------------------------------------------------


@pytest.fixture
async def priced(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    """`chat`: premium/gpt-4o then budget/gpt-4o-mini, by cost; `guarded`: a failing
    primary with `chat` as its fallback; `embed`: two embedding models, by cost."""
    providers = {"premium": sim.url, "budget": sim.url, "primary": sim.url}
    return await start_gateway(
        strategy_config(
            providers,
            {
                "name": "chat",
                "strategy": "cost",
                "targets": [target("premium", "gpt-4o"), target("budget", "gpt-4o-mini")],
            },
            {
                "name": "guarded",
                "targets": [target("primary", "gpt-4-turbo")],
                "fallbacks": ["chat"],
            },
            {
                "name": "embed",
                "strategy": "cost",
                "targets": [
                    target("premium", "text-embedding-3-large"),
                    target("budget", "text-embedding-3-small"),
                ],
            },
        )
    )


async def test_cost_picks_the_cheaper_target(
    priced: RunningGateway, http: aiohttp.ClientSession
) -> None:
    prompt = prompt_tokens("gpt-4o")
    provider, route = await chat(http, priced)
    assert provider == "budget"
    assert route == f"chat: cost: budget/gpt-4o-mini, {mini_estimate(prompt, RESERVE)}"
    provider, route = await chat(http, priced, max_tokens=50)
    assert provider == "budget"
    assert route == f"chat: cost: budget/gpt-4o-mini, {mini_estimate(prompt, 50)}"


async def test_cost_picks_the_cheaper_target_for_streams(
    priced: RunningGateway, http: aiohttp.ClientSession
) -> None:
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    async with http.post(f"{priced.base_url}/chat/completions", json=body, headers=AUTH) as r:
        assert r.status == 200
        assert (await r.text()).rstrip().endswith("data: [DONE]")
        assert r.headers["x-stellara-provider"] == "budget"
        assert r.headers["x-stellara-route"] == (
            f"chat: cost: budget/gpt-4o-mini, {mini_estimate(prompt_tokens('gpt-4o'), RESERVE)}"
        )


async def test_cost_picks_the_cheaper_target_of_a_fallback_model(
    priced: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "status", "status": 500, "model": "gpt-4-turbo"})
    provider, route = await chat(http, priced, model="guarded")
    assert provider == "budget"
    estimate = mini_estimate(prompt_tokens("gpt-4-turbo"), RESERVE)
    assert route == (
        "guarded: priority: primary/gpt-4-turbo, only target; "
        f"fallback chat: cost: budget/gpt-4o-mini, {estimate}"
    )
    models = [r["body"]["model"] for r in await upstream_requests(sim)]
    assert models == ["gpt-4-turbo", "gpt-4o-mini"]


async def test_cost_prices_embeddings_by_their_input(
    priced: RunningGateway, http: aiohttp.ClientSession
) -> None:
    body = {"model": "embed", "input": ["the cat sat", "on the mat"]}
    async with http.post(f"{priced.base_url}/embeddings", json=body, headers=AUTH) as r:
        assert r.status == 200
        tokens = (await r.json())["usage"]["prompt_tokens"]
        assert r.headers["x-stellara-provider"] == "budget"
        usd = tokens * 0.02 / 1_000_000
        assert r.headers["x-stellara-route"] == (
            "embed: cost: budget/text-embedding-3-small, "
            f"cheapest estimate ${usd:.3g} ({tokens} prompt + 0 output tokens)"
        )


async def test_generate_with_cost_strategy_picks_the_cheaper_target(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        strategy_config(
            {"premium": sim.url, "budget": sim.url},
            {
                "name": "chat",
                "targets": [target("premium", "gpt-4o"), target("budget", "gpt-4o-mini")],
            },
        )
    )
    body = {"model": "chat", "messages": MESSAGES, "routing": {"strategy": "cost"}}
    async with http.post(f"{gateway.url}/ai-orchestration/generate", json=body, headers=AUTH) as r:
        assert r.status == 200
        orchestration = (await r.json())["orchestration"]
        route = r.headers["x-stellara-route"]
    assert orchestration["provider"] == "budget"
    assert orchestration["route"] == route
    assert (
        route
        == f"chat: cost: budget/gpt-4o-mini, {mini_estimate(prompt_tokens('gpt-4o'), RESERVE)}"
    )
    provider, route = await chat(http, gateway)  # the model's own strategy is priority
    assert (provider, route) == (
        "premium",
        "chat: priority: premium/gpt-4o, first available in config order",
    )


async def test_cost_follows_catalog_prices_from_the_config(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    catalog = [{"provider_model": "gpt-4o", "input_per_mtok": 0.01, "output_per_mtok": 0.02}]
    gateway = await start_gateway(
        strategy_config(
            {"premium": sim.url, "budget": sim.url, "local": sim.url},
            {
                "name": "chat",
                "strategy": "cost",
                "targets": [
                    target("local", "my-local-llama"),
                    target("budget", "gpt-4o-mini"),
                    target("premium", "gpt-4o"),
                ],
            },
            catalog=catalog,
        )
    )
    provider, route = await chat(http, gateway, max_tokens=100)
    assert provider == "premium"
    prompt = prompt_tokens("my-local-llama")
    usd = (prompt * 0.01 + 100 * 0.02) / 1_000_000
    assert route == (
        f"chat: cost: premium/gpt-4o, cheapest estimate ${usd:.3g} ({prompt} prompt + 100 output"
        " tokens); no price for local/my-local-llama, ranked last"
    )


# --- performance, least_busy ----------------------------------------------------------------


async def test_performance_picks_the_faster_simulator(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    async with await start_simulator(SimConfig(latency_ms=60)) as slow:
        gateway = await start_gateway(
            strategy_config(
                {"slow": slow.url, "fast": sim.url},
                {
                    "name": "chat",
                    "strategy": "performance",
                    "targets": [target("slow", "gpt-4o"), target("fast", "gpt-4o")],
                },
            )
        )
        # Each target is measured once first, in config order.
        exploring = "exploring an unmeasured target"
        assert await chat(http, gateway) == ("slow", f"chat: performance: slow/gpt-4o, {exploring}")
        assert await chat(http, gateway) == ("fast", f"chat: performance: fast/gpt-4o, {exploring}")
        seen = [await chat(http, gateway) for _ in range(20)]
    for provider, route in seen:
        if provider == "fast":
            assert route.startswith("chat: performance: fast/gpt-4o, lowest latency score ")
        else:  # 5 % of requests try another target, so a recovered one is noticed
            assert route == "chat: performance: slow/gpt-4o, exploring a non-best target (epsilon)"
    # 20 draws at 5 %: 9 or more explorations has a chance of about 3e-7.
    assert sum(provider == "fast" for provider, _ in seen) >= 12


async def test_least_busy_picks_the_idle_target(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(
        strategy_config(
            {"busy": sim.url, "idle": sim.url},
            {
                "name": "chat",
                "strategy": "least_busy",
                "targets": [target("busy", "gpt-4o"), target("idle", "gpt-4o")],
            },
        )
    )
    await set_faults(sim, {"kind": "slow", "delay_ms": 1000, "times": 1})
    held = asyncio.create_task(chat(http, gateway))  # both idle: config order, then held
    deadline = time.monotonic() + 5
    while not await upstream_requests(sim):
        assert time.monotonic() < deadline, "the first request never reached the simulator"
        await asyncio.sleep(0.01)
    assert await chat(http, gateway) == (
        "idle",
        "chat: least_busy: idle/gpt-4o, fewest in flight (0)",
    )
    assert await held == ("busy", "chat: least_busy: busy/gpt-4o, fewest in flight (0)")


# --- priority, round_robin, weighted --------------------------------------------------------


def pair_config(sim_url: str, strategy: str, weights: tuple[float, float] = (1.0, 1.0)) -> Json:
    """`chat` over primary/model-a and backup/model-b, both on one simulator."""
    model = {
        "name": "chat",
        "strategy": strategy,
        "targets": [
            target("primary", "model-a", weights[0]),
            target("backup", "model-b", weights[1]),
        ],
    }
    return strategy_config({"primary": sim_url, "backup": sim_url}, model)


async def test_priority_sticks_to_the_first_healthy_target(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(pair_config(sim.url, "priority"))
    first = ("primary", "chat: priority: primary/model-a, first available in config order")
    assert [await chat(http, gateway) for _ in range(6)] == [first] * 6


async def test_round_robin_alternates_targets(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(pair_config(sim.url, "round_robin"))
    seen = [await chat(http, gateway) for _ in range(4)]
    one = ("primary", "chat: round_robin: primary/model-a, turn 1 of 2")
    two = ("backup", "chat: round_robin: backup/model-b, turn 2 of 2")
    assert seen == [one, two, one, two]


async def test_weighted_follows_the_weights(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(pair_config(sim.url, "weighted", weights=(3, 1)))
    draws = 400
    seen = [await chat(http, gateway) for _ in range(draws)]
    routes = {
        "primary": "chat: weighted: primary/model-a, drawn by weight (3 of 4)",
        "backup": "chat: weighted: backup/model-b, drawn by weight (1 of 4)",
    }
    for provider, route in seen:
        assert route == routes[provider]
    # Binomial(400, 0.75): mean 300, sd ≈ 8.7; the bounds are 4 sd either side.
    assert 265 <= sum(provider == "primary" for provider, _ in seen) <= 335
