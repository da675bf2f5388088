"""Start-up and shutdown as a stack: reverse order by construction, unwinding on failure."""

from __future__ import annotations

import pytest

from stellara.assembly import Lifecycle, build_runtime
from stellara.assembly.config import check_config
from tests.conftest import gateway_config


def recording(lifecycle: Lifecycle, log: list[str], *names: str, failing: str = "") -> None:
    for name in names:

        async def start(name: str = name) -> None:
            if name == failing:
                raise RuntimeError(f"{name} cannot start")
            log.append(f"start {name}")

        async def stop(name: str = name) -> None:
            log.append(f"stop {name}")

        lifecycle.add(name, start=start, stop=stop)


async def test_parts_stop_in_reverse_start_order() -> None:
    lifecycle, log = Lifecycle(), list[str]()
    recording(lifecycle, log, "a", "b", "c")
    async with lifecycle.running():
        log.append("serving")
    assert log == ["start a", "start b", "start c", "serving", "stop c", "stop b", "stop a"]


async def test_a_failed_start_stops_what_started_before_it() -> None:
    lifecycle, log = Lifecycle(), list[str]()
    recording(lifecycle, log, "a", "b", "c", failing="c")
    with pytest.raises(RuntimeError, match="c cannot start"):
        async with lifecycle.running():
            log.append("serving")
    assert log == ["start a", "start b", "stop b", "stop a"]


async def test_a_failing_stop_is_logged_and_the_others_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lifecycle, log = Lifecycle(), list[str]()
    recording(lifecycle, log, "a")

    async def broken() -> None:
        raise OSError("disk gone")

    lifecycle.add("b", stop=broken)
    recording(lifecycle, log, "c")
    async with lifecycle.running():
        pass
    assert log == ["start a", "start c", "stop c", "stop a"]
    assert "stopping b failed" in caplog.text


async def test_the_runtime_starts_its_parts_in_dependency_order() -> None:
    """The database and the state backend start first and close last; the gateway, which
    drains settles that need both, stops first."""
    config = gateway_config(
        "http://127.0.0.1:9", cache={}, telemetry={"metrics": True}, state={"backend": "memory"}
    )
    runtime = build_runtime(check_config(config))
    names = [stage.name for stage in runtime.lifecycle.stages]
    assert names[:2] == ["database", "state backend"]
    assert names[-2:] == ["stored responses", "gateway"]
    assert names.index("schema migration") < names.index("usage writer")
    assert names.index("usage writer") < names.index("event sinks")
