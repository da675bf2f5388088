"""Experiments through the HTTP API on one gateway: the variant headers on every inbound API
(streams too), pins only with the master key's permission, and feedback's checks."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import (
    LIMITED_KEY,
    MASTER_KEY,
    USER_KEY,
    RunningGateway,
    StartGateway,
    gateway_config,
    upstream_requests,
)

PINNER_KEY = "sk-test-pinner-key-0003"
EXPERIMENT = "brief-or-not"


def config(sim_url: str) -> dict[str, Any]:
    raw = gateway_config(sim_url)
    raw["keys"].append({"key": PINNER_KEY, "user": "qa", "may_pin_variants": True})
    raw["feedback"] = {
        "metrics": {
            "thumbs_up": {"type": "boolean"},
            "rating": {"type": "number", "min": 1, "max": 5},
        }
    }
    raw["experiments"] = [
        {
            "id": EXPERIMENT,
            "model": "test-model",
            "variants": [
                {"name": "control", "share": 100},
                {
                    "name": "brief",
                    "share": 0,
                    "model": "other-model",
                    "overrides": {"system_prefix": "Be brief.", "max_tokens": 7},
                },
            ],
        }
    ]
    return raw


@pytest.fixture
async def gateway(sim: RunningSimulator, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(config(sim.url))


async def chat(
    http: aiohttp.ClientSession, gateway: RunningGateway, key: str, **headers: str
) -> tuple[int, dict[str, str], Any]:
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "test-model", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": f"Bearer {key}", **headers},
    ) as response:
        return response.status, dict(response.headers), await response.json()


async def test_experiment_headers_name_the_variant_on_every_inbound_api(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    auth = {"Authorization": f"Bearer {USER_KEY}"}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "Hi"}], "stream": True},
        ),
        ("/v1/messages", {"max_tokens": 32, "messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/responses", {"input": "Hi"}),
        ("/v1beta/models/test-model:generateContent", {"contents": [{"parts": [{"text": "Hi"}]}]}),
    ]
    for path, body in calls:
        body = {"model": "test-model", **body} if "v1beta" not in path else body
        async with http.post(f"{gateway.url}{path}", json=body, headers=auth) as response:
            await response.read()
            assert response.status == 200, (path, await response.text())
            assert response.headers["x-stellara-experiment"] == EXPERIMENT, path
            assert response.headers["x-stellara-variant"] == "control", path


async def test_experiment_pin_needs_the_master_keys_permission(
    gateway: RunningGateway, http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    status, _, body = await chat(http, gateway, USER_KEY, **{"x-stellara-variant": "brief"})
    assert status == 403
    assert "may_pin_variants" in body["error"]["message"]
    status, headers, _ = await chat(http, gateway, PINNER_KEY, **{"x-stellara-variant": "brief"})
    assert status == 200
    assert (headers["x-stellara-experiment"], headers["x-stellara-variant"]) == (
        EXPERIMENT,
        "brief",
    )
    sent = (await upstream_requests(sim))[-1]["body"]
    assert sent["model"] == "gpt-4o"  # other-model's target
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_completion_tokens"] == 7  # the request set no ceiling: OpenAI's name
    status, headers, _ = await chat(http, gateway, PINNER_KEY, **{"x-stellara-variant": "none"})
    assert status == 200
    assert "x-stellara-variant" not in headers
    status, _, body = await chat(http, gateway, PINNER_KEY, **{"x-stellara-variant": "nope"})
    assert status == 400
    assert "no variant 'nope'" in body["error"]["message"]
    # A pinned request is served and shown, not counted in the experiment's records.
    await flush(gateway)
    async with gateway.app[RUNTIME].database.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT user_id, experiment, variant FROM usage_records WHERE user_id = 'qa'")
        )
        assert set(rows) == {("qa", None, None)}


async def test_experiment_pin_permission_granted_by_the_admin_api(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with http.post(
        f"{gateway.url}/admin/keys", json={"user": "carol"}, headers=master
    ) as response:
        created = await response.json()
    pin = {"x-stellara-variant": "brief"}
    assert (await chat(http, gateway, created["key"], **pin))[0] == 403
    async with http.patch(
        f"{gateway.url}/admin/keys/{created['key_id']}",
        json={"may_pin_variants": True},
        headers=master,
    ) as response:
        assert response.status == 200
        assert (await response.json())["may_pin_variants"] is True
    assert (await chat(http, gateway, created["key"], **pin))[0] == 200
    async with http.patch(
        f"{gateway.url}/admin/keys/{created['key_id']}",
        json={"may_pin_variants": "yes"},
        headers=master,
    ) as response:
        assert response.status == 400


async def test_feedback_checks_metric_type_and_range_and_replaces_a_changed_value(
    gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    _, headers, _ = await chat(http, gateway, USER_KEY)
    request_id = headers["x-stellara-request-id"]

    async def rate(metric: str, value: Any, key: str = USER_KEY) -> tuple[int, Any]:
        async with http.post(
            f"{gateway.base_url}/feedback",
            json={"request_id": request_id, "metric": metric, "value": value},
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            return response.status, await response.json()

    status, body = await rate("thumbs_up", 1)
    assert (status, body["error"]["param"]) == (400, "value")
    status, body = await rate("rating", 6)
    assert (status, body["error"]["message"]) == (
        400,
        "The metric 'rating' takes values in 1..5, not 6.",
    )
    assert (await rate("rating", True))[0] == 400
    assert (await rate("stars", 3))[0] == 400
    assert (await rate("rating", 4, key=LIMITED_KEY))[0] == 404  # bob's key, alice's request
    status, body = await rate("rating", 2)
    assert (status, body) == (
        200,
        {
            "request_id": request_id,
            "metric": "rating",
            "value": 2.0,
            "experiment": EXPERIMENT,
            "variant": "control",
        },
    )
    assert (await rate("rating", 5))[0] == 200
    async with gateway.app[RUNTIME].database.engine.connect() as connection:
        rows = await connection.execute(text("SELECT metric, value, user_id FROM feedback"))
        assert list(rows) == [("rating", 5.0, "alice")]
    async with http.get(f"{gateway.url}/metrics") as response:
        metrics = await response.text()
    labels = f'experiment="{EXPERIMENT}",metric="rating",variant="control"'
    assert f"stellara_feedback_total{{{labels}}} 1.0" in metrics
    assert f"stellara_feedback_value_total{{{labels}}} 2.0" in metrics
    async with http.post(
        f"{gateway.base_url}/feedback",
        json={"request_id": request_id, "metric": "rating", "value": 3, "extra": 1},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 400


async def flush(gateway: RunningGateway) -> None:
    usage = gateway.app[RUNTIME].usage
    for _ in range(300):
        if usage.pending == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("usage records not written")
