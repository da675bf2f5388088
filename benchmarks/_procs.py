"""Subprocess helpers the benchmark scripts share: free ports, core pinning, and a process
that is up (listening) for the length of a `with` block."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

STELLARA = [sys.executable, "-m", "stellara.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, args: list[str]) -> list[str]:
    """`args` run on one core where taskset exists (figures then speak of one core)."""
    return ["taskset", "-c", str(core), *args] if shutil.which("taskset") else args


@contextmanager
def process(args: list[str], port: int) -> Iterator[None]:
    """Run `args` until the block ends; enter only once it listens on `port`."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{args[-3:]} did not start listening on {port}")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=20)
