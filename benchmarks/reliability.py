"""Reliability suite: upstream faults, a steady soak, a shutdown under load, backend outages
and hostile tenants, against real processes (`stellara simulate` and `stellara serve`),
printed as one table.

    .venv/bin/python benchmarks/reliability.py            # full: 10-minute soak
    .venv/bin/python benchmarks/reliability.py --short    # CI: 20-second soak

Every fault runs non-streaming and streaming, against a model with a healthy second target
(the client must get an answer from it) and against a model with one target (the client must
get the documented error status). Afterwards every request a client saw answered must have
exactly one usage record, and the gateway's file descriptors must be back where they were.
The soak reports RSS and fd growth after warm-up and p99 per third of the run. The hostile
tenants' rows are `hostile.py`'s. The exit status is 1 when any figure that must be zero is not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _procs import PrivateRedis, free_port
from _report import Row, table
from hostile import hostile_tenants

STELLARA = [sys.executable, "-m", "stellara.cli"]
KEY = "sk-reliability-key-0001"
MASTER = "sk-reliability-master-0001"
MESSAGES = [{"role": "user", "content": "Tell me about reliability."}]


@dataclass(frozen=True)
class Fault:
    """One upstream fault on the primary target, and what the client must see.

    ``json`` and ``stream`` give the status (two-target model, one-target model) for each kind
    of request, or None where the fault does not apply to it. The two-target model answers 200
    unless the client already had part of the answer, which cannot be taken back: a stream
    broken after its first chunk ends in an error event (counted as 502). The simulator's first
    chunk carries the role, so every stream fault below comes after it.
    """

    name: str
    rule: dict[str, Any] | None  # the simulator's fault rule; None: the provider is not there
    json: tuple[int, int] | None
    stream: tuple[int, int] | None

    @property
    def provider(self) -> str:
        return "primary" if self.rule is not None else "refused"

    @property
    def models(self) -> tuple[str, str]:
        return ("failover", "single") if self.rule is not None else ("refused-failover", "refused")


_500 = ((200, 502), (200, 502))
FAULTS: list[Fault] = [
    Fault("upstream 500", {"kind": "status", "status": 500}, *_500),
    Fault("upstream 502", {"kind": "status", "status": 502}, *_500),
    Fault("upstream 503", {"kind": "status", "status": 503}, *_500),
    Fault("upstream 529 (overloaded)", {"kind": "status", "status": 529}, *_500),
    Fault(
        "upstream 429, no Retry-After", {"kind": "status", "status": 429}, (200, 429), (200, 429)
    ),
    Fault(
        "upstream 429, Retry-After 1",
        {"kind": "status", "status": 429, "retry_after_s": 1},
        (200, 429),
        (200, 429),
    ),
    Fault("connect refused", None, *_500),
    Fault("connection reset", {"kind": "reset"}, *_500),
    Fault(
        "timeout before headers", {"kind": "timeout", "delay_ms": 60_000}, (200, 504), (200, 504)
    ),
    Fault(
        "stall mid-body / mid-stream", {"kind": "stall", "delay_ms": 60_000}, (200, 504), (502, 502)
    ),
    Fault("malformed JSON", {"kind": "malformed"}, *_500),
    Fault("truncated SSE", {"kind": "cut_stream", "after_chunks": 1}, None, (502, 502)),
    Fault("wrong content type (HTML)", {"kind": "wrong_content_type"}, *_500),
    Fault(
        "200 with an error body",
        {"kind": "status", "status": 200, "body": {"error": {"message": "x", "type": "x"}}},
        *_500,
    ),
]


@dataclass
class Seen:
    """What the clients saw: request ids answered 200, per status counts."""

    answered: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def config(sim_port: int, closed_port: int, usage_url: str) -> dict[str, Any]:
    """Every feature on: virtual-key auth, limits, cache, usage records, metrics."""
    sim = f"http://127.0.0.1:{sim_port}/v1"
    primary = {"provider": "primary", "model": "gpt-4o-mini"}
    backup = {"provider": "backup", "model": "gpt-4o"}
    refused = {"provider": "refused", "model": "gpt-4o-mini"}
    return {
        "server": {"master_key": MASTER},
        "providers": [
            {"id": "primary", "type": "openai", "base_url": sim, "api_key": "k"},
            {"id": "backup", "type": "openai", "base_url": sim, "api_key": "k"},
            # Nothing listens there: every connection attempt is refused.
            {
                "id": "refused",
                "type": "openai",
                "base_url": f"http://127.0.0.1:{closed_port}/v1",
                "api_key": "k",
            },
        ],
        "models": [
            {"name": "failover", "targets": [primary, backup]},
            {"name": "single", "targets": [primary]},
            {"name": "backup", "targets": [backup]},
            {"name": "refused-failover", "targets": [refused, backup]},
            {"name": "refused", "targets": [refused]},
        ],
        "keys": [{"key": KEY, "user": "reliability"}],
        "limits": {"tiers": {"default": {"rate": {"window_s": 60, "requests": 10_000_000}}}},
        "cache": {},
        "resilience": {
            "timeout_s": 2,
            "retry": {"max_attempts": 2, "base_delay_ms": 5, "max_delay_ms": 50},
            # The matrix counts each fault's failures in the breaker's window (reset between
            # scenarios); an open breaker would change the one-target model's status mid-case.
            "circuit_breaker": {"failure_threshold": 1_000_000},
            "health_check": {"enabled": False},
        },
        "usage_store": {"url": usage_url, "flush_interval_s": 0.2},
    }


class Gateway:
    """A simulator and a gateway in front of it, as subprocesses; `key` calls models."""

    def __init__(self, workdir: Path, usage_url: str, **overrides: Any) -> None:
        self.workdir = workdir
        self.sim_port, self.port, self.closed_port = free_port(), free_port(), free_port()
        self.usage_url = usage_url
        self.overrides = overrides
        self.url = f"http://127.0.0.1:{self.port}"
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.key = KEY
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.processes.append(self._spawn(["simulate", "--port", str(self.sim_port)], "sim"))
        path = self.workdir / "stellara.yaml"
        settings = config(self.sim_port, self.closed_port, self.usage_url) | self.overrides
        path.write_text(json.dumps(settings))
        serve = ["serve", "--config", str(path), "--port", str(self.port)]
        self.gateway = self._spawn(serve, "gateway")
        self.processes.append(self.gateway)

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("wb") as log:
            return subprocess.Popen([*STELLARA, *args], stdout=log, stderr=log)

    async def create_virtual_key(self, http: aiohttp.ClientSession) -> None:
        """Call models with a key from the database from now on, as most users will."""
        headers = {"Authorization": f"Bearer {MASTER}"}
        body = {"user": "reliability-db"}
        async with http.post(f"{self.url}/admin/keys", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            self.key = (await r.json())["key"]

    async def readiness(self, http: aiohttp.ClientSession) -> str:
        async with http.get(f"{self.url}/readyz") as r:
            return str((await r.json())["status"])

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
    headers = {"Authorization": f"Bearer {gateway.key}", "Cache-Control": "no-cache"}
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


async def breaker_failures(http: aiohttp.ClientSession, gateway: Gateway, provider: str) -> int:
    """Failures in `provider`'s breaker window (0 when it has none yet)."""
    headers = {"Authorization": f"Bearer {MASTER}"}
    async with http.get(f"{gateway.url}/ai-orchestration/circuit-breakers", headers=headers) as r:
        breakers = (await r.json())["breakers"]
    return int(breakers.get(provider, {}).get("failures_in_window", 0))


