"""Through real sockets: a model call through each inbound API leaves a usage record and a
metric series naming that API (`endpoint`, the route's declared path), and operators filter,
export and group spend by it."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stellara.sim import RunningSimulator
from tests.conftest import MASTER_KEY, USER_KEY, RunningGateway, StartGateway, gateway_config
from tests.server.test_metrics_route import scrape
from tests.telemetry.test_metrics import total

HI = [{"role": "user", "content": "hi"}]
# Each inbound API, the smallest body it answers.
CALLS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "test-model", "messages": HI},
    "/v1/messages": {"model": "test-model", "max_tokens": 20, "messages": HI},
    "/v1/responses": {"model": "test-model", "input": "hi"},
}


@pytest.fixture
async def gateway(
    sim: RunningSimulator, start_gateway: StartGateway, tmp_path: Path
) -> RunningGateway:
    usage_store = {"url": f"sqlite:///{tmp_path / 'usage.db'}", "flush_interval_s": 0.05}
    return await start_gateway(gateway_config(sim.url, usage_store=usage_store))


async def call_each_api(gateway: RunningGateway) -> None:
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    async with aiohttp.ClientSession() as http:
        for path, body in CALLS.items():
            async with http.post(gateway.url + path, json=body, headers=headers) as answer:
                assert answer.status == 200, await answer.text()


async def admin_get(gateway: RunningGateway, path: str) -> str:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with aiohttp.ClientSession() as http, http.get(gateway.url + path, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.text()


async def records(gateway: RunningGateway, query: str = "") -> list[dict[str, Any]]:
    """The usage records matching `query`, once the writer has stored all three calls."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        stored = json.loads(await admin_get(gateway, "/admin/usage"))["data"]
        if len(stored) == len(CALLS):
            return list(json.loads(await admin_get(gateway, f"/admin/usage?{query}"))["data"])
        assert asyncio.get_running_loop().time() < deadline, f"records never came: {stored}"
        await asyncio.sleep(0.05)


async def test_each_inbound_api_is_recorded_and_counted_by_its_endpoint(
    gateway: RunningGateway,
) -> None:
    await call_each_api(gateway)
    by_request = {r["endpoint"]: r for r in await records(gateway)}
    assert set(by_request) == set(CALLS)
    assert all(r["status"] == 200 and r["provider"] == "sim" for r in by_request.values())
    [messages] = await records(gateway, "endpoint=/v1/messages")
    assert messages["request_id"] == by_request["/v1/messages"]["request_id"]

    samples = await scrape(gateway.url)
    for endpoint in CALLS:
        labels = {"model": "test-model", "provider": "sim", "status": "200", "endpoint": endpoint}
        assert total(samples, "stellara_requests_total", **labels) == 1
        duration = "stellara_request_duration_seconds_count"
        assert total(samples, duration, provider="sim", endpoint=endpoint) == 1


async def test_usage_export_and_spend_carry_the_endpoint(gateway: RunningGateway) -> None:
    await call_each_api(gateway)
    await records(gateway)
    export = await admin_get(gateway, "/admin/usage?format=csv&endpoint=/v1/responses")
    [row] = csv.DictReader(io.StringIO(export))
    assert row["endpoint"] == "/v1/responses"
    spend = json.loads(await admin_get(gateway, "/admin/spend?group_by=endpoint"))
    assert sorted((g["group"], g["requests"]) for g in spend["data"]) == [
        (endpoint, 1) for endpoint in sorted(CALLS)
    ]
