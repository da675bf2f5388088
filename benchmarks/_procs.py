"""Subprocess helpers the benchmark scripts share: free ports, core pinning, a process that is
up (listening) for the length of a `with` block, and a Redis of a script's own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STELLARA = [sys.executable, "-m", "stellara.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, args: list[str]) -> list[str]:
    """`args` run on one core where taskset exists (figures then speak of one core)."""
    return ["taskset", "-c", str(core), *args] if shutil.which("taskset") else args


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    """Return once something listens on 127.0.0.1:`port`; `RuntimeError` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s:g} s")


@contextmanager
def process(args: list[str], port: int) -> Iterator[None]:
    """Run `args` until the block ends; enter only once it listens on `port`."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class PrivateRedis:
    """A Redis of the suite's own on a free port, so it may stop it (the machine's is not ours)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--logfile", str(self._log)]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_for_port(self.port)

    def crash(self) -> None:
        """SIGKILL: no goodbye to its clients, and it comes back empty."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def keys(self) -> int:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), "DBSIZE"], capture_output=True, text=True
        )
        return int(out.stdout.strip() or 0)
