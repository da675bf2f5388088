"""Failover cost: a request whose primary is down (breaker open) against a healthy primary.

Starts the simulator and two gateways as subprocesses (gateways pinned to core 0 with taskset
where available, the simulator to core 1). Both gateways route the public model `m` to
`primary`, then `backup`, two providers on the same simulator; they differ only in the model
name their primary asks for, so one fault rule (`timeout`: the primary never answers) takes
down the primary of the "down" gateway alone. A few requests trip its breaker (each waits for
`resilience.timeout_s`); with `open_s` large it then stays open for the whole run.

Requests are sequential on one connection per gateway, measured in alternating blocks so
drift hits both cases alike. The target: the down case's p50 within 1 ms of the healthy
case's — an open breaker costs no timeout, no attempt, only a skipped target.

    .venv/bin/python benchmarks/failover.py [--requests 2000] [--block 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from _procs import STELLARA, free_port, pinned, process

KEY = "sk-failover-bench-key-0001"
MASTER = "sk-failover-bench-master-0001"
TRIP_TIMEOUT_S = 1.0  # the whole request; a loaded machine must not hit it
BODY = {"model": "m", "messages": [{"role": "user", "content": "Is the primary up?"}]}


def gateway_config(folder: Path, sim_port: int, primary_model: str) -> Path:
    path = folder / f"gateway-{primary_model}.yaml"
    sim = f"http://127.0.0.1:{sim_port}/v1"
    path.write_text(
        f"""
server: {{master_key: {MASTER}}}
providers:
  - {{id: primary, type: openai, base_url: "{sim}", api_key: k}}
  - {{id: backup, type: openai, base_url: "{sim}", api_key: k}}
models:
  - name: m
    strategy: priority
    targets:
      - {{provider: primary, model: {primary_model}}}
      - {{provider: backup, model: model-b}}
keys:
  - {{key: {KEY}, user: bench}}
resilience:
  timeout_s: {TRIP_TIMEOUT_S}
  retry: {{max_attempts: 1}}
  circuit_breaker: {{failure_threshold: 2, open_s: 3600}}
"""
    )
    return path


async def timed(http: aiohttp.ClientSession, url: str, expect_provider: str) -> float:
    headers = {"Authorization": f"Bearer {KEY}"}
    start = time.perf_counter()
    async with http.post(f"{url}/v1/chat/completions", json=BODY, headers=headers) as response:
        await response.read()
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status == 200, (url, response.status)
    provider = response.headers["x-stellara-provider"]
    assert provider == expect_provider, provider
    assert response.headers["x-stellara-attempts"] == "1"
    return elapsed


async def breaker_state(http: aiohttp.ClientSession, url: str) -> str:
    headers = {"Authorization": f"Bearer {MASTER}"}
    async with http.get(f"{url}/ai-orchestration/circuit-breakers", headers=headers) as r:
        body: dict[str, Any] = await r.json()
    return str(body["breakers"].get("primary", {}).get("state", "closed"))


async def trip(http: aiohttp.ClientSession, url: str) -> int:
    """Send requests until the primary's breaker is open; how many it took."""
    headers = {"Authorization": f"Bearer {KEY}"}
    for sent in range(1, 11):
        async with http.post(f"{url}/v1/chat/completions", json=BODY, headers=headers) as r:
            await r.read()
        if await breaker_state(http, url) == "open":
            return sent
    raise RuntimeError("the primary's breaker did not open")


def summary(name: str, samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    print(f"{name:<28} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  ({len(samples)} requests)")
    return p50, p99


async def measure(sim_port: int, healthy_port: int, down_port: int, n: int, block: int) -> None:
    sim = f"http://127.0.0.1:{sim_port}"
    healthy, down = f"http://127.0.0.1:{healthy_port}", f"http://127.0.0.1:{down_port}"
    async with aiohttp.ClientSession() as control:
        fault = {"kind": "timeout", "model": "model-down", "delay_ms": 5000}
        async with control.post(f"{sim}/_sim/faults", json={"faults": [fault]}) as r:
            assert r.status == 200
        tripped = await trip(control, down)
        print(f"primary of the down gateway: breaker open after {tripped} timed-out requests")
    async with aiohttp.ClientSession() as h_http, aiohttp.ClientSession() as d_http:
        for _ in range(20):  # connections, caches, JIT-free warm-up of both paths
            await timed(h_http, healthy, "primary")
            await timed(d_http, down, "backup")
        h_samples: list[float] = []
        d_samples: list[float] = []
        while len(h_samples) < n:
            h_samples += [await timed(h_http, healthy, "primary") for _ in range(block)]
            d_samples += [await timed(d_http, down, "backup") for _ in range(block)]
    async with aiohttp.ClientSession() as control:
        async with control.get(f"{sim}/_sim/requests") as r:
            recent = (await r.json())["requests"]
        state = await breaker_state(control, down)
    leaked = sum(1 for req in recent if (req.get("body") or {}).get("model") == "model-down")
    h50, h99 = summary("healthy primary", h_samples)
    d50, d99 = summary("primary down, breaker open", d_samples)
    verdict = "OK" if abs(d50 - h50) <= 1.0 else "OVER"
    print(
        f"{'added by the open breaker':<28} p50 {d50 - h50:+7.3f} ms  p99 {d99 - h99:+7.3f} ms"
        f"  target p50 within 1 ms: {verdict}"
    )
    print(
        f"breaker still {state}; requests to the down primary among the simulator's last "
        f"{len(recent)}: {leaked}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per case")
    parser.add_argument("--block", type=int, default=100, help="requests per alternation")
    args = parser.parse_args()
    sim_port, healthy_port, down_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        healthy = gateway_config(folder, sim_port, "model-a")
        down = gateway_config(folder, sim_port, "model-down")
        serve = [*STELLARA, "serve", "--config"]
        with (
            process(pinned(1, [*STELLARA, "simulate", "--port", str(sim_port)]), sim_port),
            process(pinned(0, [*serve, str(healthy), "--port", str(healthy_port)]), healthy_port),
            process(pinned(0, [*serve, str(down), "--port", str(down_port)]), down_port),
        ):
            asyncio.run(measure(sim_port, healthy_port, down_port, args.requests, args.block))


if __name__ == "__main__":
    main()
