"""Metrics across worker processes: every worker's counts in any worker's scrape."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from stellara.sim import RunningSimulator
from stellara.telemetry.metrics import MULTIPROC_ENV, prepare_multiprocess_dir, worker_exited
from tests.telemetry.test_metrics import Samples, parse, total

pytestmark = pytest.mark.e2e

STELLARA = [sys.executable, "-m", "stellara.cli"]
KEY = "sk-metrics-workers-key"

# A worker of the test below: counts requests, reads its in-flight count and breaker, maybe
# hears its provider go unhealthy, then exits (its files stay, as a crashed worker's would).
WORKER = """
import os, sys
from stellara.events import EventBus, ProviderUnhealthy
from stellara.telemetry.metrics import GatewayMetrics
from stellara.testing import request_completed

requests, in_flight, breaker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bus = EventBus()
metrics = GatewayMetrics(
    providers=["openai"], in_flight=lambda: in_flight, breaker_states=lambda: {"openai": breaker}
)
metrics.attach(bus)
request = request_completed(completion_tokens=4)
for _ in range(requests):
    bus.publish(request)
if breaker == "open":
    bus.publish(
        ProviderUnhealthy(provider="openai", previous="healthy", status="unhealthy", reason="x")
    )
metrics.refresh()
print(os.getpid())
"""
SCRAPE = """
import sys
from prometheus_client import generate_latest
from stellara.telemetry.metrics import GatewayMetrics
sys.stdout.write(generate_latest(GatewayMetrics().registry).decode())
"""


def python(code: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_multiprocess_scrape_sums_workers_and_forgets_exited_ones_live_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    first = int(python(WORKER, "3", "2", "open", env=env))
    python(WORKER, "4", "5", "closed", env=env)
    s = parse(python(SCRAPE, env=env))
    assert total(s, "stellara_requests_total", provider="openai", status="200") == 7
    assert total(s, "stellara_request_duration_seconds_count", provider="openai") == 7
    assert total(s, "stellara_tokens_total", kind="completion") == 28
    assert total(s, "stellara_in_flight_requests") == 7  # summed over live workers
    assert total(s, "stellara_circuit_breaker_state", breaker="openai") == 2  # the worst
    assert total(s, "stellara_provider_healthy", provider="openai") == 0  # one finds it down
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    worker_exited(first)
    s = parse(python(SCRAPE, env=env))
    assert total(s, "stellara_requests_total") == 7  # what it counted stays counted
    assert total(s, "stellara_in_flight_requests") == 5
    assert total(s, "stellara_circuit_breaker_state", breaker="openai") == 0
    assert total(s, "stellara_provider_healthy", provider="openai") == 1


def test_prepare_multiprocess_dir_makes_a_fresh_empty_directory_each_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"another run's counts")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))  # inherited from elsewhere
    made = [prepare_multiprocess_dir(), prepare_multiprocess_dir()]
    try:
        assert os.environ[MULTIPROC_ENV] == str(made[1])
        assert made[0] != made[1]
        for path in made:
            assert path.is_dir()
            assert list(path.iterdir()) == []
    finally:
        for path in made:
            shutil.rmtree(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metrics_dirs(parent: Path) -> list[Path]:
    return list(parent.glob("stellara-metrics-*"))


def per_worker_requests(metrics_dir: Path) -> list[float]:
    """The requests each worker counted, read from its own file."""
    return [
        sum(
            sample.value
            for family in MultiProcessCollector.merge([str(path)])
            for sample in family.samples
            if sample.name == "stellara_requests_total"
        )
        for path in metrics_dir.glob("counter_*.db")
    ]


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


async def chat(http: aiohttp.ClientSession, port: int) -> int | None:
    """One call on a new connection (the kernel picks the worker); None while none listens."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        async with http.post(url, json=body, headers=headers) as response:
            await response.read()
            return response.status
    except aiohttp.ClientConnectionError:
        await asyncio.sleep(0.05)
        return None


async def scrape(http: aiohttp.ClientSession, port: int) -> Samples:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        return parse(await response.text())


async def test_serve_workers_any_scrape_counts_every_workers_requests(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "stellara.yaml"
    config.write_text(
        f"""
providers:
  - {{id: sim, type: openai, base_url: "{sim.url}/v1", api_key: k}}
models:
  - {{name: m, targets: [{{provider: sim, model: gpt-4o-mini}}]}}
keys:
  - {{key: {KEY}, user: alice}}
"""
    )
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    env["TMPDIR"] = str(tmp_path)  # where serve makes the metrics directory
    with (tmp_path / "gateway.log").open("wb") as log:
        gateway = await asyncio.create_subprocess_exec(
            *STELLARA, "serve", "--config", str(config), "--port", str(port), "--workers", "2",
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    sent = 0
    try:
        await until(lambda: bool(metrics_dirs(tmp_path)), 10, "serve made no metrics directory")
        (metrics_dir,) = metrics_dirs(tmp_path)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            deadline = asyncio.get_running_loop().time() + 30
            # Until both workers have served some: only then does a sum prove anything.
            while sent < 10 or sum(1 for n in per_worker_requests(metrics_dir) if n) < 2:
                assert asyncio.get_running_loop().time() < deadline, "a worker never served"
                status = await chat(http, port)
                assert status in (None, 200)
                if status == 200:
                    sent += 1
            scrapes = [await scrape(http, port) for _ in range(8)]
        per_worker = per_worker_requests(metrics_dir)
    finally:
        if gateway.returncode is None:
            gateway.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gateway.wait(), 30) == 0
    assert len(per_worker) == 2
    assert sum(per_worker) == sent
    for samples in scrapes:
        assert total(samples, "stellara_requests_total", provider="sim", status="200") == sent
        assert total(samples, "stellara_in_flight_requests") == 0
    assert metrics_dirs(tmp_path) == []  # removed when the workers are gone
