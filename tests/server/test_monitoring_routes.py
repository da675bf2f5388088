"""The monitoring routes on one process: who may read and reset, and the exact JSON shapes,
fed by hand-made events and by a real gateway's traffic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stellara.assembly import build_runtime
from stellara.assembly.config import check_config
from stellara.events import EventBus, RateLimitExceeded
from stellara.server import create_app
from stellara.sim import RunningSimulator
from stellara.store.migrate import upgrade
from stellara.telemetry.stats import SERIES_BUCKETS
from stellara.testing import ManualClock
from tests.conftest import MASTER_KEY, USER_KEY, gateway_config, routes_only, set_faults
from tests.telemetry.test_stats import START, breaker_opened, refusal, request, span

SUMMARY = "/ai-orchestration/stats"
DETAILED = "/ai-orchestration/monitoring/stats"
RESET = "/ai-orchestration/monitoring/reset"
USER = {"Authorization": f"Bearer {USER_KEY}"}
MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
Json = dict[str, Any]
Serve = Callable[[web.Application], Awaitable[str]]


def near(ms: float) -> Any:
    """A percentile: the middle of its 5%-wide bucket, never above the largest value."""
    return pytest.approx(ms, rel=0.025)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve apps on loopback ports; all are stopped at the end of the test."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
async def url(serve: Serve, bus: EventBus, clock: ManualClock) -> AsyncIterator[str]:
    """A gateway's routes on `bus` and `clock`, its parts not started: the statistics are
    fed by the test's own events."""
    config = check_config(gateway_config("http://127.0.0.1:9"))
    runtime = build_runtime(config, clock=clock, events=bus)
    await upgrade(runtime.database)  # a wrong key is looked up in the key store
    yield await serve(routes_only(runtime))
    await runtime.database.close()


async def call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Json]:
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers) as r:
        return r.status, await r.json()


async def test_monitoring_stats_need_a_valid_key(url: str) -> None:
    for path in (SUMMARY, DETAILED):
        status, body = await call("GET", url + path)
        assert status == 401
        assert body["error"]["type"] == "authentication_error"
        status, _ = await call("GET", url + path, {"Authorization": "Bearer sk-wrong-key-000"})
        assert status == 401
        for headers in (USER, MASTER):
            status, _ = await call("GET", url + path, headers)
            assert status == 200


async def test_monitoring_reset_needs_the_master_key(
    url: str, bus: EventBus, clock: ManualClock
) -> None:
    bus.publish(request())
    status, _ = await call("POST", url + RESET)
    assert status == 401
    status, body = await call("POST", url + RESET, USER)
    assert status == 403
    assert body["error"]["code"] == "master_key_required"
    assert (await call("GET", url + SUMMARY, USER))[1]["requests"] == 1

    clock.advance(25)
    status, body = await call("POST", url + RESET, MASTER)
    assert (status, body) == (200, {"reset": True, "since": START + 25})
    _, summary = await call("GET", url + SUMMARY, USER)
    assert (summary["requests"], summary["since"], summary["by_provider"]) == (0, START + 25, {})


async def test_monitoring_summary_shape_and_numbers(url: str, bus: EventBus) -> None:
    bus.publish(request(latency_ms=100.0, cost_usd=0.25))
    bus.publish(request(failed=True, cost_usd=0.0))
    bus.publish(request(cache="hit", provider="cache", attempt_spans=(), cost_usd=0.0))
    bus.publish(request(cache="semantic", provider="cache", attempt_spans=(), cost_usd=0.0))

    status, body = await call("GET", url + SUMMARY, USER)
    assert status == 200
    assert body == {
        "since": START,
        "processes": 1,
        "requests": 4,
        "errors": 1,
        "error_rate": 0.25,
        "cache_hits": 2,
        "cache_hit_rate": 0.5,
        "prompt_tokens": 40,
        "completion_tokens": 80,
        "cost_usd": 0.25,
        "by_provider": {
            "openai": {
                "requests": 2,
                "errors": 1,
                "error_rate": 0.5,
                "prompt_tokens": 20,
                "completion_tokens": 40,
                "cost_usd": 0.25,
                "latency_ms": {"p50": near(100), "p95": near(100), "p99": near(100)},
            }
        },
    }


