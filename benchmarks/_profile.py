"""Sampling profiles of a running gateway with py-spy, and their summary by function.

`record` attaches py-spy to a process for a while (``--nonblocking``: the gateway is never
paused) and writes folded stacks (one line per distinct stack and its sample count);
`summary` turns them into the share of samples each function was on the stack (inclusive)
and at the top of it (self), which is what the benchmark notes quote.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Frames every sample has (the interpreter entry and the event loop): they say nothing.
_FRAMES_SKIPPED = (
    "<module>",
    "_run_module_as_main",
    "_run_code",
    "main",
    "_serve",
    "run_loop",
    "Runner.run",
)


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter's (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, core: int | None) -> subprocess.Popen[bytes]:
    """Start sampling `pid` at 200 Hz for `seconds` into `out`; wait on the returned process."""
    executable = py_spy()
    if executable is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    command = [executable, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    command += ["--duration", str(max(1, round(seconds))), "--nonblocking", "--output", str(out)]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _function(frame: str) -> str:
    """`name (path/to/module.py:line)` → `module.py:name`."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{Path(path).name}:{name}" if path else name


def summary(folded: Path, top: int = 25) -> list[str]:
    """The `top` functions by inclusive share of samples, with their self share."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_function(frame) for frame in stack.split(";")]
        for function in set(frames):
            inclusive[function] += samples
        own[frames[-1]] += samples
    if total == 0:
        return ["(no samples)"]
    lines = [f"{total} samples; % of samples with the function on the stack (self: on top)"]
    shown = [
        (name, n)
        for name, n in inclusive.most_common()
        if name.split(":", 1)[-1] not in _FRAMES_SKIPPED
    ][:top]
    for name, samples in shown:
        lines.append(
            f"{100 * samples / total:5.1f}%  (self {100 * own[name] / total:4.1f}%)  {name}"
        )
    return lines
