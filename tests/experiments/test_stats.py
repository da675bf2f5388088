"""The report's intervals: known values, and simulated experiments read after every batch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stellara.experiments.stats import (
    VERDICT_MIN_COUNT,
    Sample,
    compare,
    mean_interval,
)

Z95 = 1.959964  # the fixed-horizon two-sided 95 % quantile: what peeking at a t-test uses
RATINGS = np.arange(1, 6)


def _sample(values: np.ndarray) -> Sample:
    return Sample(n=len(values), sum=float(values.sum()), sum_sq=float((values**2).sum()))


def _interval(sample: Sample, alpha: float = 0.05, *, boolean: bool = False) -> tuple[float, float]:
    interval = mean_interval(sample, alpha, boolean=boolean)
    assert interval is not None
    return interval


def _half(interval: tuple[float, float] | None) -> float:
    assert interval is not None
    return (interval[1] - interval[0]) / 2


class Looks:
    """Running sums of many simulated arms, read after every `batch` values.

    The sums at every look come from one cumulative sum per run, so thousands of runs of
    thousands of values cost milliseconds.
    """

    def __init__(self, values: np.ndarray, batch: int) -> None:
        runs, length = values.shape
        batches = values.reshape(runs, length // batch, batch)
        self.n = np.arange(1, length // batch + 1) * batch
        self.sum = batches.sum(axis=2).cumsum(axis=1)
        self.sum_sq = (batches**2).sum(axis=2).cumsum(axis=1)

    def at(self, run: int, look: int) -> Sample:
        return Sample(
            n=int(self.n[look]),
            sum=float(self.sum[run, look]),
            sum_sq=float(self.sum_sq[run, look]),
        )


def _verdicts(treatment: Looks, control: Looks, *, boolean: bool) -> list[list[str]]:
    """Each run's verdict at each look."""
    return [
        [
            compare(
                treatment.at(run, look),
                control.at(run, look),
                higher_is_better=True,
                boolean=boolean,
            ).verdict
            for look in range(len(treatment.n))
        ]
        for run in range(treatment.sum.shape[0])
    ]


def _ever_called(verdicts: list[str]) -> bool:
    return any(verdict != "no_difference_yet" for verdict in verdicts)


def test_sample_mean_and_variance_from_running_sums():
    sample = _sample(np.array([1.0, 2.0, 3.0, 4.0]))

    assert sample.mean == 2.5
    assert sample.variance == pytest.approx(5 / 3)


def test_sample_without_enough_values_has_no_mean_or_variance():
    assert Sample(n=0, sum=0, sum_sq=0).mean is None
    assert Sample(n=1, sum=3, sum_sq=9).variance is None
    # seven values of 3.3, summed in floating point: the formula gives -2.4e-15, clamped to 0
    assert Sample(n=7, sum=23.1, sum_sq=76.22999999999999).variance == 0.0


def test_sample_refuses_a_negative_count():
    with pytest.raises(ValueError, match="cannot hold -1 values"):
        Sample(n=-1, sum=0, sum_sq=0)


def test_mean_interval_known_value():
    # 1,000 values of mean 0.5 and variance 0.25; rho = 1000 / (-2 ln 0.05 + ln(1 - 2 ln 0.05))
    # = 126.0056, so the half-width is 0.5/1000 · sqrt(1126.0056 · ln(1126.0056 / (126.0056 ·
    # 0.05²))) = 0.047990, where a fixed-horizon interval would say 0.030990.
    sample = Sample(n=1000, sum=500.0, sum_sq=250.0 + 0.25 * 999)

    lo, hi = _interval(sample)

    assert (lo + hi) / 2 == pytest.approx(0.5)
    assert (hi - lo) / 2 == pytest.approx(0.047990, abs=1e-6)


def test_mean_interval_is_wider_than_a_fixed_horizon_one_and_shrinks_with_n():
    halves = []
    for n in (100, 300, 1_000, 3_000, 10_000, 100_000):
        sample = Sample(n=n, sum=2.0 * n, sum_sq=(4.0 + 1.0) * n)  # mean 2, variance ≈ 1
        half = _half(mean_interval(sample))
        fixed = Z95 * math.sqrt((sample.variance or 0) / n)
        assert fixed < half < 2.1 * fixed
        halves.append(half)

    assert halves == sorted(halves, reverse=True)
    assert len(set(halves)) == len(halves)


def test_mean_interval_needs_two_values():
    assert mean_interval(Sample(n=1, sum=1, sum_sq=1)) is None
    assert mean_interval(Sample(n=0, sum=0, sum_sq=0), boolean=True) is None


def test_mean_interval_of_a_rate_is_clipped_and_not_a_point_when_all_succeed():
    lo, hi = _interval(Sample(n=40, sum=40, sum_sq=40), boolean=True)

    assert hi == 1.0
    assert 0.0 < lo < 0.9


def test_mean_interval_widens_with_a_smaller_alpha_and_refuses_one_out_of_range():
    sample = Sample(n=500, sum=300, sum_sq=300)

    assert _half(mean_interval(sample, 0.01, boolean=True)) > _half(
        mean_interval(sample, 0.05, boolean=True)
    )
    with pytest.raises(ValueError, match="alpha"):
        mean_interval(sample, alpha=1.0)


