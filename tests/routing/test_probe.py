"""Active health probes: results reach the health board; one process probes per round."""

from __future__ import annotations

from typing import Any

from stellara.config.models import HealthCheckConfig
from stellara.errors import UpstreamUnavailableError
from stellara.routing.health import HealthBoard
from stellara.routing.probe import HealthProber
from stellara.state.memory import MemoryLimitStore
from stellara.testing import ManualClock, ScriptedAdapter

DOWN = UpstreamUnavailableError("down", provider="down", upstream_status=503)


def prober(adapters: dict[str, Any], health: HealthBoard, **kw: Any) -> HealthProber:
    models = {name: f"{name}-model" for name in adapters}
    return HealthProber(adapters, models, health, HealthCheckConfig(), ManualClock(), **kw)


async def test_probe_results_reach_the_health_board() -> None:
    clock = ManualClock()
    up, down = ScriptedAdapter("up"), ScriptedAdapter("down", DOWN)
    health = HealthBoard(["up", "down"], clock)
    await prober({"up": up, "down": down}, health).probe_all()
    assert [(c.model, c.request.max_tokens) for c in up.calls] == [("up-model", 1)]  # 1 token
    assert health.status("down") == "unhealthy"
    assert health.status("up") == "healthy"
    last_probe: Any = health.report()["down"]["last_probe"]
    assert last_probe["ok"] is False


async def test_probe_round_is_won_by_one_process_per_interval() -> None:
    clock = ManualClock()
    store = MemoryLimitStore(clock)
    health = HealthBoard(["p"], clock)
    first = prober({"p": ScriptedAdapter("p")}, health, lock=store)
    second = prober({"p": ScriptedAdapter("p")}, health, lock=store)
    assert [await first._won_round(), await second._won_round()] == [True, False]
    clock.advance(HealthCheckConfig().interval_s)
    assert await second._won_round() is True
