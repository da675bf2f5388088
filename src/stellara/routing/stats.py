"""`RouterStats`: what the router has seen of each target, for the strategies that read it.

Per target key (`provider/model`): latency EWMAs, an error EWMA and in-flight counts; plus the
round-robin turn per public model. The attempt loop feeds it through `started` and `finished`;
`least_busy`, `performance` and `round_robin` read it (`routing.strategies`). It is in-process
state: with several workers, each balances its own share of the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellara.routing.models import Target


def target_key(target: Target) -> str:
    """The stats key of a target: `provider_id/model`."""
    return f"{target.adapter.id}/{target.model}"


@dataclass(slots=True)
class TargetStats:
    """What the router knows of one target. Latencies are `None` until a call succeeds."""

    ewma_ttfb_s: float | None = None
    ewma_total_s: float | None = None
    ewma_error: float = 0.0
    in_flight: int = 0
    samples: int = 0
    last_sample_at: float | None = None
    last_explored_at: float | None = None


@dataclass(frozen=True, slots=True)
class PerformanceSettings:
    """Tuning of `performance`.

    Attributes:
        alpha: EWMA weight of the newest sample.
        epsilon: chance of trying a random non-best target first, so a recovered target is seen.
        stale_after_s: a target with no sample for this long is tried first once (per that
            period), so a target that was only ever slow or failing is re-measured.
        error_penalty: how much a 100 % error EWMA multiplies latency (`1 + penalty * error`).
    """

    alpha: float = 0.3
    epsilon: float = 0.05
    stale_after_s: float = 60.0
    error_penalty: float = 9.0


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
            stats = self._targets[key] = TargetStats()
        return stats

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