def test_compare_reads_the_sign_through_higher_is_better():
    fast = Sample(n=400, sum=400 * 0.8, sum_sq=400 * (0.64 + 0.04))  # mean 0.8 s, sd ≈ 0.2
    slow = Sample(n=400, sum=400 * 1.0, sum_sq=400 * (1.0 + 0.04))

    rating = compare(fast, slow, higher_is_better=True)
    latency = compare(fast, slow, higher_is_better=False)

    assert rating.diff == pytest.approx(-0.2)
    assert rating.ci95 is not None
    assert rating.ci95[1] < 0
    assert rating.verdict == "worse"
    assert latency.verdict == "better"


def test_compare_of_equal_arms_is_the_one_sample_interval_times_root_two():
    arm = Sample(n=2_000, sum=1_200, sum_sq=1_200)

    comparison = compare(arm, arm, higher_is_better=True, boolean=True)

    assert comparison.diff == 0.0
    assert comparison.verdict == "no_difference_yet"
    half = _half(mean_interval(arm, boolean=True))
    assert _half(comparison.ci95) == pytest.approx(math.sqrt(2) * half)


def test_compare_waits_for_values_before_an_interval_and_for_enough_before_a_verdict():
    empty = Sample(n=0, sum=0, sum_sq=0)
    one = Sample(n=1, sum=5, sum_sq=25)
    few_fives = Sample(n=VERDICT_MIN_COUNT - 1, sum=5 * 29, sum_sq=25 * 29)
    few_fours = Sample(n=VERDICT_MIN_COUNT - 1, sum=4 * 29, sum_sq=16 * 29)
    fives = Sample(n=VERDICT_MIN_COUNT, sum=5 * 30, sum_sq=25 * 30)
    fours = Sample(n=VERDICT_MIN_COUNT, sum=4 * 30, sum_sq=16 * 30)

    assert compare(empty, one, higher_is_better=True).diff is None
    assert compare(one, one, higher_is_better=True).ci95 is None
    assert compare(few_fives, few_fours, higher_is_better=True).ci95 == (1.0, 1.0)
    assert compare(few_fives, few_fours, higher_is_better=True).verdict == "no_difference_yet"
    assert compare(fives, fours, higher_is_better=True).verdict == "better"


def test_aa_rates_read_after_every_batch_rarely_call_a_winner():
    # 400 A/A experiments at p = 0.6, 5,000 values per arm, read after every 100.
    rng = np.random.default_rng(19)
    draws = (rng.random((2, 400, 5_000)) < 0.6).astype(np.float64)
    treatment, control = Looks(draws[0], 100), Looks(draws[1], 100)

    verdicts = _verdicts(treatment, control, boolean=True)

    assert np.mean([_ever_called(run) for run in verdicts]) <= 0.05
    # The same looks at a fixed-horizon z-test: peeking inflates its 5 % several times over.
    p_t, p_c = treatment.sum / treatment.n, control.sum / control.n
    se = np.sqrt((p_t * (1 - p_t) + p_c * (1 - p_c)) / treatment.n)
    assert np.mean(np.any(np.abs(p_t - p_c) > Z95 * se, axis=1)) > 0.15


def test_rate_interval_covers_the_true_rate_at_every_look():
    rng = np.random.default_rng(7)
    looks = Looks((rng.random((400, 5_000)) < 0.6).astype(np.float64), 100)

    missed = [
        any(
            not lo <= 0.6 <= hi
            for lo, hi in (_interval(looks.at(run, look), boolean=True) for look in range(50))
        )
        for run in range(400)
    ]

    assert np.mean(missed) <= 0.05


def test_a_better_rate_is_found_and_never_called_worse():
    # 50 experiments, 0.66 against 0.60, 10,000 values per arm, read after every 100.
    rng = np.random.default_rng(66)
    treatment = Looks((rng.random((50, 10_000)) < 0.66).astype(np.float64), 100)
    control = Looks((rng.random((50, 10_000)) < 0.60).astype(np.float64), 100)

    verdicts = _verdicts(treatment, control, boolean=True)

    assert np.mean([run[-1] == "better" for run in verdicts]) >= 0.9
    assert not any("worse" in run for run in verdicts)


def test_ratings_aa_rarely_call_a_winner_and_a_real_lift_is_found():
    # Ratings 1-5: control mean 3.75; the lifted variant's mean 3.94.
    rng = np.random.default_rng(5)
    control_p = [0.05, 0.10, 0.20, 0.35, 0.30]
    lifted_p = [0.03, 0.07, 0.18, 0.37, 0.35]
    a = Looks(rng.choice(RATINGS, size=(200, 3_000), p=control_p).astype(np.float64), 100)
    b = Looks(rng.choice(RATINGS, size=(200, 3_000), p=control_p).astype(np.float64), 100)
    lifted = Looks(rng.choice(RATINGS, size=(200, 3_000), p=lifted_p).astype(np.float64), 100)

    aa = _verdicts(a, b, boolean=False)
    ab = _verdicts(lifted, b, boolean=False)

    assert np.mean([_ever_called(run) for run in aa]) <= 0.05
    assert np.mean([run[-1] == "better" for run in ab]) >= 0.9
    assert not any("worse" in run for run in ab)


def test_rating_interval_stays_inside_the_scale_it_is_drawn_from():
    rng = np.random.default_rng(3)
    ratings = rng.choice(RATINGS, size=2_000, p=[0.05, 0.10, 0.20, 0.35, 0.30]).astype(np.float64)

    lo, hi = _interval(_sample(ratings))

    assert 3.6 < lo < 3.75 < hi < 3.9
