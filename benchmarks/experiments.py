"""What an experiment costs on the request path (issue 19's target: at most 20 µs of CPU).

Two measurements, in one process, on one core's worth of work:

1. The stage alone: `Gateway`'s experiment step for 200,000 requests of 1,000 users on a model
   with three variants (the model as configured, other targets, request overrides): the
   assignment (a keyed BLAKE2b of the user, a bisect), the variant applied, the cache
   partition. Deterministic to a few percent.
2. The whole path, with and without the experiment: `path_cost.measure` (upstream, gateway
   with every feature off, and client in one process), alternated over `ROUNDS` rounds so
   drift hits both alike; the difference of the medians. Timings here swing ±20 %, and the
   difference is a few percent of a request, so read it as a check on (1), not a figure.

    .venv/bin/python benchmarks/experiments.py
"""

from __future__ import annotations

import os
import statistics
import time

import uvloop
from path_cost import EXPERIMENTS, measure

from stellara.config.experiments import ExperimentConfig, FeedbackConfig
from stellara.config.models import ModelConfig
from stellara.experiments.book import ExperimentBook
from stellara.principal import Principal
from stellara.routing.models import ModelTable
from stellara.state.memory import MemoryArmStore
from stellara.store.db import Database
from stellara.store.experiments import ExperimentStore
from stellara.testing import ManualClock, ScriptedAdapter, chat_request

CALLS = 200_000
ROUNDS = int(os.environ.get("ROUNDS", "5"))
N = int(os.environ.get("N", "2000"))


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
        partition = f"{assignment.experiment.id}/{assignment.variant.name}"
        served[partition] = served.get(partition, 0) + 1
    return (time.process_time() - start) / CALLS * 1e6, served


async def path_difference_us() -> tuple[float, float]:
    """Median CPU µs per request without and with the experiment, alternated by round."""
    without, with_experiment = [], []
    for _ in range(ROUNDS):
        for experiment, samples in ((False, without), (True, with_experiment)):
            cpu, _ = await measure(n=N, warm=300, experiment=experiment)
            samples.append(cpu / N * 1e6)
    return statistics.median(without), statistics.median(with_experiment)


def main() -> None:
    stage_us, served = stage_cost_us()
    print(f"experiment stage alone: {stage_us:.2f} µs CPU per request ({CALLS:,} requests)")
    print("  served: " + ", ".join(f"{name} {count:,}" for name, count in sorted(served.items())))
    off, on = uvloop.run(path_difference_us())
    print(
        f"whole path, medians of {ROUNDS} alternated rounds of {N:,} requests: "
        f"{off:.1f} µs without, {on:.1f} µs with an experiment ({on - off:+.1f} µs)"
    )


if __name__ == "__main__":
    main()