async def reset_breaker(http: aiohttp.ClientSession, gateway: Gateway, provider: str) -> None:
    headers = {"Authorization": f"Bearer {MASTER}"}
    url = f"{gateway.url}/ai-orchestration/circuit-breakers/{provider}/reset"
    async with http.post(url, headers=headers) as r:
        assert r.status in (200, 404), await r.text()  # 404: no call has made it yet


async def fault_matrix(
    http: aiohttp.ClientSession, gateway: Gateway, per_case: int, seen_all: Seen
) -> list[Row]:
    """Every fault, json and stream, on two targets and on one: the status each client saw, and
    how many failures the faulty provider's breaker counted (every fault is the provider's)."""
    rows = []
    for fault in FAULTS:
        for stream, expected_pair in ((False, fault.json), (True, fault.stream)):
            if expected_pair is None:
                continue
            rules = [] if fault.rule is None else [{**fault.rule, "model": "gpt-4o-mini"}]
            await set_faults(http, gateway, rules)
            for model, expected in zip(fault.models, expected_pair, strict=True):
                await reset_breaker(http, gateway, fault.provider)
                seen = Seen()
                await asyncio.gather(
                    *(call(http, gateway, model, stream, seen) for _ in range(per_case))
                )
                failures = await breaker_failures(http, gateway, fault.provider)
                seen_all.answered += seen.answered
                unexpected = sum(n for s, n in seen.statuses.items() if s != expected)
                outcome = ", ".join(f"{n} x {s}" for s, n in sorted(seen.statuses.items()))
                kind = "stream" if stream else "json"
                rows.append(
                    Row(
                        f"{fault.name} [{kind}] → {model}",
                        f"{outcome} (want {expected}); breaker counted {failures} failures",
                        per_case,
                        server_errors=unexpected,
                        is_ok=unexpected == 0 and failures >= per_case,
                    )
                )
    await set_faults(http, gateway, [])
    await reset_breaker(http, gateway, "primary")
    return rows


