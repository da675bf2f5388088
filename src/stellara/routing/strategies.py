"""Selection strategies: the order in which a public model's targets are tried.

A strategy is an object with a `name` (the config's `Strategy`) and `rank(targets, inputs)`,
which orders the available targets and says why the first leads. `STRATEGIES` maps every config
name to its object; `choose_order` leaves out what cannot be tried, ranks the rest and returns a
`Choice` for the attempt loop and `x-stellara-route`.

| strategy      | first choice                                             | reads          |
|---------------|----------------------------------------------------------|----------------|
| `priority`    | config order                                             | nothing        |
| `round_robin` | the next target, one step per request, per public model  | turns          |
| `weighted`    | random, proportional to `Target.weight`                  | rng            |
| `least_busy`  | fewest calls in flight (config order breaks ties)        | in-flight      |
| `cost`        | cheapest estimate of this request (unknown prices last), | price estimate |
|               | among the targets that meet the model's `cost_floor`     | p95, feedback  |
| `performance` | lowest latency score, penalised by errors; explores      | latency, rng   |

Each strategy declares what it reads as the type of `rank`'s `inputs`: a protocol naming just
those fields. The attempt runner builds one `RankInputs`, whose fields are all required, and
`STRATEGIES` type-checks only while `RankInputs` has every field some strategy declares: an input
the runner does not provide is a mypy error, not a silent fallback to config order. The price
estimate is lazy (counting the prompt's tokens costs CPU), so only `cost` pays for it.

Availability is filtered by the caller's `is_available` predicate (open breaker, a provider
that refused this request), so every strategy ranks only what can be tried and the reason names
what was skipped. The predicate must not take half-open permits: the attempt loop still calls
`BreakerBoard.allow` right before each call.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final, NamedTuple, Protocol

from stellara.config.models import CostFloorConfig, Strategy
from stellara.routing.models import Target
from stellara.routing.stats import RouterStats, TargetStats, target_key

Ranking = tuple[list[Target], str]
"""A strategy's answer: every target it was given, in the order to try, and why the first leads."""


class RequestPrice(Protocol):
    """This request's estimated price on any target (`limits.RequestEstimate`).

    The token counts are the same whichever target is priced, so the ranking is fair.
    """

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    def usd_on(self, provider_type: str, model: str) -> float | None:
        """The price on `model` of a `provider_type` provider; `None` if it is unknown."""
        ...


class FeedbackMeans(Protocol):
    """The feedback targets have had (`routing.feedback.FeedbackBoard`), for `cost`'s quality
    floor."""

    def mean(self, target_key: str, metric: str) -> tuple[int, float] | None:
        """`(samples, mean)` of `metric` on the target `target_key`; `None` before any."""
        ...


class RankInputs(NamedTuple):
    """Everything a strategy may read, for one model of one request; built by the attempt
    runner. Every field is required: see the module docstring. (A named tuple: it is built per
    request, and a frozen dataclass costs several times as much to build.)"""

    public_model: str
    stats: RouterStats
    price: RequestPrice
    now: float  # monotonic
    rng: random.Random
    stream: bool
    feedback: FeedbackMeans
    cost_floor: CostFloorConfig | None  # the public model's


class RoutingStrategy(Protocol):
    """One way to order a model's targets. Stateless: what it learns lives in `RouterStats`.

    An implementation types `rank`'s `inputs` as a protocol of just the fields it reads
    (`CostInputs`, say), which `RankInputs` then has to satisfy.
    """

    @property
    def name(self) -> Strategy: ...
    def rank(self, targets: Sequence[Target], inputs: RankInputs) -> Ranking:
        """Order `targets` (the available ones, in config order, at least two)."""
        ...


class PriorityStrategy:
    """The targets as written: a primary and its standbys."""

    name: Final = "priority"

    def rank(self, targets: Sequence[Target], inputs: object) -> Ranking:
        return list(targets), "first available in config order"


