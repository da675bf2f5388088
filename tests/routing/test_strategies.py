import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest

from stellara.catalog import Catalog
from stellara.config.models import Strategy
from stellara.routing.models import Target
from stellara.routing.strategies import (
    STRATEGIES,
    Choice,
    PerformanceSettings,
    RouterStats,
    choose_order,
    expected_cost_fn,
    target_key,
)

from .test_models import FakeAdapter

A = Target(FakeAdapter("a"), "openai", "gpt-4o")
B = Target(FakeAdapter("b"), "anthropic", "claude-3-5-sonnet-latest")
C = Target(FakeAdapter("c"), "google", "gemini-1.5-flash")
TARGETS = (A, B, C)


def keys(targets: Iterable[Target]) -> tuple[str, ...]:
    return tuple(target_key(t) for t in targets)


def choose(
    strategy: Strategy, stats: RouterStats | None = None, *, seed: int = 1, **kw: Any
) -> Choice:
    return choose_order(
        strategy,
        "smart",
        kw.pop("targets", TARGETS),
        stats if stats is not None else RouterStats(),
        now=kw.pop("now", 0.0),
        rng=kw.pop("rng", random.Random(seed)),
        **kw,
    )


def measured(
    latencies: dict[Target, float], *, now: float = 0.0, settings: PerformanceSettings | None = None
) -> RouterStats:
    stats = RouterStats(settings or PerformanceSettings(epsilon=0.0))
    for target, latency in latencies.items():
        stats.started(target)
        stats.finished(target, now, ok=True, total_s=latency, ttfb_s=latency / 4)
    return stats


def test_target_key_is_provider_and_model():
    assert target_key(A) == "a/gpt-4o"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_orders_every_target_once(strategy):
    choice = choose(strategy, measured({A: 1.0, B: 2.0, C: 3.0}))
    assert sorted(keys(choice.order)) == sorted(keys(TARGETS))
    assert choice.chosen is choice.order[0]
    assert choice.strategy == strategy
    assert choice.reason


def test_priority_keeps_config_order_and_skips_unavailable():
    choice = choose("priority", is_available=lambda t: t is not A)
    assert choice.order == (B, C)
    assert choice.skipped == (A,)
    assert "skipped unavailable: a/gpt-4o" in choice.reason


def test_no_available_target_gives_empty_choice():
    choice = choose("performance", is_available=lambda t: False)
    assert choice.order == ()
    assert choice.chosen is None
    assert choice.skipped == TARGETS


def test_round_robin_rotates_per_public_model():
    stats = RouterStats()
    firsts = [choose("round_robin", stats).chosen for _ in range(4)]
    assert firsts == [A, B, C, A]
    assert choose("round_robin", stats).order == (B, C, A)
    other = choose_order("round_robin", "cheap", TARGETS, stats, now=0.0, rng=random.Random(0))
    assert other.chosen is A  # its own turn counter


def test_weighted_follows_weights_over_many_draws():
    targets = (replace(A, weight=3.0), replace(B, weight=1.0), replace(C, weight=0.0))
    rng = random.Random(7)
    draws = 8000
    firsts = Counter(
        target_key(choose("weighted", rng=rng, targets=targets).order[0]) for _ in range(draws)
    )
    assert firsts[target_key(C)] == 0  # weight 0: never first
    assert abs(firsts[target_key(A)] / draws - 0.75) < 0.02
    assert abs(firsts[target_key(B)] / draws - 0.25) < 0.02


def test_weighted_orders_the_rest_by_weight_too():
    targets = (replace(A, weight=1.0), replace(B, weight=9.0), replace(C, weight=0.0))
    rng = random.Random(3)
    orders = Counter(keys(choose("weighted", rng=rng, targets=targets).order) for _ in range(2000))
    assert set(orders) == {
        ("b/claude-3-5-sonnet-latest", "a/gpt-4o", "c/gemini-1.5-flash"),
        ("a/gpt-4o", "b/claude-3-5-sonnet-latest", "c/gemini-1.5-flash"),
    }
    assert abs(orders[keys((B, A, C))] / 2000 - 0.9) < 0.03