async def soak(http: aiohttp.ClientSession, gateway: Gateway, seconds: float) -> tuple[Row, Seen]:
    """Steady load (16 clients, a quarter streaming); RSS and fds sampled every second.
    RSS: last sample against the one after warm-up; fds: see below."""
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
    # Descriptors come and go with connections in flight: compare the most open in the quarter
    # after warm-up with the most open in the last quarter, so a moment's extra socket is not
    # growth, and a leak (which only adds) still shows.
    quarter = max(1, len(samples) // 4)
    early, late = samples[quarter : 2 * quarter], samples[-quarter:]
    fd_growth = max(sample[2] for sample in late) - max(sample[2] for sample in early)
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


async def recorded_request_ids(usage_url: str) -> list[str]:
    query = "SELECT request_id FROM usage_records"
    if usage_url.startswith("sqlite:///"):
        with sqlite3.connect(usage_url.removeprefix("sqlite:///")) as db:
            return [r[0] for r in db.execute(query)]
    connection = await asyncpg.connect(usage_url)
    try:
        return [r[0] for r in await connection.fetch(query)]
    finally:
        await connection.close()


async def records_row(usage_url: str, answered: list[str], scenario: str) -> Row:
    """Every request a client saw answered has exactly one usage record."""
    counts: dict[str, int] = {}
    for request_id in await recorded_request_ids(usage_url):
        counts[request_id] = counts.get(request_id, 0) + 1
    lost = sum(1 for request_id in answered if request_id not in counts)
    doubled = sum(1 for n in counts.values() if n > 1)
    return Row(
        scenario,
        f"{len(answered)} answered, {doubled} recorded twice",
        len(answered),
        lost_records=lost,
        is_ok=lost == 0 and doubled == 0,
    )


class PrivatePostgres:
    """A PostgreSQL cluster of the suite's own (initdb in a temporary folder, as the
    `postgres` user when run as root), so it may stop and restart it."""

    def __init__(self) -> None:
        self.port = free_port()
        self._bin = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        self._data = Path(tempfile.mkdtemp(prefix="stellara-reliability-pg-"))
        self._owner = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        self.url = f"postgresql://{self._owner}@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def available() -> bool:
        return any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))

    def _run(self, *args: str) -> None:
        command = [str(self._bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(map(shlex.quote, command))]
        subprocess.run(command, check=True, capture_output=True)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self._data, "postgres")
        data = str(self._data / "data")
        self._run("initdb", "-D", data, "-A", "trust", "-U", self._owner)
        self.start()

    def start(self) -> None:
        data = str(self._data / "data")
        options = f"-p {self.port} -h 127.0.0.1 -k {self._data}"
        self._run("pg_ctl", "-D", data, "-o", options, "-l", f"{data}/log", "-w", "start")

    def crash(self) -> None:
        """Immediate shutdown: connections cut, no checkpoint, as a crashed server."""
        self._run("pg_ctl", "-D", str(self._data / "data"), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.crash()
        shutil.rmtree(self._data, ignore_errors=True)


async def outage_under_load(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    name: str,
    stop: Callable[[], None],
    restart: Callable[[], None],
    recovered: Callable[[], Awaitable[str | None]],
    seen_all: Seen,
) -> Row:
    """8 clients; the backend is stopped 2 s in and restarted 3 s later. Every request must
    still be answered (the documented policy: serve without limits, buffer usage records),
    `/readyz` must say `degraded` meanwhile and `ready` again afterwards."""
    seen = Seen()
    running = True

    async def client(index: int) -> None:
        while running:
            await call(http, gateway, "failover", index % 4 == 0, seen)

    clients = [asyncio.create_task(client(i)) for i in range(8)]
    await asyncio.sleep(2)
    await asyncio.to_thread(stop)
    await asyncio.sleep(1)
    during = await gateway.readiness(http)
    await asyncio.sleep(2)
    await asyncio.to_thread(restart)
    back = "no"
    for _ in range(100):  # the usage writer retries with backoff: allow it 10 s
        await asyncio.sleep(0.1)
        if await gateway.readiness(http) == "ready":
            back = "ready"
            break
    await asyncio.sleep(2)
    running = False
    await asyncio.gather(*clients)
    problem = await recovered()
    seen_all.answered += seen.answered
    errors = sum(n for s, n in seen.statuses.items() if s != 200)
    outcome = ", ".join(f"{n} x {s}" for s, n in sorted(seen.statuses.items()))
    outcome += f"; /readyz {during} while down, {back} after"
    if problem:
        outcome += f"; {problem}"
    return Row(
        name,
        outcome,
        sum(seen.statuses.values()),
        server_errors=errors,
        is_ok=errors == 0 and during == "degraded" and back == "ready" and not problem,
    )


async def backend_outages(http_timeout: aiohttp.ClientTimeout, workdir: Path) -> list[Row]:
    """A gateway on Redis (limits, L2 cache) and PostgreSQL (keys, usage records), each backend
    crashed under load and restarted."""
    missing = [n for n, ok in (("redis-server", shutil.which("redis-server")),) if not ok]
    if not PrivatePostgres.available():
        missing.append("PostgreSQL server binaries")
    if missing:
        return [Row("Redis / PostgreSQL outages", f"SKIPPED: no {', '.join(missing)}", 0)]
    redis, postgres = PrivateRedis(workdir), PrivatePostgres()
    redis.start()
    await asyncio.to_thread(postgres.init)
    state = {"backend": "redis", "redis_url": redis.url, "on_failure": "open"}
    gateway = Gateway(workdir / "backends", postgres.url, state=state)
    gateway.workdir.mkdir()
    gateway.start()
    seen = Seen()
    try:
        async with aiohttp.ClientSession(timeout=http_timeout) as http:
            await wait_until_up(http, f"{gateway.sim_url}/_sim/faults")
            await wait_until_up(http, f"{gateway.url}/healthz")
            await gateway.create_virtual_key(http)

            async def redis_in_use() -> str | None:
                keys = redis.keys()
                return None if keys > 0 else "Redis still empty: limits not counted again"

            async def nothing_to_check() -> None:
                return None

            rows = [
                await outage_under_load(
                    http,
                    gateway,
                    "Redis crashed 3 s under load, restarted",
                    redis.crash,
                    redis.start,
                    redis_in_use,
                    seen,
                ),
                await outage_under_load(
                    http,
                    gateway,
                    "PostgreSQL crashed 3 s under load, restarted",
                    postgres.crash,
                    postgres.start,
                    nothing_to_check,
                    seen,
                ),
            ]
    finally:
        gateway.stop()
        redis.crash()
    try:
        records = await records_row(postgres.url, seen.answered, "usage records (PostgreSQL)")
    finally:
        await asyncio.to_thread(postgres.remove)
    return [*rows, records]


async def run(short: bool, soak_s: float) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="stellara-reliability-") as tmp:
        usage_url = f"sqlite:///{Path(tmp) / 'usage.db'}"
        gateway = Gateway(Path(tmp), usage_url)
        gateway.start()
        timeout = aiohttp.ClientTimeout(total=30)
        try:
            connector = aiohttp.TCPConnector(limit=64)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                await wait_until_up(http, f"{gateway.sim_url}/_sim/faults")
                await wait_until_up(http, f"{gateway.url}/healthz")
                seen = Seen()
                per_case = 4 if short else 20
                # Fill both providers' connection pools as far as the matrix will, so the
                # descriptor count after it compares like with like.
                for model, stream in itertools.product(("failover", "backup"), (False, True)):
                    await asyncio.gather(
                        *(call(http, gateway, model, stream, seen) for _ in range(per_case))
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
        rows.append(await records_row(usage_url, seen.answered, "usage records (SQLite)"))
        rows += await backend_outages(timeout, Path(tmp))
        hostile = Path(tmp) / "hostile"
        hostile.mkdir()
        rows += await hostile_tenants(hostile)
        return rows


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
