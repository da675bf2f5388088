"""Gateways sharing Redis report deployment-wide statistics: traffic on each is counted on
every one, a reset on one resets all, a stopped process drops out, and a process that missed a
reset or starts after one still counts right.

Each "process" is a real gateway app (its own Redis clients, stats shared every 0.1 s), all on
a key prefix private to the test."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from stellara._clock import SystemClock
from stellara.assembly.config import check_config
from stellara.errors import StateBackendError
from stellara.events import EventBus
from stellara.server import create_app
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from stellara.state.base import StatsShare
from stellara.state.redis import RedisBackend
from stellara.state.redis.stats import RedisStatsShare
from stellara.telemetry.monitoring import MonitoringService
from stellara.telemetry.stats import StatsCollector
from tests.conftest import MASTER_KEY, USER_KEY, gateway_config
from tests.state.conftest import drop_keys, redis_or_fail, unique_prefix
from tests.telemetry.test_stats import request

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
USER = {"Authorization": f"Bearer {USER_KEY}"}
MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
WRITE_INTERVAL_S = 0.1
Json = dict[str, Any]


@dataclass
class Process:
    """One gateway process: where model calls and statistics requests go."""

    gateway_url: str
    stats_url: str
    share: StatsShare
    runners: list[web.AppRunner] = field(default_factory=list)

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()


StartProcess = Callable[[], Awaitable[Process]]


async def serve(app: web.Application) -> tuple[str, web.AppRunner]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}", runner


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await redis_or_fail(REDIS_URL)
    prefix = unique_prefix()
    yield prefix
    await drop_keys(REDIS_URL, prefix)


@pytest.fixture
async def start_process(sim: RunningSimulator, prefix: str) -> AsyncIterator[StartProcess]:
    started: list[Process] = []

    async def start() -> Process:
        raw = gateway_config(
            sim.url,
            state={"backend": "redis", "redis_url": REDIS_URL},
            telemetry={"stats_interval_s": WRITE_INTERVAL_S},
        )
        backend = RedisBackend(REDIS_URL, key_prefix=prefix)
        gateway = create_app(check_config(raw), state_backend=backend)
        share = gateway[RUNTIME].monitoring.shared
        assert share is not None
        url, runner = await serve(gateway)
        process = Process(url, url, share, [runner])
        started.append(process)
        return process

    yield start
    for process in started:
        await process.stop()


async def chat(process: Process, times: int = 1) -> None:
    body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http:
        for _ in range(times):
            url = f"{process.gateway_url}/v1/chat/completions"
            async with http.post(url, json=body, headers=USER) as r:
                assert r.status == 200, await r.text()


async def get(process: Process, path: str) -> Json:
    async with (
        aiohttp.ClientSession() as http,
        http.get(process.stats_url + path, headers=USER) as r,
    ):
        assert r.status == 200, await r.text()
        body: Json = await r.json()
    return body


async def summary(process: Process) -> Json:
    return await get(process, "/ai-orchestration/stats")


async def wait_for(
    process: Process, want: dict[str, Any], path: str = "/ai-orchestration/stats"
) -> Json:
    """The stats once their top-level fields in `want` match (snapshots travel every 0.1 s)."""
    deadline = time.monotonic() + 5.0
    while True:
        body = await get(process, path)
        if all(body[name] == value for name, value in want.items()):
            return body
        got = {name: body[name] for name in want}
        assert time.monotonic() < deadline, f"stats stayed {got}, expected {want}"
        await asyncio.sleep(0.05)


async def test_stats_on_either_gateway_report_the_sum(start_process: StartProcess) -> None:
    first, second = await start_process(), await start_process()
    await chat(first, 3)
    await chat(second, 2)

    for process in (first, second):
        body = await wait_for(process, {"requests": 5, "processes": 2})
        assert body["errors"] == 0
        assert body["by_provider"]["sim"]["requests"] == 5
        assert body["by_provider"]["sim"]["latency_ms"]["p50"] > 0
        assert body["cost_usd"] == pytest.approx(body["by_provider"]["sim"]["cost_usd"])
        detailed = await get(process, "/ai-orchestration/monitoring/stats")
        assert detailed["models"]["test-model"]["requests"] == 5
        assert detailed["limits"]["top_users"][0] == {
            "user": "alice",
            "requests": 5,
            "cost_usd": pytest.approx(body["cost_usd"]),
            "rejections": 0,
        }
        assert sum(bucket["requests"] for bucket in detailed["series"]) == 5


async def test_reset_on_one_gateway_resets_both(start_process: StartProcess) -> None:
    first, second = await start_process(), await start_process()
    await chat(first, 2)
    await chat(second, 3)
    await wait_for(first, {"requests": 5, "processes": 2})

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{first.stats_url}/ai-orchestration/monitoring/reset", headers=MASTER) as r,
    ):
        assert r.status == 200
        since = (await r.json())["since"]
    assert (await summary(first))["requests"] == 0  # the others' snapshots went with the reset
    await wait_for(second, {"requests": 0, "since": since})

    await chat(second)
    for process in (first, second):
        await wait_for(process, {"requests": 1, "processes": 2, "since": since})


async def test_a_process_that_missed_the_reset_message_starts_again(
    start_process: StartProcess,
) -> None:
    first, deaf = await start_process(), await start_process()
    await deaf.share.close()  # its reset listener stops; its snapshots still go out
    await chat(deaf, 2)
    await wait_for(first, {"requests": 2, "processes": 2})

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{first.stats_url}/ai-orchestration/monitoring/reset", headers=MASTER) as r,
    ):
        assert r.status == 200
    await chat(first)
    # the deaf process's next write is refused: it learns of the reset and drops its 2 calls
    await wait_for(first, {"requests": 1, "processes": 2})
    await wait_for(deaf, {"requests": 1, "processes": 2})


async def test_a_stopped_gateway_drops_out(start_process: StartProcess) -> None:
    first, second = await start_process(), await start_process()
    await chat(first)
    await chat(second, 2)
    await wait_for(first, {"requests": 3, "processes": 2})

    await second.stop()  # withdraws its snapshot
    body = await summary(first)
    assert (body["requests"], body["processes"]) == (1, 1)


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=1)
    yield client
    await client.aclose()


def service_on(
    client: Redis, prefix: str, bus: EventBus | None = None, write_interval_s: float = 60.0
) -> tuple[MonitoringService, StatsCollector]:
    """A process's monitoring without HTTP; with the default interval it writes only once,
    when it starts."""
    collector = StatsCollector(SystemClock())
    if bus is not None:
        collector.attach(bus)
    share = RedisStatsShare(client, key_prefix=prefix)
    return MonitoringService(collector, share, write_interval_s=write_interval_s), collector


async def test_a_reset_reaches_a_listening_process_at_once(client: Redis, prefix: str) -> None:
    bus = EventBus()
    resetting, _ = service_on(client, prefix)
    listening, counts = service_on(client, prefix, bus)
    await resetting.start()
    await listening.start()  # writes once now; the next write is a minute away
    try:
        deadline = time.monotonic() + 2.0
        while (await resetting.summary())["processes"] != 2:  # its one write has landed
            assert time.monotonic() < deadline, "the listening process never wrote"
            await asyncio.sleep(0.01)
        bus.publish(request())
        since = await resetting.reset()
        deadline = time.monotonic() + 2.0
        while counts.snapshot()["totals"]["requests"] != 0:  # no read, no write: the message
            assert time.monotonic() < deadline, "the reset message never arrived"
            await asyncio.sleep(0.01)
        assert counts.since == since
    finally:
        await listening.close()
        await resetting.close()


async def test_a_process_started_after_a_reset_keeps_its_counts(client: Redis, prefix: str) -> None:
    first, _ = service_on(client, prefix)
    await first.reset()
    bus = EventBus()
    late, _ = service_on(client, prefix, bus, write_interval_s=WRITE_INTERVAL_S)
    bus.publish(request())  # counted before its service starts: after the reset all the same
    await late.start()
    try:
        await asyncio.sleep(WRITE_INTERVAL_S * 3)  # several writes: none may clear the count
        assert (await late.summary())["requests"] == 1
        body = await first.summary()
        assert (body["requests"], body["processes"]) == (1, 2)
    finally:
        await late.close()
        await first.close()


async def test_snapshots_stop_counting_when_their_writer_stops(client: Redis, prefix: str) -> None:
    """A process that died without withdrawing: its snapshot is ignored after `max_age_s`."""
    dead = RedisStatsShare(client, key_prefix=prefix, max_age_s=0.3)
    alive = RedisStatsShare(client, key_prefix=prefix, max_age_s=0.3)
    assert await dead.write("", StatsCollector(SystemClock()).snapshot()) is None
    _, seen = await alive.read()
    assert len(seen) == 1
    await asyncio.sleep(0.4)
    _, seen = await alive.read()
    assert seen == []
    assert await client.hlen(f"{prefix}:stats") == 0  # the reader deleted it


async def test_writes_from_before_a_reset_are_refused(client: Redis, prefix: str) -> None:
    writer = RedisStatsShare(client, key_prefix=prefix)
    reader = RedisStatsShare(client, key_prefix=prefix)
    snapshot = StatsCollector(SystemClock()).snapshot()
    assert await writer.write("", snapshot) is None
    epoch = await reader.reset("e1")
    assert epoch.at == pytest.approx(time.time(), abs=5)  # Redis's clock
    assert await writer.write("", snapshot) == epoch  # counted from before: start again
    assert await reader.read() == (epoch, [])
    assert await writer.write("e1", snapshot) is None
    current, seen = await reader.read()
    assert (current, len(seen)) == (epoch, 1)
    assert await writer.current_epoch() == epoch


async def test_redis_down_serves_this_process_and_refuses_resets() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True, socket_timeout=0.2)
    bus = EventBus()
    collector = StatsCollector(SystemClock())
    collector.attach(bus)
    service = MonitoringService(collector, RedisStatsShare(client, key_prefix="down"))
    bus.publish(request())
    try:
        body = await service.summary()
        assert (body["processes"], body["requests"]) == (1, 1)
        with pytest.raises(StateBackendError, match="statistics reset"):
            await service.reset()
        assert (await service.summary())["requests"] == 1  # nothing was reset
    finally:
        await service.close()
        await client.aclose()
