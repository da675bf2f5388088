"""Gateway overhead benchmark: the same load straight to the simulator and through the gateway.

Starts ``stellara simulate`` (answering at once) and ``stellara serve`` as subprocesses on free
ports, drives them with ``wrk`` and prints, for (a) direct-to-simulator and (b) through-gateway:

* capacity: requests/s and p50/p99 latency at ``--connections`` (default 64) connections;
* unloaded latency: p50/p99 at one connection (requests one after another);
* the latency the gateway adds at one connection (b - a), and its capacity as a fraction of (a);
* streaming time-to-first-byte (first ``data:`` line), measured by a small Python client;
* the CPU each process used during each load run, to show which side is the bottleneck.

Placement (2-core machine): the gateway alone on core 0; the simulator, wrk and the streaming
client on core 1. See ``benchmarks/README.md`` for why.

Usage::

    .venv/bin/python benchmarks/run.py               # full run (~3 minutes)
    .venv/bin/python benchmarks/run.py --quick       # smoke check (~30 seconds)
    .venv/bin/python benchmarks/run.py --json out.json --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
GATEWAY_CORE = 0
LOAD_CORE = 1
API_KEY = "sk-bench-key-0001"
MODEL = "gpt-4o-mini"
PROMPT = "Say hello to the benchmark."
MAX_TOKENS = 16
TARGET_RPS = 1500.0
TARGET_ADDED_P50_MS = 0.5
_CLK_TCK = os.sysconf("SC_CLK_TCK")

_WRK_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
wrk.body = '%(body)s'

"""

# Prints wrk's figures as one JSON line (microseconds), parsed by `run_wrk`; every wrk script
# of the benchmarks ends with it.
WRK_DONE_LUA = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'STELLARA_WRK {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d,"socket_errors":%d,"non_2xx":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
"""

_CONFIG = """\
server: {host: 127.0.0.1, port: %(gateway_port)d}
providers:
  - {id: sim, type: openai, base_url: "http://127.0.0.1:%(sim_port)d/v1", api_key: sim-key}
models:
  - {name: %(model)s, targets: [{provider: sim, model: %(model)s}]}
keys:
  - {key: %(key)s, user: bench}
usage_store: {url: "sqlite:///%(usage_db)s"}   # every request leaves a usage record
"""


def request_body(*, stream: bool) -> bytes:
    """The chat request every measurement sends; identical for both paths."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- processes


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cmd: Sequence[str], core: int | None) -> list[str]:
    """``cmd`` run through ``taskset -c core`` (taskset execs, so the pid stays the same)."""
    return ["taskset", "-c", str(core), *cmd] if core is not None else list(cmd)


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (from /proc, 1/CLK_TCK resolution)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return float("nan")
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


class Services:
    """Owns the subprocesses; ``close`` terminates them all (SIGTERM, then SIGKILL)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Service] = []

    def start(self, name: str, cmd: list[str]) -> Service:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            # Own session: a Ctrl-C in the terminal reaches only us; we stop the children.
            process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
            )
        service = Service(name, process, log)
        self.started.append(service)
        return service

    def close(self) -> None:
        for service in self.started:
            if service.process.poll() is None:
                service.process.terminate()
        deadline = time.monotonic() + 5.0
        for service in self.started:
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        self.started.clear()


def wait_until_answering(service: Service, url: str, headers: dict[str, str]) -> None:
    """Poll ``url`` with the benchmark request until it answers 200 (15 s at most)."""
    body = request_body(stream=False)
    deadline = time.monotonic() + 15.0
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise BenchError(
                f"{service.name} exited with code {service.process.returncode}:\n"
                f"{service.log_tail()}"
            )
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                response.read()
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}: {exc.read()[:300]!r}"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.1)
    raise BenchError(f"{service.name} did not answer {url}: {last_error}\n{service.log_tail()}")


# --------------------------------------------------------------------------- wrk


def core_ticks() -> dict[str, tuple[int, int]]:
    """``{"core0": (busy, total), ...}`` jiffies from /proc/stat (busy excludes idle, iowait)."""
    ticks: dict[str, tuple[int, int]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                numbers = [int(v) for v in values[:8]]
                total = sum(numbers)
                ticks[f"core{name[3:]}"] = (total - numbers[3] - numbers[4], total)
    return ticks


def core_busy(before: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Busy % of each core since ``before`` (everything on it: ours, others', the kernel)."""
    after = core_ticks()
    busy: dict[str, float] = {}
    for name, (busy_after, total_after) in after.items():
        busy_before, total_before = before.get(name, (busy_after, total_after))
        elapsed = total_after - total_before
        busy[name] = 100 * (busy_after - busy_before) / elapsed if elapsed else float("nan")
    return busy


