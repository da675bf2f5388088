"""Probes and the API's own description."""

from __future__ import annotations

import aiohttp

from tests.conftest import RunningGateway


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
