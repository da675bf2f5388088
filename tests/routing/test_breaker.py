import pytest

from stellara.errors import (
    ClientDisconnectedError,
    ContentFilterError,
    ContextWindowExceededError,
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamProtocolError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from stellara.routing.breaker import (
    BreakerBoard,
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
)
from stellara.testing import ManualClock

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


Transitions = list[tuple[str, BreakerState, BreakerState]]


def breaker(**settings: object) -> tuple[CircuitBreaker, Transitions]:
    events: Transitions = []
    cb = CircuitBreaker(
        "p",
        BreakerSettings(**settings),  # type: ignore[arg-type]
        lambda bid, old, new: events.append((bid, old, new)),
    )
    return cb, events


def state(cb: CircuitBreaker) -> BreakerState:
    """The state, read through a call so mypy does not narrow it between transitions."""
    return cb.state


def open_breaker(cb: CircuitBreaker, now: float, failures: int) -> None:
    for _ in range(failures):
        cb.record(False, now)


def test_breaker_opens_after_failure_threshold():
    cb, events = breaker(failure_threshold=3)
    cb.record(False, 0.0)
    cb.record(True, 1.0)
    cb.record(False, 2.0)
    assert state(cb) == "closed"
    assert cb.allow(2.0)
    cb.record(False, 3.0)
    assert state(cb) == "open"
    assert cb.opened_at == 3.0
    assert events == [("p", "closed", "open")]
    assert not cb.allow(3.5)


def test_breaker_failures_leave_the_window():
    cb, _ = breaker(failure_threshold=3, window_s=60.0)
    cb.record(False, 0.0)
    cb.record(False, 1.0)
    # Two window lengths later both failures have expired, whatever the bucket resolution.
    cb.record(False, 130.0)
    cb.record(False, 131.0)
    assert state(cb) == "closed"
    cb.record(False, 132.0)
    assert state(cb) == "open"


def test_breaker_rate_opens_only_with_minimum_volume():
    cb, _ = breaker(failure_threshold=100, failure_rate=0.5, min_volume=10)
    for i in range(4):
        cb.record(False, float(i))
    cb.record(True, 5.0)
    assert state(cb) == "closed"  # 80 % failures, but only 5 calls
    for i in range(4):
        cb.record(True, 6.0 + i)
    assert state(cb) == "closed"  # 9 calls
    cb.record(False, 10.0)
    assert state(cb) == "open"  # 10 calls, 5 failed: 50 %


def test_breaker_rate_below_threshold_stays_closed():
    cb, _ = breaker(failure_threshold=100, failure_rate=0.5, min_volume=10)
    for i in range(20):
        cb.record(i % 3 != 0, float(i))  # a third fail
    assert state(cb) == "closed"


def test_breaker_half_opens_after_open_s_and_closes_on_probe_success():
    cb, events = breaker(failure_threshold=1, open_s=30.0)
    cb.record(False, 0.0)
    assert not cb.allow(29.9)
    assert state(cb) == "open"
    assert cb.allow(30.0)
    assert state(cb) == "half_open"
    assert not cb.allow(30.1)  # one probe permit only
    cb.record(True, 31.0, latency_s=0.2)
    assert state(cb) == "closed"
    assert cb.opened_at is None
    assert [(o, n) for _, o, n in events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_breaker_probe_failure_reopens():
    cb, events = breaker(failure_threshold=1, open_s=30.0)
    cb.record(False, 0.0)
    assert cb.allow(30.0)
    cb.record(False, 32.0)
    assert state(cb) == "open"
    assert cb.opened_at == 32.0
    assert not cb.allow(61.0)
    assert cb.allow(62.0)
    assert [(o, n) for _, o, n in events][-2:] == [("half_open", "open"), ("open", "half_open")]


def test_breaker_half_open_needs_every_probe_to_succeed():
    cb, _ = breaker(failure_threshold=1, open_s=10.0, half_open_requests=2)
    cb.record(False, 0.0)
    assert cb.allow(10.0)
    assert cb.allow(10.0)
    assert not cb.allow(10.0)
    cb.record(True, 11.0)
    assert state(cb) == "half_open"
    cb.record(True, 11.5)
    assert state(cb) == "closed"


def test_breaker_reclaims_unreported_probe_permit():
    cb, _ = breaker(failure_threshold=1, open_s=30.0)
    cb.record(False, 0.0)
    assert cb.allow(30.0)  # this probe's task dies and never reports
    assert not cb.allow(59.9)
    assert cb.snapshot(59.9)["probes_in_flight"] == 1
    assert cb.allow(60.0)  # the stale permit is taken back and handed out again
    cb.record(True, 60.5)
    assert state(cb) == "closed"


def test_breaker_ignores_outcomes_of_calls_sent_before_it_opened():
    cb, _ = breaker(failure_threshold=1, open_s=30.0)
    cb.record(False, 0.0)
    cb.record(True, 1.0)  # a call in flight when it opened
    assert state(cb) == "open"
    assert cb.opened_at == 0.0
    cb.advance(30.0)
    assert state(cb) == "half_open"
    cb.record(True, 30.5)  # no permit was handed out: a late answer, not a probe
    assert state(cb) == "half_open"


def test_breaker_release_returns_permit_without_verdict():
    cb, _ = breaker(failure_threshold=1, open_s=30.0)
    cb.record(False, 0.0)
    assert cb.allow(30.0)
    cb.release(30.1)
    assert state(cb) == "half_open"
    assert cb.allow(30.2)


def test_breaker_counts_slow_calls_as_failures():
    cb, _ = breaker(failure_threshold=2, slow_call_s=5.0)
    cb.record(True, 0.0, latency_s=4.9)
    cb.record(True, 1.0, latency_s=6.0)
    assert state(cb) == "closed"
    cb.record(True, 2.0, latency_s=7.0)
    assert state(cb) == "open"


def test_breaker_reset_closes_and_forgets_window():
    cb, events = breaker(failure_threshold=2)
    open_breaker(cb, 0.0, 2)
    cb.reset()
    assert state(cb) == "closed"
    assert events[-1] == ("p", "open", "closed")
    cb.record(False, 1.0)
    assert state(cb) == "closed"  # the earlier failures are gone
    count = len(events)
    cb.reset()
    assert len(events) == count  # no event without a change


def test_breaker_snapshot_open():
    cb, _ = breaker(failure_threshold=2, open_s=30.0)
    open_breaker(cb, 5.0, 2)
    snap = cb.snapshot(10.0)
    assert snap["state"] == "open"
    assert snap["failures_in_window"] == 2
    assert snap["calls_in_window"] == 2
    assert snap["opened_at"] == 5.0
    assert snap["next_half_open_at"] == 35.0


# ------------------------------------------------------------------------------- board


def board(
    scope: str = "provider", **settings: object
) -> tuple[BreakerBoard, ManualClock, Transitions]:
    clock = ManualClock(START)
    events: Transitions = []
    b = BreakerBoard(
        BreakerSettings(scope=scope, **settings),  # type: ignore[arg-type]
        clock,
        lambda bid, old, new: events.append((bid, old, new)),
    )
    return b, clock, events


def test_board_ids_follow_scope():
    provider_board, _, _ = board("provider")
    target_board, _, _ = board("target")
    assert provider_board.breaker_id("openai", "gpt-4o") == "openai"
    assert target_board.breaker_id("openai", "gpt-4o") == "openai/gpt-4o"
    assert provider_board.get("openai", "a") is provider_board.get("openai", "b")
    assert target_board.get("openai", "a") is not target_board.get("openai", "b")


def test_board_target_scope_isolates_models():
    b, _, events = board("target", failure_threshold=1)
    b.record("openai", "gpt-4o", UpstreamUnavailableError("x", provider="openai"))
    assert not b.allow("openai", "gpt-4o")
    assert b.allow("openai", "gpt-4o-mini")
    assert events == [("openai/gpt-4o", "closed", "open")]
    assert sorted(b.states_for("openai")) == ["closed", "open"]
    assert b.states_for("other") == []


def test_board_full_cycle_with_clock():
    b, clock, events = board(failure_threshold=2, open_s=30.0)
    timeout = UpstreamTimeoutError("slow", provider="p")
    b.record("p", "m", timeout, latency_s=60.0)
    b.record("p", "m", timeout, latency_s=60.0)
    assert b.is_open("p", "m")
    assert not b.allow("p", "m")
    clock.advance(30.0)
    assert not b.is_open("p", "m")  # half-open; is_open takes no permit
    assert b.allow("p", "m")
    assert not b.allow("p", "m")
    b.record("p", "m", None, latency_s=0.3)
    assert b.states() == {"p": "closed"}
    assert [n for _, _, n in events] == ["open", "half_open", "closed"]


def test_board_wait_s_is_the_time_until_a_call_may_go():
    b, clock, _ = board(failure_threshold=1, open_s=30.0)
    assert b.wait_s("p", "m") == 0.0  # no breaker yet: closed
    b.record("p", "m", UpstreamUnavailableError("down", provider="p"))
    clock.advance(12.5)
    assert b.wait_s("p", "m") == 17.5
    clock.advance(17.5)
    assert b.allow("p", "m")  # half-open; its only permit is taken
    assert not b.allow("p", "m")
    assert b.wait_s("p", "m") == 0.0  # a permit frees as soon as the probe ends


def test_board_client_fault_counts_as_success():
    b, _, _ = board(failure_threshold=1, open_s=30.0)
    b.record("p", "m", UpstreamBadRequestError("bad", provider="p"))
    assert b.states() == {"p": "closed"}
    b.record("p", "m", UpstreamUnavailableError("down", provider="p"))
    assert b.states() == {"p": "open"}


def test_board_non_upstream_error_releases_probe():
    b, clock, _ = board(failure_threshold=1, open_s=30.0)
    b.record("p", "m", UpstreamUnavailableError("down", provider="p"))
    clock.advance(30.0)
    assert b.allow("p", "m")
    b.record("p", "m", ClientDisconnectedError("gone"))
    assert b.states() == {"p": "half_open"}
    assert b.allow("p", "m")


@pytest.mark.parametrize(
    ("error", "provider_scope", "target_scope"),
    [
        (UpstreamTimeoutError("t", provider="p"), True, True),
        (UpstreamUnavailableError("u", provider="p", upstream_status=503), True, True),
        (UpstreamUnavailableError("reset", provider="p"), True, True),
        (UpstreamProtocolError("bad json", provider="p", upstream_status=200), True, True),
        (UpstreamRateLimitedError("429", provider="p", retry_after_s=3), True, True),
        (UpstreamAuthError("key", provider="p", upstream_status=401), True, True),
        (UpstreamNotFoundError("model", provider="p", upstream_status=404), False, True),
        (UpstreamBadRequestError("bad", provider="p", upstream_status=400), False, False),
        (ContextWindowExceededError("long", provider="p"), False, False),
        (ContentFilterError("blocked", provider="p"), False, False),
        (UpstreamError("odd", provider="p", upstream_status=500), True, True),
        (UpstreamError("odd", provider="p", upstream_status=418), False, False),
        (UpstreamError("odd", provider="p"), True, True),
        (ClientDisconnectedError("gone"), False, False),
        (ValueError("not ours"), False, False),
    ],
)
def test_board_is_failure_classification(error, provider_scope, target_scope):
    assert board("provider")[0].is_failure(error) is provider_scope
    assert board("target")[0].is_failure(error) is target_scope


def test_board_snapshot_converts_times_to_wall_clock():
    b, clock, _ = board(failure_threshold=1, open_s=30.0)
    b.get("quiet", "m")
    b.record("p", "m", UpstreamTimeoutError("t", provider="p"))
    clock.advance(10.0)
    snap = b.snapshot()
    assert list(snap) == ["p", "quiet"]
    entry = snap["p"]
    assert entry["state"] == "open"
    assert entry["failures_in_window"] == 1
    assert entry["opened_at_epoch_s"] == START
    assert entry["opened_at"] == "2026-01-01T00:00:00Z"
    assert entry["next_half_open_at_epoch_s"] == START + 30.0
    assert snap["quiet"]["opened_at"] is None
    assert snap["quiet"]["state"] == "closed"


def test_board_reset_by_id():
    b, _, events = board(failure_threshold=1)
    b.record("p", "m", UpstreamTimeoutError("t", provider="p"))
    assert b.reset("p")
    assert b.states() == {"p": "closed"}
    assert events[-1] == ("p", "open", "closed")
    assert not b.reset("nope")


def test_breaker_late_failure_counts_a_failure_but_not_another_call():
    cb, events = breaker(failure_threshold=2)
    cb.record(True, 0.0)  # a stream's start
    cb.record_late_failure(1.0)  # ... which then broke off
    assert cb.snapshot(1.0)["calls_in_window"] == 1
    assert cb.snapshot(1.0)["failures_in_window"] == 1
    cb.record(True, 2.0)
    cb.record_late_failure(3.0)
    assert state(cb) == "open"
    assert events == [("p", "closed", "open")]


def test_breaker_late_failure_keeps_failure_rates_exact():
    cb, _ = breaker(failure_threshold=100, failure_rate=1.0, min_volume=4)
    for i in range(4):
        cb.record(True, float(i))
        assert state(cb) == "closed"
        cb.record_late_failure(float(i) + 0.5)
    assert state(cb) == "open"  # every call failed: 4 of 4, not 4 of 8


def test_breaker_late_failure_while_open_is_ignored():
    cb, _ = breaker(failure_threshold=1, open_s=30.0)
    cb.record(False, 0.0)
    cb.record_late_failure(1.0)
    assert cb.snapshot(1.0)["failures_in_window"] == 1


def test_board_broken_stream_counts_only_provider_faults():
    b, _, _ = board(failure_threshold=1, open_s=30.0)
    b.record("p", "m", None)
    b.record_broken_stream("p", "m", UpstreamBadRequestError("bad", provider="p"))
    assert b.states() == {"p": "closed"}
    b.record_broken_stream("p", "m", UpstreamUnavailableError("cut", provider="p"))
    assert b.states() == {"p": "open"}
