"""Reliability suite: upstream faults, a steady soak and a shutdown under load, against real
processes (`stellara simulate` and `stellara serve`), printed as one table.

    .venv/bin/python benchmarks/reliability.py            # full: 10-minute soak
    .venv/bin/python benchmarks/reliability.py --short    # CI: 20-second soak

Every fault runs non-streaming and streaming, against a model with a healthy second target
(the client must get an answer from it) and against a model with one target (the client must
get the documented error status). Afterwards every request a client saw answered must have
exactly one usage record, and the gateway's file descriptors must be back where they were.
The soak reports RSS and fd growth after warm-up and p99 per third of the run. The exit status
is 1 when any figure that must be zero is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _procs import free_port

STELLARA = [sys.executable, "-m", "stellara.cli"]
KEY = "sk-reliability-key-0001"
MASTER = "sk-reliability-master-0001"
MESSAGES = [{"role": "user", "content": "Tell me about reliability."}]

# (name, fault rule for the faulty target's model, status the one-target model must answer,
#  status the two-target model must answer: 200 unless the client already had part of the
#  answer, which cannot be taken back: a stream cut after its first chunk ends in an error)
FAULTS: list[tuple[str, dict[str, Any], int, int]] = [
    ("upstream 500", {"kind": "status", "status": 500}, 502, 200),
    ("upstream 502", {"kind": "status", "status": 502}, 502, 200),
    ("upstream 503", {"kind": "status", "status": 503}, 502, 200),
    ("upstream 529 (overloaded)", {"kind": "status", "status": 529}, 502, 200),
    ("upstream 429, no Retry-After", {"kind": "status", "status": 429}, 429, 200),
    (
        "upstream 429, Retry-After 1",
        {"kind": "status", "status": 429, "retry_after_s": 1},
        429,
        200,
    ),
    ("connection reset", {"kind": "reset"}, 502, 200),
    ("no answer (timeout)", {"kind": "timeout", "delay_ms": 60_000}, 504, 200),
    ("malformed JSON", {"kind": "malformed"}, 502, 200),
    # (the simulator's first chunk carries the role, so every cut comes after the first chunk)
    ("stream cut mid-body", {"kind": "cut_stream", "after_chunks": 1}, 502, 502),
    (
        "200 with an error body",
        {"kind": "status", "status": 200, "body": {"error": {"message": "x", "type": "x"}}},
        502,
        200,
    ),
]


@dataclass
class Row:
    scenario: str
    outcome: str
    requests: int
    server_errors: int = 0  # 5xx the scenario did not promise
    lost_records: int | None = None
    growth: str = ""
    is_ok: bool = True


@dataclass
class Seen:
    """What the clients saw: request ids answered 200, per status counts."""

    answered: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def config(sim_port: int, database: Path) -> dict[str, Any]:
    """Every feature on: virtual-key auth, limits, cache, usage records, metrics."""
    sim = f"http://127.0.0.1:{sim_port}/v1"
    primary = {"provider": "primary", "model": "gpt-4o-mini"}
    backup = {"provider": "backup", "model": "gpt-4o"}
    return {
        "server": {"master_key": MASTER},
        "providers": [
            {"id": "primary", "type": "openai", "base_url": sim, "api_key": "k"},
            {"id": "backup", "type": "openai", "base_url": sim, "api_key": "k"},
        ],
        "models": [
            {"name": "failover", "targets": [primary, backup]},
            {"name": "single", "targets": [primary]},
        ],
        "keys": [{"key": KEY, "user": "reliability"}],
        "limits": {"tiers": {"default": {"rate": {"window_s": 60, "requests": 10_000_000}}}},
        "cache": {},
        "resilience": {
            "timeout_s": 2,
            "retry": {"max_attempts": 2, "base_delay_ms": 5, "max_delay_ms": 50},
            # A scenario's faults must not leave the primary's breaker open for the next one.
            "circuit_breaker": {"failure_threshold": 1_000_000},
            "health_check": {"enabled": False},
        },
        "usage_store": {"url": f"sqlite:///{database}", "flush_interval_s": 0.2},
    }


class Gateway:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sim_port, self.port = free_port(), free_port()
        self.database = workdir / "usage.db"
        self.url = f"http://127.0.0.1:{self.port}"
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.processes.append(self._spawn(["simulate", "--port", str(self.sim_port)], "sim"))
        path = self.workdir / "stellara.yaml"
        path.write_text(json.dumps(config(self.sim_port, self.database)))
        serve = ["serve", "--config", str(path), "--port", str(self.port)]
        self.gateway = self._spawn(serve, "gateway")
        self.processes.append(self.gateway)

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("wb") as log:
            return subprocess.Popen([*STELLARA, *args], stdout=log, stderr=log)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.gateway.pid}/status").read_text()
        return int(
            next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
        )

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.gateway.pid}/fd"))


async def wait_until_up(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with http.get(url) as response:
                if response.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"{url} never answered")


async def call(
    http: aiohttp.ClientSession, gateway: Gateway, model: str, stream: bool, seen: Seen
) -> None:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 16, "stream": stream}
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {KEY}", "Cache-Control": "no-cache"}
    async with http.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers) as r:
        text = await r.text()
        seen.latencies_s.append(time.perf_counter() - started)
        status = r.status
        if status == 200 and stream and not text.rstrip().endswith("data: [DONE]"):
            status = 502  # a stream that ended in an error event (a cut upstream)
        seen.count(status)
        if status == 200:
            seen.answered.append(r.headers["x-stellara-request-id"])


async def set_faults(http: aiohttp.ClientSession, gateway: Gateway, rules: list[Any]) -> None:
    async with http.post(f"{gateway.sim_url}/_sim/faults", json={"faults": rules}) as r:
        assert r.status == 200, await r.text()


async def fault_matrix(
    http: aiohttp.ClientSession, gateway: Gateway, per_case: int, seen_all: Seen
) -> list[Row]:
    rows = []
    for name, rule, single_status, failover_status in FAULTS:
        for stream in (False, True):
            if rule["kind"] == "cut_stream" and not stream:
                continue  # a cut non-stream answer is a reset, covered above
            await set_faults(http, gateway, [{**rule, "model": "gpt-4o-mini"}])
            for model, expected in (("failover", failover_status), ("single", single_status)):
                seen = Seen()
                await asyncio.gather(
                    *(call(http, gateway, model, stream, seen) for _ in range(per_case))
                )
                seen_all.answered += seen.answered
                unexpected = sum(n for s, n in seen.statuses.items() if s != expected)
                outcome = ", ".join(f"{n} x {s}" for s, n in sorted(seen.statuses.items()))
                kind = "stream" if stream else "json"
                rows.append(
                    Row(
                        f"{name} [{kind}] → {model}",
                        f"{outcome} (want {expected})",
                        per_case,
                        server_errors=unexpected,
                        is_ok=unexpected == 0,
                    )
                )
    await set_faults(http, gateway, [])
    return rows


async def soak(http: aiohttp.ClientSession, gateway: Gateway, seconds: float) -> tuple[Row, Seen]:
    """Steady load (16 clients, a quarter streaming); RSS and fds sampled every second."""
    seen = Seen()
    stop_at = time.monotonic() + seconds
    samples: list[tuple[float, int, int]] = []

    async def client(index: int) -> None:
        while time.monotonic() < stop_at:
            await call(http, gateway, "failover", index % 4 == 0, seen)

    async def sampler() -> None:
        while time.monotonic() < stop_at:
            samples.append((time.monotonic(), gateway.rss_kib(), gateway.fds()))
            await asyncio.sleep(1)

    await asyncio.gather(sampler(), *(client(i) for i in range(16)))
    warm = samples[len(samples) // 4]
    last = samples[-1]
    rss_growth = (last[1] - warm[1]) / warm[1]
    fd_growth = last[2] - warm[2]
    thirds = [seen.latencies_s[i::3] for i in range(3)] if seen.latencies_s else []
    p99s = [sorted(t)[int(len(t) * 0.99)] * 1000 for t in thirds if t]
    errors = sum(n for s, n in seen.statuses.items() if s >= 500)
    row = Row(
        f"soak {seconds:.0f} s, 16 clients",
        f"{len(seen.answered)} answered; p99 per third {' / '.join(f'{p:.0f}' for p in p99s)} ms",
        sum(seen.statuses.values()),
        server_errors=errors,
        growth=f"RSS {rss_growth:+.1%} ({last[1] // 1024} MiB), fds {fd_growth:+d}",
        is_ok=errors == 0 and rss_growth < 0.05 and fd_growth <= 0,
    )
    return row, seen


async def shutdown_under_load(http: aiohttp.ClientSession, gateway: Gateway, seen: Seen) -> Row:
    """SIGTERM with requests in flight: they finish, then the process exits 0."""
    before = len(seen.answered)

    async def client() -> None:
        while gateway.gateway.poll() is None:
            try:
                await call(http, gateway, "failover", False, seen)
            except (aiohttp.ClientError, OSError):
                return

    clients = [asyncio.create_task(client()) for _ in range(8)]
    await asyncio.sleep(1.0)
    gateway.gateway.send_signal(signal.SIGTERM)
    await asyncio.gather(*clients)
    code = await asyncio.to_thread(gateway.gateway.wait, 30)
    return Row(
        "SIGTERM under load, 8 clients",
        f"exit {code}; {len(seen.answered) - before} answered during the run",
        len(seen.answered) - before,
        is_ok=code == 0,
    )


def lost_records(database: Path, answered: list[str]) -> tuple[int, int]:
    with sqlite3.connect(database) as db:
        recorded = [r[0] for r in db.execute("SELECT request_id FROM usage_records")]
    counts: dict[str, int] = {}
    for request_id in recorded:
        counts[request_id] = counts.get(request_id, 0) + 1
    lost = sum(1 for request_id in answered if request_id not in counts)
    doubled = sum(1 for n in counts.values() if n > 1)
    return lost, doubled


async def run(short: bool, soak_s: float) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="stellara-reliability-") as tmp:
        gateway = Gateway(Path(tmp))
        gateway.start()
        try:
            timeout = aiohttp.ClientTimeout(total=30)
            connector = aiohttp.TCPConnector(limit=64)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                await wait_until_up(http, f"{gateway.sim_url}/_sim/faults")
                await wait_until_up(http, f"{gateway.url}/healthz")
                seen = Seen()
                per_case = 4 if short else 20
                for model in ("failover", "single", "failover"):  # pools as the matrix fills them
                    await asyncio.gather(
                        *(call(http, gateway, model, False, seen) for _ in range(per_case))
                    )
                fds_before = gateway.fds()
                rows = await fault_matrix(http, gateway, per_case, seen)
                # Connections the faults broke close as their timers fire: allow them 15 s.
                for _ in range(150):
                    leaked = gateway.fds() - fds_before
                    if leaked <= 0:
                        break
                    await asyncio.sleep(0.1)
                rows.append(
                    Row(
                        "after the fault matrix",
                        "file descriptors back to their level within 15 s",
                        0,
                        growth=f"fds {leaked:+d}",
                        is_ok=leaked <= 0,
                    )
                )
                soak_row, soaked = await soak(http, gateway, soak_s)
                rows.append(soak_row)
                seen.answered += soaked.answered
                rows.append(await shutdown_under_load(http, gateway, seen))
        finally:
            gateway.stop()
        lost, doubled = lost_records(gateway.database, seen.answered)
        rows.append(
            Row(
                "usage records of every answered request",
                f"{len(seen.answered)} answered, {doubled} recorded twice",
                len(seen.answered),
                lost_records=lost,
                is_ok=lost == 0 and doubled == 0,
            )
        )
        return rows


def table(rows: list[Row]) -> str:
    header = ("scenario", "outcome", "requests", "5xx!", "lost", "growth", "ok")
    cells = [
        (
            r.scenario,
            r.outcome,
            str(r.requests),
            str(r.server_errors),
            "" if r.lost_records is None else str(r.lost_records),
            r.growth,
            "yes" if r.is_ok else "NO",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="CI form: small cases, 20 s soak")
    parser.add_argument("--soak-s", type=float, help="soak duration (default 600, short 20)")
    args = parser.parse_args()
    soak_s = args.soak_s or (20.0 if args.short else 600.0)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = asyncio.run(run(args.short, soak_s))
    print(
        f"Stellara reliability — {started}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    print("5xx! = 5xx answers the scenario did not promise; lost = usage records missing")
    print(table(rows))
    failed = [r.scenario for r in rows if not r.is_ok]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    print(f"\nall {len(rows)} scenarios as promised")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
