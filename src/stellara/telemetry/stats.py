"""Request statistics since the last reset: what the monitoring API reports.

A `StatsCollector` listens on the event bus and counts into a `Stats`: per provider, per
provider model, per public model, totals, limiter refusals, the heaviest users, breaker
transitions and a 10-second time series. Counting happens on the request path, so it only adds
to numbers and dictionaries it already holds (new keys aside).

Everything is additive so that processes can be merged: a `snapshot()` is a JSON-able dict,
`merge(snapshots)` adds any number of them into one, and `Stats.from_snapshots` reads them back.
Latencies go into histograms over fixed log-scale buckets (0.1 ms to 300 s, each 5% wider than
the last), so percentiles of merged histograms are as good as those of one: within 2.5% of the
true value (the bucket's geometric middle is reported, never above the largest value seen).

A provider's `requests` are the calls made to it (one per attempt, from the request's
`attempt_spans`), so retries and failovers count where they happened and its latency is the
provider's own; tokens, cost and time to first byte belong to the provider that answered.
Requests answered from the cache or refused before any attempt count only in the totals.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from stellara._clock import Clock
from stellara.events import (
    BreakerChanged,
    EventBus,
    LimitRefused,
    QuotaExceeded,
    RequestEnded,
    RequestFailed,
)

SNAPSHOT_VERSION = 1  # snapshots of another layout (a rolling upgrade) are left out of a merge
LATENCY_MIN_MS = 0.1
LATENCY_MAX_MS = 300_000.0
_GROWTH = 1.05
_LOG_GROWTH = math.log(_GROWTH)
# Bucket 0 holds values under the minimum, this one values at or over the maximum.
OVERFLOW_BUCKET = math.ceil(math.log(LATENCY_MAX_MS / LATENCY_MIN_MS) / _LOG_GROWTH) + 1
SERIES_STEP_S = 10
SERIES_SPAN_S = 600
SERIES_BUCKETS = SERIES_SPAN_S // SERIES_STEP_S
MAX_USERS = 1000
_USERS_KEPT_ON_EVICTION = MAX_USERS * 9 // 10  # evict in batches: one sort per 100 new users
BREAKER_HISTORY = 100
# The same transition heard by several processes (breakers are shared through Redis) within
# this many seconds is one transition of the deployment.
BREAKER_DEDUPE_S = 2.0
CACHE_PROVIDER = "cache"  # the `provider` of a request answered from the cache
REJECTION_KINDS = ("rate", "burst", "quota")
_BLOCKED = "blocked"  # the limit name of a request refused while a burst spike blocks its user


def bucket_of(ms: float) -> int:
    """The histogram bucket of a latency in milliseconds."""
    if ms < LATENCY_MIN_MS:
        return 0
    index = int(math.log(ms / LATENCY_MIN_MS) / _LOG_GROWTH) + 1
    return index if index < OVERFLOW_BUCKET else OVERFLOW_BUCKET


def bucket_value(index: int) -> float:
    """The latency a bucket stands for: the geometric middle of its bounds."""
    if index <= 0:
        return LATENCY_MIN_MS / 2
    if index >= OVERFLOW_BUCKET:
        return LATENCY_MAX_MS
    return LATENCY_MIN_MS * math.pow(_GROWTH, index - 0.5)


class Histogram:
    """Latencies counted per bucket (sparse), plus the largest one seen."""

    __slots__ = ("counts", "max_ms")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        index = bucket_of(ms)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        if ms > self.max_ms:
            self.max_ms = ms

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def percentiles(self, *quantiles: float) -> list[float | None]:
        """Nearest-rank percentiles (`0.95` for p95); None for each when empty."""
        total = self.count
        if total == 0:
            return [None] * len(quantiles)
        ranks = [max(1, math.ceil(q * total)) for q in quantiles]
        found: list[float | None] = [None] * len(quantiles)
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            for i, rank in enumerate(ranks):
                if found[i] is None and seen >= rank:
                    found[i] = min(bucket_value(index), self.max_ms)
        return found

    def dump(self) -> dict[str, Any]:
        return {"max": self.max_ms, "counts": [[i, n] for i, n in sorted(self.counts.items())]}

    def absorb(self, dumped: Mapping[str, Any]) -> None:
        counts = self.counts
        for index, n in dumped["counts"]:
            counts[index] = counts.get(index, 0) + n
        self.max_ms = max(self.max_ms, dumped["max"])


class TargetStats:
    """One provider model of one provider."""

    __slots__ = ("cost_usd", "errors", "latency", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.cost_usd = 0.0
        self.latency = Histogram()

    def dump(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "cost_usd": self.cost_usd,
            "latency": self.latency.dump(),
        }

    def absorb(self, dumped: Mapping[str, Any]) -> None:
        self.requests += dumped["requests"]
        self.errors += dumped["errors"]
        self.cost_usd += dumped["cost_usd"]
        self.latency.absorb(dumped["latency"])


class ProviderStats:
    """One provider id: its calls, their errors by code and latency; tokens, cost and TTFB of
    the requests it answered."""

    __slots__ = (
        "completion_tokens",
        "cost_usd",
        "errors",
        "errors_by_type",
        "latency",
        "models",
        "prompt_tokens",
        "requests",
        "ttfb",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.errors_by_type: dict[str, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.latency = Histogram()
        self.ttfb = Histogram()
        self.models: dict[str, TargetStats] = {}

    def target(self, model: str) -> TargetStats:
        found = self.models.get(model)
        if found is None:
            found = self.models[model] = TargetStats()
        return found

    def dump(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "errors_by_type": dict(self.errors_by_type),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "latency": self.latency.dump(),
            "ttfb": self.ttfb.dump(),
            "models": {model: target.dump() for model, target in self.models.items()},
        }

    def absorb(self, dumped: Mapping[str, Any]) -> None:
        self.requests += dumped["requests"]
        self.errors += dumped["errors"]
        for code, n in dumped["errors_by_type"].items():
            self.errors_by_type[code] = self.errors_by_type.get(code, 0) + n
        self.prompt_tokens += dumped["prompt_tokens"]
        self.completion_tokens += dumped["completion_tokens"]
        self.cost_usd += dumped["cost_usd"]
        self.latency.absorb(dumped["latency"])
        self.ttfb.absorb(dumped["ttfb"])
        for model, target in dumped["models"].items():
            self.target(model).absorb(target)


class ModelStats:
    """One public model."""

    __slots__ = ("cost_usd", "errors", "fallbacks", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.fallbacks = 0
        self.cost_usd = 0.0

    def dump(self) -> list[Any]:
        return [self.requests, self.errors, self.fallbacks, self.cost_usd]

    def absorb(self, dumped: list[Any]) -> None:
        self.requests += dumped[0]
        self.errors += dumped[1]
        self.fallbacks += dumped[2]
        self.cost_usd += dumped[3]


class UserStats:
    __slots__ = ("cost_usd", "rejections", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.cost_usd = 0.0
        self.rejections = 0

    def dump(self) -> list[Any]:
        return [self.requests, self.cost_usd, self.rejections]

    def absorb(self, dumped: list[Any]) -> None:
        self.requests += dumped[0]
        self.cost_usd += dumped[1]
        self.rejections += dumped[2]


class SeriesBucket:
    """Requests that ended in the 10 seconds from `at` (epoch seconds)."""

    __slots__ = ("at", "cost_usd", "errors", "latency", "requests")

    def __init__(self, at: int) -> None:
        self.at = at
        self.requests = 0
        self.errors = 0
        self.cost_usd = 0.0
        self.latency = Histogram()

    def dump(self) -> list[Any]:
        return [self.at, self.requests, self.errors, self.cost_usd, self.latency.dump()]

    def absorb(self, dumped: list[Any]) -> None:
        self.requests += dumped[1]
        self.errors += dumped[2]
        self.cost_usd += dumped[3]
        self.latency.absorb(dumped[4])


class BreakerChange(NamedTuple):
    at: float
    breaker: str
    from_state: str
    to_state: str


class Stats:
    """Every counter since `since` (epoch seconds); `at` is when they were read, `epoch` names
    the reset they started from (empty before the first)."""

    def __init__(self, since: float, epoch: str = "") -> None:
        self.since = since
        self.at = since
        self.epoch = epoch
        self.requests = 0
        self.errors = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.retries = 0
        self.fallbacks = 0
        self.cache_hits = 0
        self.semantic_hits = 0
        self.cache_misses = 0
        self.rejections = dict.fromkeys(REJECTION_KINDS, 0)
        self.providers: dict[str, ProviderStats] = {}
        self.models: dict[str, ModelStats] = {}
        self.users: dict[str, UserStats] = {}
        self.breakers: deque[BreakerChange] = deque(maxlen=BREAKER_HISTORY)
        self.series: deque[SeriesBucket] = deque(maxlen=SERIES_BUCKETS)

    def provider(self, provider_id: str) -> ProviderStats:
        found = self.providers.get(provider_id)
        if found is None:
            found = self.providers[provider_id] = ProviderStats()
        return found

    def model(self, name: str) -> ModelStats:
        found = self.models.get(name)
        if found is None:
            found = self.models[name] = ModelStats()
        return found

    def user(self, name: str) -> UserStats:
        found = self.users.get(name)
        if found is None:
            if len(self.users) >= MAX_USERS:
                self._keep_top_users(_USERS_KEPT_ON_EVICTION)
            found = self.users[name] = UserStats()
        return found

    def top_users(self, n: int) -> list[tuple[str, UserStats]]:
        """The `n` users with the most requests (then the most cost)."""
        return heapq.nlargest(n, self.users.items(), key=_user_weight)

    def _keep_top_users(self, n: int) -> None:
        self.users = dict(self.top_users(n))

    def snapshot(self) -> dict[str, Any]:
        """Every counter as JSON-able values, for `merge` and `from_snapshots`."""
        oldest = self.at - SERIES_SPAN_S
        return {
            "version": SNAPSHOT_VERSION,
            "since": self.since,
            "at": self.at,
            "epoch": self.epoch,
            "totals": {
                "requests": self.requests,
                "errors": self.errors,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": self.cost_usd,
                "retries": self.retries,
                "fallbacks": self.fallbacks,
                "cache_hits": self.cache_hits,
                "semantic_hits": self.semantic_hits,
                "cache_misses": self.cache_misses,
            },
            "rejections": dict(self.rejections),
            "providers": {pid: p.dump() for pid, p in self.providers.items()},
            "models": {name: m.dump() for name, m in self.models.items()},
            "users": {name: u.dump() for name, u in self.users.items()},
            "breakers": [list(change) for change in self.breakers],
            "series": [b.dump() for b in self.series if b.at > oldest],
        }

    @classmethod
    def from_snapshots(cls, snapshots: Iterable[Mapping[str, Any]]) -> Stats:
        """The sum of `snapshots` (of this layout; others are skipped): counters add up,
        `since` is the earliest, `at` the latest, users beyond `MAX_USERS` are dropped from
        the bottom, and one transition reported by several processes counts once."""
        usable = [s for s in snapshots if s.get("version") == SNAPSHOT_VERSION]
        if not usable:
            return cls(0.0)
        merged = cls(min(s["since"] for s in usable), usable[0]["epoch"])
        merged.at = max(s["at"] for s in usable)
        changes: list[BreakerChange] = []
        buckets: dict[int, SeriesBucket] = {}
        for snapshot in usable:
            merged._absorb_counters(snapshot)
            changes.extend(BreakerChange(*change) for change in snapshot["breakers"])
            for dumped in snapshot["series"]:
                at = dumped[0]
                bucket = buckets.get(at)
                if bucket is None:
                    bucket = buckets[at] = SeriesBucket(at)
                bucket.absorb(dumped)
        if len(merged.users) > MAX_USERS:
            merged._keep_top_users(MAX_USERS)
        merged.breakers.extend(_distinct(changes))
        oldest = merged.at - SERIES_SPAN_S
        merged.series.extend(buckets[at] for at in sorted(buckets) if at > oldest)
        return merged

    def _absorb_counters(self, snapshot: Mapping[str, Any]) -> None:
        totals = snapshot["totals"]
        self.requests += totals["requests"]
        self.errors += totals["errors"]
        self.prompt_tokens += totals["prompt_tokens"]
        self.completion_tokens += totals["completion_tokens"]
        self.cost_usd += totals["cost_usd"]
        self.retries += totals["retries"]
        self.fallbacks += totals["fallbacks"]
        self.cache_hits += totals["cache_hits"]
        self.semantic_hits += totals["semantic_hits"]
        self.cache_misses += totals["cache_misses"]
        for kind, n in snapshot["rejections"].items():
            self.rejections[kind] = self.rejections.get(kind, 0) + n
        for pid, provider in snapshot["providers"].items():
            self.provider(pid).absorb(provider)
        for name, model in snapshot["models"].items():
            self.model(name).absorb(model)
        users = self.users  # no eviction while merging: the cut is made once, at the end
        for name, dumped in snapshot["users"].items():
            found = users.get(name)
            if found is None:
                found = users[name] = UserStats()
            found.absorb(dumped)


def merge(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One snapshot holding the sum of `snapshots` (see `Stats.from_snapshots`)."""
    return Stats.from_snapshots(snapshots).snapshot()


