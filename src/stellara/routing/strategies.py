"""Selection strategies: the order in which a public model's targets are tried.

`choose_order` turns a model's targets into a `Choice`: the full try-order (the first is the
chosen one), the targets left out as unavailable, and a reason for events and logs.

| strategy      | first choice                                                         |
|---------------|----------------------------------------------------------------------|
| `priority`    | config order                                                         |
| `round_robin` | rotates through the targets, one step per request, per public model  |
| `weighted`    | random, proportional to `Target.weight` (the rest follow by weight)  |
| `least_busy`  | fewest in-flight requests (config order breaks ties)                 |
| `cost`        | cheapest expected cost of this request (unknown prices go last)      |
| `performance` | lowest latency EWMA, penalised by recent errors; with exploration    |

Availability is filtered here, through the caller's `is_available` predicate (open breaker,
unhealthy provider), so every strategy ranks only what can be tried and the reason can name
what was skipped. The predicate must not take half-open permits: the attempt loop still calls
`BreakerBoard.allow` right before each call.

`RouterStats` is the in-process state the strategies read: per target key (`provider/model`)
latency EWMAs, an error EWMA and in-flight counts, plus the round-robin turn per public model.
The attempt loop feeds it through `started` and `finished`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import get_args

from stellara.catalog import Catalog, cost_usd
from stellara.config.models import Strategy
from stellara.routing.models import Target
from stellara.schema.chat import Usage

STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)

CostFn = Callable[[Target], float | None]
"""Expected USD cost of this request on a target; `None` when its price is unknown."""


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


@dataclass(frozen=True, slots=True)
class Choice:
    """A strategy's answer: try `order` in turn; `skipped` were unavailable."""

    strategy: Strategy
    order: tuple[Target, ...]
    reason: str
    skipped: tuple[Target, ...] = field(default=())

    @property
    def chosen(self) -> Target | None:
        """The first target to try, or `None` if none is available (→ 503 or fallbacks)."""
        return self.order[0] if self.order else None


def choose_order(
    strategy: Strategy,
    public_model: str,
    targets: Sequence[Target],
    stats: RouterStats,
    *,
    now: float,
    rng: random.Random,
    request_cost_fn: CostFn | None = None,
    is_available: Callable[[Target], bool] | None = None,
    stream: bool = False,
) -> Choice:
    """Order `targets` of `public_model` by `strategy`.

    Args:
        strategy: one of `STRATEGIES`; the model's own or the request's `routing.strategy`.
        public_model: the public model name (keys the round-robin turn).
        targets: the model's targets in config order (after any `routing.providers` filter).
        stats: the gateway's `RouterStats`.
        now: monotonic time, for `performance`'s staleness rule.
        rng: the randomness for `weighted` and `performance`; seeded in tests.
        request_cost_fn: for `cost`; see `expected_cost_fn`. Without it `cost` keeps config order.
        is_available: side-effect-free check; targets failing it are skipped, not ranked.
        stream: `performance` ranks by time to first byte instead of total time.
    """
    skipped: tuple[Target, ...] = ()
    if is_available is None:
        available = list(targets)
    else:
        usable = [is_available(t) for t in targets]  # once each: the check is not free
        available = [t for t, ok in zip(targets, usable, strict=True) if ok]
        skipped = tuple(t for t, ok in zip(targets, usable, strict=True) if not ok)
    if not available:
        return Choice(strategy, (), "no available target", skipped)
    if len(available) == 1 and not skipped:  # nothing to choose between: the common case
        return Choice(strategy, (available[0],), f"{strategy}: only target", ())
    context = _Context(public_model, stats, now, rng, request_cost_fn, stream)
    order, reason = _rank(strategy, available, context)
    if skipped:
        reason += f"; skipped unavailable: {', '.join(target_key(t) for t in skipped)}"
    return Choice(strategy, tuple(order), reason, skipped)


@dataclass(frozen=True, slots=True)
class _Context:
    """The inputs of one `choose_order` call that the strategies share."""

    public_model: str
    stats: RouterStats
    now: float
    rng: random.Random
    cost_fn: CostFn | None
    stream: bool


def _rank(strategy: Strategy, targets: list[Target], ctx: _Context) -> tuple[list[Target], str]:
    stats = ctx.stats
    if strategy == "round_robin":
        turn = stats.next_turn(ctx.public_model) % len(targets)
        return targets[turn:] + targets[:turn], f"round robin turn {turn}"
    if strategy == "weighted":
        order = _weighted_order(targets, ctx.rng)
        return order, f"weighted draw (weight {order[0].weight:g})"
    if strategy == "least_busy":
        order = sorted(targets, key=lambda t: stats.get(target_key(t)).in_flight)
        return order, f"least busy ({stats.get(target_key(order[0])).in_flight} in flight)"
    if strategy == "cost":
        return _cost_order(targets, ctx.cost_fn)
    if strategy == "performance":
        return _performance_order(targets, stats, ctx.now, ctx.rng, ctx.stream)
    return list(targets), "priority: first available in config order"


