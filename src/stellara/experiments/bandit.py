"""Adaptive allocation: each variant's share of traffic by Thompson sampling.

An experiment with `allocation: adaptive` should send most traffic to the variant that is best
so far without ever deciding too early. Thompson sampling (Thompson 1933; Russo, Van Roy, Kazerouni,
Osband & Wen, "A Tutorial on Thompson Sampling", 2018) gives each arm the posterior probability
that it is the best: a clear winner gets nearly everything, arms still in doubt share the rest.
It yields shares rather than a draw per request because the gateway assigns users by a sticky
hash over the shares, and every process must assign alike.

An arm's reward is what the caller computes per request: the feedback value minus `λ · cost_usd`
(`λ = 0` compares quality alone). Its running sums are the arm's `Sample`. The posteriors assume
independent rewards with a finite variance and an arm whose quality does not drift:

- 0/1 rewards (a boolean metric with `λ = 0`): `Beta(1 + successes, 1 + failures)`, the uniform
  prior's conjugate posterior.
- other rewards: a normal posterior on the arm's mean. The weak prior is one pseudo-observation
  at the mean of all arms' rewards, with all rewards' variance, so it carries the rewards' scale
  (which nothing else knows) and is outweighed after a few observations.

The probability of being best is estimated from `draws` joint posterior draws; each arm is then
floored at `min_share`, so a variant that looks worse keeps being measured and can come back.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from stellara.experiments.stats import Sample

FloatArray = npt.NDArray[np.float64]


def allocate(
    arms: Mapping[str, Sample],
    *,
    boolean: bool,
    min_share: float,
    seed: int,
    draws: int = 2000,
) -> dict[str, float]:
    """Each arm's share of traffic: its probability of being best, floored at `min_share`.

    It is deterministic for the same sums and seed, whatever the mapping's order (arms are
    sorted by name before drawing), so every gateway process computes the same shares from the
    same shared counters. The caller derives `seed` from data all processes share (for example
    the experiment id and the total count of observations it read), never from the clock or a
    process's own random state. It runs in the background every few seconds, not per request:
    4 arms by 2,000 draws take about 1.4 ms with Beta posteriors and 0.7 ms with normal ones on
    one core of a development machine (budget: 5 ms).

    Args:
        arms: each variant's reward sums, by variant name.
        boolean: the rewards are 0/1 (Beta posteriors); otherwise normal posteriors.
        min_share: each arm's floor; when `min_share * len(arms) >= 1`, the shares are equal.
        seed: the draws' seed.
        draws: joint posterior draws; the shares' Monte-Carlo error is about
            `sqrt(p(1 - p) / draws)`, ±0.011 at 2,000 for `p = 0.5`.

    Returns:
        Shares by arm name, summing to 1. Equal shares before any reward has been seen (and,
        for normal rewards, until two have: one value carries no scale).

    Raises:
        ValueError: no arms, a floor outside [0, 1], no draws, or `boolean` sums that do not
            count 0/1 rewards.
    """
    if not arms:
        raise ValueError("an allocation needs at least one arm")
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must lie in [0, 1], not {min_share}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, not {draws}")
    names = sorted(arms)
    samples = [arms[name] for name in names]
    equal = dict.fromkeys(names, 1.0 / len(names))
    observed = sum(sample.n for sample in samples)
    if min_share * len(names) >= 1.0 or observed < (1 if boolean else 2):
        return equal
    rng = np.random.default_rng(seed)
    posterior = _beta_draws(samples, rng, draws) if boolean else _normal_draws(samples, rng, draws)
    shares = _floored(_best_shares(posterior), min_share)
    return dict(zip(names, shares.tolist(), strict=True))


def _beta_draws(samples: list[Sample], rng: np.random.Generator, draws: int) -> FloatArray:
    successes = np.array([sample.sum for sample in samples], dtype=np.float64)
    counts = np.array([sample.n for sample in samples], dtype=np.float64)
    if np.any(successes < 0) or np.any(successes > counts):
        raise ValueError("boolean rewards must be 0 or 1: each arm's sum lies within [0, n]")
    return rng.beta(1.0 + successes, 1.0 + counts - successes, size=(draws, len(samples)))


def _normal_draws(samples: list[Sample], rng: np.random.Generator, draws: int) -> FloatArray:
    """Draws of each arm's mean under a normal posterior with one pooled pseudo-observation.

    The arm's variance is its own sum of squared deviations plus the pooled variance, over its
    degrees of freedom plus one: the pooled scale until the arm has values, its own after.
    """
    counts = np.array([sample.n for sample in samples], dtype=np.float64)
    sums = np.array([sample.sum for sample in samples], dtype=np.float64)
    squares = np.array([sample.sum_sq for sample in samples], dtype=np.float64)
    pooled = Sample(n=int(counts.sum()), sum=float(sums.sum()), sum_sq=float(squares.sum()))
    prior_mean = pooled.sum / pooled.n
    prior_variance = pooled.variance or 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        deviations = np.where(counts > 0, squares - sums * sums / counts, 0.0)
    arm_variance = (np.maximum(deviations, 0.0) + prior_variance) / (
        np.maximum(counts - 1.0, 0.0) + 1.0
    )
    mean = (sums + prior_mean) / (counts + 1.0)
    scale = np.sqrt(arm_variance / (counts + 1.0))
    return mean + scale * rng.standard_normal((draws, len(samples)))


def _best_shares(posterior: FloatArray) -> FloatArray:
    """Each arm's fraction of draws in which it is best; a tie splits the draw evenly.

    Ties happen when rewards never varied (zero posterior variance): equal arms then get equal
    shares instead of the first arm winning every draw.
    """
    best = posterior == posterior.max(axis=1, keepdims=True)
    shares: FloatArray = (best / best.sum(axis=1, keepdims=True)).mean(axis=0)
    return shares


def _floored(shares: FloatArray, min_share: float) -> FloatArray:
    """`max(min_share, c · shares)` with `c` such that the result sums to 1 (`min_share · k < 1`).

    Arms below the floor are pinned to it and the others rescaled to fill the rest; rescaling
    can push another arm under, so repeat. Each pass only adds arms that the exact solution also
    pins, so it ends within `k` passes.
    """
    pinned = np.zeros(shares.shape, dtype=bool)
    while True:
        free_total = shares[~pinned].sum()
        scaled = shares * (1.0 - min_share * pinned.sum()) / free_total
        below = ~pinned & (scaled < min_share)
        if not below.any():
            result: FloatArray = np.where(pinned, min_share, scaled)
            return result
        pinned |= below
