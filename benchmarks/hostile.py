"""Hostile tenants (issue 25's probe) against real processes: two gateways sharing a Redis of
their own, `on_failure: open`, the access log on, a simulator answering in 200 ms.

    .venv/bin/python benchmarks/hostile.py    # these rows alone (the reliability suite has them)

Each attack is one row, with the figure that says whether the promise held: a tenant over its
limit flooding huge bodies gets 0 requests more, and nothing is admitted without limits while
Redis is healthy; another tenant's p99 stays within 2x of its unloaded p99; memory comes back;
streams left early or cut by the provider are charged what was relayed and move the quota; no
key reaches a log line; slow or oversized request heads are cut off; a provider's error message
loses its secrets; a dashboard session ended on one process is ended on the other.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _procs import STELLARA, PrivateRedis, free_port, wait_for_port
from _report import Row, table

MASTER = "sk-hostile-master-key-0001"
PROVIDER_KEY = "sk-hostile-provider-key-AbCdEfGhIjKlMnOp"
OVER_LIMIT = "sk-hostile-over-limit-0001"  # 5 requests a minute, used up before its flood
BLOCKS = "sk-hostile-blocks-0001"  # 110,000 content blocks per body
WORD = "sk-hostile-word-0001"  # one 3 MB word per body, in a tier of 100,000 tokens a minute
TENANT = "sk-hostile-tenant-0001"  # the other tenant, whose latency is watched
STREAMER = "sk-hostile-streamer-0001"  # leaves its streams early
KEYS = (MASTER, PROVIDER_KEY, OVER_LIMIT, BLOCKS, WORD, TENANT, STREAMER)
UPSTREAM_LATENCY_MS = 200  # a fast model's time to its first answer
PER_TOKEN_MS = 10  # streams take a while, so a client can leave midway
HEAD_DEADLINE_S = 2.0
LIMIT = 5
FLOOD_S = 6.0
STREAMS = 5
HANG_UP_AFTER = 13  # events of a 24-token answer
CUT_AFTER = 5  # chunks the provider sends before it breaks the stream


def config(sim_port: int, redis_url: str, usage_url: str) -> dict[str, Any]:
    return {
        "server": {
            "master_key": MASTER,
            "access_log": True,
            "header_read_timeout_s": HEAD_DEADLINE_S,
        },
        "state": {"backend": "redis", "redis_url": redis_url, "on_failure": "open"},
        "providers": [
            {
                "id": "sim",
                "type": "openai",
                "base_url": f"http://127.0.0.1:{sim_port}/v1",
                "api_key": PROVIDER_KEY,
            }
        ],
        "models": [{"name": "m", "targets": [{"provider": "sim", "model": "gpt-4o-mini"}]}],
        "limits": {
            "tiers": {
                "free": {"rate": {"window_s": 60, "requests": LIMIT}},
                "words": {"rate": {"window_s": 60, "tokens": 100_000}},
                "streams": {"quota": {"daily": {"tokens": 1_000_000, "cost_usd": 100}}},
            }
        },
        "keys": [
            {"key": OVER_LIMIT, "user": "over-limit", "tier": "free"},
            {"key": BLOCKS, "user": "blocks"},
            {"key": WORD, "user": "word", "tier": "words"},
            {"key": TENANT, "user": "tenant"},
            {"key": STREAMER, "user": "streamer", "tier": "streams"},
        ],
        "resilience": {"timeout_s": 5, "circuit_breaker": {"failure_threshold": 1_000_000}},
        "usage_store": {"url": usage_url, "flush_interval_s": 0.05},
    }


class Deployment:
    """A simulator and two gateways (`a`, `b`) on one private Redis; each logs to a file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis = PrivateRedis(workdir)
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.ports = (free_port(), free_port())
        self.a, self.b = (f"http://127.0.0.1:{port}" for port in self.ports)
        self.logs = (workdir / "gateway-a.log", workdir / "gateway-b.log")
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.redis.start()
        sim = ["simulate", "--port", str(self.sim_port), "--latency-ms", str(UPSTREAM_LATENCY_MS)]
        self._spawn(
            [*sim, "--per-token-ms", str(PER_TOKEN_MS)],
            self.workdir / "sim.log",
        )
        path = self.workdir / "stellara.yaml"
        usage_url = f"sqlite:///{self.workdir / 'usage.db'}"
        path.write_text(json.dumps(config(self.sim_port, self.redis.url, usage_url)))
        for port, log in zip(self.ports, self.logs, strict=True):
            self._spawn(["serve", "--config", str(path), "--port", str(port)], log)
        for port in (self.sim_port, *self.ports):
            wait_for_port(port)

    def _spawn(self, args: list[str], log: Path) -> None:
        with log.open("wb") as out:
            self.processes.append(subprocess.Popen([*STELLARA, *args], stdout=out, stderr=out))

    @property
    def pid_a(self) -> int:
        return self.processes[1].pid

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.redis.crash()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