def _weighted_order(targets: list[Target], rng: random.Random) -> list[Target]:
    """A random order where each next target is drawn with probability ∝ its weight.

    Efraimidis-Spirakis: sorting by `u ** (1 / w)` gives exactly that sequential draw in one
    pass. Zero-weight targets (config forbids them, code may not) come last, in config order.
    """
    keyed: list[tuple[float, int, Target]] = []
    for index, target in enumerate(targets):
        weight = target.weight
        score = rng.random() ** (1.0 / weight) if weight > 0 else -1.0
        keyed.append((score, -index, target))
    keyed.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [target for _, _, target in keyed]


def _cost_order(targets: list[Target], cost_fn: CostFn | None) -> tuple[list[Target], str]:
    if cost_fn is None:
        return list(targets), "cost: no estimate available, config order"
    costs = {id(t): cost_fn(t) for t in targets}

    def key(target: Target) -> tuple[int, float]:
        cost = costs[id(target)]
        return (1, 0.0) if cost is None else (0, cost)

    order = sorted(targets, key=key)
    first = costs[id(order[0])]
    if first is None:
        return order, "cost: no target has a known price, config order"
    return order, f"cheapest expected cost ${first:.6f}"


def _performance_order(
    targets: list[Target], stats: RouterStats, now: float, rng: random.Random, stream: bool
) -> tuple[list[Target], str]:
    settings = stats.settings
    ranked = sorted(targets, key=lambda t: _latency_score(stats.get(target_key(t)), stream, stats))
    for target in ranked:
        entry = stats.get(target_key(target))
        if entry.samples == 0 or entry.last_sample_at is None:
            # Never measured: try it, but only one request per period, so a burst of
            # requests does not pile onto an unknown target.
            if _may_explore(entry, now, settings.stale_after_s):
                entry.last_explored_at = now
                reason = f"performance: exploring unmeasured {target_key(target)}"
                return _first(ranked, target), reason
            continue
        stale = now - entry.last_sample_at >= settings.stale_after_s
        if stale and target is not ranked[0] and _may_explore(entry, now, settings.stale_after_s):
            entry.last_explored_at = now
            return _first(ranked, target), f"performance: re-measuring stale {target_key(target)}"
    if len(ranked) > 1 and rng.random() < settings.epsilon:
        pick = rng.choice(ranked[1:])
        return _first(ranked, pick), f"performance: exploring {target_key(pick)} (epsilon)"
    score = _latency_score(stats.get(target_key(ranked[0])), stream, stats)
    shown = "unmeasured" if score == float("inf") else f"{score * 1000:.0f} ms"
    return ranked, f"performance: lowest latency score {shown}"


def _latency_score(entry: TargetStats, stream: bool, stats: RouterStats) -> float:
    latency = entry.ewma_ttfb_s if stream else entry.ewma_total_s
    if stream and latency is None:
        latency = entry.ewma_total_s
    if latency is None:
        # Tried but never successful: behind every target that has answered.
        return float("inf")
    return latency * (1.0 + stats.settings.error_penalty * entry.ewma_error)


def _may_explore(entry: TargetStats, now: float, period_s: float) -> bool:
    return entry.last_explored_at is None or now - entry.last_explored_at >= period_s


def _first(ranked: list[Target], target: Target) -> list[Target]:
    return [target, *(t for t in ranked if t is not target)]


def expected_cost_fn(catalog: Catalog, prompt_tokens: int, max_output_tokens: int) -> CostFn:
    """A `request_cost_fn` pricing this request on each target by the catalog.

    `max_output_tokens` is the request's `max_tokens` when given, else an estimate of the
    answer's length; the same numbers price every target, so the order is fair.
    """
    usage = Usage(
        prompt_tokens=max(0, prompt_tokens),
        completion_tokens=max(0, max_output_tokens),
        total_tokens=max(0, prompt_tokens) + max(0, max_output_tokens),
    )

    def cost(target: Target) -> float | None:
        entry = catalog.lookup(target.provider_type, target.model)
        return None if entry is None else cost_usd(entry, usage)

    return cost


def _ewma(previous: float | None, sample: float, alpha: float) -> float:
    return sample if previous is None else (1 - alpha) * previous + alpha * sample


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
