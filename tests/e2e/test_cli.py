"""The `stellara` command as a user runs it: real processes, real sockets."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

pytestmark = pytest.mark.e2e

STELLARA = [sys.executable, "-m", "stellara.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_until(process: subprocess.Popen[str], pattern: str, timeout_s: float = 20) -> str:
    """Lines printed by `process` until one matches `pattern`."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen += line
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"{pattern!r} never printed; got:\n{seen}")


def stop(process: subprocess.Popen[str]) -> int:
    """SIGTERM, wait, and close the pipe (an open pipe is a ResourceWarning)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=20)
    if process.stdout is not None:
        process.stdout.close()
    return code


@pytest.fixture
def demo() -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [*STELLARA, "serve", "--demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = read_until(process, r"^Anthropic SDK:")
        key = re.search(r"Demo key: (\S+)", banner)
        assert key is not None
        yield f"http://127.0.0.1:{port}", key.group(1), process
    finally:
        stop(process)


def test_demo_prints_a_dashboard_link_that_signs_in() -> None:
    port = free_port()
    process = subprocess.Popen(
        [*STELLARA, "serve", "--demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = read_until(process, r"^Anthropic SDK:")
        link = re.search(r"Dashboard: +(\S+)", banner)
        assert link is not None
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        with browser.open(link.group(1), timeout=10) as page:  # follows the redirect
            assert page.status == 200
            assert page.url.endswith("/dashboard")
        with browser.open(f"http://127.0.0.1:{port}/dashboard/data", timeout=10) as data:
            assert data.status == 200
    finally:
        stop(process)


def test_demo_prints_ready_curl_line(demo: tuple[str, str, subprocess.Popen[str]]) -> None:
    url, key, _ = demo
    assert url.startswith("http://127.0.0.1:")
    assert key.startswith("sk-stellara-demo-")


def test_demo_answers_the_openai_sdk(demo: tuple[str, str, subprocess.Popen[str]]) -> None:
    url, key, _ = demo
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    completion = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hello, Stellara!"}]
    )
    assert completion.choices[0].message.content
    stream = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hello, Stellara!"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == completion.choices[0].message.content
    client.close()


def test_demo_stops_cleanly_on_sigterm(demo: tuple[str, str, subprocess.Popen[str]]) -> None:
    _, _, process = demo
    assert stop(process) == 0


def test_serve_config_proxies_to_openai_compatible_server(tmp_path: Path) -> None:
    sim_port, gateway_port = free_port(), free_port()
    config = tmp_path / "stellara.yaml"
    config.write_text(
        f"""
server: {{port: {gateway_port}}}
providers:
  - {{id: local, type: openai, base_url: "http://127.0.0.1:{sim_port}/v1", api_key: ${{LOCAL_KEY}}}}
models:
  - {{name: local-llama, targets: [{{provider: local, model: llama-3.1-8b}}]}}
keys:
  - {{key: ${{APP_KEY}}, user: alice}}
"""
    )
    env = {**os.environ, "LOCAL_KEY": "none", "APP_KEY": "sk-app-key-12345"}
    simulator = subprocess.Popen(
        [*STELLARA, "simulate", "--port", str(sim_port)], stdout=subprocess.PIPE, text=True
    )
    gateway = subprocess.Popen(
        [*STELLARA, "serve", "--config", str(config)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        read_until(gateway, r"listening on")
        read_until(simulator, r"127\.0\.0\.1")
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{gateway_port}/v1", api_key="sk-app-key-12345"
        )
        completion = client.chat.completions.create(
            model="local-llama", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.model == "llama-3.1-8b"
        client.close()
    finally:
        stop(gateway)
        stop(simulator)


def test_config_check_accepts_good_file_and_shows_routes(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(
        """
providers: [{id: openai, type: openai, api_key: sk-x}]
models: [{name: smart, targets: [{provider: openai, model: gpt-4o}]}]
"""
    )
    result = subprocess.run(
        [*STELLARA, "config", "check", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "smart: openai (openai) → gpt-4o" in result.stdout
    assert "sk-x" not in result.stdout


def test_config_check_reports_every_problem_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        """
server: {port: 4000, colour: blue}
providers: [{id: openai, type: openai, api_key: sk-very-secret-value}]
models:
  - {name: smart, targets: [{provider: openai, model: gpt-4o}, {provider: opena, model: x}]}
"""
    )
    result = subprocess.run(
        [*STELLARA, "config", "check", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "server.colour: unknown key" in lines
    assert "models[0].targets[1].provider: unknown provider 'opena'" in lines
    assert "Traceback" not in result.stderr
    assert "sk-very-secret-value" not in result.stderr


def test_serve_refuses_bad_config_with_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("providers: [{id: a, type: nope}]\n")
    result = subprocess.run(
        [*STELLARA, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 1
    assert "providers[0].type: unknown provider type 'nope'" in result.stderr


def test_demo_serves_every_provider_type_through_both_apis(
    demo: tuple[str, str, subprocess.Popen[str]],
) -> None:
    url, key, _ = demo
    openai_client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    anthropic_client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    names = [model.id for model in openai_client.models.list()]
    assert names[0] == "demo"
    assert len(names) >= 5
    for name in names:
        completion = openai_client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "Hello"}]
        )
        assert completion.choices[0].message.content, name
        message = anthropic_client.messages.create(
            model=name, max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
        )
        assert message.content[0].type == "text", name
    openai_client.close()
    anthropic_client.close()


def test_serve_workers_share_one_port_and_stop_together(tmp_path: Path) -> None:
    sim_port, gateway_port = free_port(), free_port()
    config = tmp_path / "stellara.yaml"
    config.write_text(
        f"""
providers:
  - {{id: sim, type: openai, base_url: "http://127.0.0.1:{sim_port}/v1", api_key: k}}
models:
  - {{name: m, targets: [{{provider: sim, model: gpt-4o-mini}}]}}
keys:
  - {{key: sk-workers-key-1234, user: alice}}
"""
    )
    simulator = subprocess.Popen(
        [*STELLARA, "simulate", "--port", str(sim_port)], stdout=subprocess.PIPE, text=True
    )
    gateway = subprocess.Popen(
        [
            *STELLARA,
            "serve",
            "--config",
            str(config),
            "--port",
            str(gateway_port),
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        read_until(gateway, r"with 2 workers")
        read_until(simulator, r"127\.0\.0\.1")
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{gateway_port}/v1", api_key="sk-workers-key-1234"
        )
        deadline = time.monotonic() + 20
        answers = 0
        while answers < 6 and time.monotonic() < deadline:
            try:
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
                answers += 1
            except openai.APIConnectionError:  # a worker still starting
                time.sleep(0.1)
        client.close()
        assert answers == 6
    finally:
        assert stop(gateway) == 0
        stop(simulator)
