"""GET /metrics over HTTP: real traffic through a gateway moves the counters it serves."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stellara.assembly import build_runtime
from stellara.assembly.config import check_config
from stellara.events import EventBus
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from stellara.telemetry.metrics import GatewayMetrics
from tests.conftest import USER_KEY, StartGateway, gateway_config, routes_only, set_faults
from tests.telemetry.test_metrics import Samples, parse, request_event, total

Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve small apps on loopback ports; their base URLs."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def metrics_app(metrics: GatewayMetrics) -> web.Application:
    """A gateway's routes serving `metrics` (fed by the test), its parts not started."""
    runtime = build_runtime(check_config(gateway_config("http://127.0.0.1:9")))
    return routes_only(replace(runtime, metrics=metrics))


async def get_metrics(
    url: str, accept_encoding: str = "identity"
) -> tuple[aiohttp.ClientResponse, bytes]:
    """The response and its body as sent (not decompressed)."""
    headers = {"Accept-Encoding": accept_encoding}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.get(f"{url}/metrics", headers=headers) as response,
    ):
        return response, await response.read()


async def scrape(url: str) -> Samples:
    response, body = await get_metrics(url)
    assert response.status == 200
    return parse(body.decode())


async def test_metrics_route_serves_prometheus_text_without_auth(serve: Serve) -> None:
    bus = EventBus()
    metrics = GatewayMetrics(in_flight=lambda: 7)
    metrics.attach(bus)
    bus.publish(request_event())
    url = await serve(metrics_app(metrics))
    response, body = await get_metrics(url)  # no Authorization header
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(body.decode())
    assert total(samples, "stellara_requests_total", provider="openai", status="200") == 1
    assert total(samples, "stellara_in_flight_requests") == 7  # read when scraped
    assert total(samples, "process_resident_memory_bytes") > 0


async def test_metrics_route_compresses_for_scrapers_that_accept_gzip(serve: Serve) -> None:
    metrics = GatewayMetrics()
    url = await serve(metrics_app(metrics))
    response, body = await get_metrics(url, "gzip")
    assert response.headers["Content-Encoding"] == "gzip"
    assert "# TYPE stellara_requests_total counter" in gzip.decompress(body).decode()


async def test_metrics_route_still_serves_when_a_reading_fails(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise KeyError("levels")

    bus = EventBus()
    metrics = GatewayMetrics(cache_stats=broken)
    metrics.attach(bus)
    bus.publish(request_event())
    url = await serve(metrics_app(metrics))
    assert total(await scrape(url), "stellara_requests_total") == 1
    assert "metrics: reading the gateway's state failed" in caplog.text


async def post(url: str, content: str) -> int:
    body = {"model": "test-model", "messages": [{"role": "user", "content": content}]}
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response,
    ):
        await response.read()
        return response.status


async def test_metrics_route_counts_real_traffic_through_a_gateway(
    sim: RunningSimulator, start_gateway: StartGateway, serve: Serve
) -> None:
    config = gateway_config(
        sim.url,
        keys=[{"key": USER_KEY, "user": "alice", "tier": "capped"}],
        limits={"tiers": {"capped": {"rate": {"window_s": 600, "requests": 3}}}},
        cache={},
        resilience={"retry": {"max_attempts": 2, "base_delay_ms": 1, "max_delay_ms": 2}},
    )
    gateway = await start_gateway(config)
    pipeline = gateway.app[RUNTIME].gateway
    url = gateway.url

    await set_faults(sim, {"kind": "status", "status": 503, "times": 1})
    assert await post(gateway.url, "hello") == 200  # a retry, then an answer
    await pipeline.drain()  # the answer is cached in the background
    assert await post(gateway.url, "hello") == 200  # from the cache
    assert await post(gateway.url, "something else") == 200
    assert await post(gateway.url, "one too many") == 429
    s = await scrape(url)

    requests = "stellara_requests_total"
    assert total(s, requests) == 4
    assert total(s, requests, model="test-model", provider="sim", status="200", cache="miss") == 2
    assert total(s, requests, provider="cache", status="200", cache="hit") == 1
    assert total(s, requests, provider="", status="429") == 1
    assert total(s, "stellara_retries_total", provider="sim") == 1
    assert total(s, "stellara_limit_rejections_total", kind="rate", limit="rate:requests") == 1
    assert total(s, "stellara_request_duration_seconds_count", provider="sim") == 2
    assert total(s, "stellara_time_to_first_byte_seconds_count", provider="sim") == 2
    usage = {"provider": "sim", "model": "test-model", "tier": "capped"}
    assert total(s, "stellara_tokens_total", kind="prompt", **usage) > 0
    assert total(s, "stellara_tokens_total", kind="completion", **usage) > 0
    assert total(s, "stellara_cost_usd_total", **usage) > 0
    assert total(s, "stellara_cache_hits_total", level="l1") == 1
    assert total(s, "stellara_cache_misses_total", level="l1") == 2
    assert total(s, "stellara_circuit_breaker_state", breaker="sim") == 0
    assert total(s, "stellara_provider_healthy", provider="sim") == 1
    assert total(s, "stellara_in_flight_requests") == 0
    assert ("stellara_usage_records_pending", frozenset()) in s
    assert pipeline.in_flight == 0
    # Nothing about who called: the key, its user.
    _, body = await get_metrics(url)
    assert USER_KEY not in body.decode()
    assert "alice" not in body.decode()