def counts(statuses: dict[int, int]) -> str:
    return ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items())) or "none"


async def chat(http: aiohttp.ClientSession, url: str, key: str) -> int:
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        await r.read()
        return r.status


async def tenant_latencies(http: aiohttp.ClientSession, url: str, seconds: float) -> list[float]:
    """The other tenant's calls, 4 at a time for `seconds`; each must be answered."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            status = await chat(http, url, TENANT)
            if status != 200:
                raise RuntimeError(f"the other tenant got {status}")
            latencies.append(time.monotonic() - started)

    await asyncio.gather(*(worker() for _ in range(4)))
    return latencies


async def local_admissions(http: aiohttp.ClientSession, url: str) -> float:
    """Requests this gateway admitted by its own fallback limiter (Redis not answering)."""
    async with http.get(f"{url}/metrics") as r:
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("stellara_limits_local_admissions_total")
    )


async def flood_rows(http: aiohttp.ClientSession, deployment: Deployment) -> list[Row]:
    """A tenant over its limit and two others sending refused bodies, 4 connections of 3 MB
    bodies for `FLOOD_S`, while the other tenant calls the model."""
    url = deployment.a
    used_up = dict.fromkeys((200, 429), 0)
    for _ in range(LIMIT + 1):
        status = await chat(http, url, OVER_LIMIT)
        used_up[status] = used_up.get(status, 0) + 1
    await tenant_latencies(http, url, 0.5)  # warm-up: connections, the tokenizer's first use
    unloaded = await tenant_latencies(http, url, 3.0)
    rss_before = rss_mib(deployment.pid_a)
    senders = [f"blocks={OVER_LIMIT}", f"word={OVER_LIMIT}", f"blocks={BLOCKS}", f"word={WORD}"]
    flood = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("body_flood.py")),
        url,
        str(FLOOD_S + 1.0),
        *senders,
        stdout=subprocess.PIPE,
    )
    await asyncio.sleep(0.5)  # the flood under way
    flooded = await tenant_latencies(http, url, FLOOD_S)
    rss_peak = rss_mib(deployment.pid_a)
    output, _ = await flood.communicate()
    answered: dict[str, int] = json.loads(output)
    await asyncio.sleep(1.0)
    rss_after = rss_mib(deployment.pid_a)
    admitted_locally = await local_admissions(http, url)

    # Every answer to the flood must be a refusal: the over-limit tenant's for its limit
    # (before its body is read), the others' for their bodies' shape and size.
    by_status: dict[int, int] = {}
    for kind, n in answered.items():
        status = int(kind.split()[1])
        by_status[status] = by_status.get(status, 0) + n
    admitted = by_status.pop(200, 0)
    extra = used_up[200] - LIMIT + admitted
    flood_total = sum(answered.values())
    unloaded_p99, flooded_p99 = p99(unloaded) * 1000, p99(flooded) * 1000
    return [
        Row(
            f"over-limit tenant floods 3 MB bodies, {FLOOD_S:.0f} s",
            f"limit {LIMIT}: {used_up[200]} admitted; the flood's bodies: {counts(by_status)}, "
            f"{admitted} x 200; {extra} extra, {admitted_locally:.0f} admitted without Redis",
            flood_total + LIMIT + 1,
            is_ok=extra == 0 and admitted_locally == 0,
        ),
        Row(
            "other tenant during that flood",
            f"p50 / p99 {statistics.median(unloaded) * 1000:.0f} / {unloaded_p99:.0f} ms "
            f"unloaded, {statistics.median(flooded) * 1000:.0f} / {flooded_p99:.0f} ms flooded "
            f"(≤ 2x: {2 * unloaded_p99:.0f})",
            len(unloaded) + len(flooded),
            is_ok=flooded_p99 <= 2 * unloaded_p99,
        ),
        Row(
            "gateway memory after that flood",
            f"RSS {rss_before:.0f} MiB before, {rss_peak:.0f} during, {rss_after:.0f} 1 s after",
            0,
            growth=f"RSS {(rss_after - rss_before) / rss_before:+.1%}",
            is_ok=rss_after <= 1.10 * rss_before,
        ),
    ]


async def stream(
    http: aiohttp.ClientSession, url: str, *, stop_after: int | None
) -> tuple[str, str]:
    """A streamed answer read as a client does, hanging up after `stop_after` events: its
    request id and the text received."""
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Rivers?"}]}
    headers = {"Authorization": f"Bearer {STREAMER}"}
    received: list[str] = []
    events = 0
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line.removeprefix(b"data: "))
            received += [c["delta"].get("content") or "" for c in chunk.get("choices", ())]
            events += 1
            if events == stop_after:
                response.close()
                break
    return response.headers["x-stellara-request-id"], "".join(received)


async def admin(http: aiohttp.ClientSession, url: str, path: str, key: str = MASTER) -> Any:
    async with http.get(url + path, headers={"Authorization": f"Bearer {key}"}) as r:
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {await r.text()}")
        return await r.json()


async def usage_records(http: aiohttp.ClientSession, url: str, request_ids: set[str]) -> list[Any]:
    """The usage records of `request_ids`, once all are written (the writer runs behind)."""
    found: dict[str, Any] = {}
    for _ in range(100):
        page = (await admin(http, url, "/admin/usage?user=streamer&limit=100"))["data"]
        found = {r["request_id"]: r for r in page if r["request_id"] in request_ids}
        if len(found) == len(request_ids):
            return list(found.values())
        await asyncio.sleep(0.05)
    raise RuntimeError(f"only {len(found)} of {len(request_ids)} usage records")


async def quota_cost(http: aiohttp.ClientSession, url: str) -> float:
    quotas = await admin(http, url, "/ai-orchestration/quotas/streamer", STREAMER)
    return float(quotas["windows"]["daily"]["cost_usd"]["used"])


async def stream_billing_row(
    http: aiohttp.ClientSession,
    deployment: Deployment,
    scenario: str,
    want_status: int,
    stop_after: int | None,
) -> Row:
    url = deployment.a
    quota_before = await quota_cost(http, url)
    streams = await asyncio.gather(
        *(stream(http, url, stop_after=stop_after) for _ in range(STREAMS))
    )
    records = await usage_records(http, url, {request_id for request_id, _ in streams})
    statuses: dict[int, int] = {}
    for record in records:
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
    delivered = sum(len(text.split()) for _, text in streams)
    charged = sum(record["completion_tokens"] for record in records)
    cost = sum(record["cost_usd"] for record in records)
    moved = 0.0
    for _ in range(100):  # settles run behind the answer
        moved = await quota_cost(http, url) - quota_before
        if abs(moved - cost) <= 1e-9:
            break
        await asyncio.sleep(0.05)
    estimated = all(record["usage_estimated"] for record in records)
    return Row(
        scenario,
        f"{counts(statuses)} recorded; {charged} completion tokens charged for {delivered} "
        f"words received, ${cost:.6f}{', estimated' if estimated else ''}; "
        f"cost quota +${moved:.6f}",
        STREAMS,
        is_ok=statuses == {want_status: STREAMS}
        and delivered <= charged <= delivered + 4 * STREAMS
        and cost > 0
        and estimated
        and abs(moved - cost) <= 1e-9,
    )


async def set_faults(http: aiohttp.ClientSession, deployment: Deployment, rules: list[Any]) -> None:
    async with http.post(f"{deployment.sim_url}/_sim/faults", json={"faults": rules}) as r:
        if r.status != 200:
            raise RuntimeError(await r.text())


async def log_row(http: aiohttp.ClientSession, deployment: Deployment) -> Row:
    """After every other row (floods, streams, errors), plus the sign-in link and a `?key=` on
    a model route: no key in either gateway's log."""
    for url in (deployment.a, deployment.b):
        async with http.get(f"{url}/dashboard?key={MASTER}", allow_redirects=False) as r:
            await r.read()
        async with http.get(f"{url}/v1/models?key={TENANT}") as r:
            await r.read()
    await asyncio.sleep(0.5)  # the access log is written after the response
    lines = [
        line for log in deployment.logs for line in log.read_text(errors="replace").splitlines()
    ]
    access = [line for line in lines if '"GET /' in line or '"POST /' in line]
    leaks = [line for line in lines if any(key in line for key in KEYS)]
    signin = [line for line in access if "/dashboard?key=" in line]
    return Row(
        "access log on: sign-in link, ?key=, every row",
        f"{len(lines)} log lines ({len(access)} access, {len(signin)} sign-in links): "
        f"{len(leaks)} with a key",
        len(access),
        is_ok=not leaks and len(signin) == 2,
    )


