"""What an experiment costs on the request path (issue 19's target: at most 20 µs of CPU).

Two measurements, in one process:

1. The step alone: `Gateway`'s experiment step for 200,000 requests of 1,000 users on a model
   with three variants (the model as configured, other targets, request overrides): the
   assignment (a keyed BLAKE2b of the user, a bisect), the variant applied, the cache
   partition. Steady to a few percent.
2. The whole path, A/B within one gateway (`path_cost.py`'s: upstream, gateway with every
   feature off, and client in one process): two public models on the same target, `m` with
   the experiment and `m0` without, one request of each back to back (in alternating order),
   and the trimmed mean of the pairs' CPU differences with its 95 % interval. Whatever drifts
   (the machine, the heap) drifts for both; separate runs of the whole path here differ by
   ±30 µs, more than the step costs.

    .venv/bin/python benchmarks/experiments.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web

from path_cost import EXPERIMENTS, USER_KEY, _config, _serve, _upstream
from stellara.assembly.config import check_config
from stellara.config.experiments import ExperimentConfig, FeedbackConfig
from stellara.config.models import ModelConfig
from stellara.experiments.book import ExperimentBook
from stellara.principal import Principal
from stellara.routing.models import ModelTable
from stellara.server import create_app
from stellara.state.memory import MemoryArmStore
from stellara.store.db import Database
from stellara.store.experiments import ExperimentStore
from stellara.testing import ManualClock, ScriptedAdapter, chat_request

CALLS = 200_000
PAIRS = int(os.environ.get("PAIRS", "10000"))
USERS = 1000


def stage_cost_us() -> tuple[float, dict[str, int]]:
    """µs of CPU per request of the experiment step, and how many requests each variant got."""
    models = ModelTable(
        [ModelConfig.model_validate({"name": "m", "targets": [{"provider": "up", "model": "x"}]})],
        {"up": ScriptedAdapter("up")},
        {"up": "openai"},
    )
    book = ExperimentBook(
        [ExperimentConfig.model_validate(e) for e in EXPERIMENTS],
        models,
        FeedbackConfig(),
        store=ExperimentStore(Database("sqlite:///:memory:")),  # never read: no refresh runs
        arms=MemoryArmStore(),
        clock=ManualClock(),
    )
    public = models.get("m")
    assert public is not None
    request = chat_request()
    users = [Principal(f"user-{u}", f"key-{u}") for u in range(1000)]
    served: dict[str, int] = {}
    start = time.process_time()
    for i in range(CALLS):
        assignment = book.assign(users[i % 1000], None, "m", None)
        assert assignment is not None
        assignment.variant.apply(public, request)
        partition = f"{assignment.experiment_id}/{assignment.variant.name}"
        served[partition] = served.get(partition, 0) + 1
    return (time.process_time() - start) / CALLS * 1e6, served


async def path_difference_us() -> tuple[float, float, float, float]:
    """CPU µs per request of `m0` (no experiment) and `m` (the experiment), and the added cost
    with its 95 % interval: the 10 %-trimmed mean of the `PAIRS` pairs' differences (one
    request of each, back to back, in alternating order), so a pause that lands in one
    request (a collection, a timer) does not decide the figure."""
    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", _upstream)
    upstream_runner, upstream_port = await _serve(upstream)
    with tempfile.TemporaryDirectory() as directory:
        config = _config(upstream_port, Path(directory), experiment=True)
        config["models"].append({"name": "m0", "targets": config["models"][0]["targets"]})
        config["keys"] = [{"key": f"{USER_KEY}-{u:04d}", "user": f"u{u}"} for u in range(USERS)]
        gateway_runner, port = await _serve(create_app(check_config(config)))
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with aiohttp.ClientSession() as http:

            async def ask(model: str, i: int) -> float:
                body = {"model": model, "messages": [{"role": "user", "content": f"hi {i}"}]}
                headers = {"Authorization": f"Bearer {USER_KEY}-{i % USERS:04d}"}
                start = time.process_time()
                async with http.post(url, json=body, headers=headers) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
                return (time.process_time() - start) * 1e6

            for i in range(2 * USERS):  # warm-up: every user and variant seen
                await ask("m0" if i % 2 else "m", i)
            without, with_experiment = [], []
            for i in range(PAIRS):
                if i % 2:
                    without.append(await ask("m0", i))
                    with_experiment.append(await ask("m", i))
                else:
                    with_experiment.append(await ask("m", i))
                    without.append(await ask("m0", i))
        await gateway_runner.cleanup()
    await upstream_runner.cleanup()
    differences = sorted(b - a for a, b in zip(without, with_experiment, strict=True))
    cut = len(differences) // 10
    kept = differences[cut : len(differences) - cut]
    half = 1.96 * statistics.stdev(kept) / len(kept) ** 0.5
    mean = statistics.fmean(kept)
    return statistics.median(without), statistics.median(with_experiment), mean, half


def main() -> None:
    stage_us, served = stage_cost_us()
    print(f"experiment stage alone: {stage_us:.2f} µs CPU per request ({CALLS:,} requests)")
    print("  served: " + ", ".join(f"{name} {count:,}" for name, count in sorted(served.items())))
    off, on, added, half = uvloop.run(path_difference_us())
    print(
        f"whole path, {PAIRS:,} pairs (client and upstream included): median {off:.1f} µs "
        f"without, {on:.1f} µs with an experiment; added {added:+.1f} µs ± {half:.1f} (95 %, "
        "trimmed mean of the pairs' differences)"
    )


if __name__ == "__main__":
    main()
