"""`BreakerBoard.apply_remote`: another process's breaker changes, taken onto this board."""

from __future__ import annotations

import dataclasses

import pytest

from stellara.errors import UpstreamUnavailableError
from stellara.routing.breaker import BreakerBoard, BreakerSettings, BreakerState
from stellara.testing import ManualClock
from tests.routing.test_breaker import START

DOWN = UpstreamUnavailableError("down", provider="p")
SETTINGS = BreakerSettings(failure_threshold=2, window_s=60.0, open_s=30.0)

Seen = list[tuple[str, BreakerState, BreakerState, bool]]


def board(clock: ManualClock, **settings: object) -> tuple[BreakerBoard, Seen]:
    """A board whose transitions are recorded with whether they came from `apply_remote`."""
    seen: Seen = []
    merged = dataclasses.replace(SETTINGS, **settings)  # type: ignore[arg-type]

    def on_transition(bid: str, old: BreakerState, new: BreakerState) -> None:
        seen.append((bid, old, new, b.applying_remote))

    b = BreakerBoard(merged, clock, on_transition)
    return b, seen


def test_remote_open_creates_the_breaker_and_matches_the_senders_half_open_time() -> None:
    clock = ManualClock(START)
    b, seen = board(clock)
    clock.advance(5)  # the message arrives 5 s after the sender opened
    b.apply_remote("p", "open", START)
    assert b.states() == {"p": "open"}
    assert not b.allow("p", "m")
    snap = b.snapshot()["p"]
    assert snap["opened_at_epoch_s"] == START
    assert snap["next_half_open_at_epoch_s"] == START + 30.0
    clock.advance(24.9)  # 29.9 s after the sender opened
    assert b.states() == {"p": "open"}
    clock.advance(0.1)
    assert b.states() == {"p": "half_open"}
    assert seen == [("p", "closed", "open", True), ("p", "open", "half_open", False)]


def test_remote_open_translates_epoch_to_the_boards_own_monotonic_clock() -> None:
    clock = ManualClock(START, monotonic_s=1000.0)
    b, _ = board(clock)
    b.apply_remote("p", "open", START - 10)
    assert b.get("p", "m").opened_at == 990.0
    assert b.opened_at_epoch_s("p") == START - 10


def test_remote_open_from_a_clock_ahead_is_never_later_than_now() -> None:
    clock = ManualClock(START)
    b, _ = board(clock)
    b.apply_remote("p", "open", START + 100)
    assert b.get("p", "m").opened_at == clock.monotonic()
    b.apply_remote("q", "open", None)  # no time given: now
    assert b.get("q", "m").opened_at == clock.monotonic()


def test_remote_open_of_an_open_breaker_takes_the_new_time_without_a_transition() -> None:
    clock = ManualClock(START)
    b, seen = board(clock)
    b.apply_remote("p", "open", START)
    clock.advance(40)
    assert b.states() == {"p": "half_open"}
    b.allow("p", "m")  # a probe in flight
    b.apply_remote("p", "open", START + 39)  # the sender's probe failed
    assert b.states() == {"p": "open"}
    assert b.opened_at_epoch_s("p") == START + 39
    assert seen[-1] == ("p", "half_open", "open", True)
    b.apply_remote("p", "open", START + 39)
    assert len(seen) == 3


def test_remote_closed_closes_and_clears_the_window() -> None:
    clock = ManualClock(START)
    b, seen = board(clock)
    b.record("p", "m", DOWN)
    b.apply_remote("p", "closed", None)  # closed already: no transition, but window cleared
    assert seen == []
    b.record("p", "m", DOWN)
    assert b.states() == {"p": "closed"}  # one failure in the window, not two
    b.record("p", "m", DOWN)
    assert b.states() == {"p": "open"}
    b.apply_remote("p", "closed", None)
    assert b.states() == {"p": "closed"}
    assert b.snapshot()["p"]["failures_in_window"] == 0
    assert seen == [("p", "closed", "open", False), ("p", "open", "closed", True)]


def test_remote_closed_of_an_unknown_breaker_creates_nothing() -> None:
    b, seen = board(ManualClock(START))
    b.apply_remote("p", "closed", None)
    assert b.states() == {}
    assert seen == []


def test_remote_half_open_and_unknown_states_are_ignored() -> None:
    b, seen = board(ManualClock(START))
    b.apply_remote("p", "half_open", START)
    b.apply_remote("p", "melted", START)
    assert b.states() == {}
    b.apply_remote("p", "open", START)
    b.apply_remote("p", "half_open", START)
    assert b.states() == {"p": "open"}
    assert len(seen) == 1


def test_remote_changes_use_the_senders_id_whatever_the_scope() -> None:
    b, _ = board(ManualClock(START), scope="target")
    b.apply_remote("p/m", "open", START)
    assert b.is_open("p", "m")
    assert not b.is_open("p", "other")


def test_applying_remote_is_false_outside_apply_remote_even_after_a_failing_callback() -> None:
    clock = ManualClock(START)

    def boom(bid: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("boom")

    b = BreakerBoard(SETTINGS, clock, boom)
    assert not b.applying_remote
    with pytest.raises(RuntimeError):
        b.apply_remote("p", "open", START)
    assert not b.applying_remote


def test_opened_at_epoch_s_is_none_unless_open_or_half_open() -> None:
    clock = ManualClock(START)
    b, _ = board(clock)
    assert b.opened_at_epoch_s("p") is None
    b.record("p", "m", DOWN)
    assert b.opened_at_epoch_s("p") is None
    clock.advance(1)
    b.record("p", "m", DOWN)
    assert b.opened_at_epoch_s("p") == START + 1
    b.reset("p")
    assert b.opened_at_epoch_s("p") is None