async def test_monitoring_detailed_shape_and_numbers(
    url: str, bus: EventBus, clock: ManualClock
) -> None:
    spans = (span(duration_ms=50.0, error="upstream_timeout"), span(duration_ms=100.0))
    bus.publish(request(retries=1, attempt_spans=spans, ttfb_ms=20.0, cost_usd=0.5))
    bus.publish(request(user="bob", model="cheap", fallbacks=1, failed=True, cost_usd=0.0))
    bus.publish(breaker_opened("openai"))
    bus.publish(refusal(RateLimitExceeded, "rate:requests", user="bob"))
    clock.advance(15)  # the series' current bucket is the second one from here

    status, body = await call("GET", url + DETAILED, USER)
    assert status == 200
    series = body.pop("series")
    assert body == {
        "since": START,
        "processes": 1,
        "providers": {
            "openai": {
                "requests": 3,
                "errors": 2,
                "errors_by_type": {"upstream_timeout": 1, "upstream_unavailable": 1},
                "latency_ms": {
                    **dict.fromkeys(("p50", "p90", "p95", "p99"), near(100)),
                    "max": 100.0,
                },
                "ttfb_ms": {**dict.fromkeys(("p50", "p90", "p95", "p99"), near(20)), "max": 20.0},
                "models": {
                    "gpt-4o": {
                        "requests": 3,
                        "errors": 2,
                        "cost_usd": 0.5,
                        "latency_ms": {"p50": near(100), "p95": near(100), "p99": near(100)},
                    }
                },
            }
        },
        "models": {
            "cheap": {"requests": 1, "errors": 1, "fallbacks": 1, "cost_usd": 0.0},
            "smart": {"requests": 1, "errors": 0, "fallbacks": 0, "cost_usd": 0.5},
        },
        "retries": 1,
        "fallbacks": 1,
        "cache": {"hits": 0, "semantic_hits": 0, "misses": 2},
        "breakers": {
            "history": [{"at": START, "breaker": "openai", "from": "closed", "to": "open"}]
        },
        "limits": {
            "rejections": {"rate": 1, "burst": 0, "quota": 0},
            # a user's key sees its own entry only: other tenants' names and spend are not its
            "top_users": [{"user": "alice", "requests": 1, "cost_usd": 0.5, "rejections": 0}],
        },
    }
    _, as_master = await call("GET", url + DETAILED, MASTER)
    assert as_master["limits"]["top_users"] == [
        {"user": "alice", "requests": 1, "cost_usd": 0.5, "rejections": 0},
        {"user": "bob", "requests": 1, "cost_usd": 0.0, "rejections": 1},
    ]
    assert len(series) == SERIES_BUCKETS
    assert [b["at"] for b in series[-2:]] == [START, START + 10]
    assert series[-2] == {
        "at": START,
        "requests": 2,
        "errors": 1,
        "cost_usd": 0.5,
        "latency_ms_p50": near(120),
        "latency_ms_p95": near(120),
    }
    empty = {"requests": 0, "errors": 0, "cost_usd": 0.0, "latency_ms_p50": None}
    assert series[-1] == {"at": START + 10, **empty, "latency_ms_p95": None}
    assert series[0]["at"] == START + 10 - (SERIES_BUCKETS - 1) * 10


async def test_monitoring_counts_a_real_gateways_traffic(
    sim: RunningSimulator, serve: Serve
) -> None:
    """The event contract as the pipeline fulfils it: a retried call, a failed one."""
    raw = gateway_config(sim.url, resilience={"retry": {"base_delay_ms": 1, "max_delay_ms": 5}})
    url = gateway_url = await serve(create_app(check_config(raw)))
    await set_faults(
        sim,
        {"kind": "status", "status": 500, "model": "gpt-4o-mini", "times": 1},
        {"kind": "status", "status": 500, "model": "gpt-4o"},
    )
    chat = f"{gateway_url}/v1/chat/completions"
    async with aiohttp.ClientSession() as http:
        for model, want in (("test-model", 200), ("test-model", 200), ("other-model", 502)):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(chat, json=body, headers=USER) as r:
                assert r.status == want, await r.text()

    _, detailed = await call("GET", url + DETAILED, USER)
    sim_stats = detailed["providers"]["sim"]
    # test-model: a failed attempt then two answers; other-model: three failed attempts
    assert (sim_stats["requests"], sim_stats["errors"]) == (6, 4)
    assert sum(sim_stats["errors_by_type"].values()) == 4
    assert sim_stats["models"]["gpt-4o-mini"]["requests"] == 3
    assert sim_stats["models"]["gpt-4o"]["errors"] == 3
    assert sim_stats["latency_ms"]["p50"] > 0
    assert detailed["retries"] == 3
    assert detailed["models"]["test-model"]["requests"] == 2
    assert detailed["models"]["other-model"]["errors"] == 1
    _, summary = await call("GET", url + SUMMARY, USER)
    assert (summary["requests"], summary["errors"]) == (3, 1)
    assert summary["prompt_tokens"] > 0
    assert summary["by_provider"]["sim"]["cost_usd"] == summary["cost_usd"] > 0