@dataclass
class WrkResult:
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    requests: int
    socket_errors: int
    non_2xx: int
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU used during the run, in % of one core, per process ("wrk", "gateway", "simulator")."""
    cores: dict[str, float] = field(default_factory=dict)
    """Busy % of each core during the run, whoever used it ("core0", "core1")."""


_WRK_LINE = re.compile(r"^STELLARA_WRK (\{.*\})$", re.MULTILINE)


def run_wrk(
    url: str,
    script: Path,
    *,
    connections: int,
    duration_s: float,
    core: int | None,
    watch: Sequence[Service],
) -> WrkResult:
    """One ``wrk -t1`` run; CPU of ``watch`` and of wrk itself is sampled around it."""
    cmd = pinned(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        core,
    )
    before = {service.name: service.cpu_seconds() for service in watch}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks_before = core_ticks()
    started = time.perf_counter()
    completed = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    cores = core_busy(ticks_before)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise BenchError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    match = _WRK_LINE.search(completed.stdout)
    if match is None:
        raise BenchError(f"wrk printed no STELLARA_WRK line:\n{completed.stdout}")
    data = json.loads(match.group(1))
    cpu = {
        service.name: 100 * (service.cpu_seconds() - before[service.name]) / elapsed
        for service in watch
    }
    wrk_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    cpu["wrk"] = 100 * wrk_cpu / elapsed
    duration = data["duration_us"] / 1e6
    return WrkResult(
        connections=connections,
        rps=data["requests"] / duration if duration else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        requests=data["requests"],
        socket_errors=data["socket_errors"],
        non_2xx=data["non_2xx"],
        cpu=cpu,
        cores=cores,
    )


# --------------------------------------------------------------------------- streaming TTFB


@dataclass
class StreamResult:
    streams: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    total_p50_ms: float
    failures: int


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def _measure_streams(
    url: str,
    streams: int,
    warmup: int,
    headers: dict[str, str] | None,
    body_of: Callable[[int], bytes] | None,
) -> StreamResult:
    if headers is None:
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    ttfb: list[float] = []
    total: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection, streams in sequence
    async with aiohttp.ClientSession(connector=connector) as session:
        for index in range(warmup + streams):
            body = request_body(stream=True) if body_of is None else body_of(index)
            started = time.perf_counter()
            first: float | None = None
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    await response.read()
                    failures += 1
                    continue
                async for line in response.content:
                    if first is None and line.startswith(b"data:"):
                        first = time.perf_counter()
                # The whole stream is read so the connection is reused by the next one.
            finished = time.perf_counter()
            if first is None:
                failures += 1
            elif index >= warmup:
                ttfb.append(first - started)
                total.append(finished - started)
    return StreamResult(
        streams=len(ttfb),
        ttfb_p50_ms=percentile(ttfb, 50) * 1000,
        ttfb_p99_ms=percentile(ttfb, 99) * 1000,
        total_p50_ms=percentile(total, 50) * 1000,
        failures=failures,
    )


def measure_streams(
    url: str,
    streams: int,
    warmup: int,
    *,
    headers: dict[str, str] | None = None,
    body_of: Callable[[int], bytes] | None = None,
) -> StreamResult:
    """Time ``streams`` streams one after another (after ``warmup`` untimed ones).

    ``headers`` default to the benchmark key's; ``body_of(index)`` makes each request's body
    (default: the same ``request_body(stream=True)`` every time)."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_measure_streams(url, streams, warmup, headers, body_of))


# --------------------------------------------------------------------------- driver


@dataclass
class Options:
    duration_s: float
    connections: int
    runs: int
    streams: int
    warmup_s: float
    pin: bool


@dataclass
class PathRuns:
    """All runs of one path (``direct`` or ``gateway``)."""

    loaded: list[WrkResult] = field(default_factory=list)
    single: list[WrkResult] = field(default_factory=list)
    streams: list[StreamResult] = field(default_factory=list)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(result: WrkResult) -> str:
    cpu = " ".join(f"{name}={value:.0f}%" for name, value in {**result.cpu, **result.cores}.items())
    return (
        f"{result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
        f"  [cpu {cpu}]"
    )


