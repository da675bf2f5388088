"""`cost` with a `cost_floor`: the cheapest target that meets it, the others as fallbacks."""

from stellara.config.models import CostFloorConfig
from stellara.routing.feedback import FeedbackBoard
from stellara.routing.models import Target
from stellara.routing.stats import PerformanceSettings, RouterStats, target_key
from stellara.routing.strategies import Choice
from stellara.testing import ManualClock

from .test_strategies import A, B, C, FixedPrices, choose

# A is the cheapest, then C, then B.
PRICES = FixedPrices({A.model: 0.001, C.model: 0.004, B.model: 0.01})
ESTIMATE = "(10 prompt + 20 output tokens)"
LATENCY = CostFloorConfig(p95_ms=800)
QUALITY = CostFloorConfig(metric="thumbs_up", min_mean=0.6, min_samples=30)
SETTINGS = PerformanceSettings(stale_after_s=60.0, latency_window_s=600.0, latency_min_samples=20)


def answered(stats: RouterStats, target: Target, now: float, latency_s: float, n: int) -> None:
    for _ in range(n):
        stats.started(target)
        stats.finished(target, now, ok=True, total_s=latency_s, ttfb_s=latency_s)


def rated(board: FeedbackBoard, target: Target, share_up: float, n: int) -> None:
    board.load(target_key(target), "thumbs_up", n, share_up * n)


def cost(
    stats: RouterStats,
    clock: ManualClock,
    floor: CostFloorConfig = LATENCY,
    feedback: FeedbackBoard | None = None,
) -> Choice:
    return choose(
        "cost",
        stats,
        now=clock.monotonic(),
        price=PRICES,
        feedback=feedback,
        cost_floor=floor,
    )


def test_cost_floor_skips_the_cheap_target_that_is_too_slow():
    clock, stats = ManualClock(), RouterStats(SETTINGS)
    answered(stats, A, clock.monotonic(), 1.24, 20)
    choice = cost(stats, clock)
    assert choice.order == (C, B, A)  # A stays, last, as a fallback
    assert choice.reason == (
        f"cost: c/gemini-1.5-flash, cheapest estimate $0.004 {ESTIMATE}; "
        "below the floor: a/gpt-4o p95 1,240 ms > 800 ms"
    )


def test_cost_floor_judges_no_target_before_it_is_measured():
    clock, stats = ManualClock(), RouterStats(SETTINGS)
    answered(stats, A, clock.monotonic(), 1.24, 19)
    choice = cost(stats, clock)
    assert choice.order == (A, C, B)
    assert choice.reason == f"cost: a/gpt-4o, cheapest estimate $0.001 {ESTIMATE}"


def test_cost_floor_keeps_a_fast_enough_cheap_target():
    clock, stats = ManualClock(), RouterStats(SETTINGS)
    answered(stats, A, clock.monotonic(), 0.8, 20)  # at the floor: not above it
    assert cost(stats, clock).order == (A, C, B)


def test_cost_floor_on_feedback_skips_a_target_rated_below_it():
    clock, board = ManualClock(), FeedbackBoard()
    rated(board, A, 0.52, 130)
    rated(board, C, 0.9, 40)
    choice = cost(RouterStats(SETTINGS), clock, QUALITY, board)
    assert choice.order == (C, B, A)
    assert choice.reason.endswith(
        "; below the floor: a/gpt-4o thumbs_up mean 0.52 < 0.6 (130 values)"
    )


def test_cost_floor_on_feedback_waits_for_min_samples():
    clock, board = ManualClock(), FeedbackBoard()
    rated(board, A, 0.1, 29)
    assert cost(RouterStats(SETTINGS), clock, QUALITY, board).chosen is A


