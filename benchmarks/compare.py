"""Gateways side by side: Stellara (every feature on, and all off), LiteLLM's proxy and
Portkey's gateway, each alone on one core in turn, against the upstream itself ("direct").

The upstream is nginx answering every ``POST /v1/chat/completions`` at once with a fixed chat
completion; streams come from ``stellara simulate`` (a role chunk at once, then one content
chunk every ``--per-token-ms``). Load comes from wrk (capacity, unloaded latency), an open-loop
aiohttp client of this file (fixed rates) and ``run.py``'s stream client (time to first byte),
all on the other core. Every request's prompt is new (a counter and a tag per run), so no
gateway ever answers from a cache.

Usage::

    scripts/bench-tools                               # wrk, nginx, LiteLLM and Portkey, pinned
    .venv/bin/python benchmarks/compare.py            # everything (~4 minutes)
    .venv/bin/python benchmarks/compare.py --quick    # smoke run (~2 minutes)
    .venv/bin/python benchmarks/compare.py --only stellara-on,portkey --json out.json
    .venv/bin/python benchmarks/compare.py --only stellara-on,stellara-off --profile profiles/

See ``benchmarks/README.md`` for what each figure means and why the processes sit where they do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

import _profile
from run import (
    GATEWAY_CORE,
    LOAD_CORE,
    REPO,
    WRK_DONE_LUA,
    BenchError,
    Service,
    Services,
    StreamResult,
    WrkResult,
    free_port,
    git,
    log,
    machine_info,
    measure_streams,
    percentile,
    pinned,
    raise_interrupt,
    run_wrk,
    workspace,
)

BENCH_TOOLS = REPO / ".bench"
LITELLM = BENCH_TOOLS / "litellm" / "bin" / "litellm"
PORTKEY = BENCH_TOOLS / "portkey" / "node_modules" / "@portkey-ai" / "gateway"
STELLARA = [sys.executable, "-m", "stellara.cli"]

MODEL = "gpt-4o-mini"
STREAM_MODEL = "sim-stream"  # the public name routed to the streaming simulator
MAX_TOKENS = 16
UPSTREAM_KEY = "sk-upstream-bench-0001"
MASTER_KEY = "sk-bench-master-0001"  # LiteLLM wants master keys to start with "sk-"
STATIC_KEY = "sk-bench-static-0001"
CONNECTIONS = 64
EXACT_LIMIT = 300  # requests a key may make in the exactness check with 2 workers
STARTUP_TIMEOUT_S = 120.0
# What wrk's, the open-loop client's and the stream client's prompts look like; "@N@" is the
# request counter, so every request is a cache miss.
COUNTER = "@N@"

GATEWAYS = ("stellara-on", "stellara-off", "stellara-2w", "litellm", "portkey")
PROFILED = ("stellara-on", "stellara-off")  # the columns `--profile` samples
TITLES = {
    "direct": "direct",
    "stellara-on": "Stellara on",
    "stellara-off": "Stellara off",
    "stellara-2w": "Stellara 2w",
    "litellm": "LiteLLM",
    "portkey": "Portkey",
}

# Issue 9's targets for Stellara with every feature on.
TARGET_RPS = 2000.0
TARGET_X_LITELLM = 40.0
TARGET_X_PORTKEY = 3.0
TARGET_ADDED_P50_MS = 0.5
TARGET_ADDED_P99_MS = 2.0
TARGET_FIXED_ADDED_P99_MS = 3.0
TARGET_TTFB_ADDED_MS = 1.0
TARGET_RESPONSES_OVER_CHAT_MS = 0.2  # issue 17: a Responses request costs what a chat one does
TARGET_SCALE_2W = 1.8
TARGET_RSS_MB = 120.0
TARGET_COLD_START_S = 1.5
DIRECT_HEADROOM = 5.0  # direct capacity must be this many times each gateway's

# A realistic non-streaming answer (OpenAI's shape, 16 completion tokens), served by nginx.
UPSTREAM_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-BenchAnswer000000000000001",
    "object": "chat.completion",
    "created": 1764250000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello, benchmark! Nice to meet you. How can I help you today with",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "length",
        }
    ],
    "usage": {
        "prompt_tokens": 21,
        "completion_tokens": 16,
        "total_tokens": 37,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_b376dfbbd5",
}

_NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path %(dir)s/nginx-body;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:%(port)d;
    location = /v1/chat/completions {
      default_type application/json;
      return 200 '%(answer)s';
    }
  }
}
"""

# Both Stellara columns: nginx for JSON answers, the simulator for streams.
_STELLARA_UPSTREAMS = """\
providers:
  - {id: upstream, type: openai, base_url: "http://127.0.0.1:%(nginx)d/v1", api_key: %(ukey)s}
  - {id: sim, type: openai, base_url: "http://127.0.0.1:%(sim)d/v1", api_key: %(ukey)s}
models:
  - {name: %(model)s, targets: [{provider: upstream, model: %(model)s}]}
  - {name: %(stream_model)s, targets: [{provider: sim, model: %(model)s}]}
"""

_STELLARA_ON = (
    """\
server: {host: 127.0.0.1, port: %(port)d, master_key: %(master)s}
"""
    + _STELLARA_UPSTREAMS
    + """\
state: {backend: redis, redis_url: "%(redis)s"}
limits:   # five limits per request, on Redis, never reached
  default_tier: bench
  tiers:
    bench:
      rate: {window_s: 60, requests: 1000000000, tokens: 1000000000000, cost_usd: 1000000}
      burst: {window_s: 1, requests: 100000000}
      quota: {daily: {requests: 1000000000, cost_usd: 1000000}, monthly: {cost_usd: 1000000}}
cache: {l2: {enabled: true, ttl_s: 300}}   # L1 + L2 on Redis; every lookup misses
usage_store: {url: "sqlite:///%(usage_db)s"}
telemetry: {metrics: true}
"""
)

