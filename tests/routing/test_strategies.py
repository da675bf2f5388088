import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import get_args

import pytest

from stellara.catalog import Catalog
from stellara.config.models import CostFloorConfig, Strategy
from stellara.limits import PriceKey, RequestEstimate
from stellara.routing.feedback import FeedbackBoard
from stellara.routing.models import Target
from stellara.routing.stats import PerformanceSettings, RouterStats, target_key
from stellara.routing.strategies import STRATEGIES, Choice, RankInputs, choose_order

from .test_models import FakeAdapter

A = Target(FakeAdapter("a"), "openai", "gpt-4o")
B = Target(FakeAdapter("b"), "anthropic", "claude-3-5-sonnet-latest")
C = Target(FakeAdapter("c"), "google", "gemini-1.5-flash")
TARGETS = (A, B, C)


@dataclass
class FixedPrices:
    """A `RequestPrice` with a price per model name (absent: unknown)."""

    usd: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 10
    output_tokens: int = 20

    def usd_on(self, provider_type: str, model: str) -> float | None:
        return self.usd.get(model)


def keys(targets: Iterable[Target]) -> tuple[str, ...]:
    return tuple(target_key(t) for t in targets)


def choose(
    strategy: Strategy,
    stats: RouterStats | None = None,
    *,
    seed: int = 1,
    rng: random.Random | None = None,
    targets: tuple[Target, ...] = TARGETS,
    now: float = 0.0,
    price: FixedPrices | RequestEstimate | None = None,
    stream: bool = False,
    is_available: Callable[[Target], bool] | None = None,
    public_model: str = "smart",
    feedback: FeedbackBoard | None = None,
    cost_floor: CostFloorConfig | None = None,
) -> Choice:
    inputs = RankInputs(
        public_model,
        stats if stats is not None else RouterStats(),
        price if price is not None else FixedPrices(),
        now,
        rng or random.Random(seed),
        stream,
        feedback if feedback is not None else FeedbackBoard(),
        cost_floor,
    )
    return choose_order(STRATEGIES[strategy], targets, inputs, is_available=is_available)


def measured(
    latencies: dict[Target, float], *, now: float = 0.0, settings: PerformanceSettings | None = None
) -> RouterStats:
    stats = RouterStats(settings or PerformanceSettings(epsilon=0.0))
    for target, latency in latencies.items():
        stats.started(target)
        stats.finished(target, now, ok=True, total_s=latency, ttfb_s=latency / 4)
    return stats


def test_registry_has_one_strategy_per_config_name():
    assert sorted(STRATEGIES) == sorted(get_args(Strategy))
    for name, strategy in STRATEGIES.items():
        assert strategy.name == name


@pytest.mark.parametrize("strategy", get_args(Strategy))
def test_every_strategy_orders_every_target_once(strategy):
    choice = choose(strategy, measured({A: 1.0, B: 2.0, C: 3.0}))
    assert sorted(keys(choice.order)) == sorted(keys(TARGETS))
    assert choice.chosen is choice.order[0]
    assert choice.strategy == strategy
    assert choice.reason.startswith(f"{strategy}: {target_key(choice.order[0])}, ")


def test_single_target_needs_no_ranking():
    choice = choose("round_robin", targets=(A,))
    assert choice.order == (A,)
    assert choice.reason == "round_robin: a/gpt-4o, only target"


def test_priority_keeps_config_order_and_skips_unavailable():
    choice = choose("priority", is_available=lambda t: t is not A)
    assert choice.order == (B, C)
    assert choice.skipped == (A,)
    assert choice.reason == (
        "priority: b/claude-3-5-sonnet-latest, first available in config order; "
        "skipped unavailable: a/gpt-4o"
    )


def test_no_available_target_gives_empty_choice():
    choice = choose("performance", is_available=lambda t: False)
    assert choice.order == ()
    assert choice.chosen is None
    assert choice.skipped == TARGETS


def test_round_robin_rotates_per_public_model():
    stats = RouterStats()
    firsts = [choose("round_robin", stats).chosen for _ in range(4)]
    assert firsts == [A, B, C, A]
    choice = choose("round_robin", stats)
    assert choice.order == (B, C, A)
    assert choice.reason == "round_robin: b/claude-3-5-sonnet-latest, turn 2 of 3"
    other = choose("round_robin", stats, public_model="cheap")
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
    assert choose("weighted", targets=targets).reason.endswith(" of 4)")


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
    choice = choose("least_busy", stats)
    assert choice.order == (C, B, A)
    assert choice.reason == "least_busy: c/gemini-1.5-flash, fewest in flight (0)"
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
    assert choice.reason.endswith(", lowest latency score 500 ms")


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
    prices = FixedPrices({A.model: 0.01, C.model: 0.001})
    choice = choose("cost", price=prices)
    assert choice.order == (C, A, B)
    assert choice.reason == (
        "cost: c/gemini-1.5-flash, cheapest estimate $0.001 (10 prompt + 20 output tokens); "
        "no price for b/claude-3-5-sonnet-latest, ranked last"
    )


def test_cost_without_any_price_keeps_config_order():
    choice = choose("cost", price=FixedPrices())
    assert choice.order == TARGETS
    assert choice.reason.endswith("no target has a known price, config order")


def test_cost_prices_the_request_estimate_by_catalog():
    estimate = RequestEstimate(
        lambda model: 100_000, 10_000, PriceKey("openai", "gpt-4o"), Catalog.shipped()
    )
    assert estimate.usd_on(A.provider_type, A.model) == pytest.approx(0.25 + 0.1)
    assert estimate.usd_on(C.provider_type, C.model) == pytest.approx(0.0075 + 0.003)
    unknown = Target(FakeAdapter("local"), "openai", "my-local-llama")
    choice = choose("cost", price=estimate, targets=(unknown, A, B, C))
    assert choice.order == (C, A, B, unknown)
    assert "$0.0105 (100000 prompt + 10000 output tokens)" in choice.reason
