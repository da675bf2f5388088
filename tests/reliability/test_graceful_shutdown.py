"""SIGTERM under load: the gateway stops taking connections, finishes the requests and streams
in flight, writes every usage record, and exits 0.

A real `stellara serve` process in front of a simulator that streams slowly; clients keep
requests (half of them streams) in flight; SIGTERM arrives mid-load. Every request a client
saw completed must have exactly one usage record, every stream that had started must end with
`[DONE]`, and nothing may be answered after the process exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import IO

import aiohttp
import pytest

from tests.e2e.test_cli import STELLARA, free_port

pytestmark = pytest.mark.e2e

KEY = "sk-shutdown-test-key-0001"
CLIENTS = 12
TOKENS = 12  # at 40 ms per token: each answer takes about half a second


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "process exited during start-up"
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def client(url: str, stream: bool, done: list[str], cut: list[str], stop_at: float) -> None:
    """Send requests back to back until refused; note each completed answer's request id."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Tell me something."}],
        "max_tokens": TOKENS,
        "stream": stream,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < stop_at:
            try:
                async with http.post(url, json=body, headers=headers) as response:
                    request_id = response.headers.get("x-stellara-request-id", "")
                    text = await response.text()
                    if response.status != 200:
                        return
                    if stream and not text.rstrip().endswith("data: [DONE]"):
                        cut.append(request_id)
                        return
                    done.append(request_id)
            except (aiohttp.ClientError, OSError):
                return  # the gateway stopped taking requests


def start_processes(
    tmp_path: Path, log_file: IO[bytes]
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], int, int, Path]:
    """A slow-streaming simulator and a gateway in front of it, as separate processes."""
    sim_port, port = free_port(), free_port()
    simulator = subprocess.Popen(
        [*STELLARA, "simulate", "--port", str(sim_port), "--per-token-ms", "40"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = tmp_path / "usage.db"
    config = {
        "providers": [
            {
                "id": "sim",
                "type": "openai",
                "base_url": f"http://127.0.0.1:{sim_port}/v1",
                "api_key": "k",
            }
        ],
        "models": [{"name": "m", "targets": [{"provider": "sim", "model": "gpt-4o-mini"}]}],
        "keys": [{"key": KEY, "user": "load"}],
        # Records stay buffered until the shutdown flush writes them.
        "usage_store": {"url": f"sqlite:///{database}", "flush_interval_s": 60},
    }
    config_path = tmp_path / "stellara.yaml"
    config_path.write_text(json.dumps(config))
    gateway = subprocess.Popen(
        [*STELLARA, "serve", "--config", str(config_path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    return simulator, gateway, sim_port, port, database


async def test_sigterm_under_load_finishes_in_flight_work_and_loses_no_record(
    tmp_path: Path,
) -> None:
    log = tmp_path / "gateway.log"
    with log.open("wb") as log_file:
        simulator, gateway, sim_port, port, database = start_processes(tmp_path, log_file)
    try:
        wait_until_up(f"http://127.0.0.1:{sim_port}/_sim/requests", simulator)
        wait_until_up(f"http://127.0.0.1:{port}/healthz", gateway)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        done: list[str] = []
        cut: list[str] = []
        stop_at = time.monotonic() + 30
        clients = [
            asyncio.create_task(client(url, i % 2 == 0, done, cut, stop_at)) for i in range(CLIENTS)
        ]
        await asyncio.sleep(1.5)  # every client has answers behind it and one in flight
        answered_before = len(done)
        gateway.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*clients), 20)
        code = await asyncio.to_thread(gateway.wait, 20)
        stopped_in_s = time.monotonic() - signalled_at
    finally:
        for process in (gateway, simulator):
            if process.poll() is None:
                process.kill()
            process.wait()
    assert code == 0, log.read_text()
    assert stopped_in_s < 10, f"took {stopped_in_s:.1f} s to stop"
    assert answered_before > 0
    assert len(done) > answered_before  # requests in flight at SIGTERM were finished
    assert cut == [], f"streams cut by the shutdown: {cut}"
    # closing(): a connection's own `with` ends a transaction but leaves it open.
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT request_id, status FROM usage_records").fetchall()
    recorded = [request_id for request_id, _ in rows]
    assert len(recorded) == len(set(recorded)), "a request was recorded twice"
    assert set(done) <= set(recorded), f"answered but not recorded: {set(done) - set(recorded)}"
    assert all(status == 200 for _, status in rows)
    assert len(recorded) == len(done)  # and nothing was recorded that no client saw