def benchmark(
    options: Options, workdir: Path, services: Services
) -> tuple[dict[str, PathRuns], list[WrkResult]]:
    """Run every measurement; returns the two paths' runs and the cross-core control runs."""
    gateway_core = GATEWAY_CORE if options.pin else None
    load_core = LOAD_CORE if options.pin else None
    sim_port, gateway_port, control_port = free_port(), free_port(), free_port()
    config = workdir / "stellara.yaml"
    config.write_text(
        _CONFIG
        % {
            "gateway_port": gateway_port,
            "sim_port": sim_port,
            "model": MODEL,
            "key": API_KEY,
            "usage_db": workdir / "usage.db",
        }
    )
    script = workdir / "chat.lua"
    body = request_body(stream=False).decode()
    script.write_text(_WRK_LUA % {"key": API_KEY, "body": body} + WRK_DONE_LUA)

    stellara = [sys.executable, "-m", "stellara.cli"]
    simulator = services.start(
        "simulator",
        pinned([*stellara, "simulate", "--port", str(sim_port)], load_core),
    )
    gateway = services.start(
        "gateway",
        pinned(
            [*stellara, "serve", "--config", str(config), "--port", str(gateway_port)], gateway_core
        ),
    )
    urls = {
        "direct": f"http://127.0.0.1:{sim_port}/v1/chat/completions",
        "gateway": f"http://127.0.0.1:{gateway_port}/v1/chat/completions",
    }
    # Control: a second simulator on the gateway's core, measured at one connection, so a
    # direct request crosses cores as the gateway's requests do (wake-ups cost on a VM).
    control = None
    control_url = f"http://127.0.0.1:{control_port}/v1/chat/completions"
    if options.pin:
        control = services.start(
            "control-simulator",
            pinned([*stellara, "simulate", "--port", str(control_port)], gateway_core),
        )
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    wait_until_answering(simulator, urls["direct"], headers)
    wait_until_answering(gateway, urls["gateway"], headers)
    if control is not None:
        wait_until_answering(control, control_url, headers)
    log(
        f"simulator pid {simulator.process.pid} on :{sim_port}, "
        f"gateway pid {gateway.process.pid} on :{gateway_port}"
    )

    watch = [gateway, simulator]
    results = {path: PathRuns() for path in urls}
    control_runs: list[WrkResult] = []
    for url in urls.values():  # warm-up: connection pools, caches, allocator
        run_wrk(
            url,
            script,
            connections=options.connections,
            duration_s=options.warmup_s,
            core=load_core,
            watch=watch,
        )
    for run in range(1, options.runs + 1):
        # Interleave the two paths so slow drift on a noisy machine hits both alike.
        for path, url in urls.items():
            loaded = run_wrk(
                url,
                script,
                connections=options.connections,
                duration_s=options.duration_s,
                core=load_core,
                watch=watch,
            )
            results[path].loaded.append(loaded)
            log(f"run {run} {path:7s} c={options.connections:<3d} {_summary(loaded)}")
            single = run_wrk(
                url,
                script,
                connections=1,
                duration_s=options.duration_s,
                core=load_core,
                watch=watch,
            )
            results[path].single.append(single)
            log(f"run {run} {path:7s} c=1   {_summary(single)}")
            stream = measure_streams(url, options.streams, warmup=max(5, options.streams // 20))
            results[path].streams.append(stream)
            log(
                f"run {run} {path:7s} stream TTFB p50 {stream.ttfb_p50_ms:.2f} ms "
                f"p99 {stream.ttfb_p99_ms:.2f} ms (n={stream.streams}, "
                f"failures={stream.failures})"
            )
            for result in (loaded, single):
                if result.non_2xx or result.socket_errors:
                    raise BenchError(
                        f"{path}: {result.non_2xx} non-2xx answers and "
                        f"{result.socket_errors} socket errors; see {workdir}"
                    )
        if control is not None:
            single = run_wrk(
                control_url,
                script,
                connections=1,
                duration_s=options.duration_s,
                core=load_core,
                watch=[control],
            )
            control_runs.append(single)
            log(f"run {run} control c=1   {_summary(single)} (simulator on core {GATEWAY_CORE})")
    for service in services.started:
        if service.process.poll() is not None:
            raise BenchError(f"{service.name} died during the run:\n{service.log_tail()}")
    return results, control_runs


# --------------------------------------------------------------------------- report


def summarize(results: dict[str, PathRuns], control: list[WrkResult]) -> dict[str, Any]:
    """Medians over runs of every figure, plus the derived gateway-vs-direct figures."""
    summary: dict[str, Any] = {}
    if control:
        summary["control"] = {
            "single_p50_ms": median([r.p50_ms for r in control]),
            "single_p99_ms": median([r.p99_ms for r in control]),
            "single_rps": median([r.rps for r in control]),
        }
    for path, runs in results.items():
        cpu_names = runs.loaded[0].cpu.keys()
        summary[path] = {
            "rps": median([r.rps for r in runs.loaded]),
            "rps_min": min(r.rps for r in runs.loaded),
            "rps_max": max(r.rps for r in runs.loaded),
            "loaded_p50_ms": median([r.p50_ms for r in runs.loaded]),
            "loaded_p99_ms": median([r.p99_ms for r in runs.loaded]),
            "single_rps": median([r.rps for r in runs.single]),
            "single_p50_ms": median([r.p50_ms for r in runs.single]),
            "single_p99_ms": median([r.p99_ms for r in runs.single]),
            "ttfb_p50_ms": median([s.ttfb_p50_ms for s in runs.streams]),
            "ttfb_p99_ms": median([s.ttfb_p99_ms for s in runs.streams]),
            "stream_total_p50_ms": median([s.total_p50_ms for s in runs.streams]),
            "loaded_cpu_pct": {
                name: median([r.cpu[name] for r in runs.loaded]) for name in cpu_names
            },
            "loaded_core_busy_pct": {
                name: median([r.cores[name] for r in runs.loaded]) for name in runs.loaded[0].cores
            },
        }
    direct, gateway = summary["direct"], summary["gateway"]
    summary["added"] = {
        "single_p50_ms": gateway["single_p50_ms"] - direct["single_p50_ms"],
        "single_p99_ms": gateway["single_p99_ms"] - direct["single_p99_ms"],
        "ttfb_p50_ms": gateway["ttfb_p50_ms"] - direct["ttfb_p50_ms"],
        "ttfb_p99_ms": gateway["ttfb_p99_ms"] - direct["ttfb_p99_ms"],
        "capacity_fraction": gateway["rps"] / direct["rps"] if direct["rps"] else float("nan"),
    }
    return summary


def git(*args: str) -> str:
    """What `git ARGS` prints in this checkout, stripped; "" when git fails or is missing."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO)
        return out.stdout.strip()
    return ""


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    wrk_version = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        wrk_version = " ".join((out.stdout or out.stderr).split()[:2])
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version,
        "commit": commit,
    }


def _cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}%" for name, value in cpu.items())


def render(summary: dict[str, Any], options: Options, machine: dict[str, Any]) -> str:
    d, g, added = summary["direct"], summary["gateway"], summary["added"]
    c = options.connections
    placement = (
        f"gateway on core {GATEWAY_CORE}; simulator + wrk + stream client on core {LOAD_CORE}"
        if options.pin
        else "not pinned (--no-pin)"
    )
    rows = [
        ("", "(a) direct", "(b) gateway", "b - a"),
        (
            f"requests/s, {c} conns",
            f"{d['rps']:.0f}",
            f"{g['rps']:.0f}",
            f"{100 * added['capacity_fraction']:.0f}% of direct",
        ),
        (
            "  (min-max of runs)",
            f"{d['rps_min']:.0f}-{d['rps_max']:.0f}",
            f"{g['rps_min']:.0f}-{g['rps_max']:.0f}",
            "",
        ),
        (
            f"p50 ms, {c} conns",
            f"{d['loaded_p50_ms']:.2f}",
            f"{g['loaded_p50_ms']:.2f}",
            f"{g['loaded_p50_ms'] - d['loaded_p50_ms']:+.2f}",
        ),
        (
            f"p99 ms, {c} conns",
            f"{d['loaded_p99_ms']:.2f}",
            f"{g['loaded_p99_ms']:.2f}",
            f"{g['loaded_p99_ms'] - d['loaded_p99_ms']:+.2f}",
        ),
        ("requests/s, 1 conn", f"{d['single_rps']:.0f}", f"{g['single_rps']:.0f}", ""),
        (
            "p50 ms, 1 conn",
            f"{d['single_p50_ms']:.3f}",
            f"{g['single_p50_ms']:.3f}",
            f"{added['single_p50_ms']:+.3f}",
        ),
        (
            "p99 ms, 1 conn",
            f"{d['single_p99_ms']:.3f}",
            f"{g['single_p99_ms']:.3f}",
            f"{added['single_p99_ms']:+.3f}",
        ),
        *control_rows(summary),
        (
            "stream TTFB p50 ms",
            f"{d['ttfb_p50_ms']:.3f}",
            f"{g['ttfb_p50_ms']:.3f}",
            f"{added['ttfb_p50_ms']:+.3f}",
        ),
        (
            "stream TTFB p99 ms",
            f"{d['ttfb_p99_ms']:.3f}",
            f"{g['ttfb_p99_ms']:.3f}",
            f"{added['ttfb_p99_ms']:+.3f}",
        ),
        (
            "stream total p50 ms",
            f"{d['stream_total_p50_ms']:.3f}",
            f"{g['stream_total_p50_ms']:.3f}",
            f"{g['stream_total_p50_ms'] - d['stream_total_p50_ms']:+.3f}",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"Stellara gateway overhead — {machine['date']}, {machine['cpu']} "
        f"({machine['cores']} cores), commit {machine['commit']}",
        f"placement: {placement}",
        f"load: {machine['wrk']}, -t1, {options.duration_s:g} s per run, median of "
        f"{options.runs} run(s); simulator answers at once; {MAX_TOKENS}-token non-streaming "
        f"chat completion",
        "stream TTFB: Python aiohttp client, one connection, "
        f"{options.streams} sequential streams per run, time to the first 'data:' line",
        "",
    ]
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    if "control" in summary:
        lines += [
            f"* cross-core control: straight to a second simulator pinned to core {GATEWAY_CORE}, "
            "so each request crosses cores as through the gateway; b - a = the cost of the "
            "crossing alone, part of the gateway's added latency",
        ]
    lines += [
        "",
        f"CPU during the {c}-conn runs, % of one core (median of runs):",
        f"  direct : {_cpu_text(d['loaded_cpu_pct'])}; "
        f"cores busy: {_cpu_text(d['loaded_core_busy_pct'])}",
        f"  gateway: {_cpu_text(g['loaded_cpu_pct'])}; "
        f"cores busy: {_cpu_text(g['loaded_core_busy_pct'])}",
        *bottleneck_notes(summary, options),
        "",
        *target_lines(summary),
    ]
    return "\n".join(lines)


def control_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows of the cross-core control: direct, but the simulator on the gateway's core."""
    if "control" not in summary:
        return []
    control, d = summary["control"], summary["direct"]
    return [
        (
            "p50 ms, 1 conn, cross-core*",
            f"{control['single_p50_ms']:.3f}",
            "",
            f"{control['single_p50_ms'] - d['single_p50_ms']:+.3f}",
        ),
        (
            "p99 ms, 1 conn, cross-core*",
            f"{control['single_p99_ms']:.3f}",
            "",
            f"{control['single_p99_ms'] - d['single_p99_ms']:+.3f}",
        ),
    ]


def _foreign_load(figures: dict[str, Any]) -> float:
    """Core time used by processes other than ours, in % of one core (both cores together)."""
    cores = sum(figures["loaded_core_busy_pct"].values())
    ours = sum(figures["loaded_cpu_pct"].values())
    return max(0.0, float(cores - ours))


def bottleneck_notes(summary: dict[str, Any], options: Options) -> list[str]:
    """Say which process limits each capacity figure, from the CPU it and each core used."""
    d, g = summary["direct"], summary["gateway"]
    cpu = g["loaded_cpu_pct"]
    rps = max(g["rps"], 1.0)
    per_request = {name: value * 1e4 / rps for name, value in cpu.items()}  # µs
    notes = [
        "  CPU per request through the gateway: "
        + ", ".join(f"{name} {value:.0f} µs" for name, value in per_request.items())
        + f" => one full core would carry ~{1e6 / max(per_request['gateway'], 1):.0f} req/s "
        "of gateway work (estimate; ignores contention)",
    ]
    load_us = per_request["simulator"] + per_request["wrk"]
    if options.pin and load_us > 0:
        notes.append(
            f"  the load core (simulator + wrk, {load_us:.0f} µs per request) can feed at most "
            f"~{1e6 / load_us:.0f} req/s: a gateway capacity near that figure would be capped "
            "by the load side, not measured"
        )
    foreign = max(_foreign_load(d), _foreign_load(g))
    if foreign > 10:
        notes.append(
            f"=> NOTE: other processes (and the kernel) used up to {foreign:.0f}% of a core "
            "during the loaded runs; the machine was not quiet"
        )
    if not options.pin:
        notes.append("=> not pinned: the figures say nothing about a one-core gateway")
        return notes
    gateway_core = g["loaded_core_busy_pct"].get(f"core{GATEWAY_CORE}", float("nan"))
    load_core = g["loaded_core_busy_pct"].get(f"core{LOAD_CORE}", float("nan"))
    if gateway_core >= 90 and load_core < 90:
        notes.append(
            f"=> the gateway's core is saturated ({gateway_core:.0f}% busy) while the load core "
            f"has room ({load_core:.0f}% busy): the gateway is the bottleneck"
        )
    elif load_core >= 90:
        notes.append(
            f"=> WARNING: the load core is {load_core:.0f}% busy: the gateway capacity figure "
            "may be limited by the simulator + wrk side"
        )
    else:
        notes.append(
            f"=> no core is saturated (core {GATEWAY_CORE} {gateway_core:.0f}%, core {LOAD_CORE} "
            f"{load_core:.0f}%): the limit is latency/scheduling, not CPU"
        )
    if d["rps"] > g["rps"] * 1.2:
        notes.append(
            f"=> the simulator alone (sharing core {LOAD_CORE} with wrk) serves "
            f"{d['rps']:.0f} req/s, {d['rps'] / rps:.1f}x the gateway: it does not saturate "
            "before the gateway does"
        )
    else:
        notes.append(
            "=> WARNING: direct capacity is close to the gateway's: the simulator may be the limit"
        )
    return notes


def target_lines(summary: dict[str, Any]) -> list[str]:
    rps = summary["gateway"]["rps"]
    added = summary["added"]["single_p50_ms"]
    return [
        f"target capacity >= {TARGET_RPS:.0f} req/s: {rps:.0f} "
        f"{'MET' if rps >= TARGET_RPS else 'NOT MET'}",
        f"target added p50 at 1 conn <= {TARGET_ADDED_P50_MS} ms: {added:.3f} ms "
        f"{'MET' if added <= TARGET_ADDED_P50_MS else 'NOT MET'}",
    ]


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> tuple[Options, Path | None, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="connections, loaded runs")
    parser.add_argument("--runs", type=int, default=3, help="repeat and report the median")
    parser.add_argument("--streams", type=int, default=500, help="sequential streams per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per path")
    parser.add_argument("--quick", action="store_true", help="short runs for a smoke check")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir and logs")
    args = parser.parse_args(argv)
    options = Options(
        duration_s=args.duration,
        connections=args.connections,
        runs=args.runs,
        streams=args.streams,
        warmup_s=args.warmup,
        pin=not args.no_pin,
    )
    if args.quick:
        options.duration_s, options.runs, options.streams, options.warmup_s = 2.0, 1, 100, 1.0
    if options.runs < 1 or options.connections < 1 or options.streams < 1:
        parser.error("--runs, --connections and --streams must be at least 1")
    return options, args.json, args.keep_logs


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler: stop as Ctrl-C does, so every started process is cleaned up."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="stellara-bench-"))
    try:
        yield path
    finally:
        if keep:
            log(f"logs kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    options, json_path, keep_logs = parse_args(argv)
    for tool in ("wrk", *(["taskset"] if options.pin else [])):
        if shutil.which(tool) is None:
            log(f"{tool} not found on PATH" + (" (try --no-pin)" if tool == "taskset" else ""))
            return 2
    if options.pin:
        if (os.cpu_count() or 1) < 2:
            log("pinning needs 2 cores; use --no-pin")
            return 2
        # This process runs the streaming client: keep it off the gateway's core.
        os.sched_setaffinity(0, {LOAD_CORE})
    signal.signal(signal.SIGTERM, raise_interrupt)  # clean up on SIGTERM as on Ctrl-C
    machine = machine_info()
    with workspace(keep_logs) as workdir:
        services = Services(workdir)
        try:
            results, control = benchmark(options, workdir, services)
        except BenchError as exc:
            log(f"benchmark failed: {exc}")
            return 1
        except KeyboardInterrupt:
            log("interrupted")
            return 130
        finally:
            services.close()
    summary = summarize(results, control)
    print(render(summary, options, machine))
    if json_path is not None:
        payload = {
            "machine": machine,
            "options": asdict(options),
            "summary": summary,
            "runs": {path: asdict(runs) for path, runs in results.items()},
            "control_runs": [asdict(run) for run in control],
        }
        json_path.write_text(json.dumps(payload, indent=2) + "\n")
        log(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