async def trickled_head_row(deployment: Deployment) -> Row:
    """Request headers sent a byte every 0.25 s: the connection is closed at the deadline."""
    port = deployment.ports[0]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    closed_after: float | None = None
    try:
        for byte in b"X-Slow: " + b"a" * 200:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1024), 0.25) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
    except (ConnectionError, OSError):
        closed_after = time.monotonic() - started
    finally:
        writer.close()
    outcome = f"closed after {closed_after:.1f} s" if closed_after else "still open after 50 s"
    return Row(
        "request head trickled a byte each 0.25 s",
        f"{outcome} (header_read_timeout_s {HEAD_DEADLINE_S:g})",
        1,
        is_ok=closed_after is not None and closed_after <= HEAD_DEADLINE_S + 1.5,
    )


async def oversized_head_row(http: aiohttp.ClientSession, deployment: Deployment) -> Row:
    """40 headers of 1 KiB: over the 32 KiB cap together, each one under aiohttp's own."""
    headers = {f"X-Filler-{i}": "a" * 1024 for i in range(40)}
    headers["Authorization"] = f"Bearer {TENANT}"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(
        f"{deployment.a}/v1/chat/completions", json=body, headers=headers
    ) as response:
        status = response.status
        error = (await response.json(content_type=None)).get("error", {})
    return Row(
        "request head of 41 KiB (cap 32 KiB)",
        f"{status}, {error.get('type')}: {error.get('message', '')[:40]}",
        1,
        is_ok=status == 431 and bool(error.get("message")),
    )


