"""`FeedbackBoard`: the feedback each target has had, per metric, for `cost`'s quality floor.

A tally (count and sum) per target key (`provider/model`) and metric; a boolean value counts as
1 or 0, so its mean is the share of `true`. Feedback arrives through `record` (a rating of an
answer this process gave) and `load` (a tally worked out elsewhere, e.g. the deployment's
shared totals, which replaces this process's own). One board per gateway, held by the attempt
runner; `cost` reads it through the `FeedbackMeans` protocol (`routing.strategies`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Tally:
    samples: int
    total: float


class FeedbackBoard:
    """Feedback tallies per target and metric, in process."""

    def __init__(self) -> None:
        self._tallies: dict[tuple[str, str], _Tally] = {}

    def record(self, target_key: str, metric: str, value: float) -> None:
        """One feedback `value` of `metric` on an answer of target `target_key`."""
        tally = self._tallies.get((target_key, metric))
        if tally is None:
            self._tallies[target_key, metric] = _Tally(1, float(value))
        else:
            tally.samples += 1
            tally.total += value

    def load(self, target_key: str, metric: str, n: int, total: float) -> None:
        """Replace the tally of `metric` on `target_key` with `n` values summing to `total`
        (`n` 0: no feedback yet)."""
        if n < 0:
            raise ValueError(f"a feedback count cannot be negative, got {n}")
        if n == 0:
            self._tallies.pop((target_key, metric), None)
        else:
            self._tallies[target_key, metric] = _Tally(n, total)

    def mean(self, target_key: str, metric: str) -> tuple[int, float] | None:
        """`(samples, mean)` of `metric` on `target_key`; `None` before any feedback."""
        tally = self._tallies.get((target_key, metric))
        return None if tally is None else (tally.samples, tally.total / tally.samples)
