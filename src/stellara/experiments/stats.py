"""Always-valid intervals for the experiment report: one variant's mean, and a difference.

People read the report again and again while data arrives and stop when it looks decided. A
fixed-horizon interval (mean ± 1.96·SE) read that way says "better" in an A/A test far more
often than 5 % of the time, because every look is another chance for noise to cross the line.
The intervals here are confidence *sequences*: with probability 1 - alpha they hold at every
sample size at once, so any number of looks, and stopping at any of them, keeps the error rate.

The boundary is the two-sided normal mixture (Robbins; Howard, Ramdas, McAuliffe & Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021; the same
mixture as Johari, Koomen, Pekelis & Walsh's mSPRT, "Always valid inference", Oper. Res. 2022).
For a sum `S` of `n` standardised observations, mixing the exponential martingale over an effect
drawn from N(0, 1/rho) gives `sqrt(rho / (n + rho)) · exp(S² / (2(n + rho)))`, and Ville's
inequality bounds the chance that it ever exceeds `1/alpha`; hence, for every n at once,

    |mean - mu| ≤ sd/n · sqrt((n + rho) · log((n + rho) / (rho · alpha²)))

The standard deviation `sd` is estimated from the data (the plug-in of Waudby-Smith, Arbour,
Sinha, Kennedy & Ramdas, "Time-uniform central limit theory and asymptotic confidence
sequences", Ann. Statist. 2024), so the guarantee is asymptotic: it assumes independent
observations with a finite variance, and is not to be trusted on a handful of them (see
`VERDICT_MIN_COUNT`).

The mixing parameter `rho`, counted in observations, sets where the sequence is tightest. It is
tuned to `TIGHTEST_AT` = 1,000 observations with Howard et al.'s closed form
`rho = n* / (-2 log alpha + log(1 - 2 log alpha))`: feedback arrives on a fraction of requests,
so an experiment's metrics usually hold hundreds to thousands of values. The interval is then
about 1.55 times the fixed-horizon width, twice at 100 observations and 1.65 times at 10,000:
the price of reading it at any time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

TIGHTEST_AT = 1_000
"""Observations at which the mixture boundary is tightest (the choice of `rho`)."""

VERDICT_MIN_COUNT = 30
"""Observations each variant needs before a comparison gives a verdict.

The asymptotic guarantee rests on the estimated variance; on a few observations it can be zero
(a metric that has not varied yet) or far off, and a zero-width interval would call a winner.
The interval is still reported below this count; only the verdict waits.
"""

Verdict = Literal["better", "worse", "no_difference_yet"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One variant's values of one metric, as running sums (what one SQL aggregate returns).

    Attributes:
        n: how many values.
        sum: their sum.
        sum_sq: the sum of their squares.
    """

    n: int
    sum: float
    sum_sq: float

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"a sample cannot hold {self.n} values")

    @property
    def mean(self) -> float | None:
        """The mean; `None` with no values (a JSON null, where NaN would not serialise)."""
        return self.sum / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """The unbiased sample variance; `None` below two values.

        From running sums it is `(Σx² - (Σx)²/n) / (n - 1)`, which rounding can push a hair
        below zero when the values are all equal: it is clamped at 0.
        """
        if self.n < 2:
            return None
        return max(0.0, (self.sum_sq - self.sum * self.sum / self.n) / (self.n - 1))


@dataclass(frozen=True, slots=True)
class Comparison:
    """A treatment against the control on one metric.

    Attributes:
        diff: treatment mean - control mean; `None` while either variant has no values.
        ci95: the always-valid (1 - alpha) interval of `diff` (95 % at the default alpha);
            `None` while either variant has fewer than two values.
        verdict: `better` or `worse` once the interval excludes 0 (read through whether higher
            is better) and each variant has `VERDICT_MIN_COUNT` values; else `no_difference_yet`.
    """

    diff: float | None
    ci95: tuple[float, float] | None
    verdict: Verdict


