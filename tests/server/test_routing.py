"""Routing and resilience end to end: failover, retries, breakers, fallbacks, orchestration.

One simulator plays two providers: `primary` serves `model-a` and `backup` serves `model-b`,
so a fault rule matched by `model` breaks one provider and leaves the other answering.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import openai
import pytest

from stellara.events import BreakerChanged
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
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
MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
MESSAGES = [{"role": "user", "content": "hi"}]
FALLBACK_MESSAGE = "Stellara is resting; please come back soon."
DOWN_A = {"kind": "status", "status": 500, "model": "model-a"}
DOWN_B = {"kind": "status", "status": 500, "model": "model-b"}

Json = dict[str, Any]


def routing_config(
    sim_url: str,
    *,
    max_attempts: int = 2,
    max_delay_ms: float = 5,
    failure_threshold: int = 2,
    open_s: float = 0.3,
    **overrides: Any,
) -> Json:
    """Two providers on one simulator and a few public models over them.

    - `chat`: primary/model-a then backup/model-b, by priority;
    - `solo`: primary/model-a only;
    - `guarded`: primary/model-a only, falling back to `spare` (backup/model-b).
    """
    providers = [
        {"id": pid, "type": "openai", "base_url": f"{sim_url}/v1", "api_key": UPSTREAM_KEY}
        for pid in ("primary", "backup")
    ]
    a = {"provider": "primary", "model": "model-a"}
    b = {"provider": "backup", "model": "model-b"}
    config: Json = {
        "server": {"master_key": MASTER_KEY},
        "providers": providers,
        "models": [
            {"name": "chat", "targets": [a, b]},
            {"name": "solo", "targets": [a]},
            {"name": "guarded", "targets": [a], "fallbacks": ["spare"]},
            {"name": "spare", "targets": [b]},
        ],
        "keys": [{"key": USER_KEY, "user": "alice"}],
        "resilience": {
            "timeout_s": 10,
            "fallback_message": FALLBACK_MESSAGE,
            # Retries as the fixture sets them, since this dict replaces its `resilience`.
            "retry": {
                "max_attempts": max_attempts,
                "base_delay_ms": 1,
                "max_delay_ms": max_delay_ms,
            },
            "circuit_breaker": {"failure_threshold": failure_threshold, "open_s": open_s},
        },
    }
    config.update(overrides)
    return config


async def chat(
    http: aiohttp.ClientSession,
    gateway: RunningGateway,
    model: str = "chat",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Json]:
    body = {"model": model, "messages": MESSAGES}
    async with http.post(
        f"{gateway.base_url}/chat/completions", json=body, headers={**AUTH, **(headers or {})}
    ) as response:
        return response.status, dict(response.headers), await response.json()


async def orchestrate(
    http: aiohttp.ClientSession,
    gateway: RunningGateway,
    route: str = "generate",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> tuple[int, dict[str, str], Json]:
    body = {"model": "chat", "messages": MESSAGES, **extra}
    async with http.post(
        f"{gateway.url}/ai-orchestration/{route}", json=body, headers={**AUTH, **(headers or {})}
    ) as response:
        return response.status, dict(response.headers), await response.json()


async def get_json(
    http: aiohttp.ClientSession, gateway: RunningGateway, path: str, headers: dict[str, str]
) -> tuple[int, Json]:
    async with http.get(f"{gateway.url}{path}", headers=headers) as response:
        return response.status, await response.json()


async def breaker_states(http: aiohttp.ClientSession, gateway: RunningGateway) -> dict[str, str]:
    status, body = await get_json(http, gateway, "/ai-orchestration/circuit-breakers", MASTER)
    assert status == 200
    return {bid: entry["state"] for bid, entry in body["breakers"].items()}


async def upstream_models(sim: RunningSimulator) -> list[str]:
    """The model of every chat request the simulator received, oldest first."""
    return [
        r["body"]["model"]
        for r in await upstream_requests(sim)
        if r["path"].endswith("/chat/completions")
    ]


async def reset_sim(sim: RunningSimulator) -> None:
    """Forget the recorded requests and the fault rules."""
    async with aiohttp.ClientSession() as session, session.post(f"{sim.url}/_sim/reset") as r:
        assert r.status == 200


def sse_events(text: str) -> list[str]:
    return [e.removeprefix("data: ") for e in text.split("\n\n") if e.strip()]


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(routing_config(sim.url))


# --- failover and retries -------------------------------------------------------------------


async def test_failing_primary_is_answered_by_next_target(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, DOWN_A)
    status, headers, body = await chat(http, gateway)
    assert status == 200
    assert body["choices"][0]["message"]["content"]
    assert headers["x-stellara-provider"] == "backup"
    assert headers["x-stellara-attempts"] == "3"  # retry.max_attempts (2) on primary, then 1
    assert await upstream_models(sim) == ["model-a", "model-a", "model-b"]


async def test_timed_out_primary_is_followed_by_the_next_target(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    config = routing_config(sim.url)
    config["resilience"]["timeout_s"] = 0.6
    gateway = await start_gateway(config)
    await set_faults(sim, {"kind": "timeout", "model": "model-a"})
    status, headers, _ = await chat(http, gateway)
    assert status == 200
    assert headers["x-stellara-provider"] == "backup"
    assert await upstream_models(sim) == ["model-a", "model-b"]  # no retry of a timeout


async def test_timed_out_single_target_is_504(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    config = routing_config(sim.url)
    config["resilience"]["timeout_s"] = 0.3
    gateway = await start_gateway(config)
    await set_faults(sim, {"kind": "timeout", "model": "model-a"})
    status, _, body = await chat(http, gateway, model="solo")
    assert status == 504
    assert body["error"]["type"] == "timeout_error"


async def test_failover_works_with_the_openai_sdk(
    gateway: RunningGateway, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "reset", "model": "model-a"})
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.headers["x-stellara-provider"] == "backup"


async def test_rate_limited_primary_retry_after_is_honoured(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(routing_config(sim.url, max_delay_ms=2000))
    await set_faults(
        sim, {"kind": "status", "status": 429, "retry_after_s": 0.4, "model": "model-a", "times": 1}
    )
    started = time.perf_counter()
    status, headers, _ = await chat(http, gateway, "solo")
    elapsed = time.perf_counter() - started
    assert status == 200
    assert headers["x-stellara-provider"] == "primary"
    assert headers["x-stellara-attempts"] == "2"
    # Backoff alone is at most 5 ms here: only the provider's Retry-After explains the wait.
    assert elapsed >= 0.4


async def test_rate_limited_single_target_relays_429_with_retry_after(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(routing_config(sim.url, max_delay_ms=50, failure_threshold=10))
    await set_faults(sim, {"kind": "status", "status": 429, "retry_after_s": 5, "model": "model-a"})
    started = time.perf_counter()
    status, headers, body = await chat(http, gateway, "solo")
    elapsed = time.perf_counter() - started
    assert status == 429
    assert headers["Retry-After"] == "5"
    assert body["error"]["type"] == "rate_limit_error"
    assert headers["x-stellara-attempts"] == "2"  # retried once, the wait capped by max_delay_ms
    assert elapsed < 1
    assert await upstream_models(sim) == ["model-a", "model-a"]


async def test_rate_limited_retry_after_beyond_deadline_is_not_waited_for(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(routing_config(sim.url, max_delay_ms=50, failure_threshold=10))
    await set_faults(
        sim, {"kind": "status", "status": 429, "retry_after_s": 30, "model": "model-a"}
    )
    status, headers, _ = await chat(http, gateway)  # Retry-After (30 s) > timeout_s (10 s)
    assert status == 200
    assert headers["x-stellara-provider"] == "backup"
    assert headers["x-stellara-attempts"] == "2"
    assert await upstream_models(sim) == ["model-a", "model-b"]


async def test_client_error_is_not_retried_nor_failed_over(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "status", "status": 400, "model": "model-a"})
    status, headers, body = await chat(http, gateway)
    assert status == 400
    assert body["error"]["code"] == "upstream_bad_request"
    assert headers["x-stellara-attempts"] == "1"
    assert await upstream_models(sim) == ["model-a"]
    assert (await breaker_states(http, gateway))["primary"] == "closed"


async def test_model_with_all_targets_failing_uses_its_fallback_model(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, DOWN_A)
    status, headers, body = await chat(http, gateway, "guarded")
    assert status == 200
    assert body["choices"][0]["message"]["content"]
    assert headers["x-stellara-provider"] == "backup"
    assert await upstream_models(sim) == ["model-a", "model-a", "model-b"]


async def test_all_targets_down_is_502_with_openai_error_body(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(routing_config(sim.url, failure_threshold=10))
    await set_faults(sim, DOWN_A, DOWN_B)
    status, headers, body = await chat(http, gateway)
    assert status == 502
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "upstream_unavailable"
    assert headers["x-stellara-attempts"] == "4"
    assert UPSTREAM_KEY not in json.dumps(body)


async def test_all_breakers_open_is_503_without_upstream_calls(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, DOWN_A, DOWN_B)
    first, _, _ = await chat(http, gateway)  # 2 failures on each: both breakers open
    assert first == 502
    assert await breaker_states(http, gateway) == {"primary": "open", "backup": "open"}
    await reset_sim(sim)
    status, _, body = await chat(http, gateway)
    assert status == 503
    assert body["error"]["code"] == "no_healthy_provider"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert await upstream_models(sim) == []


# --- circuit breakers -----------------------------------------------------------------------


async def test_streams_broken_after_their_start_open_the_breaker(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    # Each broken stream was a success when it started; its break is one failure more, and
    # the threshold of 2 opens the breaker after exactly two of them.
    gateway = await start_gateway(routing_config(sim.url, failure_threshold=2, open_s=30))
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 1, "model": "model-a"})
    body = {"model": "solo", "messages": MESSAGES, "stream": True}
    for expected in ("closed", "open"):
        async with http.post(f"{gateway.base_url}/chat/completions", json=body, headers=AUTH) as r:
            assert "[DONE]" not in sse_events(await r.text())
        assert (await breaker_states(http, gateway))["primary"] == expected
    status, breakers = await get_json(http, gateway, "/ai-orchestration/circuit-breakers", MASTER)
    assert status == 200
    assert breakers["breakers"]["primary"]["calls_in_window"] == 2


async def test_breaker_opens_skips_half_opens_and_closes(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(routing_config(sim.url, max_attempts=1, open_s=0.5))
    changes: list[BreakerChanged] = []
    gateway.app[RUNTIME].events.subscribe(BreakerChanged, changes.append)
    await set_faults(sim, DOWN_A)

    _, headers, _ = await chat(http, gateway)  # one failure: still closed
    assert headers["x-stellara-provider"] == "backup"
    assert (await breaker_states(http, gateway))["primary"] == "closed"
    await chat(http, gateway)  # failure_threshold reached
    assert (await breaker_states(http, gateway))["primary"] == "open"

    # Open: every request goes straight to the backup; the primary sees nothing.
    await reset_sim(sim)
    for _ in range(4):
        status, headers, _ = await chat(http, gateway)
        assert (status, headers["x-stellara-provider"]) == (200, "backup")
        assert headers["x-stellara-attempts"] == "1"
    assert await upstream_models(sim) == ["model-b"] * 4

    # After open_s the breaker half-opens; the primary has recovered, the probe closes it.
    await asyncio.sleep(0.6)
    assert (await breaker_states(http, gateway))["primary"] == "half_open"
    _, headers, _ = await chat(http, gateway)
    assert headers["x-stellara-provider"] == "primary"
    assert (await breaker_states(http, gateway))["primary"] == "closed"
    assert [(e.breaker, e.from_state, e.to_state) for e in changes] == [
        ("primary", "closed", "open"),
        ("primary", "open", "half_open"),
        ("primary", "half_open", "closed"),
    ]


async def test_breaker_failed_probe_reopens(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(routing_config(sim.url, max_attempts=1, open_s=0.3))
    await set_faults(sim, DOWN_A)
    await chat(http, gateway)
    await chat(http, gateway)
    assert (await breaker_states(http, gateway))["primary"] == "open"
    await asyncio.sleep(0.4)
    await reset_sim(sim)
    await set_faults(sim, DOWN_A)
    _, headers, _ = await chat(http, gateway)  # the one probe fails, backup answers
    assert headers["x-stellara-provider"] == "backup"
    assert await upstream_models(sim) == ["model-a", "model-b"]
    assert (await breaker_states(http, gateway))["primary"] == "open"


async def test_breaker_reset_closes_at_once(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    changes: list[BreakerChanged] = []
    gateway.app[RUNTIME].events.subscribe(BreakerChanged, changes.append)
    await set_faults(sim, DOWN_A)
    await chat(http, gateway)
    assert (await breaker_states(http, gateway))["primary"] == "open"
    await reset_sim(sim)  # the primary is fine again, but the breaker would wait open_s

    url = f"{gateway.url}/ai-orchestration/circuit-breakers/primary/reset"
    async with http.post(url, headers=MASTER) as response:
        assert response.status == 200
        assert await response.json() == {"reset": "primary", "state": "closed"}
    assert (await breaker_states(http, gateway))["primary"] == "closed"
    _, headers, _ = await chat(http, gateway)
    assert headers["x-stellara-provider"] == "primary"
    assert [(e.from_state, e.to_state) for e in changes] == [
        ("closed", "open"),
        ("open", "closed"),
    ]


async def test_breaker_reset_of_unknown_breaker_is_404(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/ai-orchestration/circuit-breakers/nobody/reset"
    async with http.post(url, headers=MASTER) as response:
        assert response.status == 404
        assert (await response.json())["error"]["message"]


async def test_breaker_routes_need_master_key_but_health_does_not(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    status, body = await get_json(http, gateway, "/ai-orchestration/circuit-breakers", AUTH)
    assert status == 403
    assert body["error"]["type"]
    url = f"{gateway.url}/ai-orchestration/circuit-breakers/primary/reset"
    async with http.post(url, headers=AUTH) as response:
        assert response.status == 403
    status, body = await get_json(http, gateway, "/ai-orchestration/health", AUTH)
    assert status == 200
    assert set(body["providers"]) == {"primary", "backup"}
    status, _ = await get_json(http, gateway, "/ai-orchestration/health", {})
    assert status == 401


async def test_health_shows_failing_provider_unhealthy_then_degraded(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(routing_config(sim.url, open_s=0.3))
    await set_faults(sim, DOWN_A)
    await chat(http, gateway)  # trips the primary's breaker

    status, body = await get_json(http, gateway, "/ai-orchestration/health", AUTH)
    assert status == 200
    primary, backup = body["providers"]["primary"], body["providers"]["backup"]
    assert (primary["status"], primary["breaker"]) == ("unhealthy", "open")
    assert primary["last_error"]["code"] == "upstream_unavailable"
    assert primary["last_error"]["model"] == "model-a"
    assert backup["status"] == "healthy"
    _, body = await get_json(http, gateway, "/ai-orchestration/healthy-providers", AUTH)
    assert body["providers"] == ["backup"]

    await asyncio.sleep(0.4)  # half-open: it may take a probe again
    _, body = await get_json(http, gateway, "/ai-orchestration/health", AUTH)
    assert body["providers"]["primary"]["status"] == "degraded"
    _, body = await get_json(http, gateway, "/ai-orchestration/healthy-providers", AUTH)
    assert body["providers"] == ["backup", "primary"]


# --- /ai-orchestration/generate -------------------------------------------------------------


async def test_generate_with_provider_filter_only_hits_that_provider(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    for _ in range(3):
        status, headers, body = await orchestrate(http, gateway, routing={"providers": ["backup"]})
        assert status == 200
        assert headers["x-stellara-provider"] == "backup"
        assert body["orchestration"]["provider"] == "backup"
    assert await upstream_models(sim) == ["model-b"] * 3


async def test_generate_strategy_override_replaces_model_strategy(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    seen = []
    for _ in range(4):
        _, _, body = await orchestrate(http, gateway, routing={"strategy": "round_robin"})
        seen.append(body["orchestration"]["provider"])
    assert seen in (["primary", "backup"] * 2, ["backup", "primary"] * 2)


async def test_generate_answer_carries_orchestration(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {**DOWN_A, "times": 1})
    status, _, body = await orchestrate(
        http, gateway, routing={"strategy": "priority"}, cache={"no_store": True}
    )
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"]
    orchestration = body["orchestration"]
    assert orchestration["provider"] == "primary"  # the retry on primary answered
    assert orchestration["model"] == "model-a"
    assert orchestration["attempts"] == 2
    assert orchestration["cached"] is False
    assert orchestration["latency_ms"] > 0
    assert orchestration["cost_usd"] >= 0
    assert orchestration["route"].startswith("chat: priority")
    for request in await upstream_requests(sim):
        assert "routing" not in request["body"]
        assert "cache" not in request["body"]
        assert "orchestration" not in request["body"]


async def test_generate_with_every_route_down_is_502(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, DOWN_A, DOWN_B)
    status, _, body = await orchestrate(http, gateway)
    assert status == 502
    assert body["error"]["code"] == "upstream_unavailable"


async def test_generate_with_fallback_degrades_to_fallback_message(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, DOWN_A, DOWN_B)
    status, _, body = await orchestrate(http, gateway, "generate-with-fallback")
    assert status == 200
    assert body["degraded"] is True
    assert body["choices"][0]["message"]["content"] == FALLBACK_MESSAGE
    orchestration = body["orchestration"]
    assert orchestration["degraded_source"] == "fallback_message"
    failures = orchestration["failures"]
    assert len(failures) == 4
    assert any(f.startswith("primary/model-a") for f in failures)
    assert any(f.startswith("backup/model-b") for f in failures)


async def test_generate_with_fallback_with_breakers_open_still_answers(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, DOWN_A, DOWN_B)
    await chat(http, gateway)  # both breakers open
    status, _, body = await orchestrate(http, gateway, "generate-with-fallback")
    assert status == 200
    assert body["degraded"] is True
    assert body["orchestration"]["failures"][0].startswith("no_healthy_provider")


async def test_generate_with_fallback_serves_stale_cache_entry(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(routing_config(sim.url, cache={}))
    status, _, fresh = await orchestrate(
        http, gateway, "generate-with-fallback", headers={"x-stellara-cache-ttl": "0.1"}
    )
    assert status == 200
    assert "degraded" not in fresh
    await asyncio.sleep(0.3)  # stored in the background, then expired
    await set_faults(sim, DOWN_A, DOWN_B)
    status, _, body = await orchestrate(http, gateway, "generate-with-fallback")
    assert status == 200
    assert body["degraded"] is True
    assert body["orchestration"]["degraded_source"] == "stale_cache"
    answer = body["choices"][0]["message"]["content"]
    assert answer == fresh["choices"][0]["message"]["content"]
    assert answer != FALLBACK_MESSAGE


# --- streaming ------------------------------------------------------------------------------


async def test_stream_failing_before_first_chunk_fails_over_silently(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, DOWN_A)
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    async with http.post(f"{gateway.base_url}/chat/completions", json=body, headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["x-stellara-provider"] == "backup"
        text = await r.text()
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("error" not in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert await upstream_models(sim) == ["model-a", "model-a", "model-b"]


async def test_stream_failover_is_invisible_to_openai_sdk(
    gateway: RunningGateway, sim: RunningSimulator
) -> None:
    await set_faults(sim, {"kind": "reset", "model": "model-a"})
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=USER_KEY) as sdk:
        stream = await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts)


async def test_stream_cut_after_content_ends_with_error_without_failover(
    gateway: RunningGateway, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    await set_faults(sim, {"kind": "cut_stream", "after_chunks": 2, "model": "model-a"})
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    async with http.post(f"{gateway.base_url}/chat/completions", json=body, headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["x-stellara-provider"] == "primary"
        text = await r.text()
    events = sse_events(text)
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] in {
        "upstream_unavailable",
        "upstream_protocol_error",
    }
    assert await upstream_models(sim) == ["model-a"]
