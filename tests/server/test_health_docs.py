"""Probes and the API's own description."""

from __future__ import annotations

import asyncio

import aiohttp

from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, gateway_config


async def test_healthz_answers_ok(gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_readyz_reports_state_backend(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/readyz") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ready"
    assert body["checks"]["state_backend"]["ok"] is True
    assert body["checks"]["usage_store"] == {"ok": True, "pending": 0, "dropped": 0}


async def test_readyz_is_degraded_not_down_while_usage_records_cannot_be_written(
    sim: RunningSimulator, start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    """A database that refuses writes (here: a directory where the file should be) leaves
    the gateway serving, so it stays in rotation, reported as degraded."""
    store = {"url": "sqlite:///.", "flush_interval_s": 0.01, "shutdown_flush_s": 0.5}
    config = gateway_config(sim.url, usage_store=store)
    gateway = await start_gateway(config)
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers) as r:
        assert r.status == 200
    for _ in range(100):
        async with http.get(f"{gateway.url}/readyz") as response:
            ready = await response.json()
        if not ready["checks"]["usage_store"]["ok"]:
            break
        await asyncio.sleep(0.02)
    assert response.status == 200
    assert ready["status"] == "degraded"
    assert ready["checks"]["usage_store"]["pending"] == 1


async def test_openapi_describes_every_route(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in gateway.app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*")
    }
    described = {(m, path) for path, methods in document["paths"].items() for m in methods}
    assert served == described
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ChatRequest"
    )
    assert "ChatCompletionChunk" in document["components"]["schemas"]


async def test_docs_page_is_self_contained(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/docs") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert "/openapi.json" in page
    assert "https://" not in page  # no CDN: the docs work offline