class RoundRobinInputs(Protocol):
    """What `round_robin` reads: the public model's turn."""

    @property
    def public_model(self) -> str: ...
    @property
    def stats(self) -> RouterStats: ...


class RoundRobinStrategy:
    """Each request starts one target further along, per public model."""

    name: Final = "round_robin"

    def rank(self, targets: Sequence[Target], inputs: RoundRobinInputs) -> Ranking:
        turn = inputs.stats.next_turn(inputs.public_model) % len(targets)
        return [*targets[turn:], *targets[:turn]], f"turn {turn + 1} of {len(targets)}"


class WeightedInputs(Protocol):
    """What `weighted` reads: randomness."""

    @property
    def rng(self) -> random.Random: ...


class WeightedStrategy:
    """A random order where each next target is drawn with probability ∝ its weight.

    Efraimidis-Spirakis: sorting by `u ** (1 / w)` gives exactly that sequential draw in one
    pass. Zero-weight targets (config forbids them, code may not) come last, in config order.
    """

    name: Final = "weighted"

    def rank(self, targets: Sequence[Target], inputs: WeightedInputs) -> Ranking:
        keyed: list[tuple[float, int, Target]] = []
        for index, target in enumerate(targets):
            weight = target.weight
            score = inputs.rng.random() ** (1.0 / weight) if weight > 0 else -1.0
            keyed.append((score, -index, target))
        keyed.sort(key=lambda item: (item[0], item[1]), reverse=True)
        order = [target for _, _, target in keyed]
        total = sum(t.weight for t in targets)
        return order, f"drawn by weight ({order[0].weight:g} of {total:g})"


class LeastBusyInputs(Protocol):
    """What `least_busy` reads: the in-flight counts."""

    @property
    def stats(self) -> RouterStats: ...


class LeastBusyStrategy:
    """Fewest calls in flight first (config order breaks ties)."""

    name: Final = "least_busy"

    def rank(self, targets: Sequence[Target], inputs: LeastBusyInputs) -> Ranking:
        busy = {id(t): inputs.stats.get(target_key(t)).in_flight for t in targets}
        order = sorted(targets, key=lambda t: busy[id(t)])
        return order, f"fewest in flight ({busy[id(order[0])]})"


class CostInputs(Protocol):
    """What `cost` reads: this request's price estimate; for a model with a `cost_floor`, the
    floor, the targets' p95 latencies and feedback means, and the time."""

    @property
    def price(self) -> RequestPrice: ...
    @property
    def cost_floor(self) -> CostFloorConfig | None: ...
    @property
    def stats(self) -> RouterStats: ...
    @property
    def feedback(self) -> FeedbackMeans: ...
    @property
    def now(self) -> float: ...


class CostStrategy:
    """Cheapest estimate of this request first; targets the catalog cannot price go last.

    With the model's `cost_floor`, the targets that meet it come first and those that miss it
    follow, each group cheapest first, so a target below the floor is still a fallback. A
    target is judged once measured: its p95 once `RouterStats` has enough recent samples, its
    feedback mean once it has `min_samples` values; until then it meets the floor, so it gets
    traffic and is measured. A target that misses only the latency floor gets no traffic, so
    nothing would show it got faster: with no sample for `stale_after_s`, it is tried first
    once per that period, and as its old samples leave the window its p95 follows the new ones.
    """

    name: Final = "cost"

    def rank(self, targets: Sequence[Target], inputs: CostInputs) -> Ranking:
        price = inputs.price
        usd = {id(t): price.usd_on(t.provider_type, t.model) for t in targets}
        order = sorted(targets, key=lambda t: _price_order(usd[id(t)]))  # stable: config order
        floor = inputs.cost_floor
        misses = {} if floor is None else _misses(order, floor, inputs)
        if not misses:
            return order, _price_reason(order, usd, price)
        meeting = [t for t in order if id(t) not in misses]
        missing = [t for t in order if id(t) in misses]
        below = "; below the floor: " + ", ".join(
            f"{target_key(t)} {misses[id(t)]}" for t in missing
        )
        if not meeting:
            return order, f"no target meets the floor, {_price_reason(order, usd, price)}{below}"
        due = _due_for_remeasure(missing, misses, inputs)
        if due is not None:
            rest = [t for t in missing if t is not due]
            why = f"re-measuring a target below the latency floor ({misses[id(due)]})"
            return [due, *meeting, *rest], why
        return [*meeting, *missing], _price_reason(meeting, usd, price) + below