_STELLARA_OFF = (
    """\
server: {host: 127.0.0.1, port: %(port)d}
"""
    + _STELLARA_UPSTREAMS
    + """\
keys:
  - {key: %(key)s, user: bench}
resilience: {health_check: {enabled: false}}
usage_store: {url: "sqlite:///%(usage_db)s"}   # records cannot be switched off
telemetry: {metrics: false, redis_events: false}
"""
)

_LITELLM = """\
model_list:
  - model_name: %(model)s
    litellm_params: {model: "openai/%(model)s", api_base: "http://127.0.0.1:%(nginx)d/v1",
                     api_key: %(ukey)s}
  - model_name: %(stream_model)s
    litellm_params: {model: "openai/%(model)s", api_base: "http://127.0.0.1:%(sim)d/v1",
                     api_key: %(ukey)s}
litellm_settings: {telemetry: false}
general_settings: {master_key: %(master)s}
"""

# LiteLLM's production settings: no remote price-map fetch at start, no log line per request.
_LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}


def chat_body(tag: str, counter: int | str, *, stream: bool = False) -> str:
    """The request every gateway gets: one short user turn, made unique by ``tag``/``counter``."""
    body: dict[str, Any] = {
        "model": STREAM_MODEL if stream else MODEL,
        "messages": [
            {"role": "user", "content": f"Say hello to the benchmark ({tag}, request {counter})."}
        ],
        "max_tokens": MAX_TOKENS,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


def responses_body(tag: str, counter: int | str) -> str:
    """``chat_body``'s request as a Responses request (Stellara's `/v1/responses`)."""
    body = {
        "model": MODEL,
        "input": f"Say hello to the benchmark ({tag}, request {counter}).",
        "max_output_tokens": MAX_TOKENS,
    }
    return json.dumps(body, separators=(",", ":"))


def wrk_script(
    path: Path,
    headers: dict[str, str],
    tag: str,
    body: Callable[[str, int | str], str] = chat_body,
) -> Path:
    """A wrk script sending ``body`` (``chat_body``) with a per-request counter and printing
    JSON figures."""
    left, right = body(tag, COUNTER).split(COUNTER)
    lines = ['wrk.method = "POST"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    lines += [
        "local n = 0",
        "request = function()",
        "  n = n + 1",
        f"  return wrk.format(nil, nil, nil, '{left}' .. n .. '{right}')",
        "end",
        "",
    ]
    path.write_text("\n".join(lines) + WRK_DONE_LUA)
    return path


# --------------------------------------------------------------------------- processes


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant still alive (from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, index = [root], 0
    while index < len(tree):
        tree.extend(parents.get(tree[index], []))
        index += 1
    return tree


def peak_rss_mb(root: int) -> tuple[float, int]:
    """Sum of VmHWM (peak resident set) over the process tree, in MB, and how many processes."""
    total_kb, count = 0, 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
                    count += 1
    return total_kb / 1024, count


class TreeService(Service):
    """A service whose CPU time is that of its whole process tree (workers included)."""

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in process_tree(self.process.pid):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
        return total


def start(
    services: Services, name: str, cmd: list[str], env: dict[str, str] | None = None
) -> TreeService:
    """Start ``cmd`` (``env`` added to the environment through env(1): the pid stays the same)."""
    if env:
        cmd = ["env", *(f"{key}={value}" for key, value in env.items()), *cmd]
    service = services.start(name, cmd)
    return TreeService(service.name, service.process, service.log)


def stop(services: Services) -> None:
    """Stop what ``services`` started: SIGTERM, then SIGKILL after 5 s (``Services.close``),
    then any descendant still left (a worker whose parent was killed)."""
    descendants = [
        (pid, _start_time(pid)) for s in services.started for pid in process_tree(s.process.pid)[1:]
    ]
    services.close()
    for pid, started in descendants:
        if started is not None and _start_time(pid) == started:  # the same process, not a reuse
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST ``body``; (status, answer). Status 0: no answer (refused, timed out)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


def wait_ready(service: Service, probe: Callable[[], bool], spawned: float) -> float:
    """Seconds from ``spawned`` (perf_counter) until ``probe`` succeeds; the cold start."""
    while time.perf_counter() - spawned < STARTUP_TIMEOUT_S:
        if service.process.poll() is not None:
            raise BenchError(
                f"{service.name} exited with code {service.process.returncode}:\n"
                f"{service.log_tail()}"
            )
        if probe():
            return time.perf_counter() - spawned
        time.sleep(0.02)
    raise BenchError(f"{service.name} gave no 200 in {STARTUP_TIMEOUT_S:g} s\n{service.log_tail()}")


# --------------------------------------------------------------------------- open-loop load


@dataclass
class OpenLoopResult:
    rate: float
    sent: int
    ok: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    max_lag_ms: float
    """How late the client sent its latest request: a large figure means the client lagged."""


async def _open_loop(spec: dict[str, Any]) -> OpenLoopResult:
    """Send requests at ``rate``/s whatever the answers do (open loop); latency is measured
    from each request's scheduled time, so a gateway that falls behind is not flattered."""
    rate, duration = float(spec["rate"]), float(spec["duration_s"])
    warmup = float(spec["warmup_s"])
    left, right = str(spec["body"]).split(COUNTER)
    headers = {str(k): str(v) for k, v in spec["headers"].items()}
    count = int(rate * (warmup + duration))
    latencies: list[float] = []
    errors = 0
    lag = 0.0
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int, scheduled: float) -> None:
            nonlocal errors
            body = f"{left}{index}{right}".encode()
            try:
                async with session.post(spec["url"], data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if scheduled - began >= warmup:
                if ok:
                    latencies.append(time.perf_counter() - scheduled)
                else:
                    errors += 1

        began = time.perf_counter() + 0.05
        tasks = []
        for index in range(count):
            scheduled = began + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif index / rate >= warmup:
                lag = max(lag, -delay)
            tasks.append(asyncio.create_task(one(index, scheduled)))
        await asyncio.gather(*tasks)
    measured = len(latencies) + errors
    return OpenLoopResult(
        rate=rate,
        sent=measured,
        ok=len(latencies),
        errors=errors,
        achieved_rps=len(latencies) / duration,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        max_ms=max(latencies, default=float("nan")) * 1000,
        max_lag_ms=lag * 1000,
    )


def open_loop_main(spec_json: str) -> int:
    """Entry of the open-loop client subprocess: prints its result as one JSON line."""
    spec = json.loads(spec_json)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(_open_loop(spec))
    print("OPEN_LOOP " + json.dumps(asdict(result)), flush=True)
    return 0


def run_open_loop(
    url: str, headers: dict[str, str], tag: str, rate: float, options: Options
) -> OpenLoopResult:
    """The open-loop client in its own process on the load core (this one runs the streams)."""
    spec = {
        "url": url,
        "headers": headers,
        "body": chat_body(tag, COUNTER),
        "rate": rate,
        "duration_s": options.duration_s,
        "warmup_s": 1.0,
    }
    cmd = pinned([sys.executable, __file__, "--open-loop", json.dumps(spec)], options.load_core)
    completed = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in completed.stdout.splitlines():
        if line.startswith("OPEN_LOOP "):
            return OpenLoopResult(**json.loads(line.removeprefix("OPEN_LOOP ")))
    raise BenchError(f"open-loop client failed ({completed.returncode}): {completed.stderr[-800:]}")


# --------------------------------------------------------------------------- one gateway


@dataclass
class Options:
    duration_s: float
    warmup_s: float
    streams: int
    rates: list[float]
    per_token_ms: float
    redis_url: str
    only: list[str]
    pin: bool
    profile_dir: Path | None = None  # py-spy the Stellara columns' capacity runs into here

    @property
    def gateway_core(self) -> int | None:
        return GATEWAY_CORE if self.pin else None

    @property
    def load_core(self) -> int | None:
        return LOAD_CORE if self.pin else None


@dataclass
class Result:
    """Every figure of one column of the table."""

    name: str
    placement: str = ""
    error: str | None = None
    cold_start_s: float | None = None
    capacity: WrkResult | None = None
    single: WrkResult | None = None
    responses_single: WrkResult | None = None  # Stellara's /v1/responses, one connection
    fixed: dict[str, OpenLoopResult] = field(default_factory=dict)
    fixed_skipped: dict[str, str] = field(default_factory=dict)
    stream: StreamResult | None = None
    stream_error: str | None = None
    rss_mb: float | None = None
    processes: int = 0
    exact: dict[str, int] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Target:
    """A running gateway (or the upstream) and how to call it."""

    url: str
    headers: dict[str, str]
    stream_url: str
    stream_headers: dict[str, str]
    service: TreeService
    watch: list[Service]
    responses_url: str | None = None  # Stellara's /v1/responses


@dataclass
class Bench:
    options: Options
    workdir: Path
    run_id: str
    nginx_port: int
    sim_port: int

    def tag(self, gateway: str, scenario: str) -> str:
        return f"{self.run_id}-{gateway}-{scenario}"


def json_headers(key: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(extra or {})}


def measure(bench: Bench, name: str, target: Target, result: Result, *, full: bool) -> None:
    """Capacity always; with ``full`` also unloaded latency, fixed rates and streams."""
    options, workdir = bench.options, bench.workdir

    def wrk(
        scenario: str, connections: int, duration_s: float, *, responses: bool = False
    ) -> WrkResult:
        script = wrk_script(
            workdir / f"{name}-{scenario}.lua",
            target.headers,
            bench.tag(name, scenario),
            responses_body if responses else chat_body,
        )
        url = target.responses_url if responses and target.responses_url else target.url
        return run_wrk(
            url,
            script,
            connections=connections,
            duration_s=duration_s,
            core=options.load_core,
            watch=target.watch,
        )

    wrk("warmup", CONNECTIONS, options.warmup_s)
    profiler = None
    if options.profile_dir is not None and name in PROFILED:
        folded = options.profile_dir / f"{name}.folded"
        profiler = _profile.record(
            target.service.process.pid, options.duration_s, folded, options.load_core
        )
    result.capacity = wrk("capacity", CONNECTIONS, options.duration_s)
    if profiler is not None:
        profiler.wait(timeout=options.duration_s + 30)
    log(f"{name:12s} capacity {_wrk_text(result.capacity)}")
    if not full:
        return
    result.single = wrk("single", 1, options.duration_s)
    log(f"{name:12s} 1 conn   {_wrk_text(result.single)}")
    if target.responses_url is not None:
        result.responses_single = wrk("responses", 1, options.duration_s, responses=True)
        log(f"{name:12s} Responses 1 conn {_wrk_text(result.responses_single)}")
    for rate in options.rates:
        label = f"{rate:g}"
        if result.capacity.rps < 1.25 * rate:
            result.fixed_skipped[label] = "over capacity"
            continue
        fixed = run_open_loop(
            target.url, target.headers, bench.tag(name, f"r{label}"), rate, options
        )
        result.fixed[label] = fixed
        log(
            f"{name:12s} {rate:g} req/s  p50 {fixed.p50_ms:.3f} p99 {fixed.p99_ms:.3f} ms "
            f"({fixed.ok} ok, {fixed.errors} errors, client lag max {fixed.max_lag_ms:.1f} ms)"
        )
    tag = bench.tag(name, "stream")
    status, answer = http_post(
        target.stream_url, chat_body(tag, "probe", stream=True).encode(), target.stream_headers
    )
    if status != 200:
        result.stream_error = f"HTTP {status}: {answer[:160].decode(errors='replace')}"
        log(f"{name:12s} streaming failed: {result.stream_error}")
        return
    result.stream = measure_streams(
        target.stream_url,
        options.streams,
        warmup=max(5, options.streams // 20),
        headers=target.stream_headers,
        body_of=lambda index: chat_body(tag, index, stream=True).encode(),
    )
    log(
        f"{name:12s} stream TTFB p50 {result.stream.ttfb_p50_ms:.3f} ms, total p50 "
        f"{result.stream.total_p50_ms:.3f} ms ({result.stream.failures} failures)"
    )


def _wrk_text(result: WrkResult) -> str:
    cores = " ".join(f"{name} {value:.0f}%" for name, value in result.cores.items())
    return (
        f"{result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
        f"errors {result.non_2xx + result.socket_errors}  [{cores}]"
    )


def bench_direct(bench: Bench, services: Services, result: Result) -> None:
    """Start nginx and the simulator (both on the load core) and measure them directly."""
    options, workdir = bench.options, bench.workdir
    answer = json.dumps(UPSTREAM_ANSWER, separators=(",", ":"))
    if any(char in answer for char in "'$\\"):
        raise BenchError("the upstream answer must not hold ', $ or \\ (nginx string)")
    conf = workdir / "nginx.conf"
    conf.write_text(_NGINX_CONF % {"dir": workdir, "port": bench.nginx_port, "answer": answer})
    spawned = time.perf_counter()
    nginx = start(
        services,
        "nginx",
        pinned(
            ["nginx", "-p", str(workdir), "-e", str(workdir / "nginx-error.log"), "-c", str(conf)],
            options.load_core,
        ),
    )
    url = f"http://127.0.0.1:{bench.nginx_port}/v1/chat/completions"
    headers = json_headers(UPSTREAM_KEY)
    body = chat_body(bench.tag("direct", "probe"), 0).encode()
    result.cold_start_s = wait_ready(
        nginx, lambda: http_post(url, body, headers)[0] == 200, spawned
    )
    sim_cmd = [*STELLARA, "simulate", "--port", str(bench.sim_port)]
    sim_cmd += ["--per-token-ms", f"{options.per_token_ms:g}"]
    simulator = start(services, "simulator", pinned(sim_cmd, options.load_core))
    stream_url = f"http://127.0.0.1:{bench.sim_port}/v1/chat/completions"
    stream_body = chat_body(bench.tag("direct", "probe"), 0, stream=True).encode()
    wait_ready(
        simulator,
        lambda: http_post(stream_url, stream_body, headers)[0] == 200,
        time.perf_counter(),
    )
    result.placement = "nginx, simulator and load on core 1" if options.pin else "not pinned"
    target = Target(url, headers, stream_url, headers, nginx, [nginx])
    measure(bench, "direct", target, result, full=True)
    result.rss_mb, result.processes = peak_rss_mb(nginx.process.pid)


def stellara_config(bench: Bench, mode: str, port: int) -> Path:
    values = {
        "port": port,
        "master": MASTER_KEY,
        "key": STATIC_KEY,
        "ukey": UPSTREAM_KEY,
        "nginx": bench.nginx_port,
        "sim": bench.sim_port,
        "model": MODEL,
        "stream_model": STREAM_MODEL,
        "redis": bench.options.redis_url,
        "usage_db": bench.workdir / f"usage-{mode}.db",
    }
    path = bench.workdir / f"stellara-{mode}.yaml"
    path.write_text((_STELLARA_OFF if mode == "stellara-off" else _STELLARA_ON) % values)
    return path


def create_key(base: str, user: str, limits: dict[str, Any] | None = None) -> str | None:
    """A virtual key made through the admin API (None while the gateway cannot make one)."""
    fields: dict[str, Any] = {"user": user, "tier": "bench", "name": "benchmark"}
    if limits is not None:
        fields["limits"] = limits
    status, answer = http_post(
        f"{base}/admin/keys", json.dumps(fields).encode(), json_headers(MASTER_KEY)
    )
    if status != 201:
        return None
    return str(json.loads(answer)["key"])


def bench_stellara(bench: Bench, name: str, services: Services, result: Result) -> None:
    options = bench.options
    port = free_port()
    config = stellara_config(bench, name, port)
    workers = 2 if name == "stellara-2w" else 1
    cmd = [*STELLARA, "serve", "--config", str(config), "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
        # Two workers need both cores: they share core 1 with nginx, wrk and the clients.
        cores = "0,1" if options.pin else None
        if cores is not None:
            cmd = ["taskset", "-c", cores, *cmd]
        result.placement = "workers on cores 0+1, sharing core 1 with the load"
    else:
        cmd = pinned(cmd, options.gateway_core)
        result.placement = "core 0" if options.pin else "not pinned"
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v1/chat/completions"
    keys: dict[str, str] = {}
    user = f"bench-{bench.run_id}-{name}"
    body = chat_body(bench.tag(name, "probe"), 0).encode()

    def probe() -> bool:
        if "key" not in keys:
            if name == "stellara-off":
                keys["key"] = STATIC_KEY
            else:
                made = create_key(base, user)
                if made is None:
                    return False
                keys["key"] = made
        return http_post(url, body, json_headers(keys["key"]))[0] == 200

    spawned = time.perf_counter()
    service = start(services, name, cmd)
    result.cold_start_s = wait_ready(service, probe, spawned)
    headers = json_headers(keys["key"])
    target = Target(url, headers, url, headers, service, [service], f"{base}/v1/responses")
    measure(bench, name, target, result, full=workers == 1)
    if workers > 1:
        result.exact = exactness(bench, name, base, user)
    result.rss_mb, result.processes = peak_rss_mb(service.process.pid)
    if name == "stellara-on":
        result.notes.append(
            "Stellara on: virtual key made with POST /admin/keys; a tier of 5 limits (rate "
            "requests/tokens/cost, burst, daily+monthly quotas) on Redis; cache L1+L2 (Redis), "
            "every lookup a miss; Prometheus metrics; usage records to SQLite"
        )
    elif name == "stellara-off":
        result.notes.append(
            "Stellara off: static config key, memory state, no limits, no cache, metrics and "
            "health probes off; usage records still go to SQLite (they cannot be switched off)"
        )


def exactness(bench: Bench, name: str, base: str, user: str) -> dict[str, int]:
    """A key limited to EXACT_LIMIT requests, hammered through both workers: how many got in."""
    key = create_key(base, f"{user}-exact", {"rate": {"window_s": 600, "requests": EXACT_LIMIT}})
    if key is None:
        raise BenchError("could not create the exactness key")
    script = wrk_script(
        bench.workdir / f"{name}-exact.lua", json_headers(key), bench.tag(name, "exact")
    )
    run = run_wrk(
        f"{base}/v1/chat/completions",
        script,
        connections=CONNECTIONS,
        duration_s=2,
        core=bench.options.load_core,
        watch=[],
    )
    admitted = run.requests - run.non_2xx
    log(f"{name:12s} exactness: limit {EXACT_LIMIT}, admitted {admitted} of {run.requests}")
    return {"limit": EXACT_LIMIT, "admitted": admitted, "requests": run.requests}


def bench_litellm(bench: Bench, services: Services, result: Result) -> None:
    if not LITELLM.exists():
        raise BenchError(f"{LITELLM} not found: run scripts/bench-tools")
    port = free_port()
    config = bench.workdir / "litellm.yaml"
    config.write_text(
        _LITELLM
        % {
            "model": MODEL,
            "stream_model": STREAM_MODEL,
            "nginx": bench.nginx_port,
            "sim": bench.sim_port,
            "ukey": UPSTREAM_KEY,
            "master": MASTER_KEY,
        }
    )
    cmd = [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", "1"]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = json_headers(MASTER_KEY)
    body = chat_body(bench.tag("litellm", "probe"), 0).encode()
    spawned = time.perf_counter()
    service = start(services, "litellm", pinned(cmd, bench.options.gateway_core), _LITELLM_ENV)
    result.cold_start_s = wait_ready(
        service, lambda: http_post(url, body, headers)[0] == 200, spawned
    )
    result.placement = "core 0 (whole process tree)" if bench.options.pin else "not pinned"
    target = Target(url, headers, url, headers, service, [service])
    measure(bench, "litellm", target, result, full=True)
    result.rss_mb, result.processes = peak_rss_mb(service.process.pid)
    result.notes.append(
        "LiteLLM: uvicorn (uvloop), 1 worker, master key auth, no database, "
        "LITELLM_LOCAL_MODEL_COST_MAP=True, LITELLM_LOG=ERROR (no access log), telemetry off"
    )


def bench_portkey(bench: Bench, services: Services, result: Result) -> None:
    entry = PORTKEY / "build" / "start-server.js"
    if not entry.exists():
        raise BenchError(f"{entry} not found: run scripts/bench-tools")
    port = free_port()
    cmd = ["node", str(entry), f"--port={port}", "--headless"]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    def headers_for(upstream_port: int) -> dict[str, str]:
        return json_headers(
            UPSTREAM_KEY,
            {
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": f"http://127.0.0.1:{upstream_port}/v1",
            },
        )

    headers = headers_for(bench.nginx_port)
    body = chat_body(bench.tag("portkey", "probe"), 0).encode()
    spawned = time.perf_counter()
    service = start(
        services, "portkey", pinned(cmd, bench.options.gateway_core), {"NODE_ENV": "production"}
    )
    result.cold_start_s = wait_ready(
        service, lambda: http_post(url, body, headers)[0] == 200, spawned
    )
    result.placement = "core 0" if bench.options.pin else "not pinned"
    target = Target(url, headers, url, headers_for(bench.sim_port), service, [service])
    measure(bench, "portkey", target, result, full=True)
    result.rss_mb, result.processes = peak_rss_mb(service.process.pid)
    result.notes.append(
        "Portkey: node build/start-server.js --headless, NODE_ENV=production, provider and "
        "upstream by x-portkey-provider / x-portkey-custom-host, the key passed through"
    )


def run_gateway(bench: Bench, name: str, runner: Callable[[Services, Result], None]) -> Result:
    """Run one column; a gateway that fails gets its reason in the table, and we go on."""
    result = Result(name)
    services = Services(bench.workdir)
    try:
        runner(services, result)
    except (BenchError, OSError, aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}".strip()
        log(f"{name}: FAILED: {result.error}")
    finally:
        for service in services.started:
            if service.process.poll() is not None and result.error is None:
                result.error = f"{service.name} exited with code {service.process.returncode}"
        stop(services)
    return result


def benchmark(bench: Bench) -> dict[str, Result]:
    """The direct column, then each chosen gateway in turn against the same upstreams."""
    upstream = Services(bench.workdir)
    results: dict[str, Result] = {}
    try:
        direct = Result("direct")
        try:
            bench_direct(bench, upstream, direct)
        except (BenchError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            raise BenchError(f"the upstream failed, nothing to compare: {exc}") from exc
        results["direct"] = direct
        runners: dict[str, Callable[[Services, Result], None]] = {
            "stellara-on": lambda s, r: bench_stellara(bench, "stellara-on", s, r),
            "stellara-off": lambda s, r: bench_stellara(bench, "stellara-off", s, r),
            "stellara-2w": lambda s, r: bench_stellara(bench, "stellara-2w", s, r),
            "litellm": lambda s, r: bench_litellm(bench, s, r),
            "portkey": lambda s, r: bench_portkey(bench, s, r),
        }
        for name in GATEWAYS:
            if name in bench.options.only:
                results[name] = run_gateway(bench, name, runners[name])
    finally:
        stop(upstream)
    return results


# --------------------------------------------------------------------------- report


def _num(value: float | None, digits: int | None = None) -> str:
    """A figure with sensible precision; "-" when unknown."""
    if value is None or value != value:
        return "-"
    if digits is None:
        size = abs(value)
        digits = 3 if size < 1 else 2 if size < 10 else 1 if size < 1000 else 0
    return f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    text = _num(value)
    return text if text == "-" or text.startswith("-") else f"+{text}"


def _pair(first: str, second: str) -> str:
    return f"{first} / {second}"


def _gateway_cpu_us(run: WrkResult) -> float | None:
    """CPU the gateway (or upstream) tree spent per request during a wrk run, in µs."""
    used = sum(value for name, value in run.cpu.items() if name != "wrk")
    return used * 1e4 / run.rps if run.rps else None


def _errors(result: Result) -> int:
    count = sum(run.non_2xx + run.socket_errors for run in (result.capacity, result.single) if run)
    count += sum(fixed.errors for fixed in result.fixed.values())
    return count + (result.stream.failures if result.stream else 0)


def _requests(result: Result) -> int:
    count = sum(run.requests for run in (result.capacity, result.single) if run)
    count += sum(fixed.ok for fixed in result.fixed.values())
    return count + (result.stream.streams if result.stream else 0)


Figure = Callable[[Result], float | None]
Cell = Callable[[Result], str]


def fig(*path: str) -> Figure:
    """A figure of a result by its path, e.g. ``fig("capacity", "p50_ms")``; None if absent."""

    def get(result: Result) -> float | None:
        value: Any = result
        for name in path:
            value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
            if value is None:
                return None
        return float(value)

    return get


def values(*figures: Figure, digits: int | None = None) -> Cell:
    """A cell showing ``figures`` separated by " / "."""

    def cell(r: Result) -> str:
        got = [figure(r) for figure in figures]
        return "" if all(v is None for v in got) else " / ".join(_num(v, digits) for v in got)

    return cell


def added(direct: Result, *figures: Figure) -> Cell:
    """A cell showing how much each of ``figures`` exceeds direct's."""

    def cell(r: Result) -> str:
        shown = []
        for figure in figures:
            mine, ref = figure(r), figure(direct)
            if r is direct or mine is None or ref is None:
                return ""
            shown.append(_signed(mine - ref))
        return " / ".join(shown)

    return cell


def over_chat(r: Result) -> str:
    """How much more a Responses request takes than a chat completion, one connection."""
    if r.responses_single is None or r.single is None:
        return ""
    return " / ".join(
        _signed(getattr(r.responses_single, n) - getattr(r.single, n)) for n in ("p50_ms", "p99_ms")
    )


def ratio(top: Result | None, direct: Result) -> Cell:
    """A cell showing ``top``'s capacity divided by this column's."""
    capacity = fig("capacity", "rps")

    def cell(r: Result) -> str:
        mine, theirs = (capacity(top) if top else None), capacity(r)
        if r is top or r is direct or not mine or not theirs:
            return ""
        return f"{mine / theirs:.1f}x"

    return cell


def table_rows(results: dict[str, Result], options: Options) -> list[list[str]]:
    """Rows of the table: a label, then one cell per column (direct first)."""
    d = results["direct"]
    on = results.get("stellara-on")
    capacity = fig("capacity", "rps")

    def row(label: str, cell: Cell) -> list[str]:
        first = label.startswith("capacity")
        return [label] + [
            ("FAILED" if first else "") if r.error else cell(r) for r in results.values()
        ]

    def stream_cell(shown: Cell) -> Cell:
        return lambda r: "failed" if r.stream_error else shown(r)

    def fixed_cell(label: str, shown: Cell) -> Cell:
        return lambda r: r.fixed_skipped.get(label) or shown(r)

    def cpu(r: Result) -> float | None:
        return _gateway_cpu_us(r.capacity) if r.capacity else None

    ttfb = (fig("stream", "ttfb_p50_ms"), fig("stream", "ttfb_p99_ms"))
    total = fig("stream", "total_p50_ms")
    rows = [
        row(f"capacity req/s, {CONNECTIONS} conns", values(capacity, digits=0)),
        row("  p50 / p99 ms", values(fig("capacity", "p50_ms"), fig("capacity", "p99_ms"))),
        row("  CPU per request, µs", values(cpu, digits=0)),
        row(
            "  core 0 / core 1 busy %",
            values(fig("capacity", "cores", "core0"), fig("capacity", "cores", "core1"), digits=0),
        ),
        row("  direct ÷ this", ratio(d, d)),
        row("  Stellara on ÷ this", ratio(on, d)),
        row("1 conn p50 / p99 ms", values(fig("single", "p50_ms"), fig("single", "p99_ms"))),
        row("  added p50 / p99 ms", added(d, fig("single", "p50_ms"), fig("single", "p99_ms"))),
        row(
            "Responses 1 conn p50 / p99",
            values(fig("responses_single", "p50_ms"), fig("responses_single", "p99_ms")),
        ),
        row("  over chat p50 / p99 ms", over_chat),
    ]
    for rate in options.rates:
        label = f"{rate:g}"
        p50, p99 = fig("fixed", label, "p50_ms"), fig("fixed", label, "p99_ms")
        rows.append(row(f"{label} req/s p50 / p99 ms", fixed_cell(label, values(p50, p99))))
        rows.append(row("  added p50 / p99 ms", added(d, p50, p99)))
    rows += [
        row("stream TTFB p50 / p99 ms", stream_cell(values(*ttfb))),
        row("  added TTFB p50 / p99 ms", added(d, *ttfb)),
        row("stream total p50 ms", values(total)),
        row("  added total p50 ms", added(d, total)),
        row(
            "peak RSS MB (processes)",
            lambda r: f"{_num(r.rss_mb, 0)} ({r.processes})" if r.rss_mb is not None else "",
        ),
        row("cold start s", values(fig("cold_start_s"))),
        row("errors (non-2xx, socket)", lambda r: str(_errors(r))),
    ]
    if any(r.exact for r in results.values()):
        rows.append(
            row(
                f"limit {EXACT_LIMIT} admitted",
                lambda r: f"{r.exact['admitted']} of {r.exact['requests']}" if r.exact else "",
            )
        )
    return rows


def _format_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = []
    for index, line in enumerate([header, *rows]):
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(line)
            ).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines


def target_lines(results: dict[str, Result]) -> list[str]:
    """Issue 9's targets for Stellara with every feature on, and whether this run met them."""
    d, on = results["direct"], results.get("stellara-on")
    if on is None or on.error or on.capacity is None:
        return ["targets: Stellara (every feature on) was not measured"]
    lines: list[str] = []

    def check(text: str, value: float | None, shown: str, met: bool | None) -> None:
        verdict = "not measured" if value is None or met is None else "MET" if met else "NOT MET"
        lines.append(f"  {text:<44s} {shown if value is not None else '-':>14s}  {verdict}")

    rps = on.capacity.rps
    check(f"capacity >= {TARGET_RPS:.0f} req/s on one core", rps, f"{rps:.0f}", rps >= TARGET_RPS)
    for name, factor in (("litellm", TARGET_X_LITELLM), ("portkey", TARGET_X_PORTKEY)):
        other = results.get(name)
        ratio = rps / other.capacity.rps if other and other.capacity else None
        check(
            f">= {factor:g}x {TITLES[name]}'s capacity",
            ratio,
            f"{ratio:.1f}x" if ratio else "",
            ratio >= factor if ratio else None,
        )
    if on.single and d.single:
        p50 = on.single.p50_ms - d.single.p50_ms
        p99 = on.single.p99_ms - d.single.p99_ms
        check(
            f"unloaded added p50 <= {TARGET_ADDED_P50_MS} ms",
            p50,
            f"{p50:+.3f} ms",
            p50 <= TARGET_ADDED_P50_MS,
        )
        check(
            f"unloaded added p99 <= {TARGET_ADDED_P99_MS:g} ms",
            p99,
            f"{p99:+.3f} ms",
            p99 <= TARGET_ADDED_P99_MS,
        )
    if on.single and on.responses_single:
        over = on.responses_single.p50_ms - on.single.p50_ms
        check(
            f"Responses p50 within {TARGET_RESPONSES_OVER_CHAT_MS:g} ms of chat",
            over,
            f"{over:+.3f} ms",
            over <= TARGET_RESPONSES_OVER_CHAT_MS,
        )
    for label, fixed in on.fixed.items():
        ref = d.fixed.get(label)
        if ref is not None:
            added = fixed.p99_ms - ref.p99_ms
            check(
                f"added p99 at {label} req/s <= {TARGET_FIXED_ADDED_P99_MS:g} ms",
                added,
                f"{added:+.3f} ms",
                added <= TARGET_FIXED_ADDED_P99_MS,
            )
    if on.stream and d.stream:
        ttfb = on.stream.ttfb_p50_ms - d.stream.ttfb_p50_ms
        check(
            f"stream TTFB added (p50) <= {TARGET_TTFB_ADDED_MS:g} ms",
            ttfb,
            f"{ttfb:+.3f} ms",
            ttfb <= TARGET_TTFB_ADDED_MS,
        )
    two = results.get("stellara-2w")
    scale = two.capacity.rps / rps if two and two.capacity else None
    check(
        f"2 workers >= {TARGET_SCALE_2W:g}x one worker",
        scale,
        f"{scale:.2f}x" if scale else "",
        scale >= TARGET_SCALE_2W if scale else None,
    )
    if two and two.exact:
        exact = two.exact["admitted"]
        check(
            f"limit exact across 2 workers ({EXACT_LIMIT})", exact, str(exact), exact == EXACT_LIMIT
        )
    check(
        f"peak RSS <= {TARGET_RSS_MB:g} MB (one worker)",
        on.rss_mb,
        f"{_num(on.rss_mb, 0)} MB",
        on.rss_mb <= TARGET_RSS_MB if on.rss_mb is not None else None,
    )
    check(
        f"cold start <= {TARGET_COLD_START_S:g} s",
        on.cold_start_s,
        f"{_num(on.cold_start_s)} s",
        on.cold_start_s <= TARGET_COLD_START_S if on.cold_start_s is not None else None,
    )
    return ["targets of issue 9, Stellara with every feature on:", *lines]


def headroom_lines(results: dict[str, Result]) -> list[str]:
    """Whether the load side (wrk + nginx on core 1) had room: direct >= 5x each gateway."""
    d = results["direct"]
    if d.capacity is None:
        return []
    lines = []
    for name, r in results.items():
        if r is d or r.capacity is None or not r.capacity.rps:
            continue
        ratio = d.capacity.rps / r.capacity.rps
        verdict = "ok" if ratio >= DIRECT_HEADROOM else "TOO LOW: the load side may limit"
        lines.append(f"{TITLES[name]} {ratio:.1f}x ({verdict})")
    return [
        f"load side: direct serves {d.capacity.rps:.0f} req/s with wrk on the same core, "
        f"that is (want >= {DIRECT_HEADROOM:g}x each gateway): " + "; ".join(lines)
    ]


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
        found["nginx"] = out.stderr.strip().rsplit("/", 1)[-1]
    dists = sorted(BENCH_TOOLS.glob("litellm/lib/python*/site-packages/litellm-*.dist-info"))
    found["litellm"] = (
        dists[-1].name.removesuffix(".dist-info").split("-", 1)[1] if dists else "not installed"
    )
    try:
        found["portkey"] = json.loads((PORTKEY / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        found["portkey"] = "not installed"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
        found["node"] = out.stdout.strip()
    # Which Stellara the gateways run (PYTHONPATH may point at another tree), and whether it
    # is this checkout with uncommitted changes.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        code = "import pathlib, stellara; print(pathlib.Path(stellara.__file__).parent.parent)"
        out = subprocess.run([*STELLARA[:1], "-c", code], capture_output=True, text=True)
        source = out.stdout.strip()
        found["stellara_src"] = source
        if Path(source) == REPO / "src":
            found["src_dirty"] = "yes" if git("status", "--porcelain", "src") else "no"
    return found


def render(
    results: dict[str, Result], options: Options, machine: dict[str, Any], tools: dict[str, str]
) -> str:
    dirty = " + uncommitted changes in src/" if tools.get("src_dirty") == "yes" else ""
    if tools.get("stellara_src") and Path(tools["stellara_src"]) != REPO / "src":
        dirty = f" (source: {tools['stellara_src']})"
    header = ["", *(TITLES[name] for name in results)]
    lines = [
        f"Gateways side by side — {machine['date']}, {machine['cpu']} ({machine['cores']} cores)",
        f"versions: Python {machine['python']}, Stellara {machine['commit']}{dirty}, "
        f"LiteLLM {tools.get('litellm')}, Portkey {tools.get('portkey')} (node "
        f"{tools.get('node')}), {machine['wrk']}, nginx {tools.get('nginx')}",
        "placement: "
        + (
            f"each gateway alone on core {GATEWAY_CORE}, in turn; nginx, the simulator, wrk and "
            f"the clients on core {LOAD_CORE}; Stellara 2w: workers on cores 0+1 (sharing core 1 "
            "with the load)"
            if options.pin
            else "not pinned (--no-pin): the figures say nothing about one core"
        ),
        f"load: wrk -t1 -c{CONNECTIONS} and -c1, {options.duration_s:g} s each after "
        f"{options.warmup_s:g} s of warm-up; fixed rates: open-loop aiohttp client "
        f"(own process, core {LOAD_CORE}), latency from each request's scheduled time; "
        f"every prompt unique (no cache hits)",
        f"upstream: nginx answering at once (~{len(json.dumps(UPSTREAM_ANSWER))} B "
        f"chat.completion); streams: stellara simulate, role chunk at once then "
        f"{MAX_TOKENS} chunks {options.per_token_ms:g} ms apart; TTFB = first 'data:' line, "
        f"{options.streams} sequential streams",
        "",
        *_format_table(header, table_rows(results, options)),
        "",
        *headroom_lines(results),
    ]
    on = results.get("stellara-on")
    if on is not None and on.rss_mb is not None:
        lines.append(
            f"peak RSS: VmHWM summed over the process tree (shared pages counted per process), "
            f"after {_requests(on):,} requests for Stellara on (the issue's target is after 1 M)"
        )
    for name, result in results.items():
        lines += [f"note: {note}" for note in result.notes]
        if result.error:
            lines.append(f"FAILED {TITLES[name]}: {result.error.splitlines()[0][:300]}")
        if result.stream_error:
            lines.append(f"{TITLES[name]}: streaming failed: {result.stream_error}")
    lines += ["", *target_lines(results)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> tuple[Options, Path | None, bool, str | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per gateway")
    parser.add_argument("--streams", type=int, default=100, help="streams for the TTFB figure")
    parser.add_argument("--rates", default="40,200", help="fixed rates, req/s, comma-separated")
    parser.add_argument("--per-token-ms", type=float, default=2.0, help="simulator chunk gap")
    parser.add_argument(
        "--redis",
        default=os.environ.get("STELLARA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        help="Redis for Stellara's limits and cache (keys are per run)",
    )
    parser.add_argument(
        "--only", help=f"gateways, comma-separated: {', '.join(GATEWAYS)} (stellara: all three)"
    )
    parser.add_argument("--quick", action="store_true", help="short runs: a ~2-minute smoke run")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir and logs")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample Stellara's capacity runs with py-spy into DIR/<column>.folded and print "
        "the hottest functions (the sampler shares the load core: capacity reads a little low)",
    )
    parser.add_argument("--open-loop", help=argparse.SUPPRESS)  # the fixed-rate client process
    args = parser.parse_args(argv)
    only = list(GATEWAYS)
    if args.only:
        only = []
        for name in args.only.split(","):
            picked = (
                [g for g in GATEWAYS if g.startswith("stellara")] if name == "stellara" else [name]
            )
            if not set(picked) <= set(GATEWAYS):
                parser.error(f"unknown gateway {name!r}; choose from {', '.join(GATEWAYS)}")
            only += picked
    options = Options(
        duration_s=args.duration,
        warmup_s=args.warmup,
        streams=args.streams,
        rates=[float(rate) for rate in args.rates.split(",") if rate.strip()],
        per_token_ms=args.per_token_ms,
        redis_url=args.redis,
        only=only,
        pin=not args.no_pin,
        profile_dir=args.profile,
    )
    if args.quick:
        options.duration_s, options.warmup_s, options.streams = 3.0, 1.0, 30
    return options, args.json, args.keep_logs, args.open_loop


def main(argv: Sequence[str] | None = None) -> int:
    options, json_path, keep_logs, open_loop = parse_args(argv)
    if open_loop is not None:
        return open_loop_main(open_loop)
    for tool in ("wrk", "nginx", *(["taskset"] if options.pin else [])):
        if shutil.which(tool) is None:
            log(f"{tool} not found on PATH: run scripts/bench-tools")
            return 2
    if options.profile_dir is not None:
        if _profile.py_spy() is None:
            log("py-spy not found: pip install py-spy (scripts/bench-tools does)")
            return 2
        options.profile_dir.mkdir(parents=True, exist_ok=True)
    if options.pin:
        if (os.cpu_count() or 1) < 2:
            log("pinning needs 2 cores; use --no-pin")
            return 2
        os.sched_setaffinity(0, {LOAD_CORE})  # this process runs the stream client
    signal.signal(signal.SIGTERM, raise_interrupt)
    machine, tools = machine_info(), versions()
    started = time.monotonic()
    with workspace(keep_logs) as workdir:
        bench = Bench(options, workdir, secrets.token_hex(4), free_port(), free_port())
        try:
            results = benchmark(bench)
        except BenchError as exc:
            log(f"benchmark failed: {exc}")
            return 1
        except KeyboardInterrupt:
            log("interrupted")
            return 130
    log(f"took {time.monotonic() - started:.0f} s")
    print(render(results, options, machine, tools))
    if options.profile_dir is not None:
        for name in PROFILED:
            folded = options.profile_dir / f"{name}.folded"
            if folded.exists():
                print(f"\nprofile of {TITLES[name]} at capacity ({folded}):")
                print("\n".join(_profile.summary(folded)))
    if json_path is not None:
        payload = {
            "machine": machine,
            "versions": tools,
            "options": asdict(options),
            "results": {name: asdict(result) for name, result in results.items()},
        }
        json_path.write_text(json.dumps(payload, indent=2) + "\n")
        log(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
