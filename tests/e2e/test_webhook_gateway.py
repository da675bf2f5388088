"""Webhooks behind a real gateway: every model call reaches the hook, signed; a dead hook
(refusing connections, or accepting and never answering) slows no request and holds no more
than its queue.

Until `create_app` attaches the sinks itself, each test attaches them to its running gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from tests.conftest import USER_KEY, RunningGateway, StartGateway, gateway_config, set_faults

pytestmark = pytest.mark.e2e

SECRET = "hook-secret"
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A live endpoint: its URL and every (headers, body) it received."""
    received: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/events", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/events", received
    await runner.cleanup()


@pytest.fixture
async def black_hole() -> AsyncIterator[str]:
    """An endpoint that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/events"
    for writer in held:
        writer.close()
    server.close()
    with contextlib.suppress(ConnectionError):
        await server.wait_closed()


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/events"


async def chat(http: aiohttp.ClientSession, gateway: RunningGateway, model: str) -> str:
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    async with http.post(
        f"{gateway.base_url}/chat/completions", json={**CHAT, "model": model}, headers=headers
    ) as response:
        await response.read()
        return response.headers["x-stellara-request-id"]


async def test_webhook_gets_every_model_call_signed(
    sim: RunningSimulator, start_gateway: StartGateway, hook, http
):
    url, received = hook
    webhook = {"url": url, "secret": SECRET, "events": ["request.*"], "flush_interval_s": 0.05}
    raw = gateway_config(sim.url, telemetry={"webhooks": [webhook]})
    gateway = await start_gateway(raw)
    sinks = gateway.app[RUNTIME].sinks
    ok = [await chat(http, gateway, "test-model") for _ in range(20)]
    await set_faults(sim, {"kind": "status", "status": 503, "model": "gpt-4o"})
    failed = await chat(http, gateway, "other-model")
    await sinks.close(2.0)

    events: list[dict[str, Any]] = []
    for headers, body in received:
        signed = headers["X-Stellara-Timestamp"].encode() + b"." + body
        digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        assert headers["X-Stellara-Signature"] == f"sha256={digest}"
        events += json.loads(body)
    completed = [e["data"] for e in events if e["event"] == "request.completed"]
    assert sorted(c["request_id"] for c in completed) == sorted(ok)
    assert {(c["provider"], c["model"], c["status"]) for c in completed} == {
        ("sim", "test-model", 200)
    }
    assert all(c["completion_tokens"] > 0 and c["attempt_spans"] for c in completed)
    [failure] = [e["data"] for e in events if e["event"] == "request.failed"]
    assert (failure["request_id"], failure["status"]) == (failed, 502)
    assert "message" not in failure
    retries = [e["data"] for e in events if e["event"] == "request.retry"]
    assert retries
    assert {r["request_id"] for r in retries} == {failed}
    assert sinks.webhooks[0].status()["delivered"] == len(events)


async def test_dead_webhooks_slow_no_request_and_stay_bounded(
    sim: RunningSimulator, start_gateway: StartGateway, black_hole, http
):
    dead = {"queue_max": 20, "batch_max": 5, "flush_interval_s": 0.01, "max_retries": 50}
    hooks = [
        {"url": refused_url(), **dead},
        {"url": black_hole, "timeout_s": 0.05, **dead},
    ]
    plain = await start_gateway(gateway_config(sim.url))
    raw = gateway_config(sim.url, telemetry={"webhooks": hooks})
    hooked = await start_gateway(raw)
    sinks = hooked.app[RUNTIME].sinks
    for gateway in (plain, hooked):  # warm the connection pools
        for _ in range(10):
            await chat(http, gateway, "test-model")

    latencies: dict[str, list[float]] = {"plain": [], "hooked": []}
    most_pending = 0

    async def client() -> None:  # alternates, so both gateways see the same conditions
        nonlocal most_pending
        for _ in range(50):
            for name, gateway in (("plain", plain), ("hooked", hooked)):
                started = time.perf_counter()
                await chat(http, gateway, "test-model")
                latencies[name].append(time.perf_counter() - started)
            most_pending = max(most_pending, *(h.pending for h in sinks.webhooks))

    await asyncio.gather(*(client() for _ in range(4)))
    p50_plain = statistics.median(latencies["plain"])
    p50_hooked = statistics.median(latencies["hooked"])

    assert len(latencies["hooked"]) == 200
    assert p50_hooked <= p50_plain * 1.2 + 0.0005, (p50_plain, p50_hooked)
    bound = dead["queue_max"] + dead["batch_max"]  # queued + one batch being sent
    assert most_pending <= bound
    for sink in sinks.webhooks:
        status = sink.status()
        assert status["delivered"] == 0
        assert status["failed_attempts"] >= 1
        assert status["pending"] <= bound
        assert status["dropped"] >= 210 - bound  # every event the queue could not hold
    started = time.perf_counter()
    await sinks.close(0.5)
    assert time.perf_counter() - started < 2.0  # shutdown does not wait for the dead
