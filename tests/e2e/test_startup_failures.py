"""A start that cannot succeed exits at once, non-zero, with one clear line, and leaves
nothing running: the process ends by itself (a thread or task left behind would keep it
alive, as a port in use once did, ignoring SIGTERM)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

STELLARA = [sys.executable, "-m", "stellara.cli"]
DEADLINE_S = 15.0  # "within seconds"; the slowest case takes about one
PROVIDER = {"id": "up", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"}


def write_config(directory: Path, **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "providers": [PROVIDER],
        "models": [{"name": "m", "targets": [{"provider": "up", "model": "gpt-4o"}]}],
        "usage_store": {"url": f"sqlite:///{directory / 'usage.db'}"},
    }
    config.update(overrides)
    path = directory / "stellara.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def serve(config: Path, *args: str) -> tuple[int, list[str], float]:
    """Run `stellara serve` until it exits: its status, the lines it wrote to stderr that are
    not log records, and how long it took."""
    started = time.monotonic()
    result = subprocess.run(
        [*STELLARA, "serve", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S * 2,
        check=False,
    )
    elapsed = time.monotonic() - started
    lines = [
        line
        for line in result.stderr.splitlines()
        if line and " INFO " not in line and " WARNING " not in line
    ]
    return result.returncode, lines, elapsed


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_exits_at_once(tmp_path: Path, taken_port: int, workers: str) -> None:
    code, lines, elapsed = serve(
        write_config(tmp_path), "--port", str(taken_port), "--workers", workers
    )
    assert code == 1
    assert lines == [f"stellara: cannot listen on 127.0.0.1:{taken_port}: Address already in use"]
    assert elapsed < DEADLINE_S


def test_a_required_database_that_does_not_answer_stops_the_start(tmp_path: Path) -> None:
    store = {"url": "postgresql://postgres@127.0.0.1:1/nothing", "required": True}
    code, lines, elapsed = serve(write_config(tmp_path, usage_store=store), "--port", "0")
    assert code == 1
    [line] = lines
    assert line.startswith("stellara: usage store postgresql")
    assert "127.0.0.1:1/nothing" in line
    assert "usage_store.required" in line
    assert elapsed < DEADLINE_S


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("ftp://example.com/v1", "must be an absolute http:// or https:// URL with a host"),
        ("api.example.com/v1", "must be an absolute http:// or https:// URL with a host"),
        ("http://[::1/v1", "not a URL"),
    ],
)
def test_bad_provider_settings_stop_the_start(tmp_path: Path, base_url: str, problem: str) -> None:
    provider = {**PROVIDER, "base_url": base_url}
    code, lines, elapsed = serve(write_config(tmp_path, providers=[provider]), "--port", "0")
    assert code == 1
    [line] = lines
    assert line.startswith("providers[0].base_url: ")
    assert problem in line
    assert elapsed < DEADLINE_S
