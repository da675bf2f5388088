"""Virtual keys end to end: made through the admin API, used with the OpenAI SDK, seen in
usage and spend, refused once revoked or expired, on SQLite and PostgreSQL, and on every
gateway process at once."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import openai
import pytest

from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import MASTER_KEY, RunningGateway, StartGateway, gateway_config

REDIS_URL = os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
HELLO: Any = [{"role": "user", "content": "Hello there"}]


async def admin(
    gateway: RunningGateway, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, gateway.url + path, json=body, headers=MASTER) as response,
    ):
        return response.status, await response.json()


async def chat(gateway: RunningGateway, key: str, model: str = "test-model") -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.base_url}/chat/completions",
            json={"model": model, "messages": HELLO},
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        return response.status, await response.json()


async def flushed(gateway: RunningGateway) -> None:
    """Wait until the gateway's usage writer has written everything it holds."""
    writer = gateway.app[RUNTIME].usage
    for _ in range(200):
        if writer.pending == 0 and writer.written > 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"usage writer still holds {writer.pending} records")


async def test_a_key_made_through_the_api_is_used_accounted_and_revoked(
    database_url: str, sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        gateway_config(sim.url, usage_store={"url": database_url, "flush_interval_s": 0.05})
    )
    status, created = await admin(
        gateway,
        "POST",
        "/admin/keys",
        {"user": "dora", "team": "research", "models": ["test-model"]},
    )
    assert status == 201, created
    key = created["key"]
    assert key.startswith(created["prefix"])

    client = openai.AsyncOpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    answers = [
        await client.chat.completions.create(model="test-model", messages=HELLO) for _ in range(3)
    ]
    with pytest.raises(openai.PermissionDeniedError):  # a model the key may not use
        await client.chat.completions.create(model="other-model", messages=HELLO)

    await flushed(gateway)
    status, usage = await admin(gateway, "GET", "/admin/usage?user=dora")
    assert status == 200
    rows = usage["data"]
    assert len(rows) == 3
    assert all(r["key_id"] == created["key_id"] for r in rows)
    assert all(r["key_prefix"] == created["prefix"] and r["team"] == "research" for r in rows)
    assert all(r["model"] == "test-model" and r["status"] == 200 for r in rows)
    prompt_tokens = sum(a.usage.prompt_tokens for a in answers if a.usage)
    assert sum(r["prompt_tokens"] for r in rows) == prompt_tokens
    status, spend = await admin(gateway, "GET", "/admin/spend?group_by=user&user=dora")
    assert status == 200
    assert spend["data"][0]["group"] == "dora"
    assert spend["data"][0]["requests"] == 3
    assert spend["data"][0]["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows))
    assert spend["data"][0]["cost_usd"] > 0

    status, revoked = await admin(gateway, "DELETE", f"/admin/keys/{created['key_id']}")
    assert status == 200
    assert revoked["revoked_at"] is not None
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        await client.chat.completions.create(model="test-model", messages=HELLO)
    await client.close()


async def test_an_expired_key_is_refused(
    database_url: str, sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(gateway_config(sim.url, usage_store={"url": database_url}))
    _, created = await admin(gateway, "POST", "/admin/keys", {"user": "eve"})
    assert (await chat(gateway, created["key"]))[0] == 200
    status, _ = await admin(
        gateway, "PATCH", f"/admin/keys/{created['key_id']}", {"expires_at": 1_000_000_000}
    )
    assert status == 200
    status, body = await chat(gateway, created["key"])
    assert status == 401
    assert "expired" in body["error"]["message"]


async def test_a_key_can_carry_limits_of_its_own(
    sim: RunningSimulator, start_gateway: StartGateway, tmp_path: Any
) -> None:
    gateway = await start_gateway(gateway_config(sim.url))  # no tiers at all
    _, created = await admin(
        gateway,
        "POST",
        "/admin/keys",
        {"user": "fay", "limits": {"rate": {"window_s": 60, "requests": 2}}},
    )
    statuses = [(await chat(gateway, created["key"]))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_key_changes_apply_at_once_on_every_gateway_sharing_redis(
    database_url: str, sim: RunningSimulator, start_gateway: StartGateway
) -> None:
    """Keys are trusted for 5 minutes here: only the broadcast can make B refuse at once."""
    shared = {
        "usage_store": {"url": database_url, "key_cache_ttl_s": 300},
        "state": {"backend": "redis", "redis_url": REDIS_URL},
    }
    a = await start_gateway(gateway_config(sim.url, **shared))
    b = await start_gateway(gateway_config(sim.url, **shared))
    _, created = await admin(a, "POST", "/admin/keys", {"user": "gus", "models": ["test-model"]})
    key = created["key"]
    assert (await chat(b, key))[0] == 200  # made on A, works on B at once
    assert (await chat(b, key, "other-model"))[0] == 403

    status, _ = await admin(
        a, "PATCH", f"/admin/keys/{created['key_id']}", {"models": ["test-model", "other-model"]}
    )
    assert status == 200
    await eventually_status(b, key, "other-model", 200)

    await admin(a, "DELETE", f"/admin/keys/{created['key_id']}")
    await eventually_status(b, key, "test-model", 401)


async def eventually_status(
    gateway: RunningGateway, key: str, model: str, expected: int, timeout_s: float = 1.0
) -> None:
    """The broadcast takes a Redis round trip: allow it that, far below the cache TTL."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status, body = await chat(gateway, key, model)
        if status == expected:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {status} ({body}), wanted {expected}")
        await asyncio.sleep(0.01)