def test_least_busy_picks_fewest_in_flight():
    stats = RouterStats()
    stats.started(A)
    stats.started(A)
    stats.started(B)
    assert choose("least_busy", stats).order == (C, B, A)
    stats.started(C)
    stats.started(C)
    assert choose("least_busy", stats).chosen is B
    stats.finished(A, 1.0, ok=True, total_s=0.1)
    stats.finished(A, 1.0, ok=False)
    assert choose("least_busy", stats).chosen is A


def test_performance_picks_lowest_latency():
    stats = measured({A: 2.0, B: 0.5, C: 1.0})
    choice = choose("performance", stats)
    assert choice.order == (B, C, A)
    assert "lowest latency" in choice.reason


def test_performance_streams_rank_by_time_to_first_byte():
    stats = RouterStats(PerformanceSettings(epsilon=0.0))
    for target, ttfb, total in ((A, 0.1, 5.0), (B, 0.8, 1.0), (C, 0.4, 3.0)):
        stats.started(target)
        stats.finished(target, 0.0, ok=True, total_s=total, ttfb_s=ttfb)
    assert choose("performance", stats, stream=True).order == (A, C, B)
    assert choose("performance", stats, stream=False).order == (B, C, A)


def test_performance_penalises_errors():
    stats = measured({A: 0.5, B: 1.0})
    for _ in range(3):
        stats.started(A)
        stats.finished(A, 0.0, ok=False, total_s=30.0)
    assert choose("performance", stats, targets=(A, B)).chosen is B


def test_performance_explores_with_epsilon():
    stats = measured({A: 0.5, B: 1.0, C: 2.0}, settings=PerformanceSettings(epsilon=0.1))
    rng = random.Random(11)
    draws = 4000
    firsts = Counter(choose("performance", stats, rng=rng).chosen for _ in range(draws))
    explored = (firsts[B] + firsts[C]) / draws
    assert 0.07 < explored < 0.13
    assert firsts[B] > 0
    assert firsts[C] > 0


def test_performance_explores_unmeasured_target_once_per_period():
    stats = measured({A: 0.5})
    first = choose("performance", stats, targets=(A, B), now=0.0)
    assert first.chosen is B
    assert "unmeasured" in first.reason
    # A concurrent request does not pile onto the unknown target.
    assert choose("performance", stats, targets=(A, B), now=1.0).chosen is A


def test_performance_notices_recovered_target():
    settings = PerformanceSettings(epsilon=0.0, stale_after_s=60.0)
    stats = measured({A: 0.5, B: 2.0}, settings=settings)
    for _ in range(5):  # A goes down
        stats.started(A)
        stats.finished(A, 1.0, ok=False)
    assert choose("performance", stats, targets=(A, B), now=2.0).chosen is B
    stats.started(B)
    stats.finished(B, 2.0, ok=True, total_s=2.0)
    # A has not been measured for a while: one request re-measures it.
    stale = choose("performance", stats, targets=(A, B), now=61.0)
    assert stale.chosen is A
    assert "stale" in stale.reason
    assert choose("performance", stats, targets=(A, B), now=61.5).chosen is B
    stats.started(B)
    stats.finished(B, 61.6, ok=True, total_s=2.0)
    for _ in range(6):  # it answers fast again
        stats.started(A)
        stats.finished(A, 62.0, ok=True, total_s=0.4)
    assert choose("performance", stats, targets=(A, B), now=62.5).chosen is A


def test_cost_picks_cheapest_and_puts_unknown_last():
    prices = {A: 0.01, B: None, C: 0.001}
    choice = choose("cost", request_cost_fn=prices.__getitem__)
    assert choice.order == (C, A, B)
    assert "0.001000" in choice.reason


def test_cost_without_estimates_keeps_config_order():
    assert choose("cost").order == TARGETS
    assert choose("cost", request_cost_fn=lambda t: None).order == TARGETS


def test_expected_cost_fn_prices_by_catalog():
    catalog = Catalog.shipped()
    cost = expected_cost_fn(catalog, prompt_tokens=100_000, max_output_tokens=10_000)
    assert cost(A) == pytest.approx(0.25 + 0.1)
    assert cost(C) == pytest.approx(0.0075 + 0.003)
    unknown = Target(FakeAdapter("local"), "openai", "my-local-llama")
    assert cost(unknown) is None
    assert choose("cost", request_cost_fn=cost, targets=(unknown, A, B, C)).order == (
        C,
        A,
        B,
        unknown,
    )


def test_stats_snapshot_is_json_ready():
    stats = measured({A: 0.25})
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
