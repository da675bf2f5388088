from stellara.routing.models import Target
from stellara.routing.stats import PerformanceSettings, RouterStats, target_key
from stellara.testing import ManualClock

from .test_models import FakeAdapter

A = Target(FakeAdapter("a"), "openai", "gpt-4o")


def test_target_key_is_provider_and_model():
    assert target_key(A) == "a/gpt-4o"


def test_stats_snapshot_is_json_ready():
    stats = RouterStats()
    stats.started(A)
    stats.finished(A, 0.0, ok=True, total_s=0.25, ttfb_s=0.25 / 4)
    snap = stats.snapshot()
    assert snap == {
        "a/gpt-4o": {
            "ewma_ttfb_ms": 62.5,
            "ewma_total_ms": 250.0,
            "ewma_error": 0.0,
            "in_flight": 0,
            "samples": 1,
        }
    }


def answered(stats: RouterStats, target: Target, now: float, *latencies_s: float) -> None:
    for latency in latencies_s:
        stats.started(target)
        stats.finished(target, now, ok=True, total_s=latency, ttfb_s=latency)


def test_p95_waits_for_enough_samples():
    stats = RouterStats(PerformanceSettings(latency_min_samples=20))
    answered(stats, A, 0.0, *([0.1] * 19))
    assert stats.p95_s("a/gpt-4o", 0.0) is None
    answered(stats, A, 0.0, 0.1)
    assert stats.p95_s("a/gpt-4o", 0.0) == 0.1


def test_p95_is_a_latency_seen_one_outlier_in_twenty_is_not():
    stats = RouterStats(PerformanceSettings(latency_min_samples=20))
    answered(stats, A, 0.0, *(0.01 * i for i in range(1, 20)), 9.0)
    assert stats.p95_s("a/gpt-4o", 0.0) == 0.19  # the second slowest of 20
    answered(stats, A, 0.0, 8.0)  # a new sample replaces the kept value
    assert stats.p95_s("a/gpt-4o", 0.0) == 8.0


def test_p95_reads_only_successful_calls():
    stats = RouterStats(PerformanceSettings(latency_min_samples=2))
    answered(stats, A, 0.0, 0.2, 0.2)
    for _ in range(5):
        stats.started(A)
        stats.finished(A, 0.0, ok=False, total_s=30.0)
    assert stats.p95_s("a/gpt-4o", 0.0) == 0.2


def test_p95_keeps_the_last_window_of_calls():
    stats = RouterStats(PerformanceSettings(latency_window=100, latency_min_samples=20))
    answered(stats, A, 0.0, *([5.0] * 100))
    answered(stats, A, 1.0, *([0.3] * 94))
    assert stats.p95_s("a/gpt-4o", 1.0) == 5.0  # 6 slow calls of the last 100
    answered(stats, A, 1.0, 0.3)
    assert stats.p95_s("a/gpt-4o", 1.0) == 0.3  # 5 of 100: the rest are under the p95


def test_p95_forgets_calls_older_than_the_window():
    clock = ManualClock()
    settings = PerformanceSettings(latency_window_s=600.0, latency_min_samples=3)
    stats = RouterStats(settings)
    answered(stats, A, clock.monotonic(), 2.0, 2.0)
    clock.advance(300.0)
    answered(stats, A, clock.monotonic(), 0.1, 0.1)
    assert stats.p95_s("a/gpt-4o", clock.monotonic()) == 2.0
    clock.advance(300.5)  # the first two are 600.5 s old
    assert stats.p95_s("a/gpt-4o", clock.monotonic()) is None  # two left: too few
    answered(stats, A, clock.monotonic(), 0.2)
    assert stats.p95_s("a/gpt-4o", clock.monotonic()) == 0.2
