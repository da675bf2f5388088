"""Experiments end to end: two gateways sharing Redis and one usage store, two simulated
providers (the OpenAI and the Anthropic wire format), 10,000 users.

Assignment is sticky across the gateways and within 3 points of the configured shares; each
answer names its variant, which decides the provider; usage records and metrics carry it;
feedback is stored, scoped to the key's user, and counted per variant.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import MASTER_KEY, RunningGateway, StartGateway

REDIS_URL = os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
USERS = 10_000
MINI_SHARE = 0.30
EXPERIMENT = "cheap-vs-smart"


def user_key(i: int) -> str:
    return f"sk-exp-user-{i:05d}"


def experiment_config(sim_url: str, database: str, prefix: str) -> dict[str, Any]:
    return {
        "server": {"master_key": MASTER_KEY},
        "state": {"backend": "redis", "redis_url": REDIS_URL},
        "usage_store": {"url": database, "flush_interval_s": 0.05},
        "providers": [
            {"id": "openai-sim", "type": "openai", "base_url": f"{sim_url}/v1", "api_key": "k"},
            {"id": "claude-sim", "type": "anthropic", "base_url": sim_url, "api_key": "k"},
        ],
        "models": [{"name": "smart", "targets": [{"provider": "openai-sim", "model": "gpt-4o"}]}],
        "keys": [{"key": user_key(i), "user": f"user-{i:05d}"} for i in range(USERS)],
        "feedback": {"metrics": {"thumbs_up": {"type": "boolean"}}},
        "experiments": [
            {
                "id": EXPERIMENT,
                "model": "smart",
                "variants": [
                    {"name": "control", "share": 100 * (1 - MINI_SHARE)},
                    {
                        "name": "mini",
                        "share": 100 * MINI_SHARE,
                        "targets": [{"provider": "claude-sim", "model": "claude-haiku-4-5"}],
                    },
                ],
            }
        ],
    }


async def ask(http: aiohttp.ClientSession, gateway: RunningGateway, key: str) -> dict[str, str]:
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "smart", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        assert response.status == 200, await response.text()
        await response.read()
        return dict(response.headers)


async def ask_all(
    gateway: RunningGateway, users: range, *, parallel: int = 32
) -> dict[int, dict[str, str]]:
    gate = asyncio.Semaphore(parallel)
    answers: dict[int, dict[str, str]] = {}
    connector = aiohttp.TCPConnector(limit=parallel)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(i: int) -> None:
            async with gate:
                answers[i] = await ask(http, gateway, user_key(i))

        await asyncio.gather(*(one(i) for i in users))
    return answers


@pytest.fixture
async def pair(
    sim: RunningSimulator, start_gateway: StartGateway, tmp_path: Path
) -> tuple[RunningGateway, RunningGateway]:
    database = f"sqlite:///{tmp_path / 'usage.db'}"
    prefix = f"stellara-test-{uuid.uuid4().hex[:12]}"
    first = await start_gateway(experiment_config(sim.url, database, prefix))
    second = await start_gateway(experiment_config(sim.url, database, prefix))
    return first, second


async def test_experiment_assignment_is_sticky_across_gateways_and_near_its_shares(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    first, second = pair
    answers = await ask_all(first, range(USERS))
    variants = Counter(a["x-stellara-variant"] for a in answers.values())
    assert set(variants) == {"control", "mini"}
    assert abs(variants["mini"] / USERS - MINI_SHARE) <= 0.03
    assert {a["x-stellara-experiment"] for a in answers.values()} == {EXPERIMENT}
    # The variant decides what serves: mini's targets are the Anthropic-format provider.
    served = {(a["x-stellara-variant"], a["x-stellara-provider"]) for a in answers.values()}
    assert served == {("control", "openai-sim"), ("mini", "claude-sim")}
    again = await ask_all(second, range(0, USERS, 10))
    assert {i: a["x-stellara-variant"] for i, a in again.items()} == {
        i: answers[i]["x-stellara-variant"] for i in again
    }


async def test_experiment_records_metrics_and_feedback_carry_the_variant(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    first, second = pair
    answers = await ask_all(first, range(40))
    runtime = first.app[RUNTIME]
    async with aiohttp.ClientSession() as http:
        # Rated on the other gateway: the record is found in the shared store once written.
        for i, headers in answers.items():
            request_id = headers["x-stellara-request-id"]
            status, body = await rate(http, second, user_key(i), request_id, i % 2 == 0)
            if status == 404:  # not flushed yet by the gateway that served it
                await wait_written(first, request_id)
                status, body = await rate(http, second, user_key(i), request_id, i % 2 == 0)
            assert status == 200, body
            assert body["variant"] == headers["x-stellara-variant"]
            assert body["experiment"] == EXPERIMENT
        # Another user's request is not yours to rate, whichever gateway is asked.
        stranger = await rate(http, first, user_key(99), answers[0]["x-stellara-request-id"], True)
        assert stranger[0] == 404
        assert stranger[1]["error"]["param"] == "request_id"
        unknown_metric = await rate(
            http, first, user_key(0), answers[0]["x-stellara-request-id"], True, metric="stars"
        )
        assert unknown_metric[0] == 400
        async with http.get(f"{second.url}/metrics") as response:
            metrics = await response.text()
    async with runtime.database.engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT u.variant, count(*), sum(f.value) FROM usage_records u "
                "JOIN feedback f ON f.request_id = u.request_id AND f.user_id = u.user_id "
                "WHERE u.experiment = :experiment GROUP BY u.variant"
            ),
            {"experiment": EXPERIMENT},
        )
        stored = {variant: (count, total) for variant, count, total in rows}
    expected: dict[str, list[int]] = {}
    for i, headers in answers.items():
        counts = expected.setdefault(headers["x-stellara-variant"], [0, 0])
        counts[0] += 1
        counts[1] += i % 2 == 0
    assert stored == {variant: (n, float(up)) for variant, (n, up) in expected.items()}
    for variant, (n, up) in expected.items():
        labels = f'experiment="{EXPERIMENT}",metric="thumbs_up",variant="{variant}"'
        assert f"stellara_feedback_total{{{labels}}} {float(n)}" in metrics
        assert f"stellara_feedback_value_total{{{labels}}} {float(up)}" in metrics


async def rate(
    http: aiohttp.ClientSession,
    gateway: RunningGateway,
    key: str,
    request_id: str,
    value: bool,
    *,
    metric: str = "thumbs_up",
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{gateway.base_url}/feedback",
        json={"request_id": request_id, "metric": metric, "value": value},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


async def wait_written(gateway: RunningGateway, request_id: str) -> None:
    usage = gateway.app[RUNTIME].usage
    for _ in range(200):
        if usage.pending_row(request_id) is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{request_id} was not written")
