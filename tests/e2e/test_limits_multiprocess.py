"""Limits hold exactly across gateway processes sharing one Redis, and survive Redis outages."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.e2e

STELLARA = [sys.executable, "-m", "stellara.cli"]
REDIS_URL = os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KEY = "sk-multiprocess-user-key"
MASTER = "sk-multiprocess-master-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(port: int, process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process on port {port} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


def write_config(
    path: Path, *, sim_port: int, redis_url: str, limits: str, on_failure: str = "open"
) -> str:
    """Write the config; the (fresh, unique) user id the key stands for."""
    user = f"user-{uuid.uuid4().hex}"
    path.write_text(
        f"""
server: {{master_key: {MASTER}}}
state: {{backend: redis, redis_url: "{redis_url}", on_failure: {on_failure}}}
providers:
  - {{id: sim, type: openai, base_url: "http://127.0.0.1:{sim_port}/v1", api_key: k}}
models:
  - {{name: m, targets: [{{provider: sim, model: gpt-4o-mini}}]}}
limits:
  tiers:
    capped: {limits}
keys:
  - {{key: {KEY}, user: "{user}", tier: capped}}
"""
    )
    return user


@pytest.fixture
def simulator() -> Iterator[int]:
    port = free_port()
    process = start([*STELLARA, "simulate", "--port", str(port)])
    wait_until_serving(port, process)
    yield port
    stop(process)


def gateways(config: Path, count: int) -> tuple[list[int], list[subprocess.Popen[bytes]]]:
    ports = [free_port() for _ in range(count)]
    processes = [
        start([*STELLARA, "serve", "--config", str(config), "--port", str(port)]) for port in ports
    ]
    for port, process in zip(ports, processes, strict=True):
        wait_until_serving(port, process)
    return ports, processes


async def fire(ports: list[int], total: int, max_tokens: int = 8) -> list[int]:
    """`total` concurrent requests spread over the gateways; their status codes."""
    body = {
        "model": "m",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hello"}],
    }
    connector = aiohttp.TCPConnector(limit=total)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(i: int) -> int:
            url = f"http://127.0.0.1:{ports[i % len(ports)]}/v1/chat/completions"
            async with http.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
                await r.read()
                return r.status

        return list(await asyncio.gather(*(one(i) for i in range(total))))


def test_four_processes_admit_exactly_the_request_limit(simulator: int, tmp_path: Path) -> None:
    config = tmp_path / "stellara.yaml"
    write_config(
        config,
        sim_port=simulator,
        redis_url=REDIS_URL,
        limits="{rate: {window_s: 600, requests: 50}}",
    )
    ports, processes = gateways(config, 4)
    try:
        statuses = asyncio.run(fire(ports, 400))
    finally:
        for process in processes:
            stop(process)
    assert statuses.count(200) == 50
    assert statuses.count(429) == 350


async def rate_window_use(port: int, user: str) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/ai-orchestration/rate-limits/{user}"
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Authorization": f"Bearer {MASTER}"}) as response,
    ):
        assert response.status == 200
        body = await response.json()
    return dict(body["windows"]["rate"]["tokens"])


def test_four_processes_keep_within_the_token_budget(simulator: int, tmp_path: Path) -> None:
    config = tmp_path / "stellara.yaml"
    # Each request reserves its prompt plus max_tokens=8; a 1,000-token budget admits only
    # as many as fit, whichever process they reach, and settles each to its actual usage.
    user = write_config(
        config,
        sim_port=simulator,
        redis_url=REDIS_URL,
        limits="{rate: {window_s: 600, tokens: 1000}}",
    )
    ports, processes = gateways(config, 4)
    try:
        statuses = asyncio.run(fire(ports, 400))
        use = asyncio.run(rate_window_use(ports[0], user))
    finally:
        for process in processes:
            stop(process)
    admitted = statuses.count(200)
    assert 0 < admitted < 400
    assert statuses.count(429) == 400 - admitted
    assert 0 < use["used"] <= 1000
    assert use["limit"] == 1000


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Redis of our own, which the outage test may stop and start again."""
    port = free_port()
    process = start_redis(port, tmp_path)
    yield port, tmp_path
    stop_redis(port)
    process.wait(timeout=10)


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    process = start(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ]
    )
    wait_until_serving(port, process)
    return process


def stop_redis(port: int) -> None:
    subprocess.run(
        ["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, check=False
    )


@pytest.mark.parametrize(
    ("on_failure", "statuses_while_down"),
    [
        # open: served, the limit held by the process on its own (a fresh count: the two
        # requests Redis saw before the outage are not known to it)
        ("open", [200, 200, 200, 429, 429]),
        ("closed", [503] * 5),
    ],
)
def test_redis_outage_follows_on_failure_and_recovers(
    simulator: int,
    private_redis: tuple[int, Path],
    tmp_path: Path,
    on_failure: str,
    statuses_while_down: list[int],
) -> None:
    redis_port, folder = private_redis
    config = tmp_path / "stellara.yaml"
    write_config(
        config,
        sim_port=simulator,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        limits="{rate: {window_s: 600, requests: 3}}",
        on_failure=on_failure,
    )
    ports, processes = gateways(config, 1)
    redis: subprocess.Popen[bytes] | None = None
    try:
        assert asyncio.run(fire(ports, 2)) == [200, 200]
        stop_redis(redis_port)
        time.sleep(0.2)
        assert sorted(asyncio.run(fire(ports, 5))) == statuses_while_down
        redis = start_redis(redis_port, folder)
        # Until the backend's circuit lets a trial through (within 5 s), requests are answered
        # as during the outage: 503 (closed), or 429 by the process's own count, which is used
        # up (open). The first 200 is Redis's, which remembers nothing: 2 more, then 429.
        deadline = time.monotonic() + 15
        before_back: list[int] = []
        while time.monotonic() < deadline:
            (status,) = asyncio.run(fire(ports, 1))
            if status == 200:
                break
            before_back.append(status)
            time.sleep(0.1)
        assert set(before_back) <= {statuses_while_down[-1]}
        assert [asyncio.run(fire(ports, 1))[0] for _ in range(3)] == [200, 200, 429]
    finally:
        for process in processes:
            stop(process)
        if redis is not None:
            stop_redis(redis_port)
            redis.wait(timeout=10)