class _Miss(NamedTuple):
    """How a target falls short of the floor (`None`: that part is met or not judged yet)."""

    latency: str | None
    quality: str | None

    def __str__(self) -> str:
        return " and ".join(why for why in self if why is not None)


def _misses(order: list[Target], floor: CostFloorConfig, inputs: CostInputs) -> dict[int, _Miss]:
    """The targets (by `id`) that miss `floor`, and how."""
    misses: dict[int, _Miss] = {}
    for target in order:
        key = target_key(target)
        latency = quality = None
        if floor.p95_ms is not None:
            p95_s = inputs.stats.p95_s(key, inputs.now)
            if p95_s is not None and p95_s * 1000.0 > floor.p95_ms:
                latency = f"p95 {p95_s * 1000.0:,.0f} ms > {floor.p95_ms:,g} ms"
        if floor.metric is not None and floor.min_mean is not None:
            found = inputs.feedback.mean(key, floor.metric)
            if found is not None and found[0] >= floor.min_samples and found[1] < floor.min_mean:
                samples, mean = found
                quality = f"{floor.metric} mean {mean:.3g} < {floor.min_mean:g} ({samples} values)"
        if latency is not None or quality is not None:
            misses[id(target)] = _Miss(latency, quality)
    return misses


def _due_for_remeasure(
    missing: list[Target], misses: dict[int, _Miss], inputs: CostInputs
) -> Target | None:
    """The cheapest target that misses only the latency floor, has had no sample for
    `stale_after_s` and was not re-tried in that time; marked as re-tried now."""
    stats, now = inputs.stats, inputs.now
    period_s = stats.settings.stale_after_s
    for target in missing:
        if misses[id(target)].quality is not None:
            continue  # its latency alone would not bring it back
        entry = stats.get(target_key(target))
        last = entry.last_sample_at
        if last is not None and now - last < period_s:
            continue  # still measured, as a fallback
        if _may_explore(entry, now, period_s):
            entry.last_explored_at = now
            return target
    return None


def _price_order(usd: float | None) -> tuple[bool, float]:
    return (usd is None, 0.0 if usd is None else usd)


def _price_reason(order: list[Target], usd: dict[int, float | None], price: RequestPrice) -> str:
    """Why `order[0]` leads on price, naming the targets `order` holds without a price."""
    lead = usd[id(order[0])]
    if lead is None:
        return "no target has a known price, config order"
    tokens = f"{price.prompt_tokens} prompt + {price.output_tokens} output tokens"
    reason = f"cheapest estimate ${lead:.3g} ({tokens})"
    unpriced = [t for t in order if usd[id(t)] is None]
    if unpriced:
        reason += f"; no price for {', '.join(map(target_key, unpriced))}, ranked last"
    return reason


class PerformanceInputs(Protocol):
    """What `performance` reads: latency stats, the time, randomness, and whether it streams."""

    @property
    def stats(self) -> RouterStats: ...
    @property
    def now(self) -> float: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def stream(self) -> bool: ...


