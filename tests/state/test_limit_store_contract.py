"""The `LimitStore` contract: every test runs against memory (manual clock) and Redis (real time).

Expected times are computed from the `now` each backend reports, so they are exact for Redis
too, whose clock is the server's. Redis windows are short (0.2-0.4 s) so real sleeps stay brief.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stellara.state.base import Limit, PeriodLimit, WindowLimit
from stellara.state.periods import period_bounds
from tests.state.conftest import Harness

TIME_TOLERANCE = 1e-5  # Redis returns times as µs-resolution floats printed with %.17g

REQUESTS = WindowLimit("rate:requests", "requests", 60.0, 3)
TOKENS = WindowLimit("rate:tokens", "tokens", 60.0, 100)
COST = WindowLimit("rate:cost", "cost_usd", 60.0, 0.3)


def daily(limit: float, offset_s: int = 0, name: str = "quota:daily") -> PeriodLimit:
    return PeriodLimit(name, "tokens", "daily", limit, utc_offset_s=offset_s)


def session(session_id: str, *, limit: float = 2, idle_s: float = 0.3) -> PeriodLimit:
    return PeriodLimit("quota:session", "requests", "session", limit, session_id=session_id,
                       idle_s=idle_s)  # fmt: skip


async def used(harness: Harness, limits: list[Limit], scope: str = "alice") -> list[float]:
    return [state.used for state in await harness.backend.limits.read(scope, limits)]


async def test_admit_requests_up_to_limit_then_refuses(harness: Harness) -> None:
    store = harness.backend.limits
    for i in range(3):
        admission = await store.admit("alice", [REQUESTS], {"requests": 1}, f"r{i}")
        assert admission.admitted
        assert admission.states[0].used == i + 1
    refused = await store.admit("alice", [REQUESTS], {"requests": 1}, "r3")
    assert not refused.admitted
    assert refused.denied_by == "rate:requests"
    assert refused.states[0].used == 3
    assert refused.states[0].remaining == 0


async def test_admit_tokens_fill_budget_exactly(harness: Harness) -> None:
    store = harness.backend.limits
    assert (await store.admit("alice", [TOKENS], {"tokens": 60}, "a")).admitted
    assert not (await store.admit("alice", [TOKENS], {"tokens": 41}, "b")).admitted
    assert (await store.admit("alice", [TOKENS], {"tokens": 40}, "c")).admitted
    assert not (await store.admit("alice", [TOKENS], {"tokens": 1}, "d")).admitted
    assert await used(harness, [TOKENS]) == [100]


async def test_admit_float_cost_tolerates_rounding(harness: Harness) -> None:
    store = harness.backend.limits
    for i in range(3):  # 0.1 + 0.1 + 0.1 == 0.30000000000000004: within EPSILON of 0.3
        assert (await store.admit("alice", [COST], {"cost_usd": 0.1}, f"r{i}")).admitted
    refused = await store.admit("alice", [COST], {"cost_usd": 0.001}, "r3")
    assert not refused.admitted
    assert refused.states[0].used == pytest.approx(0.3)


async def test_admit_refusal_records_nothing_anywhere(harness: Harness) -> None:
    limits: list[Limit] = [REQUESTS, daily(1000), session("s1", limit=10, idle_s=60), TOKENS]
    store = harness.backend.limits
    refused = await store.admit("alice", limits, {"requests": 1, "tokens": 101}, "big")
    assert not refused.admitted
    assert refused.denied_by == "rate:tokens"
    assert await used(harness, limits) == [0, 0, 0, 0]
    admitted = await store.admit("alice", limits, {"requests": 1, "tokens": 100}, "fits")
    assert admitted.admitted
    assert [state.used for state in admitted.states] == [1, 100, 1, 100]


async def test_admit_denied_by_first_limit_without_room(harness: Harness) -> None:
    store = harness.backend.limits
    tight = WindowLimit("burst:requests", "requests", 60.0, 1)
    assert (
        await store.admit("alice", [tight, TOKENS], {"requests": 1, "tokens": 100}, "a")
    ).admitted
    refused = await store.admit("alice", [TOKENS, tight], {"requests": 1, "tokens": 1}, "b")
    assert refused.denied_by == "rate:tokens"


async def test_admit_absent_dimension_counts_zero(harness: Harness) -> None:
    store = harness.backend.limits
    assert (await store.admit("alice", [TOKENS], {"tokens": 100}, "full")).admitted
    admission = await store.admit("alice", [TOKENS, REQUESTS], {"requests": 1}, "no-tokens")
    assert admission.admitted
    assert [state.used for state in admission.states] == [100, 1]


async def test_admit_without_limits_is_admitted(harness: Harness) -> None:
    admission = await harness.backend.limits.admit("alice", [], {"requests": 1}, "r")
    assert admission.admitted
    assert admission.states == ()


async def test_window_entries_leave_after_window_s(harness: Harness) -> None:
    window = WindowLimit("rate:requests", "requests", 0.3, 2)
    store = harness.backend.limits
    first = await store.admit("alice", [window], {"requests": 1}, "a")
    assert (await store.admit("alice", [window], {"requests": 1}, "b")).admitted
    refused = await store.admit("alice", [window], {"requests": 1}, "c")
    assert not refused.admitted
    assert refused.states[0].reset_at == pytest.approx(first.now + 0.3, abs=TIME_TOLERANCE)
    await harness.advance(0.35)
    assert await used(harness, [window]) == [0]
    assert (await store.admit("alice", [window], {"requests": 1}, "d")).admitted


async def test_admit_retry_after_waits_for_oldest_entries(harness: Harness) -> None:
    window = WindowLimit("rate:tokens", "tokens", 0.4, 10)
    store = harness.backend.limits
    first = await store.admit("alice", [window], {"tokens": 4}, "a")
    await harness.advance(0.1)
    second = await store.admit("alice", [window], {"tokens": 4}, "b")
    await harness.advance(0.1)
    # 5 fits once the first entry (4) leaves; 10 only once both have; 11 never.
    for amount, room_at in ((5, first.now), (10, second.now)):
        refused = await store.admit("alice", [window], {"tokens": amount}, f"x{amount}")
        assert not refused.admitted
        expected = room_at + 0.4 - refused.now
        assert refused.retry_after_s == pytest.approx(expected, abs=TIME_TOLERANCE)
    too_big = await store.admit("alice", [window], {"tokens": 11}, "x11")
    assert too_big.retry_after_s == pytest.approx(0.4)


async def test_read_reports_without_recording(harness: Harness) -> None:
    store = harness.backend.limits
    before = await store.read("alice", [REQUESTS, TOKENS])
    assert [(s.used, s.remaining) for s in before] == [(0, 3), (0, 100)]
    admitted = await store.admit("alice", [REQUESTS, TOKENS], {"requests": 1, "tokens": 30}, "a")
    for _ in range(3):
        states = await store.read("alice", [REQUESTS, TOKENS])
        assert [(s.name, s.used, s.limit, s.remaining) for s in states] == [
            ("rate:requests", 1, 3, 2),
            ("rate:tokens", 30, 100, 70),
        ]
        assert states[0].reset_at == pytest.approx(admitted.now + 60, abs=TIME_TOLERANCE)


async def test_read_empty_window_resets_now(harness: Harness) -> None:
    window = WindowLimit("rate:requests", "requests", 0.2, 1)
    store = harness.backend.limits
    await store.admit("alice", [window], {"requests": 1}, "a")
    await harness.advance(0.25)
    probe = await store.admit("bob", [window], {}, "probe")  # only to learn the backend's now
    (state,) = await store.read("alice", [window])
    assert state.used == 0
    assert state.reset_at >= probe.now


async def test_settle_down_frees_room(harness: Harness) -> None:
    limits: list[Limit] = [TOKENS, daily(100)]
    store = harness.backend.limits
    assert (await store.admit("alice", limits, {"tokens": 80}, "a")).admitted
    await store.settle("alice", limits, "a", {"tokens": 30})
    assert await used(harness, limits) == [30, 30]
    assert (await store.admit("alice", limits, {"tokens": 70}, "b")).admitted


async def test_settle_up_consumes_room(harness: Harness) -> None:
    limits: list[Limit] = [TOKENS, COST, daily(100)]
    store = harness.backend.limits
    assert (await store.admit("alice", limits, {"tokens": 10, "cost_usd": 0.01}, "a")).admitted
    await store.settle("alice", limits, "a", {"tokens": 90, "cost_usd": 0.25})
    assert await used(harness, limits) == pytest.approx([90, 0.25, 90])
    refused = await store.admit("alice", limits, {"tokens": 20}, "b")
    assert refused.denied_by == "rate:tokens"


async def test_settle_unknown_reservation_does_nothing(harness: Harness) -> None:
    limits: list[Limit] = [TOKENS, daily(100), session("s1", limit=5, idle_s=60)]
    store = harness.backend.limits
    await store.admit("alice", limits, {"tokens": 10, "requests": 1}, "a")
    await store.settle("alice", limits, "nope", {"tokens": 99, "requests": 3})
    assert await used(harness, limits) == [10, 10, 1]


async def test_settle_after_entry_left_window_does_nothing(harness: Harness) -> None:
    window = WindowLimit("rate:tokens", "tokens", 0.2, 100)
    store = harness.backend.limits
    await store.admit("alice", [window], {"tokens": 5}, "a")
    await harness.advance(0.25)
    await store.settle("alice", [window], "a", {"tokens": 50})
    assert await used(harness, [window]) == [0]
    assert (await store.admit("alice", [window], {"tokens": 100}, "b")).admitted


@pytest.mark.parametrize("offset_s", [0, 19_800, -18_000, 50_400])
async def test_daily_period_ends_at_next_local_midnight(harness: Harness, offset_s: int) -> None:
    quota = daily(10, offset_s)
    store = harness.backend.limits
    admitted = await store.admit("alice", [quota], {"tokens": 10}, "a")
    _, ends_at = period_bounds("daily", admitted.now, offset_s)
    assert admitted.states[0].reset_at == ends_at
    local_end = datetime.fromtimestamp(ends_at + offset_s, UTC)
    assert (local_end.hour, local_end.minute, local_end.second) == (0, 0, 0)
    refused = await store.admit("alice", [quota], {"tokens": 1}, "b")
    assert refused.denied_by == "quota:daily"
    assert refused.retry_after_s == pytest.approx(ends_at - refused.now, abs=TIME_TOLERANCE)


@pytest.mark.parametrize("offset_s", [0, 19_800, -36_000])
async def test_monthly_period_ends_on_next_local_first(harness: Harness, offset_s: int) -> None:
    quota = PeriodLimit("quota:monthly", "cost_usd", "monthly", 1.0, utc_offset_s=offset_s)
    admitted = await harness.backend.limits.admit("alice", [quota], {"cost_usd": 0.5}, "a")
    _, ends_at = period_bounds("monthly", admitted.now, offset_s)
    assert admitted.states[0].reset_at == ends_at
    local_end = datetime.fromtimestamp(ends_at + offset_s, UTC)
    assert (local_end.day, local_end.hour, local_end.minute) == (1, 0, 0)
    assert admitted.states[0].used == 0.5


async def test_session_limits_each_session_apart(harness: Harness) -> None:
    store = harness.backend.limits
    one, two = session("s1", idle_s=60), session("s2", idle_s=60)
    for i in range(2):
        assert (await store.admit("alice", [one], {"requests": 1}, f"a{i}")).admitted
    assert (await store.admit("alice", [one], {"requests": 1}, "a2")).denied_by == "quota:session"
    assert (await store.admit("alice", [two], {"requests": 1}, "b0")).admitted
    assert await used(harness, [one, two]) == [2, 1]


async def test_session_expires_after_idle_s_without_requests(harness: Harness) -> None:
    store = harness.backend.limits
    quota = session("s1", idle_s=0.5)
    await store.admit("alice", [quota], {"requests": 1}, "a")
    await harness.advance(0.3)
    last = await store.admit("alice", [quota], {"requests": 1}, "b")  # activity extends it
    assert last.states[0].reset_at == pytest.approx(last.now + 0.5, abs=TIME_TOLERANCE)
    await harness.advance(0.3)  # 0.6 s since the first request, 0.3 s since the last
    refused = await store.admit("alice", [quota], {"requests": 1}, "c")
    assert refused.denied_by == "quota:session"
    expected = last.now + 0.5 - refused.now
    assert refused.retry_after_s == pytest.approx(expected, abs=TIME_TOLERANCE)
    await harness.advance(0.25)
    assert await used(harness, [quota]) == [0]
    assert (await store.admit("alice", [quota], {"requests": 1}, "d")).admitted


async def test_reset_forgets_every_limit_and_block(harness: Harness) -> None:
    limits: list[Limit] = [REQUESTS, TOKENS, daily(100), session("s1", idle_s=60)]
    store = harness.backend.limits
    await store.admit("alice", limits, {"requests": 1, "tokens": 50}, "a")
    await store.admit("alice", [session("s2", idle_s=60)], {"requests": 1}, "b")
    await store.block("alice", 60)
    await store.reset("alice")
    assert await used(harness, [*limits, session("s2", idle_s=60)]) == [0, 0, 0, 0, 0]
    assert (await store.admit("alice", limits, {"requests": 1}, "c")).admitted


async def test_reset_by_names_keeps_the_rest(harness: Harness) -> None:
    limits: list[Limit] = [REQUESTS, TOKENS, daily(100), session("s1", idle_s=60)]
    store = harness.backend.limits
    await store.admit("alice", limits, {"requests": 1, "tokens": 50}, "a")
    await store.admit("alice", [session("s2", idle_s=60)], {"requests": 1}, "b")
    await store.reset("alice", ["rate:tokens", "quota:session"])
    assert await used(harness, [*limits, session("s2", idle_s=60)]) == [1, 0, 50, 0, 0]
    await store.block("alice", 60)
    await store.reset("alice", ["rate:requests"])
    assert (await store.admit("alice", limits, {}, "c")).denied_by == "blocked"


async def test_block_refuses_until_it_ends(harness: Harness) -> None:
    store = harness.backend.limits
    await store.block("alice", 0.3)
    refused = await store.admit("alice", [REQUESTS], {"requests": 1}, "a")
    assert not refused.admitted
    assert refused.denied_by == "blocked"
    assert 0 < refused.retry_after_s <= 0.3
    assert refused.states[0].used == 0
    await store.block("alice", 0.01)  # a shorter block does not cut the longer one short
    await harness.advance(0.1)
    assert (await store.admit("alice", [REQUESTS], {"requests": 1}, "b")).denied_by == "blocked"
    await harness.advance(0.25)
    assert (await store.admit("alice", [REQUESTS], {"requests": 1}, "c")).admitted


async def test_scopes_are_isolated(harness: Harness) -> None:
    limits: list[Limit] = [REQUESTS, daily(10), session("s1", limit=5, idle_s=60)]
    store = harness.backend.limits
    assert (await store.admit("alice", limits, {"requests": 3, "tokens": 10}, "a")).admitted
    await store.block("alice", 60)
    assert (await store.admit("bob", limits, {"requests": 1, "tokens": 10}, "a")).admitted
    await store.reset("bob")
    assert await used(harness, limits, "alice") == [3, 10, 3]


async def test_scope_and_names_with_separators_stay_apart(harness: Harness) -> None:
    store = harness.backend.limits
    odd = WindowLimit("a:b}{", "requests", 60.0, 1)
    other = WindowLimit("a", "requests", 60.0, 1)
    assert (await store.admit("x:{y}", [odd], {"requests": 1}, "r")).admitted
    assert (await store.admit("x:{y}", [other], {"requests": 1}, "r")).admitted
    assert (await store.admit("x", [odd], {"requests": 1}, "r")).admitted
    await store.reset("x:{y}", ["a:b}{"])
    assert await used(harness, [odd, other], "x:{y}") == [0, 1]


# -- memory only: a settable clock crosses midnight and month ends, which Redis's TIME cannot


async def test_memory_daily_period_restarts_at_local_midnight(memory_harness: Harness) -> None:
    assert memory_harness.clock is not None
    memory_harness.clock.set_time(datetime(2026, 3, 10, 21, 59, tzinfo=UTC).timestamp())
    quota = daily(10, offset_s=7_200)  # 23:59 local
    store = memory_harness.backend.limits
    assert (await store.admit("alice", [quota], {"tokens": 10}, "a")).admitted
    refused = await store.admit("alice", [quota], {"tokens": 1}, "b")
    assert refused.retry_after_s == 60
    await memory_harness.advance(60)
    admitted = await store.admit("alice", [quota], {"tokens": 10}, "c")
    assert admitted.admitted
    assert admitted.states[0].reset_at == datetime(2026, 3, 11, 22, tzinfo=UTC).timestamp()


async def test_memory_monthly_period_restarts_on_local_first(memory_harness: Harness) -> None:
    assert memory_harness.clock is not None
    memory_harness.clock.set_time(datetime(2028, 2, 1, 4, 59, tzinfo=UTC).timestamp())
    quota = PeriodLimit("quota:monthly", "tokens", "monthly", 10, utc_offset_s=-18_000)
    store = memory_harness.backend.limits
    first = await store.admit("alice", [quota], {"tokens": 10}, "a")  # Jan 31, 23:59 local
    assert first.states[0].reset_at == datetime(2028, 2, 1, 5, tzinfo=UTC).timestamp()
    assert not (await store.admit("alice", [quota], {"tokens": 1}, "b")).admitted
    await memory_harness.advance(60)
    second = await store.admit("alice", [quota], {"tokens": 10}, "c")
    assert second.admitted  # a leap-year February ends on the 29th
    assert second.states[0].reset_at == datetime(2028, 3, 1, 5, tzinfo=UTC).timestamp()
