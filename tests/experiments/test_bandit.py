"""Adaptive allocation: posterior shares, the floor, determinism, and simulated experiments."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from stellara.experiments.bandit import allocate
from stellara.experiments.stats import Sample

FLOOR = 0.05


def _rate(n: int, successes: int) -> Sample:
    return Sample(n=n, sum=successes, sum_sq=successes)


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@dataclass(frozen=True)
class Variant:
    """A simulated variant: its true feedback rate and what one request costs."""

    rate: float
    cost_usd: float = 0.0


def _simulate(
    variants: dict[str, Variant], *, cost_weight: float, requests: int = 20_000, period: int = 200
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Run an adaptive experiment; return every period's shares and the last period's traffic.

    Shares are recomputed every `period` requests from the sums gathered so far; each request
    goes to a variant drawn by the shares, and its reward is the 0/1 feedback minus
    `cost_weight · cost_usd`, as the gateway would compute it.
    """
    rng = np.random.default_rng(2024)
    names = sorted(variants)
    sums = {name: np.zeros(3) for name in names}  # n, Σ reward, Σ reward²
    history: list[dict[str, float]] = []
    traffic: dict[str, float] = {}
    for turn in range(requests // period):
        arms = {name: Sample(n=int(s[0]), sum=s[1], sum_sq=s[2]) for name, s in sums.items()}
        shares = allocate(arms, boolean=cost_weight == 0, min_share=FLOOR, seed=turn)
        history.append(shares)
        chosen = rng.choice(len(names), size=period, p=[shares[name] for name in names])
        for index, name in enumerate(names):
            count = int((chosen == index).sum())
            feedback = (rng.random(count) < variants[name].rate).astype(np.float64)
            reward = feedback - cost_weight * variants[name].cost_usd
            sums[name] += (count, reward.sum(), (reward**2).sum())
            traffic[name] = count / period
    return history, traffic


def test_allocate_gives_equal_shares_before_any_reward():
    empty = Sample(n=0, sum=0, sum_sq=0)

    assert allocate({"a": empty, "b": empty}, boolean=True, min_share=FLOOR, seed=1) == {
        "a": 0.5,
        "b": 0.5,
    }
    one = {"a": Sample(n=1, sum=0.7, sum_sq=0.49), "b": empty, "c": empty}
    assert set(allocate(one, boolean=False, min_share=0.0, seed=1).values()) == {1 / 3}


def test_allocate_gives_equal_shares_when_the_floors_take_everything():
    arms = {"a": _rate(1_000, 900), "b": _rate(1_000, 100), "c": _rate(1_000, 500)}

    assert set(allocate(arms, boolean=True, min_share=0.34, seed=1).values()) == {1 / 3}


def test_allocate_rates_by_the_probability_of_being_best():
    # Beta(31, 21) against Beta(21, 31): P(a > b) ≈ Φ(0.192 / 0.0953) ≈ 0.978
    shares = allocate({"a": _rate(50, 30), "b": _rate(50, 20)}, boolean=True, min_share=0, seed=4)

    assert shares["a"] == pytest.approx(0.978, abs=0.02)
    assert shares["a"] + shares["b"] == pytest.approx(1.0)


def test_allocate_numeric_rewards_by_a_normal_posterior():
    # Two arms of 100 rewards with variance 1 and means 0 and 0.2: P(b > a) ≈ Φ(0.2 / √0.02).
    a = Sample(n=100, sum=0.0, sum_sq=99.0)
    b = Sample(n=100, sum=20.0, sum_sq=99.0 + 4.0)

    shares = allocate({"a": a, "b": b}, boolean=False, min_share=0, seed=9)

    assert shares["b"] == pytest.approx(_normal_cdf(0.2 / math.sqrt(0.02)), abs=0.03)


def test_allocate_splits_ties_between_rewards_that_never_varied():
    same = Sample(n=50, sum=50.0, sum_sq=50.0)

    shares = allocate({"a": same, "b": same, "c": same}, boolean=False, min_share=0, seed=3)

    assert shares == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}


def test_allocate_pins_losing_arms_to_the_floor_and_gives_the_rest_to_the_winner():
    arms = {"a": _rate(5_000, 4_500), "b": _rate(5_000, 500), "c": _rate(5_000, 400)}

    shares = allocate(arms, boolean=True, min_share=FLOOR, seed=2)

    assert shares == pytest.approx({"a": 0.9, "b": FLOOR, "c": FLOOR})


def test_allocate_rescales_the_arms_above_the_floor():
    # Two arms tied near 1/2 and one hopeless: the floor comes out of the leaders evenly.
    arms = {"a": _rate(1_000, 600), "b": _rate(1_000, 600), "c": _rate(1_000, 100)}

    shares = allocate(arms, boolean=True, min_share=0.2, seed=6)

    assert shares["c"] == 0.2
    assert shares["a"] + shares["b"] == pytest.approx(0.8)
    assert shares["a"] == pytest.approx(0.4, abs=0.03)


def test_allocate_is_deterministic_whatever_the_order_of_the_arms():
    arms = {"a": _rate(300, 180), "b": _rate(280, 175), "c": _rate(310, 190)}
    reordered = {name: arms[name] for name in ("c", "a", "b")}

    first = allocate(arms, boolean=True, min_share=FLOOR, seed=77)

    assert allocate(reordered, boolean=True, min_share=FLOOR, seed=77) == first
    other_seed = allocate(arms, boolean=True, min_share=FLOOR, seed=78)
    assert other_seed != first
    assert other_seed == pytest.approx(first, abs=0.05)  # only Monte-Carlo noise differs


@pytest.mark.parametrize(
    ("arms", "floor", "draws", "message"),
    [
        ({}, FLOOR, 2000, "at least one arm"),
        ({"a": Sample(n=10, sum=5, sum_sq=5)}, -0.1, 2000, "min_share"),
        ({"a": Sample(n=10, sum=5, sum_sq=5)}, FLOOR, 0, "draws"),
        (
            {"a": Sample(n=10, sum=12, sum_sq=20), "b": Sample(n=1, sum=1, sum_sq=1)},
            0,
            10,
            "0 or 1",
        ),
    ],
)
def test_allocate_refuses_what_it_cannot_allocate(arms, floor, draws, message):
    with pytest.raises(ValueError, match=message):
        allocate(arms, boolean=True, min_share=floor, seed=1, draws=draws)


def test_adaptive_experiment_sends_most_traffic_to_the_better_rate_and_keeps_the_floor():
    variants = {"control": Variant(rate=0.60), "candidate": Variant(rate=0.66)}

    history, last = _simulate(variants, cost_weight=0.0)

    assert last["candidate"] >= 0.7
    assert history[-1]["candidate"] >= 0.9
    assert min(shares["control"] for shares in history) >= FLOOR - 1e-12
    assert last["control"] > 0


def test_adaptive_experiment_prefers_a_cheaper_variant_when_cost_weighs_enough():
    # Rewards 0.66 - 5 · 0.02 = 0.56 against 0.60 - 5 · 0.001 = 0.595.
    variants = {
        "premium": Variant(rate=0.66, cost_usd=0.02),
        "budget": Variant(rate=0.60, cost_usd=0.001),
    }

    _, quality_only = _simulate(variants, cost_weight=0.0)
    _, cost_aware = _simulate(variants, cost_weight=5.0)

    assert quality_only["premium"] >= 0.7
    assert cost_aware["budget"] >= 0.7