def mean_interval(
    sample: Sample, alpha: float = 0.05, *, boolean: bool = False
) -> tuple[float, float] | None:
    """The always-valid (1 - alpha) interval of one variant's mean.

    Args:
        sample: the variant's values of the metric.
        alpha: the chance that the interval ever misses the true mean, over all looks.
        boolean: the values are 0/1; the interval is clipped to [0, 1] and the variance smoothed
            (see `_variance`).

    Returns:
        `(lo, hi)`, or `None` below two values, where no variance can be estimated.
    """
    _check_alpha(alpha)
    variance = _variance(sample, boolean=boolean)
    if variance is None:
        return None
    mean = sample.sum / sample.n
    half = _half_width(variance / sample.n, sample.n, alpha)
    lo, hi = mean - half, mean + half
    return (max(lo, 0.0), min(hi, 1.0)) if boolean else (lo, hi)


def compare(
    treatment: Sample,
    control: Sample,
    *,
    higher_is_better: bool,
    alpha: float = 0.05,
    boolean: bool = False,
) -> Comparison:
    """Compare a treatment with the control: the difference, its interval and a verdict.

    The two variants' variances may differ (Welch's standard error, `v_t/n_t + v_c/n_c`). The
    boundary's clock is the difference's effective count `(v_t + v_c) / (v_t/n_t + v_c/n_c)`:
    the number of equal pairs, as in Johari et al.'s two-sample mSPRT, that would give the same
    standard error (with equal variances, the harmonic mean of the two counts).

    Args:
        treatment: the variant under test.
        control: the experiment's control variant.
        higher_is_better: whether a larger mean is an improvement (a rating) or not (a latency).
        alpha: the chance that the interval ever misses the true difference, over all looks.
        boolean: the values are 0/1 (see `mean_interval`); the interval is clipped to [-1, 1].
    """
    _check_alpha(alpha)
    if treatment.mean is None or control.mean is None:
        return Comparison(diff=None, ci95=None, verdict="no_difference_yet")
    diff = treatment.mean - control.mean
    v_treatment = _variance(treatment, boolean=boolean)
    v_control = _variance(control, boolean=boolean)
    if v_treatment is None or v_control is None:
        return Comparison(diff=diff, ci95=None, verdict="no_difference_yet")
    se_squared = v_treatment / treatment.n + v_control / control.n
    effective_n = (v_treatment + v_control) / se_squared if se_squared else 0.0
    half = _half_width(se_squared, effective_n, alpha)
    lo, hi = diff - half, diff + half
    if boolean:
        lo, hi = max(lo, -1.0), min(hi, 1.0)
    verdict = _verdict(lo, hi, treatment, control, higher_is_better)
    return Comparison(diff=diff, ci95=(lo, hi), verdict=verdict)


def _verdict(
    lo: float, hi: float, treatment: Sample, control: Sample, higher_is_better: bool
) -> Verdict:
    if min(treatment.n, control.n) < VERDICT_MIN_COUNT or lo <= 0.0 <= hi:
        return "no_difference_yet"
    return "better" if (lo > 0.0) == higher_is_better else "worse"


def _variance(sample: Sample, *, boolean: bool) -> float | None:
    """The variance the boundary uses; for 0/1 values, `p(1 - p)` at Laplace's `p`.

    The plain estimate is 0 while a rate has been all successes or all failures, which would
    shrink the interval to a point; Laplace's rule of succession `(s + 1) / (n + 2)` keeps it
    positive and is within `O(1/n)` of the plain estimate after that.
    """
    if sample.n < 2:
        return None
    if boolean:
        p = (sample.sum + 1.0) / (sample.n + 2.0)
        return p * (1.0 - p)
    return sample.variance


def _half_width(se_squared: float, n: float, alpha: float) -> float:
    """Half the width of the mixture boundary for an estimate with this squared standard error.

    The module's `sd/n · sqrt(…)` is `SE · sqrt((1 + rho/n) · log((n + rho) / (rho · alpha²)))`.
    A zero standard error (values that never varied) has a zero half-width.
    """
    if se_squared <= 0.0 or n <= 0.0:
        return 0.0
    rho = _mixing(alpha)
    return math.sqrt(se_squared * (1.0 + rho / n) * math.log((n + rho) / (rho * alpha * alpha)))


def _mixing(alpha: float) -> float:
    """rho that makes the boundary tightest near `TIGHTEST_AT` observations (Howard et al. 2021)."""
    log_term = -2.0 * math.log(alpha)
    return TIGHTEST_AT / (log_term + math.log(1.0 + log_term))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, not {alpha}")
