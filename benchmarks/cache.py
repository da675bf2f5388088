"""Gateway time of a cache hit: L1, L2 (Redis) and semantic, against the HTTP floor.

Starts the simulator and two gateways as subprocesses (pinned to core 0 with taskset where
available; this client runs on core 1): one with a large L1, and one whose L1 holds a single
entry so that alternating between two requests makes every lookup an L1 miss and an L2 hit.
Each figure is the p50/p99 of sequential requests on one connection; "added" subtracts the
p50 of `GET /healthz` on the same gateway, the cost of HTTP itself.

    .venv/bin/python benchmarks/cache.py [--requests 2000] [--redis redis://127.0.0.1:6379/14]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from _procs import STELLARA, free_port, pinned, process

KEY = "sk-cache-bench-key-0001"
QUESTION = "How do I reset my router to factory settings?"
_OPENINGS = ["", "Hi, ", "Hello, ", "Quick question: ", "Please tell me, ", "Hey there, "]
_ASKS = [
    "how can I reset my router to factory settings?",
    "how do I factory reset my router?",
    "what is the way to reset my router to its factory settings?",
    "how do I restore my router to factory settings?",
]
_CLOSINGS = ["", " Thanks.", " Thank you!"]
# Distinct texts, so every lookup embeds (the semantic cache remembers recent vectors).
PARAPHRASES = [o + a + c for o in _OPENINGS for a in _ASKS for c in _CLOSINGS]


def gateway_config(folder: Path, sim_port: int, redis_url: str, l1_entries: int) -> Path:
    path = folder / f"gateway-{l1_entries}.yaml"
    path.write_text(
        f"""
state: {{backend: redis, redis_url: "{redis_url}"}}
providers:
  - {{id: sim, type: openai, base_url: "http://127.0.0.1:{sim_port}/v1", api_key: k}}
models:
  - {{name: m, targets: [{{provider: sim, model: gpt-4o-mini}}]}}
keys:
  - {{key: {KEY}, user: bench}}
cache:
  l1: {{max_entries: {l1_entries}}}
  semantic: {{enabled: true}}
"""
    )
    return path


async def timed(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any] | None, seen: list[str]
) -> float:
    start = time.perf_counter()
    if body is None:
        async with http.get(url) as response:
            await response.read()
    else:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with http.post(url, json=body, headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
            seen.append(response.headers["x-stellara-cache"])
    return (time.perf_counter() - start) * 1000


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


async def series(
    http: aiohttp.ClientSession,
    url: str,
    bodies: list[dict[str, Any] | None],
    n: int,
    *,
    warm: int = 2,
) -> tuple[list[float], list[str]]:
    """Latencies of `n` requests cycling through `bodies`, and their x-stellara-cache."""
    for body in bodies[:warm]:  # first calls store, load the embedder, open connections
        await timed(http, url, body, [])
    seen: list[str] = []
    return [await timed(http, url, bodies[i % len(bodies)], seen) for i in range(n)], seen


def line(name: str, run: tuple[list[float], list[str]], floor: float, kind: str) -> str:
    samples, seen = run
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    share = seen.count(kind) / len(seen) * 100
    return (
        f"{name:<16} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  added p50 {p50 - floor:7.3f} ms"
        f"  ({share:.0f} % {kind})"
    )


async def measure(l1_port: int, l2_port: int, n: int) -> None:
    chat_l1 = f"http://127.0.0.1:{l1_port}/v1/chat/completions"
    chat_l2 = f"http://127.0.0.1:{l2_port}/v1/chat/completions"
    async with aiohttp.ClientSession() as http:
        floor_run, _ = await series(http, f"http://127.0.0.1:{l1_port}/healthz", [None], n)
        floor = statistics.median(floor_run)
        l1 = await series(http, chat_l1, [chat(QUESTION)], n)
        l2 = await series(http, chat_l2, [chat("first question"), chat("second question")], n)
        semantic = await series(
            http, chat_l1, [chat(p) for p in PARAPHRASES], len(PARAPHRASES), warm=0
        )
    print(f"{'HTTP floor':<16} p50 {floor:7.3f} ms   (GET /healthz)")
    print(line("L1 hit", l1, floor, "hit") + "  target added p50 <= 0.2 ms")
    print(line("L2 hit (Redis)", l2, floor, "hit") + "  target added p50 <= 0.5 ms")
    print(line("semantic hit", semantic, floor, "semantic") + "  target added p50 <= 20 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--redis", default=os.environ.get("STELLARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    args = parser.parse_args()
    sim_port, l1_port, l2_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        big = gateway_config(folder, sim_port, args.redis, 10_000)
        tiny = gateway_config(folder, sim_port, args.redis, 1)
        with (
            process(pinned(1, [*STELLARA, "simulate", "--port", str(sim_port)]), sim_port),
            process(
                pinned(0, [*STELLARA, "serve", "--config", str(big), "--port", str(l1_port)]),
                l1_port,
            ),
            process(
                pinned(0, [*STELLARA, "serve", "--config", str(tiny), "--port", str(l2_port)]),
                l2_port,
            ),
        ):
            asyncio.run(measure(l1_port, l2_port, args.requests))


if __name__ == "__main__":
    main()