def _user_weight(item: tuple[str, UserStats]) -> tuple[int, float]:
    return item[1].requests, item[1].cost_usd


def _distinct(changes: list[BreakerChange]) -> list[BreakerChange]:
    """The last `BREAKER_HISTORY` changes, oldest first, each told by several processes once."""
    changes.sort()
    last_kept: dict[tuple[str, str, str], float] = {}
    kept: list[BreakerChange] = []
    for change in changes:
        key = (change.breaker, change.from_state, change.to_state)
        previous = last_kept.get(key)
        if previous is not None and change.at - previous <= BREAKER_DEDUPE_S:
            continue
        last_kept[key] = change.at
        kept.append(change)
    return kept[-BREAKER_HISTORY:]


class StatsCollector:
    """Counts the bus's events into a `Stats` until `reset`.

    Args:
        clock: wall time stamps series buckets and breaker transitions (processes on
            different machines share buckets by wall time).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._stats = Stats(clock.time())

    def attach(self, events: EventBus) -> None:
        """Subscribe to the events counted."""
        events.subscribe(RequestEnded, self._on_request)
        events.subscribe(BreakerChanged, self._on_breaker)
        events.subscribe(LimitRefused, self._on_refusal)

    @property
    def epoch(self) -> str:
        """The reset the counters started from (empty before any)."""
        return self._stats.epoch

    @property
    def since(self) -> float:
        """When counting started (epoch seconds): the last reset, or this process's start."""
        return self._stats.since

    def adopt(self, epoch: str) -> None:
        """Join `epoch` without clearing: the counters began after it (a process starting)."""
        self._stats.epoch = epoch

    def reset(self, *, since: float | None = None, epoch: str = "") -> None:
        """Start again from zero at `since` (now by default), as part of `epoch`."""
        self._stats = Stats(self._clock.time() if since is None else since, epoch)

    def snapshot(self) -> dict[str, Any]:
        """This process's counters now (see `Stats.snapshot`)."""
        self._stats.at = self._clock.time()
        return self._stats.snapshot()

    def _on_request(self, event: RequestEnded) -> None:
        stats = self._stats
        is_failed = isinstance(event, RequestFailed)
        cost = event.cost_usd
        fallbacks = event.fallbacks
        stats.requests += 1
        stats.errors += is_failed
        stats.prompt_tokens += event.prompt_tokens
        stats.completion_tokens += event.completion_tokens
        stats.cost_usd += cost
        stats.retries += event.retries
        stats.fallbacks += fallbacks
        cache = event.cache
        if cache == "hit":
            stats.cache_hits += 1
        elif cache == "semantic":
            stats.semantic_hits += 1
        else:
            stats.cache_misses += 1
        model = stats.model(event.model)
        model.requests += 1
        model.errors += is_failed
        model.fallbacks += fallbacks
        model.cost_usd += cost
        user = stats.user(event.user)
        user.requests += 1
        user.cost_usd += cost
        _count_providers(stats, event)
        self._count_series(stats, is_failed, cost, event.latency_ms)

    def _count_series(self, stats: Stats, is_failed: bool, cost: float, latency_ms: float) -> None:
        at = int(self._clock.time()) // SERIES_STEP_S * SERIES_STEP_S
        series = stats.series
        if series and series[-1].at >= at:  # the current bucket (or the clock stepped back)
            bucket = series[-1]
        else:
            bucket = SeriesBucket(at)
            series.append(bucket)
        bucket.requests += 1
        bucket.errors += is_failed
        bucket.cost_usd += cost
        bucket.latency.add(latency_ms)

    def _on_breaker(self, event: BreakerChanged) -> None:
        at = self._clock.time()
        change = BreakerChange(at, event.breaker, event.from_state, event.to_state)
        self._stats.breakers.append(change)

    def _on_refusal(self, event: LimitRefused) -> None:
        if event.shadow:  # reported, not enforced: nobody was refused
            return
        limit = event.limit
        if isinstance(event, QuotaExceeded):
            kind = "quota"
        elif limit.startswith("burst:") or limit == _BLOCKED:
            kind = "burst"
        else:
            kind = "rate"
        stats = self._stats
        stats.rejections[kind] += 1
        stats.user(event.user).rejections += 1


def _count_providers(stats: Stats, event: RequestEnded) -> None:
    """Each attempt to its provider and provider model; usage to the one that answered."""
    for span in event.attempt_spans:
        provider = stats.provider(span.provider)
        target = provider.target(span.model)
        duration_ms = span.duration_ms
        provider.requests += 1
        provider.latency.add(duration_ms)
        target.requests += 1
        target.latency.add(duration_ms)
        error = span.error
        if error is not None:
            provider.errors += 1
            target.errors += 1
            by_type = provider.errors_by_type
            by_type[error] = by_type.get(error, 0) + 1
    provider_id = event.provider
    if not provider_id or provider_id == CACHE_PROVIDER:
        return
    cost = event.cost_usd
    provider = stats.provider(provider_id)
    provider.prompt_tokens += event.prompt_tokens
    provider.completion_tokens += event.completion_tokens
    provider.cost_usd += cost
    provider.target(event.provider_model).cost_usd += cost
    ttfb_ms = event.ttfb_ms
    if ttfb_ms is not None:
        provider.ttfb.add(ttfb_ms)
