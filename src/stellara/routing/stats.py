"""`RouterStats`: what the router has seen of each target, for the strategies that read it.

Per target key (`provider/model`): latency EWMAs, an error EWMA, in-flight counts and a window
of recent latencies (for a p95); plus the round-robin turn per public model. The attempt loop
feeds it through `started` and `finished`; `least_busy`, `performance`, `round_robin` and
`cost` (its latency floor) read it (`routing.strategies`). It is in-process state: with several
workers, each balances its own share of the traffic.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from stellara.routing.models import Target


def target_key(target: Target) -> str:
    """The stats key of a target: `provider_id/model`."""
    return f"{target.adapter.id}/{target.model}"


class LatencyWindow:
    """The latencies of a target's last successful calls, for their p95.

    Bounded by count (`size`) and by age (`max_age_s`): a target that gets no traffic (one
    `cost` keeps out for its latency) is judged on fresh samples once its old ones have aged
    out. Adding is O(1); the p95 is worked out when read and kept until the window changes,
    as a strategy reads it far more often than the window changes.
    """

    __slots__ = ("_max_age_s", "_min_samples", "_p95_s", "_samples")

    def __init__(self, size: int, max_age_s: float, min_samples: int) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=size)  # (monotonic at, s)
        self._max_age_s = max_age_s
        self._min_samples = min_samples
        self._p95_s: float | None = None  # worked out from the current samples; None: not yet

    def add(self, at: float, latency_s: float) -> None:
        """A successful call that took `latency_s` ended at monotonic `at`."""
        self._samples.append((at, latency_s))
        self._p95_s = None

    def p95_s(self, now: float) -> float | None:
        """The nearest-rank p95 (a latency actually seen) of the samples of the last
        `max_age_s` before monotonic `now`; `None` with fewer than `min_samples` of them."""
        samples = self._samples
        horizon = now - self._max_age_s
        while samples and samples[0][0] < horizon:
            samples.popleft()
            self._p95_s = None
        if len(samples) < self._min_samples:
            return None
        if self._p95_s is None:
            ordered = sorted(latency for _, latency in samples)
            self._p95_s = ordered[math.ceil(0.95 * len(ordered)) - 1]
        return self._p95_s


@dataclass(slots=True)
class TargetStats:
    """What the router knows of one target. Latencies are `None` until a call succeeds."""

    latencies: LatencyWindow
    ewma_ttfb_s: float | None = None
    ewma_total_s: float | None = None
    ewma_error: float = 0.0
    in_flight: int = 0
    samples: int = 0
    last_sample_at: float | None = None
    last_explored_at: float | None = None


@dataclass(frozen=True, slots=True)
class PerformanceSettings:
    """Tuning of `performance`, and of the p95 that `cost`'s latency floor reads.

    Attributes:
        alpha: EWMA weight of the newest sample.
        epsilon: chance of trying a random non-best target first, so a recovered target is seen.
        stale_after_s: a target with no sample for this long is tried first once (per that
            period), so a target that was only ever slow or failing is re-measured (by
            `performance`, and by `cost` when it misses only the latency floor).
        error_penalty: how much a 100 % error EWMA multiplies latency (`1 + penalty * error`).
        latency_window: successful calls per target kept for its p95.
        latency_window_s: calls older than this leave the p95's window.
        latency_min_samples: a target with fewer calls in its window has no p95 (it is not
            judged yet). At 20, the nearest-rank p95 is the second slowest: one outlier alone
            does not condemn a target.
    """

    alpha: float = 0.3
    epsilon: float = 0.05
    stale_after_s: float = 60.0
    error_penalty: float = 9.0
    latency_window: int = 100
    latency_window_s: float = 600.0
    latency_min_samples: int = 20


class RouterStats:
    """Per-target latency and load, and round-robin turns; one per gateway (`create_app`)."""

    def __init__(self, settings: PerformanceSettings | None = None) -> None:
        self.settings = settings or PerformanceSettings()
        self._targets: dict[str, TargetStats] = {}
        self._turns: dict[str, int] = {}

    def get(self, key: str) -> TargetStats:
        """The stats of target `key`, created empty if new."""
        stats = self._targets.get(key)
        if stats is None:
            s = self.settings
            window = LatencyWindow(s.latency_window, s.latency_window_s, s.latency_min_samples)
            stats = self._targets[key] = TargetStats(window)
        return stats

    def p95_s(self, key: str, now: float) -> float | None:
        """Target `key`'s p95 latency at monotonic `now` (`LatencyWindow.p95_s`): of whole
        answers, or of first chunks for streams, as each attempt's latency is measured up to
        its answer or its first chunk."""
        return self.get(key).latencies.p95_s(now)

    def started(self, target: Target) -> None:
        """A call to `target` went out (counts towards `least_busy`)."""
        self.get(target_key(target)).in_flight += 1

    def finished(
        self,
        target: Target,
        now: float,
        *,
        ok: bool,
        total_s: float | None = None,
        ttfb_s: float | None = None,
    ) -> None:
        """A call to `target` ended at monotonic `now`; latencies count only when `ok`.

        Call it exactly once per `started`, whatever the outcome (use `finally`).
        """
        stats = self.get(target_key(target))
        stats.in_flight = max(0, stats.in_flight - 1)
        alpha = self.settings.alpha
        stats.ewma_error = (1 - alpha) * stats.ewma_error + alpha * (0.0 if ok else 1.0)
        stats.samples += 1
        stats.last_sample_at = now
        if ok and total_s is not None:
            stats.ewma_total_s = _ewma(stats.ewma_total_s, total_s, alpha)
            stats.latencies.add(now, total_s)
        if ok and ttfb_s is not None:
            stats.ewma_ttfb_s = _ewma(stats.ewma_ttfb_s, ttfb_s, alpha)

    def next_turn(self, public_model: str) -> int:
        """The round-robin turn of `public_model`, advancing it."""
        turn = self._turns.get(public_model, 0)
        self._turns[public_model] = turn + 1
        return turn

    def snapshot(self) -> dict[str, dict[str, object]]:
        """JSON-ready stats per target key, for monitoring."""
        return {
            key: {
                "ewma_ttfb_ms": _ms(s.ewma_ttfb_s),
                "ewma_total_ms": _ms(s.ewma_total_s),
                "ewma_error": round(s.ewma_error, 4),
                "in_flight": s.in_flight,
                "samples": s.samples,
            }
            for key, s in sorted(self._targets.items())
        }


def _ewma(previous: float | None, sample: float, alpha: float) -> float:
    return sample if previous is None else (1 - alpha) * previous + alpha * sample


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