class PerformanceStrategy:
    """Lowest latency score first (time to first byte for streams), with exploration so a
    target that was slow or down is noticed once it recovers (`PerformanceSettings`)."""

    name: Final = "performance"

    def rank(self, targets: Sequence[Target], inputs: PerformanceInputs) -> Ranking:
        stats, now = inputs.stats, inputs.now
        settings = stats.settings
        ranked = sorted(targets, key=lambda t: _latency_score(t, inputs))
        for target in ranked:
            entry = stats.get(target_key(target))
            if entry.samples == 0 or entry.last_sample_at is None:
                # Never measured: try it, but only one request per period, so a burst of
                # requests does not pile onto an unknown target.
                if _may_explore(entry, now, settings.stale_after_s):
                    entry.last_explored_at = now
                    return _first(ranked, target), "exploring an unmeasured target"
                continue
            stale = now - entry.last_sample_at >= settings.stale_after_s
            if (
                stale
                and target is not ranked[0]
                and _may_explore(entry, now, settings.stale_after_s)
            ):
                entry.last_explored_at = now
                return _first(ranked, target), "re-measuring a stale target"
        if len(ranked) > 1 and inputs.rng.random() < settings.epsilon:
            pick = inputs.rng.choice(ranked[1:])
            return _first(ranked, pick), "exploring a non-best target (epsilon)"
        score = _latency_score(ranked[0], inputs)
        shown = "unmeasured" if score == float("inf") else f"{score * 1000:.0f} ms"
        return ranked, f"lowest latency score {shown}"


def _latency_score(target: Target, inputs: PerformanceInputs) -> float:
    stats = inputs.stats
    entry = stats.get(target_key(target))
    latency = entry.ewma_ttfb_s if inputs.stream else entry.ewma_total_s
    if inputs.stream and latency is None:
        latency = entry.ewma_total_s
    if latency is None:
        # Tried but never successful: behind every target that has answered.
        return float("inf")
    return latency * (1.0 + stats.settings.error_penalty * entry.ewma_error)


def _may_explore(entry: TargetStats, now: float, period_s: float) -> bool:
    return entry.last_explored_at is None or now - entry.last_explored_at >= period_s


def _first(ranked: list[Target], target: Target) -> list[Target]:
    return [target, *(t for t in ranked if t is not target)]


def _registry(*strategies: RoutingStrategy) -> Mapping[Strategy, RoutingStrategy]:
    return MappingProxyType({strategy.name: strategy for strategy in strategies})


STRATEGIES = _registry(
    PriorityStrategy(),
    RoundRobinStrategy(),
    WeightedStrategy(),
    LeastBusyStrategy(),
    CostStrategy(),
    PerformanceStrategy(),
)
"""Every strategy by its config name; a new strategy is one class and one line above."""


class Choice(NamedTuple):
    """A strategy's answer: try `order` in turn; `skipped` were unavailable."""

    strategy: Strategy
    order: tuple[Target, ...]
    reason: str
    skipped: tuple[Target, ...] = ()

    @property
    def chosen(self) -> Target | None:
        """The first target to try, or `None` if none is available (→ 503 or fallbacks)."""
        return self.order[0] if self.order else None


def choose_order(
    strategy: RoutingStrategy,
    targets: Sequence[Target],
    inputs: RankInputs,
    *,
    is_available: Callable[[Target], bool] | None = None,
) -> Choice:
    """Order a model's `targets` (config order, after any `routing.providers` filter).

    The reason reads `<strategy>: <first target>, <why>`, plus the targets skipped as
    unavailable (`is_available`: side-effect free; without it every target is available).
    """
    name = strategy.name
    skipped: tuple[Target, ...] = ()
    available = list(targets)
    if is_available is not None:
        usable = [is_available(t) for t in targets]  # once each: the check is not free
        available = [t for t, ok in zip(targets, usable, strict=True) if ok]
        skipped = tuple(t for t, ok in zip(targets, usable, strict=True) if not ok)
    if not available:
        order: list[Target] = []
        reason = f"{name}: no available target"
    elif len(available) == 1:  # nothing to choose between: the common case
        order = available
        only = "only available target" if skipped else "only target"
        reason = f"{name}: {target_key(order[0])}, {only}"
    else:
        order, why = strategy.rank(available, inputs)
        reason = f"{name}: {target_key(order[0])}, {why}"
    if skipped:
        reason += f"; skipped unavailable: {', '.join(map(target_key, skipped))}"
    return Choice(name, tuple(order), reason, skipped)
