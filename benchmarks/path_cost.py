"""The request path's cost, deterministic enough to compare two commits.

One process holds an upstream (aiohttp, answering a fixed chat.completion), the gateway (every
feature off, as compare.py's "Stellara off") and a client, and sends N sequential chat
completions after a warm-up:

    .venv/bin/python benchmarks/path_cost.py              # CPU per request (noisy)
    PROFILE=1 .venv/bin/python benchmarks/path_cost.py    # and a cProfile of the measured run
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

from stellara.server import create_app

try:
    from stellara.assembly.config import check_config
except ImportError:  # a commit from before the assembly package (to compare with it)
    from stellara.config import check_config  # type: ignore[attr-defined,no-redef]

N = int(os.environ.get("N", "3000"))
WARM = int(os.environ.get("WARM", "300"))
PROFILE = os.environ.get("PROFILE") == "1"
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


def _config(upstream_port: int, directory: Path) -> dict[str, Any]:
    base_url = f"http://127.0.0.1:{upstream_port}/v1"
    return {
        "server": {"master_key": "sk-path-cost-master-0001"},
        "providers": [{"id": "up", "type": "openai", "base_url": base_url, "api_key": "sk-x"}],
        "models": [{"name": "m", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
        "keys": [{"key": USER_KEY, "user": "alice"}],
        "telemetry": {"metrics": False},
        "resilience": {"health_check": {"enabled": False}},
        "usage_store": {"url": f"sqlite:///{directory / 'usage.db'}"},
    }


async def main() -> None:
    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", _upstream)
    upstream_runner, upstream_port = await _serve(upstream)
    with tempfile.TemporaryDirectory() as directory:
        gateway_runner, port = await _serve(
            create_app(check_config(_config(upstream_port, Path(directory))))
        )
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {USER_KEY}"}
        async with aiohttp.ClientSession() as http:

            async def ask(i: int) -> None:
                body = {"model": "m", "messages": [{"role": "user", "content": f"hello {i}"}]}
                async with http.post(url, json=body, headers=headers) as response:
                    assert response.status == 200, await response.text()
                    await response.read()

            for i in range(WARM):
                await ask(i)
            profile = cProfile.Profile() if PROFILE else None
            cpu, wall = time.process_time(), time.perf_counter()
            if profile is not None:
                profile.enable()
            for i in range(N):
                await ask(i)
            if profile is not None:
                profile.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await gateway_runner.cleanup()
    await upstream_runner.cleanup()
    print(f"per request (client and upstream included): CPU {cpu / N * 1e6:.1f} µs, ", end="")
    print(f"wall {wall / N * 1e6:.1f} µs")
    if profile is not None:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(40)
        print(text.getvalue())


if __name__ == "__main__":
    uvloop.run(main())
