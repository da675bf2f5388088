"""The request path's cost, deterministic enough to compare two commits.

One process holds an upstream (aiohttp, answering a fixed chat.completion), the gateway (every
feature off, as compare.py's "Stellara off") and a client, and sends N sequential chat
completions after a warm-up:

    .venv/bin/python benchmarks/path_cost.py              # CPU per request (noisy)
    PROFILE=1 .venv/bin/python benchmarks/path_cost.py    # and a cProfile of the measured run
    EXPERIMENT=1 .venv/bin/python benchmarks/path_cost.py # with an experiment on the model
    benchmarks/path_cost.sh [TREE]                        # instructions per request

Timings on a shared VM swing ±20 %; instruction counts under callgrind do not (one commit counts
the same within 0.2 %), so `path_cost.sh` is the one to compare commits with. Client and
upstream are counted too, so the difference between two commits is the gateway's.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiohttp import web

from stellara.config.models import StellaraConfig
from stellara.server import create_app

try:
    from stellara.assembly.config import check_config
except ImportError:  # a commit from before the assembly package (to compare with it)
    from stellara.config import check_config  # type: ignore[attr-defined,no-redef]

N = int(os.environ.get("N", "3000"))
WARM = int(os.environ.get("WARM", "300"))
PROFILE = os.environ.get("PROFILE") == "1"
EXPERIMENT = os.environ.get("EXPERIMENT") == "1"
USER_KEY = "sk-path-cost-user-0001"
ANSWER = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,'
    b'"total_tokens":6}}'
)


async def _upstream(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


# Three variants, one of each kind: the model as configured, other targets, request overrides.
EXPERIMENTS = [
    {
        "id": "bench",
        "model": "m",
        "variants": [
            {"name": "control", "share": 34},
            {"name": "other", "share": 33, "targets": [{"provider": "up", "model": "gpt-4o"}]},
            {"name": "tuned", "share": 33, "overrides": {"temperature": 0.2, "max_tokens": 64}},
        ],
    }
]


def _config(upstream_port: int, directory: Path, *, experiment: bool = False) -> dict[str, Any]:
    base_url = f"http://127.0.0.1:{upstream_port}/v1"
    config: dict[str, Any] = {
        "server": {"master_key": "sk-path-cost-master-0001"},
        "providers": [{"id": "up", "type": "openai", "base_url": base_url, "api_key": "sk-x"}],
        "models": [{"name": "m", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
        "keys": [{"key": USER_KEY, "user": "alice"}],
        "telemetry": {"metrics": False},
        "resilience": {"health_check": {"enabled": False}},
        # No flush while measuring: flushes come by the second, and under callgrind, which
        # runs 50 times slower, their count (and so the instructions per request) would
        # follow the run's duration, not the request path.
        "usage_store": {
            "url": f"sqlite:///{directory / 'usage.db'}",
            "flush_interval_s": 60,
            "batch_records": 10_000,
        },
    }
    if experiment:  # only then: path_cost.sh runs this file against trees from before it
        config["experiments"] = EXPERIMENTS
    if "experiments_refresh_s" in StellaraConfig.model_fields:
        # Its reload (one SQL query every 2 s) is not per request; under callgrind, which
        # runs 50 times slower, it would count as if it were.
        config["experiments_refresh_s"] = 3600
    return config


async def measure(
    *,
    n: int = N,
    warm: int = WARM,
    experiment: bool = False,
    profile: cProfile.Profile | None = None,
) -> tuple[float, float]:
    """CPU and wall seconds of `n` sequential requests (after `warm` unmeasured ones). With
    `experiment`, the model runs `EXPERIMENTS`; each request's key is one of 1,000 users (the
    same users either way), so assignment spreads over every variant."""
    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", _upstream)
    upstream_runner, upstream_port = await _serve(upstream)
    with tempfile.TemporaryDirectory() as directory:
        config = _config(upstream_port, Path(directory), experiment=experiment)
        config["keys"] = [{"key": f"{USER_KEY}-{u:04d}", "user": f"user-{u}"} for u in range(1000)]
        gateway_runner, port = await _serve(create_app(check_config(config)))
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with aiohttp.ClientSession() as http:

            async def ask(i: int) -> None:
                body = {"model": "m", "messages": [{"role": "user", "content": f"hello {i}"}]}
                headers = {"Authorization": f"Bearer {USER_KEY}-{i % 1000:04d}"}
                async with http.post(url, json=body, headers=headers) as response:
                    assert response.status == 200, await response.text()
                    await response.read()

            for i in range(warm):
                await ask(i)
            cpu, wall = time.process_time(), time.perf_counter()
            if profile is not None:
                profile.enable()
            for i in range(n):
                await ask(i)
            if profile is not None:
                profile.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await gateway_runner.cleanup()
    await upstream_runner.cleanup()
    return cpu, wall


async def main() -> None:
    profile = cProfile.Profile() if PROFILE else None
    cpu, wall = await measure(experiment=EXPERIMENT, profile=profile)
    print(f"per request (client and upstream included): CPU {cpu / N * 1e6:.1f} µs, ", end="")
    print(f"wall {wall / N * 1e6:.1f} µs")
    if profile is not None:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(40)
        print(text.getvalue())


if __name__ == "__main__":
    uvloop.run(main())
