"""The events the request path publishes for observers (metrics, webhooks, tracing, stats):
retries, fallbacks, provider health changes, cache clears, state-backend failures, and what
every request's last event says about its attempts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from stellara.errors import StateBackendError
from stellara.events import (
    CacheCleared,
    Event,
    ProviderHealthy,
    ProviderUnhealthy,
    RequestCompleted,
    RequestFailed,
    RequestFellBack,
    RequestRetried,
    StateBackendFailed,
)
from stellara.pipeline.context import RequestContext
from stellara.principal import Principal
from stellara.schema.chat import ChatRequest, UserMessage
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import MASTER_KEY, RunningGateway, StartGateway, set_faults
from tests.server.test_routing import AUTH, DOWN_A, MESSAGES, routing_config

E = TypeVar("E", bound=Event)


def record(gateway: RunningGateway) -> list[Event]:
    seen: list[Event] = []
    gateway.app[RUNTIME].events.subscribe_all(seen.append)
    return seen


def named(events: list[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


async def post(gateway: RunningGateway, model: str, **extra: Any) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.base_url}/chat/completions",
            json={"model": model, "messages": MESSAGES, **extra},
            headers=AUTH,
        ) as response,
    ):
        await response.read()
        return response.status


async def test_retries_and_fallbacks_are_published_and_counted(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(routing_config(sim.url, max_attempts=2, failure_threshold=10))
    events = record(gateway)
    await set_faults(sim, {**DOWN_A, "times": 2})
    assert await post(gateway, "guarded") == 200
    retries = named(events, RequestRetried)
    assert [(r.provider, r.model, r.attempt, r.error) for r in retries] == [
        ("primary", "model-a", 1, "upstream_unavailable")
    ]
    assert retries[0].delay_ms >= 0
    fallbacks = named(events, RequestFellBack)
    assert [(f.from_model, f.to_model, f.error) for f in fallbacks] == [
        ("guarded", "spare", "upstream_unavailable")
    ]
    (done,) = named(events, RequestCompleted)
    assert (done.attempts, done.retries, done.fallbacks) == (3, 1, 1)
    spans = done.attempt_spans
    assert [(s.provider, s.error) for s in spans] == [
        ("primary", "upstream_unavailable"),
        ("primary", "upstream_unavailable"),
        ("backup", None),
    ]
    assert all(s.duration_ms >= 0 for s in spans)
    assert spans[0].start_ms <= spans[1].start_ms <= spans[2].start_ms
    assert spans[2].start_ms + spans[2].duration_ms <= done.latency_ms


async def test_a_provider_going_unhealthy_and_back_is_published(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        routing_config(sim.url, max_attempts=1, failure_threshold=2, open_s=0.2)
    )
    events = record(gateway)
    await set_faults(sim, {**DOWN_A, "times": 2})
    assert [await post(gateway, "solo") for _ in range(3)] == [502, 502, 503]
    (down,) = named(events, ProviderUnhealthy)
    assert (down.provider, down.previous, down.reason) == (
        "primary",
        "healthy",
        "circuit breaker open",
    )
    await asyncio.sleep(0.25)  # the breaker half-opens; the next call closes it
    assert await post(gateway, "solo") == 200
    recovered = named(events, ProviderHealthy)
    assert [r.provider for r in recovered] == ["primary"]
    assert recovered[0].previous == "unhealthy"


async def test_in_flight_counts_requests_between_resolution_and_their_end(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(routing_config(sim.url))
    await set_faults(sim, {"kind": "slow", "delay_ms": 300, "model": "model-a"})
    pipeline = gateway.app[RUNTIME].gateway
    calls = [asyncio.create_task(post(gateway, "solo")) for _ in range(3)]
    await wait_for(lambda: pipeline.in_flight == 3)
    assert await asyncio.gather(*calls) == [200, 200, 200]
    assert await post(gateway, "no-such-model") == 404  # never resolved: never counted
    assert pipeline.in_flight == 0


async def test_a_client_that_leaves_still_leaves_one_record(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    """aiohttp lets the handler finish when its client leaves: the provider answers (and
    bills), so the request is recorded as answered."""
    gateway = await start_gateway(routing_config(sim.url))
    events = record(gateway)
    await set_faults(sim, {"kind": "slow", "delay_ms": 200, "model": "model-a"})
    call = asyncio.create_task(post(gateway, "solo"))
    await wait_for(lambda: gateway.app[RUNTIME].gateway.in_flight == 1)
    call.cancel()
    await wait_for(lambda: bool(named(events, RequestCompleted)))
    assert [e.name for e in events if e.name.startswith("request.")] == ["request.completed"]
    assert gateway.app[RUNTIME].gateway.in_flight == 0


async def test_a_cancelled_call_is_recorded_as_499(
    sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    """Where the call itself is cancelled (a server that cancels handlers, a shutdown), the
    request still ends in exactly one record."""
    gateway = await start_gateway(routing_config(sim.url))
    events = record(gateway)
    await set_faults(sim, {"kind": "slow", "delay_ms": 2000, "model": "model-a"})
    pipeline = gateway.app[RUNTIME].gateway
    now = pipeline.clock.monotonic()
    ctx = RequestContext("req_cancelled", Principal("alice", "k"), now, now + 10)
    request = ChatRequest(model="solo", messages=[UserMessage(content="hi")])
    call = asyncio.create_task(pipeline.complete(ctx, request))
    await wait_for(lambda: pipeline.in_flight == 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    (failed,) = named(events, RequestFailed)
    assert (failed.request_id, failed.status, failed.error) == (
        "req_cancelled",
        499,
        "client_closed_request",
    )
    assert pipeline.in_flight == 0


async def wait_for(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.01)


async def test_cache_clear_is_published(sim: RunningSimulator, start_gateway: StartGateway) -> None:
    gateway = await start_gateway(routing_config(sim.url, cache={}))
    events = record(gateway)
    assert await post(gateway, "solo") == 200
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/ai-orchestration/cache/clear",
            json={"model": "solo"},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        ) as response,
    ):
        assert response.status == 200
    assert named(events, CacheCleared) == [CacheCleared(scope=None, model="solo", removed=1)]


async def test_state_backend_failures_are_published(
    sim: RunningSimulator, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = {"tiers": {"default": {"rate": {"window_s": 60, "requests": 100}}}}
    gateway = await start_gateway(routing_config(sim.url, limits=limits))
    events = record(gateway)

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StateBackendError("redis is away")

    # The backend's store fails; this process's own fallback store still counts.
    monkeypatch.setattr(gateway.app[RUNTIME].state.limits, "admit", down)
    assert await post(gateway, "solo") == 200  # on_failure: open
    assert named(events, StateBackendFailed) == [
        StateBackendFailed(backend="memory", operation="admit")
    ]
    (done,) = named(events, RequestCompleted)
    assert done.tier == "default"
