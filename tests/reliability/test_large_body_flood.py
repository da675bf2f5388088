"""Issue 25's hostile tenant against `stellara serve`: four connections send huge bodies (110,000
tiny content blocks; one 3 MB word) back to back, while another tenant calls a model.

Before the bounds, each such body held the event loop 0.2-1.5 s (decoding, translating and
tokenizing it), the other tenant waited seconds, and the refused bodies kept the gateway
gigabytes larger after the burst. Now the other tenant's p99 stays within twice its unloaded
p99, and the gateway's memory returns to where it was.

The simulator answers in 200 ms, a fast model's time to a first answer: the figure that
matters to the other tenant is its whole call. (With an instant upstream, the gateway's own
share is seen: each refused 3.5 MB body of blocks still costs its decoding, ~20 ms.)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_limits_multiprocess import free_port, start, stop, wait_until_serving

pytestmark = pytest.mark.e2e

STELLARA = [sys.executable, "-m", "stellara.cli"]
BLOCKS_ATTACKER = "sk-flood-blocks-key"
WORD_ATTACKER = "sk-flood-word-key"
TENANT = "sk-flood-tenant-key"
UPSTREAM_LATENCY_MS = 200
REPOSITORY = Path(__file__).resolve().parents[2]
UNLOADED_S = 3.0
FLOOD_S = 6.0
TENANT_WORKERS = 4


def gateway_config(sim_port: int, workdir: Path) -> str:
    # Every hostile body is read and decoded: the blocks are refused for their shape, which
    # is not counted against a limit; a word's tier allows far fewer tokens than it holds, so
    # each word is estimated (the tokenizer) and refused as larger than its window can ever
    # hold (a 400: no wait would admit it), no provider ever called.
    return json.dumps(
        {
            "server": {"master_key": "sk-flood-master-key"},
            "providers": [
                {
                    "id": "sim",
                    "type": "openai",
                    "base_url": f"http://127.0.0.1:{sim_port}/v1",
                    "api_key": "k",
                }
            ],
            "models": [{"name": "m", "targets": [{"provider": "sim", "model": "gpt-4o-mini"}]}],
            "limits": {"tiers": {"free": {"rate": {"window_s": 60, "tokens": 100_000}}}},
            "keys": [
                {"key": BLOCKS_ATTACKER, "user": "blocks-attacker"},
                {"key": WORD_ATTACKER, "user": "word-attacker", "tier": "free"},
                {"key": TENANT, "user": "tenant"},
            ],
            "usage_store": {"url": f"sqlite:///{workdir}/usage.db"},
        }
    )


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The simulator and `stellara serve` in front of it: the gateway's URL and pid."""
    sim_port, port = free_port(), free_port()
    sim = start(
        [*STELLARA, "simulate", "--port", str(sim_port), "--latency-ms", str(UPSTREAM_LATENCY_MS)]
    )
    config = tmp_path / "stellara.yaml"
    config.write_text(gateway_config(sim_port, tmp_path))
    served = start([*STELLARA, "serve", "--config", str(config), "--port", str(port)])
    try:
        wait_until_serving(sim_port, sim)
        wait_until_serving(port, served)
        yield f"http://127.0.0.1:{port}", served.pid
    finally:
        stop(served)
        stop(sim)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


async def tenant_latencies(url: str, seconds: float) -> list[float]:
    """The other tenant's calls, `TENANT_WORKERS` at a time for `seconds`; every one answered."""
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {TENANT}"}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                await r.read()
            latencies.append(time.monotonic() - started)

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(TENANT_WORKERS)))
    return latencies


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


async def test_flood_of_huge_bodies_leaves_other_tenants_and_memory_alone(
    gateway: tuple[str, int],
) -> None:
    url, pid = gateway
    await tenant_latencies(url, 0.5)  # warm-up: connections, the tokenizer's first use
    unloaded = await tenant_latencies(url, UNLOADED_S)
    rss_before = rss_mib(pid)

    flood = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPOSITORY / "benchmarks" / "body_flood.py"),
        url,
        str(FLOOD_S + 1.0),
        *[f"blocks={BLOCKS_ATTACKER}", f"word={WORD_ATTACKER}"] * 2,
        stdout=subprocess.PIPE,
    )
    await asyncio.sleep(0.5)  # the flood under way
    flooded = await tenant_latencies(url, FLOOD_S)
    rss_peak = rss_mib(pid)
    output, _ = await flood.communicate()
    statuses = json.loads(output)
    await asyncio.sleep(1.0)
    rss_after = rss_mib(pid)

    print(
        f"\ntenant unloaded: p50 {statistics.median(unloaded) * 1000:.0f} ms, "
        f"p99 {p99(unloaded) * 1000:.0f} ms ({len(unloaded)} calls); during the flood: "
        f"p50 {statistics.median(flooded) * 1000:.0f} ms, p99 {p99(flooded) * 1000:.0f} ms "
        f"({len(flooded)} calls)\nflood answers {statuses}\n"
        f"gateway RSS {rss_before:.0f} MiB before, {rss_peak:.0f} during, {rss_after:.0f} after"
    )
    assert flood.returncode == 0
    assert set(statuses) <= {"blocks 400", "word 400"}  # refused: the shape, the limits
    assert statuses["blocks 400"] > 10
    assert statuses["word 400"] > 10
    assert p99(flooded) <= 2 * p99(unloaded)
    assert rss_after <= 1.10 * rss_before