async def scrubbed_error_row(http: aiohttp.ClientSession, deployment: Deployment) -> Row:
    """A provider's 400 quoting a key (upper-cased, cut), another account's key and internal
    hosts: relayed with its sense, without them."""
    secrets = (
        PROVIDER_KEY.upper()[:24],
        "sk-proj-AbCdEfGhIjKlMnOpQrStUv12",
        "10.0.3.7",
        "vllm-0.vllm.svc.cluster.local",
    )
    message = (
        f"Invalid 'temperature' for key {secrets[0]} (account {secrets[1]}) at "
        f"http://{secrets[2]}:8080/v1 via {secrets[3]}:8000: must be at most 2."
    )
    error = {"message": message, "type": "invalid_request_error", "param": "temperature"}
    await set_faults(
        http, deployment, [{"kind": "status", "status": 400, "body": {"error": error}}]
    )
    try:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {TENANT}"}
        async with http.post(
            f"{deployment.a}/v1/chat/completions", json=body, headers=headers
        ) as r:
            status, text = r.status, await r.text()
    finally:
        await set_faults(http, deployment, [])
    relayed = json.loads(text)["error"]["message"]
    leaked = [secret for secret in secrets if secret.lower() in text.lower()]
    return Row(
        "provider 400 quoting keys and internal hosts",
        f"{status}; {len(leaked)} of {len(secrets)} secrets relayed; kept: "
        f"{'must be at most 2' in relayed}",
        1,
        is_ok=status == 400 and not leaked and "must be at most 2" in relayed,
    )


