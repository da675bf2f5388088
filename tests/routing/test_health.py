import pytest

from stellara.errors import (
    ClientDisconnectedError,
    ContentFilterError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from stellara.routing.breaker import BreakerBoard, BreakerSettings
from stellara.routing.health import HealthBoard, HealthSettings, ProviderHealth
from stellara.testing import ManualClock

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DOWN = UpstreamUnavailableError("upstream said 503", provider="p", upstream_status=503)


def health_board(
    scope: str = "provider", **breaker: object
) -> tuple[HealthBoard, BreakerBoard, ManualClock]:
    clock = ManualClock(START)
    breakers = BreakerBoard(BreakerSettings(scope=scope, **breaker), clock)  # type: ignore[arg-type]
    return HealthBoard(["p", "q"], clock, breakers), breakers, clock


def event(report: dict[str, object], name: str) -> dict[str, object]:
    value = report[name]
    assert isinstance(value, dict)
    return value


def calls(board: HealthBoard, ok: int, failed: int, provider: str = "p") -> None:
    for _ in range(ok):
        board.record_call(provider, "m", 0.1, None)
    for _ in range(failed):
        board.record_call(provider, "m", 0.1, DOWN)


def test_health_unknown_provider_is_healthy():
    board, _, _ = health_board()
    assert board.status("p") == "healthy"
    report = board.report()
    assert list(report) == ["p", "q"]
    assert report["p"] == {
        "status": "healthy",
        "reason": "ok",
        "latency_ms": {"p50": None, "p95": None},
        "error_rate": 0.0,
        "calls_in_window": 0,
        "breaker": None,
        "last_error": None,
        "last_probe": None,
    }


@pytest.mark.parametrize(
    ("ok", "failed", "status"),
    [
        (10, 0, "healthy"),
        (8, 2, "healthy"),  # 20 %: not above the degraded line
        (7, 3, "degraded"),
        (5, 5, "unhealthy"),
        (0, 4, "healthy"),  # below min_volume: too few calls to judge
    ],
)
def test_health_status_from_error_rate(ok, failed, status):
    board, _, _ = health_board()
    calls(board, ok, failed)
    assert board.status("p") == status


def test_health_errors_leave_the_window():
    board, _, clock = health_board()
    calls(board, 0, 6)
    assert board.status("p") == "unhealthy"
    clock.advance(HealthSettings().window_s + 1)
    assert board.status("p") == "healthy"
    assert board.report()["p"]["calls_in_window"] == 0


def test_health_client_faults_and_disconnects_are_not_errors():
    board, _, _ = health_board()
    for _ in range(10):
        board.record_call("p", "m", 0.2, UpstreamBadRequestError("bad", provider="p"))
        board.record_call("p", "m", 0.2, ContentFilterError("blocked", provider="p"))
        board.record_call("p", "m", 0.2, ClientDisconnectedError("gone"))
    report = board.report()["p"]
    assert report["status"] == "healthy"
    assert report["calls_in_window"] == 20
    assert report["last_error"] is None


def test_health_records_last_error():
    board, _, clock = health_board()
    clock.advance(5.0)
    board.record_call("p", "gpt-x", 1.5, UpstreamNotFoundError("no model gpt-x", provider="p"))
    assert board.report()["p"]["last_error"] == {
        "ok": False,
        "message": "no model gpt-x",
        "code": "upstream_not_found",
        "model": "gpt-x",
        "latency_ms": 1500.0,
        "at": "2026-01-01T00:00:05Z",
        "at_epoch_s": START + 5.0,
    }


def test_health_latency_percentiles():
    health = ProviderHealth("p", HealthSettings())
    for i in range(1, 101):
        health.record_call(0.0, START, "m", i / 1000, None)
    health.record_call(0.0, START, "m", 9.0, UpstreamTimeoutError("t", provider="p"))
    assert health.latency_percentiles() == (0.050, 0.095)


def test_health_latency_buffer_is_bounded():
    health = ProviderHealth("p", HealthSettings(max_samples=10))
    for i in range(100):
        health.record_call(0.0, START, "m", float(i), None)
    assert health.latency_percentiles() == (94.0, 99.0)


def test_health_failed_probe_is_unhealthy_until_a_success():
    board, _, clock = health_board()
    board.record_probe("p", False, None, UpstreamTimeoutError("probe timed out", provider="p"))
    assert board.status("p") == "unhealthy"
    assert board.healthy_providers() == ["q"]
    report = board.report()["p"]
    assert report["reason"] == "last probe failed"
    assert event(report, "last_probe")["message"] == "probe timed out"
    assert event(report, "last_error")["message"] == "probe timed out"
    clock.advance(1.0)
    board.record_call("p", "m", 0.3, None)
    assert board.status("p") == "healthy"
    board.record_probe("p", False, 5.0, "connection refused")
    assert board.status("p") == "unhealthy"
    clock.advance(30.0)
    board.record_probe("p", True, 0.05)
    assert board.status("p") == "healthy"
    assert event(board.report()["p"], "last_probe")["latency_ms"] == 50.0


def test_health_open_breaker_is_unhealthy_half_open_degraded():
    board, breakers, clock = health_board(failure_threshold=1, open_s=30.0)
    breakers.record("p", "m", DOWN)
    assert board.status("p") == "unhealthy"
    assert board.report()["p"]["breaker"] == "open"
    assert not board.is_usable("p")
    clock.advance(30.0)
    assert board.status("p") == "degraded"
    assert board.report()["p"]["breaker"] == "half_open"
    assert board.healthy_providers() == ["p", "q"]


def test_health_target_scope_one_model_down_is_degraded():
    board, breakers, _ = health_board("target", failure_threshold=1)
    breakers.get("p", "fine")
    breakers.record("p", "broken", DOWN)
    assert board.status("p") == "degraded"
    breakers.record("p", "fine", DOWN)
    assert board.status("p") == "unhealthy"


def test_health_board_creates_unknown_providers_on_use():
    clock = ManualClock(START)
    board = HealthBoard([], clock)
    board.record_call("new", "m", 0.1, None)
    assert board.healthy_providers() == ["new"]
    assert board.report()["new"]["breaker"] is None


Change = tuple[str, str, str]


def wired_board(**breaker: object) -> tuple[HealthBoard, BreakerBoard, ManualClock, list[Change]]:
    """A board told of breaker changes as the gateway wires it, recording `on_change`."""
    clock = ManualClock(START)
    changes: list[Change] = []
    breakers = BreakerBoard(
        BreakerSettings(**breaker),  # type: ignore[arg-type]
        clock,
        lambda breaker_id, _old, _new: board.check(breaker_id),
    )
    board = HealthBoard(
        ["p"], clock, breakers, on_change=lambda p, old, new, _why: changes.append((p, old, new))
    )
    return board, breakers, clock, changes


def attempt(board: HealthBoard, breakers: BreakerBoard, ok: bool) -> None:
    """One call as the attempt loop makes it: past the breaker, then reported to both."""
    assert breakers.allow("p", "m")
    error = None if ok else DOWN
    breakers.record("p", "m", error)
    board.record_call("p", "m", 0.1, error)


def test_health_recovers_within_a_run_of_successes_after_the_breaker_closes():
    board, breakers, clock, changes = wired_board(failure_threshold=5, open_s=10.0)
    for _ in range(5):
        attempt(board, breakers, ok=False)
    assert board.report()["p"]["reason"] == "circuit breaker open"
    clock.advance(10.0)
    attempt(board, breakers, ok=True)  # the half-open trial closes the breaker
    assert breakers.states() == {"p": "closed"}
    assert board.status("p") == "unhealthy"  # 5 of 6 failed: one answer proves nothing yet
    for _ in range(HealthSettings().recovery_successes - 1):
        clock.advance(1.0)
        attempt(board, breakers, ok=True)
    report = board.report()["p"]
    assert (report["status"], report["error_rate"], report["calls_in_window"]) == ("healthy", 0, 5)
    assert changes == [("p", "healthy", "unhealthy"), ("p", "unhealthy", "healthy")]


def test_health_lucky_calls_among_failures_keep_a_provider_unhealthy():
    board, _, _, changes = wired_board(failure_threshold=1000)
    calls(board, 0, 10)
    for run in range(1, HealthSettings().recovery_successes):
        for _ in range(run):  # runs one short of a recovery, each ended by a failure
            calls(board, 1, 0)
            assert board.status("p") == "unhealthy"
        calls(board, 0, 1)
    assert changes == [("p", "healthy", "unhealthy")]


def test_health_probes_alone_recover_a_provider_behind_a_half_open_breaker():
    board, breakers, clock, changes = wired_board(failure_threshold=5, open_s=10.0)
    for _ in range(5):
        attempt(board, breakers, ok=False)
    board.record_probe("p", False, 0.1, DOWN)
    clock.advance(10.0)
    assert breakers.states() == {"p": "half_open"}
    for _ in range(HealthSettings().recovery_successes):
        assert board.status("p") == "unhealthy"
        clock.advance(1.0)
        board.record_probe("p", True, 0.1)
    assert board.report()["p"]["reason"] == "a circuit breaker is not closed"
    assert changes[-1] == ("p", "unhealthy", "degraded")


def test_health_runs_of_successes_keep_the_window_of_a_degraded_provider():
    board, _, _, _ = wired_board()
    for _ in range(3):
        calls(board, 7, 3)  # 30 % failures, in runs longer than a recovery run
    report = board.report()["p"]
    assert (report["status"], report["error_rate"], report["calls_in_window"]) == (
        "degraded",
        0.3,
        30,
    )


def test_health_a_read_publishes_a_change_time_alone_made():
    board, _, clock, changes = wired_board()
    calls(board, 0, 6)
    clock.advance(HealthSettings().window_s + 1)
    assert changes == [("p", "healthy", "unhealthy")]
    assert board.healthy_providers() == ["p"]
    assert changes == [("p", "healthy", "unhealthy"), ("p", "unhealthy", "healthy")]