def test_cost_floor_with_both_parts_names_every_shortfall():
    clock, stats, board = ManualClock(), RouterStats(SETTINGS), FeedbackBoard()
    floor = CostFloorConfig(p95_ms=800, metric="thumbs_up", min_mean=0.6)
    answered(stats, A, clock.monotonic(), 2.0, 20)
    rated(board, A, 0.5, 30)
    rated(board, C, 0.5, 30)
    choice = cost(stats, clock, floor, board)
    assert choice.order == (B, A, C)
    assert choice.reason.endswith(
        "; below the floor: a/gpt-4o p95 2,000 ms > 800 ms and thumbs_up mean 0.5 < 0.6 "
        "(30 values), c/gemini-1.5-flash thumbs_up mean 0.5 < 0.6 (30 values)"
    )


def test_cost_floor_nobody_meets_keeps_the_price_order():
    clock, stats = ManualClock(), RouterStats(SETTINGS)
    for target, latency in ((A, 3.0), (B, 1.0), (C, 2.0)):
        answered(stats, target, clock.monotonic(), latency, 20)
    choice = cost(stats, clock)
    assert choice.order == (A, C, B)
    assert choice.reason == (
        f"cost: a/gpt-4o, no target meets the floor, cheapest estimate $0.001 {ESTIMATE}; "
        "below the floor: a/gpt-4o p95 3,000 ms > 800 ms, c/gemini-1.5-flash p95 2,000 ms > "
        "800 ms, b/claude-3-5-sonnet-latest p95 1,000 ms > 800 ms"
    )


def test_cost_floor_re_measures_a_slow_target_once_per_stale_period():
    clock, stats = ManualClock(), RouterStats(SETTINGS)
    answered(stats, A, clock.monotonic(), 1.24, 20)
    clock.advance(59.0)
    assert cost(stats, clock).chosen is C
    clock.advance(1.0)  # no sample of A for 60 s
    choice = cost(stats, clock)
    assert choice.order == (A, C, B)
    assert choice.reason == (
        "cost: a/gpt-4o, re-measuring a target below the latency floor (p95 1,240 ms > 800 ms)"
    )
    clock.advance(1.0)  # the re-try has not answered yet: one request per period
    assert cost(stats, clock).chosen is C
    clock.advance(59.0)
    assert cost(stats, clock).chosen is A


def test_cost_floor_does_not_re_measure_a_target_measured_as_a_fallback():
    clock, stats = ManualClock(), RouterStats(SETTINGS)
    answered(stats, A, clock.monotonic(), 1.24, 20)
    clock.advance(50.0)
    answered(stats, A, clock.monotonic(), 1.3, 1)  # C and B failed: A answered
    clock.advance(50.0)
    assert cost(stats, clock).chosen is C


def test_cost_floor_does_not_re_measure_a_target_also_rated_below_it():
    clock, stats, board = ManualClock(), RouterStats(SETTINGS), FeedbackBoard()
    floor = CostFloorConfig(p95_ms=800, metric="thumbs_up", min_mean=0.6)
    answered(stats, A, clock.monotonic(), 1.24, 20)
    rated(board, A, 0.2, 30)
    clock.advance(120.0)
    assert cost(stats, clock, floor, board).chosen is C


def test_cost_floor_lets_a_recovered_target_back_once_old_samples_leave():
    clock, stats = ManualClock(), RouterStats(SETTINGS)
    answered(stats, A, clock.monotonic(), 1.24, 20)
    for _ in range(10):  # one re-try a minute, each fast now
        clock.advance(60.0)
        assert cost(stats, clock).chosen is A
        answered(stats, A, clock.monotonic(), 0.3, 1)
        assert cost(stats, clock).chosen is C  # the slow samples still decide
    clock.advance(1.0)  # 601 s after the slow samples: gone, too few left to judge
    assert cost(stats, clock).chosen is A
    answered(stats, A, clock.monotonic(), 0.3, 10)
    choice = cost(stats, clock)
    assert choice.chosen is A
    assert "below the floor" not in choice.reason


def test_cost_floor_is_not_read_without_one():
    clock, stats = ManualClock(), RouterStats(SETTINGS)
    answered(stats, A, clock.monotonic(), 9.0, 20)
    choice = choose("cost", stats, now=clock.monotonic(), price=PRICES)
    assert choice.order == (A, C, B)