async def dashboard_session_row(http: aiohttp.ClientSession, deployment: Deployment) -> Row:
    """Signed in on gateway a, signed out on a: the cookie then opens nothing on a or b."""

    async def feed(url: str, cookie: str) -> int:
        headers = {"Cookie": f"stellara_dashboard={cookie}"}
        async with (
            aiohttp.ClientSession() as fresh,
            fresh.get(f"{url}/dashboard/data", headers=headers) as r,
        ):
            return r.status

    async with (
        aiohttp.ClientSession() as browser,
        browser.post(
            f"{deployment.a}/dashboard/login", data={"key": MASTER}, allow_redirects=False
        ) as signed_in,
    ):
        cookie = signed_in.cookies["stellara_dashboard"].value
    before = (await feed(deployment.a, cookie), await feed(deployment.b, cookie))
    async with http.post(
        f"{deployment.a}/dashboard/logout",
        headers={"Cookie": f"stellara_dashboard={cookie}"},
        allow_redirects=False,
    ) as signed_out:
        await signed_out.read()
    after = (await feed(deployment.a, cookie), await feed(deployment.b, cookie))
    return Row(
        "dashboard cookie after logout, 2 processes",
        f"before: a {before[0]}, b {before[1]}; after logout on a: a {after[0]}, b {after[1]}",
        4,
        is_ok=before == (200, 200) and after == (401, 401),
    )


async def hostile_tenants(workdir: Path) -> list[Row]:
    deployment = Deployment(workdir)
    deployment.start()
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            rows = await flood_rows(http, deployment)
            rows.append(
                await stream_billing_row(
                    http,
                    deployment,
                    f"client hangs up mid-stream (after {HANG_UP_AFTER} events)",
                    499,
                    HANG_UP_AFTER,
                )
            )
            await set_faults(http, deployment, [{"kind": "cut_stream", "after_chunks": CUT_AFTER}])
            try:
                rows.append(
                    await stream_billing_row(
                        http,
                        deployment,
                        f"provider cuts the stream after {CUT_AFTER} chunks",
                        502,
                        None,
                    )
                )
            finally:
                await set_faults(http, deployment, [])
            rows.append(await trickled_head_row(deployment))
            rows.append(await oversized_head_row(http, deployment))
            rows.append(await scrubbed_error_row(http, deployment))
            rows.append(await dashboard_session_row(http, deployment))
            rows.append(await log_row(http, deployment))
    finally:
        deployment.stop()
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="stellara-hostile-") as tmp:
        rows = asyncio.run(hostile_tenants(Path(tmp)))
    print(table(rows))
    return 0 if all(row.is_ok for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
