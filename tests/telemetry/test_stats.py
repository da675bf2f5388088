"""The statistics collector: what each event counts, percentiles, merging, reset, the series."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import pytest

from stellara.events import (
    Attempt,
    BreakerChanged,
    EventBus,
    LimitRefused,
    QuotaExceeded,
    RateLimitExceeded,
    RequestEnded,
)
from stellara.telemetry.stats import (
    BREAKER_HISTORY,
    LATENCY_MAX_MS,
    LATENCY_MIN_MS,
    MAX_USERS,
    OVERFLOW_BUCKET,
    SERIES_BUCKETS,
    Histogram,
    Stats,
    StatsCollector,
    bucket_of,
    bucket_value,
    merge,
)
from stellara.testing import ManualClock, request_completed, request_failed

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a multiple of 10 s


def span(
    provider: str = "openai",
    model: str = "gpt-4o",
    duration_ms: float = 100.0,
    error: str | None = None,
) -> Attempt:
    return Attempt(
        provider=provider, model=model, start_ms=0.0, duration_ms=duration_ms, error=error
    )


def request(*, failed: bool = False, **facts: Any) -> RequestEnded:
    """A request event: one attempt of 100 ms on openai/gpt-4o that used 10 + 20 tokens,
    answered or failed (a stream cut after its usage)."""
    build = request_failed if failed else request_completed
    spans = (span(error="upstream_unavailable" if failed else None),)
    used = {"prompt_tokens": 10, "completion_tokens": 20, "cost_usd": 0.001}
    return build(**{"started_at": START, "attempt_spans": spans, **used, **facts})


def refusal(
    kind: type[LimitRefused], limit: str, user: str = "alice", shadow: bool = False
) -> LimitRefused:
    return kind(
        request_id="r",
        user=user,
        tier="free",
        shadow=shadow,
        limit=limit,
        used=None,
        limit_value=None,
        reset_at=START + 60,
        retry_after_s=60.0,
    )


def breaker_opened(breaker: str) -> BreakerChanged:
    return BreakerChanged(breaker=breaker, from_state="closed", to_state="open")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def collector(clock: ManualClock, bus: EventBus) -> StatsCollector:
    collector = StatsCollector(clock)
    collector.attach(bus)
    return collector


def current(collector: StatsCollector) -> Stats:
    return Stats.from_snapshots([collector.snapshot()])


def test_histogram_percentiles_within_bucket_resolution() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(4.0, 1.2) for _ in range(20_000)]
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    values.sort()
    quantiles = (0.5, 0.9, 0.95, 0.99)
    for q, estimate in zip(quantiles, histogram.percentiles(*quantiles), strict=True):
        exact = values[math.ceil(q * len(values)) - 1]
        assert estimate == pytest.approx(exact, rel=0.026), q
    assert histogram.max_ms == values[-1]
    assert histogram.count == len(values)


def test_histogram_empty_gives_none_and_never_exceeds_the_max() -> None:
    histogram = Histogram()
    assert histogram.percentiles(0.5, 0.99) == [None, None]
    low_in_its_bucket = LATENCY_MIN_MS * 1.05**100 * 1.001
    histogram.add(low_in_its_bucket)
    (p99,) = histogram.percentiles(0.99)
    assert p99 == low_in_its_bucket  # the bucket's middle would be above the only value seen


def test_histogram_buckets_cover_the_range_and_clamp_outside() -> None:
    assert bucket_of(0.0) == bucket_of(LATENCY_MIN_MS / 2) == 0
    assert bucket_of(LATENCY_MIN_MS) == 1
    assert bucket_of(LATENCY_MAX_MS * 10) == OVERFLOW_BUCKET
    assert 0 < bucket_of(LATENCY_MAX_MS * 0.99) < OVERFLOW_BUCKET
    for i in range(OVERFLOW_BUCKET - 1):  # each bucket is 5% wider than the one before
        middle = LATENCY_MIN_MS * 1.05 ** (i + 0.5)
        assert bucket_of(middle) == i + 1
        assert bucket_value(i + 1) == pytest.approx(middle)


def test_collector_counts_totals_models_and_cache(bus: EventBus, collector: StatsCollector) -> None:
    bus.publish(request(cost_usd=0.25, retries=2))
    bus.publish(request(failed=True, cost_usd=0.0, fallbacks=1))
    bus.publish(
        request(cache="hit", provider="cache", provider_model="", attempt_spans=(), cost_usd=0.0)
    )
    bus.publish(request(cache="semantic", provider="cache", attempt_spans=(), model="cheap"))

    stats = current(collector)
    assert (stats.requests, stats.errors) == (4, 1)
    assert (stats.retries, stats.fallbacks) == (2, 1)
    assert (stats.cache_hits, stats.semantic_hits, stats.cache_misses) == (1, 1, 2)
    assert (stats.prompt_tokens, stats.completion_tokens) == (40, 80)
    assert stats.cost_usd == pytest.approx(0.251)
    smart, cheap = stats.models["smart"], stats.models["cheap"]
    assert (smart.requests, smart.errors, smart.fallbacks) == (3, 1, 1)
    assert smart.cost_usd == pytest.approx(0.25)
    assert (cheap.requests, cheap.errors) == (1, 0)
    assert cheap.cost_usd == pytest.approx(0.001)
    assert "cache" not in stats.providers  # cache answers are not provider calls


def test_collector_counts_each_attempt_where_it_happened(
    bus: EventBus, collector: StatsCollector
) -> None:
    spans = (
        span("openai", "gpt-4o", 5000.0, "upstream_timeout"),
        span("openai", "gpt-4o", 40.0, "upstream_unavailable"),
        span("claude", "sonnet", 200.0),
    )
    bus.publish(
        request(
            provider="claude",
            provider_model="sonnet",
            retries=1,
            attempt_spans=spans,
            ttfb_ms=80.0,
            cost_usd=0.5,
        )
    )

    stats = current(collector)
    openai, claude = stats.providers["openai"], stats.providers["claude"]
    assert (openai.requests, openai.errors) == (2, 2)
    assert openai.errors_by_type == {"upstream_timeout": 1, "upstream_unavailable": 1}
    assert (openai.prompt_tokens, openai.cost_usd) == (0, 0.0)  # it answered nothing
    assert openai.latency.max_ms == 5000.0
    assert (claude.requests, claude.errors, claude.errors_by_type) == (1, 0, {})
    assert (claude.prompt_tokens, claude.completion_tokens, claude.cost_usd) == (10, 20, 0.5)
    assert claude.ttfb.percentiles(0.5) == [80.0]
    assert openai.ttfb.count == 0
    target = openai.models["gpt-4o"]
    assert (target.requests, target.errors, target.cost_usd) == (2, 2, 0.0)
    assert claude.models["sonnet"].cost_usd == 0.5


def test_collector_classifies_limiter_refusals(bus: EventBus, collector: StatsCollector) -> None:
    bus.publish(refusal(RateLimitExceeded, "rate:requests"))
    bus.publish(refusal(RateLimitExceeded, "rate:tokens@key:k1"))
    bus.publish(refusal(RateLimitExceeded, "burst:requests", user="bob"))
    bus.publish(refusal(RateLimitExceeded, "blocked", user="bob"))
    bus.publish(refusal(QuotaExceeded, "quota:daily:cost_usd"))
    bus.publish(refusal(QuotaExceeded, "quota:daily:requests", shadow=True))

    stats = current(collector)
    assert stats.rejections == {"rate": 2, "burst": 2, "quota": 1}
    assert stats.users["alice"].rejections == 3
    assert stats.users["bob"].rejections == 2


def test_collector_keeps_a_bounded_set_of_users_and_the_heaviest(
    bus: EventBus, collector: StatsCollector
) -> None:
    for heavy in range(12):
        for _ in range(heavy + 2):
            bus.publish(request(user=f"heavy-{heavy:02d}", cost_usd=0.01))
    for light in range(MAX_USERS + 500):
        bus.publish(request(user=f"light-{light}"))

    stats = current(collector)
    assert len(stats.users) <= MAX_USERS
    top = stats.top_users(10)
    assert [name for name, _ in top] == [f"heavy-{n:02d}" for n in range(11, 1, -1)]
    assert top[0][1].requests == 13
    assert top[0][1].cost_usd == pytest.approx(0.13)


def test_collector_keeps_the_last_breaker_transitions(
    bus: EventBus, collector: StatsCollector, clock: ManualClock
) -> None:
    for i in range(BREAKER_HISTORY + 5):
        clock.advance(1)
        bus.publish(breaker_opened(f"b{i}"))

    history = list(current(collector).breakers)
    assert len(history) == BREAKER_HISTORY
    assert history[0].breaker == "b5"
    assert history[-1].breaker == f"b{BREAKER_HISTORY + 4}"
    assert history[-1].at == clock.time()


def test_series_buckets_ten_seconds_for_ten_minutes(
    bus: EventBus, collector: StatsCollector, clock: ManualClock
) -> None:
    bus.publish(request(latency_ms=50.0))
    clock.advance(3)
    bus.publish(request(failed=True, latency_ms=70.0, cost_usd=0.0))
    clock.advance(7)  # the next bucket
    bus.publish(request(latency_ms=400.0, cost_usd=0.5))

    series = list(current(collector).series)
    assert [b.at for b in series] == [START, START + 10]
    assert (series[0].requests, series[0].errors, series[0].cost_usd) == (2, 1, 0.001)
    assert series[0].latency.percentiles(0.5, 1.0) == [pytest.approx(50, rel=0.03), 70.0]
    assert (series[1].requests, series[1].cost_usd) == (1, 0.5)

    clock.advance(595)  # the first bucket is now older than ten minutes, the second not
    bus.publish(request())
    assert [b.at for b in current(collector).series] == [START + 10, START + 600]
    clock.advance(SERIES_BUCKETS * 10)  # idle: nothing within the window but nothing new
    assert list(current(collector).series) == []


def test_series_never_holds_more_than_its_buckets(
    bus: EventBus, collector: StatsCollector, clock: ManualClock
) -> None:
    for _ in range(SERIES_BUCKETS * 3):
        bus.publish(request())
        clock.advance(10)
    series = list(current(collector).series)
    assert len(series) == SERIES_BUCKETS - 1  # the last advance left the current one empty
    assert series[-1].at == clock.time() - 10


def test_merge_equals_one_collector_fed_everything(clock: ManualClock) -> None:
    rng = random.Random(3)
    events = [
        request(
            failed=rng.random() < 0.2,
            user=f"u{rng.randrange(5)}",
            latency_ms=rng.uniform(1, 3000),
            cost_usd=rng.uniform(0, 0.01),
            attempt_spans=(span(rng.choice(["a", "b"]), "m", rng.uniform(1, 3000)),),
        )
        for _ in range(300)
    ]
    everything = StatsCollector(clock)
    parts = [StatsCollector(clock) for _ in range(3)]
    for i, event in enumerate(events):
        everything._on_request(event)
        parts[i % 3]._on_request(event)
        clock.advance(0.5)
    # as read back from Redis: JSON, encoded and decoded
    wire = [msgspec.json.decode(msgspec.json.encode(p.snapshot())) for p in parts]

    merged = Stats.from_snapshots(wire)
    alone = current(everything)
    assert merged.requests == alone.requests == 300
    assert merged.errors == alone.errors
    assert merged.cost_usd == pytest.approx(alone.cost_usd)
    for pid in ("a", "b"):
        got, want = merged.providers[pid], alone.providers[pid]
        assert got.requests == want.requests
        assert got.latency.counts == want.latency.counts
        assert got.latency.percentiles(0.5, 0.99) == want.latency.percentiles(0.5, 0.99)
    assert {n: u.requests for n, u in merged.users.items()} == {
        n: u.requests for n, u in alone.users.items()
    }
    assert [(b.at, b.requests) for b in merged.series] == [(b.at, b.requests) for b in alone.series]
    assert merge(wire)["totals"] == alone.snapshot()["totals"] | {
        "cost_usd": pytest.approx(alone.cost_usd)
    }


def test_merge_takes_earliest_since_and_skips_other_layouts(clock: ManualClock) -> None:
    first = StatsCollector(clock)
    first._on_request(request())
    clock.advance(30)
    second = StatsCollector(clock)
    second._on_request(request())
    foreign = {**second.snapshot(), "version": 999}

    merged = Stats.from_snapshots([second.snapshot(), first.snapshot(), foreign])
    assert merged.since == START
    assert merged.at == START + 30
    assert merged.requests == 2


def test_merge_counts_a_shared_breaker_transition_once(clock: ManualClock) -> None:
    here, there = StatsCollector(clock), StatsCollector(clock)
    changed = breaker_opened("openai")
    here._on_breaker(changed)
    clock.advance(0.2)  # the other process hears it through Redis a moment later
    there._on_breaker(changed)
    clock.advance(30)  # a later, separate trip of the same breaker
    there._on_breaker(changed)

    history = list(Stats.from_snapshots([here.snapshot(), there.snapshot()]).breakers)
    assert [(c.at, c.breaker) for c in history] == [(START, "openai"), (START + 30.2, "openai")]


def test_merge_caps_users(clock: ManualClock) -> None:
    parts = [StatsCollector(clock) for _ in range(2)]
    for i in range(MAX_USERS):
        parts[0]._on_request(request(user=f"a{i}"))
        parts[1]._on_request(request(user=f"b{i}"))
    parts[1]._on_request(request(user="b0"))

    merged = Stats.from_snapshots(p.snapshot() for p in parts)
    assert len(merged.users) == MAX_USERS
    assert merged.top_users(1)[0][0] == "b0"


def test_reset_starts_from_zero_at_the_given_time(
    bus: EventBus, collector: StatsCollector, clock: ManualClock
) -> None:
    bus.publish(request())
    bus.publish(refusal(RateLimitExceeded, "rate:requests"))
    bus.publish(breaker_opened("b"))
    clock.advance(42)

    collector.reset()
    stats = current(collector)
    assert (stats.requests, stats.providers, stats.users, list(stats.breakers)) == (0, {}, {}, [])
    assert stats.rejections == {"rate": 0, "burst": 0, "quota": 0}
    assert collector.since == START + 42
    assert collector.epoch == ""

    collector.reset(since=START + 40, epoch="e2")
    assert (collector.since, collector.epoch) == (START + 40, "e2")
    bus.publish(request())  # still attached after a reset
    assert current(collector).requests == 1


def test_adopt_joins_an_epoch_without_clearing(bus: EventBus, collector: StatsCollector) -> None:
    bus.publish(request())
    collector.adopt("e1")
    assert collector.epoch == "e1"
    assert current(collector).requests == 1
