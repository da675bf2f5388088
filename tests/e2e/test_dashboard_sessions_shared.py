"""Gateways sharing Redis share the dashboard's sessions: a sign-in on one opens the feed on
every one, a sign-out on one ends it on every one at once, and a gateway started with another
master key refuses every earlier session (one started with the same key keeps them).

Each "process" is a real gateway app on a socket with Redis clients of its own, all on a key
prefix private to the test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from stellara.assembly.config import check_config
from stellara.server import create_app
from stellara.server.boundary import SESSION_COOKIE
from stellara.state.redis import RedisBackend
from tests.conftest import MASTER_KEY, gateway_config
from tests.state.conftest import drop_keys, redis_or_fail, unique_prefix

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROTATED_KEY = "sk-test-rotated-master-key-0001"


class Process:
    """One gateway process on the test's Redis prefix."""

    def __init__(self, url: str, runner: web.AppRunner) -> None:
        self.url = url
        self._runner: web.AppRunner | None = runner

    async def stop(self) -> None:
        """Stop it (once: a runner's cleanup would run the app's shutdown twice)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


StartProcess = Callable[..., Awaitable[Process]]


@pytest.fixture
async def start_process() -> AsyncIterator[StartProcess]:
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    started: list[Process] = []

    async def start(master_key: str = MASTER_KEY) -> Process:
        raw = gateway_config("http://127.0.0.1:9")
        raw["server"]["master_key"] = master_key
        raw["state"] = {"backend": "redis", "redis_url": REDIS_URL}
        backend = RedisBackend(REDIS_URL, key_prefix=prefix)
        runner = web.AppRunner(create_app(check_config(raw), state_backend=backend))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        started.append(Process(f"http://127.0.0.1:{runner.addresses[0][1]}", runner))
        return started[-1]

    yield start
    for process in started:
        await process.stop()
    await drop_keys(REDIS_URL, prefix)


async def sign_in(process: Process, master_key: str = MASTER_KEY) -> str:
    """The session cookie a browser gets from `process`."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{process.url}/dashboard/login", data={"key": master_key}, allow_redirects=False
        ) as response,
    ):
        assert response.status == 303, await response.text()
        return response.cookies[SESSION_COOKIE].value


async def feed_status(process: Process, cookie: str) -> int:
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{process.url}/dashboard/data", headers=headers) as response,
    ):
        return response.status


async def sign_out(process: Process, cookie: str) -> None:
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{process.url}/dashboard/logout", headers=headers, allow_redirects=False
        ) as response,
    ):
        assert response.status == 303
        assert response.cookies[SESSION_COOKIE].value == ""


async def test_dashboard_session_of_one_gateway_opens_and_ends_on_the_other(
    start_process: StartProcess,
) -> None:
    first, second = await start_process(), await start_process()
    cookie = await sign_in(first)
    assert await feed_status(second, cookie) == 200
    assert await feed_status(first, cookie) == 200
    await sign_out(second, cookie)
    assert await feed_status(first, cookie) == 401  # at once: no wait, no broadcast
    assert await feed_status(second, cookie) == 401


async def test_dashboard_session_ends_when_a_gateway_restarts_with_another_master_key(
    start_process: StartProcess,
) -> None:
    before = await start_process()
    cookie = await sign_in(before)
    await before.stop()
    same_key = await start_process()
    assert await feed_status(same_key, cookie) == 200  # a restart alone signs no one out
    await same_key.stop()
    rotated = await start_process(ROTATED_KEY)
    assert await feed_status(rotated, cookie) == 401
    assert await feed_status(rotated, await sign_in(rotated, ROTATED_KEY)) == 200
