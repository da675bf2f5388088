"""GatewayMetrics: what each event and each reading does to the exposition, and what never
reaches it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stellara.events import (
    BreakerChanged,
    BurstLimited,
    BurstSpiked,
    Event,
    EventBus,
    LimitRefused,
    ProviderHealthy,
    ProviderUnhealthy,
    QuotaExceeded,
    QuotaWarning,
    RateLimitExceeded,
    RequestCompleted,
    RequestEnded,
    RequestFailed,
    RequestFellBack,
    RequestRetried,
    StateBackendFailed,
)
from stellara.telemetry.metrics import MULTIPROC_ENV, GatewayMetrics
from stellara.testing import request_completed, request_failed

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def scrape(metrics: GatewayMetrics) -> Samples:
    metrics.refresh()
    return parse(generate_latest(metrics.registry).decode())


# The facts metrics read, and private ones they must never read.
FACTS: dict[str, Any] = {
    "user": "alice-user-id",
    "team": "team-secret",
    "key_id": "key_abc123",
    "key_prefix": "sk-…wxyz",
    "tier": "pro",
    "session_id": "session-42",
    "prompt_tokens": 12,
    "completion_tokens": 30,
    "cached_tokens": 4,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "cost_usd": 0.0025,
    "latency_ms": 180.0,
    "ttfb_ms": 40.0,
}


def request_event(kind: type[RequestEnded] = RequestCompleted, **facts: Any) -> RequestEnded:
    """A request event as the gateway publishes it, with `FACTS`."""
    build = request_failed if kind is RequestFailed else request_completed
    return build(**{**FACTS, **facts})


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


def attached(bus: EventBus, **readings: Any) -> GatewayMetrics:
    metrics = GatewayMetrics(**readings)
    metrics.attach(bus)
    return metrics


def publish(bus: EventBus, events: Iterable[Event]) -> None:
    for event in events:
        bus.publish(event)


def test_metrics_request_events_count_requests_latency_tokens_and_cost(bus: EventBus) -> None:
    metrics = attached(bus)
    publish(bus, [request_event(), request_event(latency_ms=3000.0, ttfb_ms=None, stream=True)])
    publish(bus, [request_event(provider="cache", cache="hit", latency_ms=0.5, cost_usd=0.0)])
    s = scrape(metrics)
    ok = {"model": "smart", "status": "200"}
    assert total(s, "stellara_requests_total", provider="openai", cache="miss", **ok) == 2
    assert total(s, "stellara_requests_total", provider="cache", cache="hit", **ok) == 1
    duration = "stellara_request_duration_seconds"
    assert total(s, f"{duration}_count", provider="openai") == 2
    assert total(s, f"{duration}_sum", provider="openai") == pytest.approx(3.18)
    assert total(s, f"{duration}_bucket", provider="openai", le="0.25") == 1
    assert total(s, f"{duration}_bucket", provider="openai", le="5.0") == 2
    assert total(s, f"{duration}_bucket", provider="cache", le="0.001") == 1
    ttfb = "stellara_time_to_first_byte_seconds"
    assert total(s, f"{ttfb}_count", provider="openai") == 1  # the stream had none
    assert total(s, f"{ttfb}_sum", provider="openai") == pytest.approx(0.04)
    tokens = {"provider": "openai", "model": "smart", "tier": "pro"}
    assert total(s, "stellara_tokens_total", kind="prompt", **tokens) == 24
    assert total(s, "stellara_tokens_total", kind="completion", **tokens) == 60
    assert total(s, "stellara_tokens_total", kind="cached", **tokens) == 8
    assert total(s, "stellara_cost_usd_total", **tokens) == pytest.approx(0.005)
    assert total(s, "stellara_tokens_total", provider="cache", kind="prompt") == 12


def test_metrics_count_and_time_requests_by_their_endpoint(bus: EventBus) -> None:
    metrics = attached(bus)
    publish(bus, [request_event(endpoint="/v1/responses")] * 2)
    publish(bus, [request_event(endpoint="/v1/messages", latency_ms=3000.0)])
    s = scrape(metrics)
    requests = "stellara_requests_total"
    assert total(s, requests, provider="openai", endpoint="/v1/responses") == 2
    assert total(s, requests, provider="openai", endpoint="/v1/messages") == 1
    duration = "stellara_request_duration_seconds"
    assert total(s, f"{duration}_count", provider="openai", endpoint="/v1/responses") == 2
    assert total(s, f"{duration}_bucket", endpoint="/v1/messages", le="2.5") == 0
    assert total(s, f"{duration}_bucket", endpoint="/v1/messages", le="5.0") == 1
    # Time to first byte stays by provider alone: every label multiplies a histogram's 18 series.
    assert {tuple(labels) for labels in series(s, "stellara_time_to_first_byte_seconds_count")} == {
        ("provider",)
    }


def test_metrics_failed_requests_count_by_status_without_usage_series(bus: EventBus) -> None:
    metrics = attached(bus)
    refused = {"provider": "", "status": 429, "error": "rate_limit_exceeded", "tier": None}
    no_usage = {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.0,
    }
    publish(bus, [request_event(RequestFailed, **refused, **no_usage, message="hi")] * 3)
    publish(bus, [request_event(RequestFailed, status=504, error="upstream_timeout", **no_usage)])
    s = scrape(metrics)
    assert total(s, "stellara_requests_total", provider="", status="429") == 3
    assert total(s, "stellara_requests_total", provider="openai", status="504") == 1
    assert total(s, "stellara_request_duration_seconds_count") == 4
    assert series(s, "stellara_tokens_total") == []
    assert series(s, "stellara_cost_usd_total") == []


def test_metrics_never_expose_users_keys_sessions_or_messages(bus: EventBus) -> None:
    metrics = attached(bus)
    secret = "Summarise the board minutes of ACME"
    publish(bus, [request_event(RequestFailed, message=secret, error="upstream_unavailable")])
    publish(bus, [request_event(prompt=secret, completion=secret)])
    text = generate_latest(metrics.registry).decode()
    for private in (secret, "alice-user-id", "team-secret", "key_abc123", "wxyz", "session-42"):
        assert private not in text
    assert 'model="smart"' in text  # the events did arrive


def test_metrics_retries_fallbacks_and_breakers(bus: EventBus) -> None:
    states = {"openai": "closed"}
    metrics = attached(bus, breaker_states=lambda: states)
    retries = [
        RequestRetried(
            request_id="r",
            provider="openai",
            model="gpt-4o",
            attempt=n,
            error="upstream_unavailable",
            delay_ms=10.0,
        )
        for n in (1, 2)
    ]
    publish(bus, retries)
    fallback = RequestFellBack(request_id="r", from_model="smart", to_model="cheap", error=None)
    publish(bus, [fallback])
    publish(bus, [BreakerChanged(breaker="openai", from_state="closed", to_state="open")])
    s = parse(generate_latest(metrics.registry).decode())  # before any refresh: the event
    assert total(s, "stellara_circuit_breaker_state", breaker="openai") == 2
    states["openai"] = "half_open"  # time-driven: only a reading shows it
    s = scrape(metrics)
    assert total(s, "stellara_retries_total", provider="openai") == 2
    assert total(s, "stellara_fallbacks_total", from_model="smart", to_model="cheap") == 1
    transitions = "stellara_circuit_breaker_transitions_total"
    assert total(s, transitions, breaker="openai", to="open") == 1
    assert total(s, "stellara_circuit_breaker_state", breaker="openai") == 1


def test_metrics_provider_health_starts_healthy_and_follows_events(bus: EventBus) -> None:
    metrics = attached(bus, providers=["openai", "claude"])
    down = ProviderUnhealthy(
        provider="claude", previous="healthy", status="unhealthy", reason="circuit breaker open"
    )
    publish(bus, [down])
    s = scrape(metrics)
    assert total(s, "stellara_provider_healthy", provider="openai") == 1
    assert total(s, "stellara_provider_healthy", provider="claude") == 0
    up = ProviderHealthy(provider="claude", previous="unhealthy", status="healthy", reason="ok")
    publish(bus, [up])
    assert total(scrape(metrics), "stellara_provider_healthy", provider="claude") == 1


def refused(
    kind: type[LimitRefused | BurstLimited], limit: str, *, shadow: bool = False
) -> LimitRefused | BurstLimited:
    return kind(
        request_id="r",
        user="bob-user-id",
        tier="free",
        shadow=shadow,
        limit=limit,
        used=None,
        limit_value=None,
        reset_at=0.0,
        retry_after_s=1.0,
    )


def test_metrics_limit_refusals_by_kind_and_bounded_limit_name(bus: EventBus) -> None:
    metrics = attached(bus)
    publish(
        bus,
        [
            refused(RateLimitExceeded, "rate:requests"),
            refused(RateLimitExceeded, "rate:tokens@key:key_abc123"),
            refused(RateLimitExceeded, "burst:requests"),
            # The same refusal as the line above: counted once.
            refused(BurstLimited, "burst:requests"),
            BurstSpiked(  # served, then blocked
                request_id="r",
                user="bob-user-id",
                tier="free",
                shadow=False,
                recent_rate_per_s=6.0,
                baseline_rate_per_s=1.0,
                blocked_s=1.0,
            ),
            refused(RateLimitExceeded, "blocked"),
            refused(QuotaExceeded, "quota:daily:cost_usd@key:key_def456"),
            refused(QuotaExceeded, "quota:daily:cost_usd"),
            refused(RateLimitExceeded, "rate:requests", shadow=True),
            QuotaWarning(
                request_id="r",
                user="bob-user-id",
                tier="free",
                shadow=False,
                limit="quota:monthly:tokens@key:key_abc123",
                used=80.0,
                limit_value=100.0,
                warn_at=0.8,
                reset_at=0.0,
            ),
        ],
    )
    s = scrape(metrics)
    rejections = "stellara_limit_rejections_total"
    assert sorted(
        (d["kind"], d["limit"], total(s, rejections, **d)) for d in series(s, rejections)
    ) == [
        ("burst", "blocked", 1),
        ("burst", "burst:requests", 1),
        ("quota", "quota:daily:cost_usd", 2),
        ("rate", "rate:requests", 1),
        ("rate", "rate:tokens", 1),
    ]
    shadow = "stellara_limit_shadow_rejections_total"
    assert total(s, shadow, kind="rate", limit="rate:requests") == 1
    assert total(s, "stellara_quota_warnings_total", limit="quota:monthly:tokens") == 1
    assert "key_abc123" not in generate_latest(metrics.registry).decode()


def test_metrics_state_backend_errors_by_operation(bus: EventBus) -> None:
    metrics = attached(bus)
    failures = [("admit", 2), ("settle", 1)]
    for operation, times in failures:
        publish(bus, [StateBackendFailed(backend="redis", operation=operation)] * times)
    s = scrape(metrics)
    for operation, times in failures:
        assert total(s, "stellara_state_backend_errors_total", operation=operation) == times


def test_metrics_count_the_failures_of_event_subscribers(bus: EventBus) -> None:
    metrics = attached(bus)

    def broken(event: StateBackendFailed) -> None:
        raise RuntimeError("a subscriber's bug")

    bus.subscribe(StateBackendFailed, broken)
    publish(bus, [StateBackendFailed(backend="redis", operation="admit")] * 2)
    failures = "stellara_event_subscriber_failures_total"
    assert total(scrape(metrics), failures, event="state_backend.error") == 2
    publish(bus, [StateBackendFailed(backend="redis", operation="admit")])
    s = scrape(metrics)
    assert total(s, failures, event="state_backend.error") == 3
    assert total(s, "stellara_state_backend_errors_total", operation="admit") == 3  # unharmed


def cache_stats(l1: tuple[int, int, int], semantic: tuple[int, int]) -> dict[str, Any]:
    """`AnswerCache.stats()` as it is shaped (hits, misses, evictions; semantic: lookups)."""
    hits, misses, evictions = l1
    lookups, semantic_hits = semantic
    return {
        "scope": "user",
        "levels": {
            "l1": {"entries": 3, "bytes": 900, "hits": hits, "misses": misses,
                   "hit_rate": 0.5, "evictions": evictions},
            "l2": {"hits": 1, "misses": 2, "hit_rate": 0.3, "evictions": 0, "errors": 0,
                   "invalidations": 0},
            "semantic": {"entries": 2, "lookups": lookups, "hits": semantic_hits,
                         "hit_rate": 0.1, "guard_trips": 0, "guard_trips_by_rule": {},
                         "embed_ms_p50": 3.0, "lookup_ms_p50": 0.2},
        },
    }  # fmt: skip


def test_metrics_cache_counts_follow_the_cache_and_survive_its_reset(bus: EventBus) -> None:
    stats = cache_stats(l1=(5, 7, 2), semantic=(7, 3))
    metrics = attached(bus, cache_stats=lambda: stats)
    s = scrape(metrics)
    assert total(s, "stellara_cache_hits_total", level="l1") == 5
    assert total(s, "stellara_cache_misses_total", level="l1") == 7
    assert total(s, "stellara_cache_evictions_total", level="l1") == 2
    assert total(s, "stellara_cache_hits_total", level="l2") == 1
    assert total(s, "stellara_cache_hits_total", level="semantic") == 3
    assert total(s, "stellara_cache_misses_total", level="semantic") == 4
    assert sorted(d["level"] for d in series(s, "stellara_cache_evictions_total")) == ["l1", "l2"]
    assert total(scrape(metrics), "stellara_cache_hits_total", level="l1") == 5  # no double count
    stats = cache_stats(l1=(9, 7, 2), semantic=(7, 3))
    assert total(scrape(metrics), "stellara_cache_hits_total", level="l1") == 9
    stats = cache_stats(l1=(1, 0, 0), semantic=(0, 0))  # the cache restarted its counts
    s = scrape(metrics)
    assert total(s, "stellara_cache_hits_total", level="l1") == 10
    assert total(s, "stellara_cache_misses_total", level="l1") == 7


def test_metrics_in_flight_and_usage_writer_are_read_when_scraped(bus: EventBus) -> None:
    in_flight = 3
    usage = {"healthy": True, "pending": 40, "written": 100, "dropped": 0, "last_error": None}
    metrics = attached(bus, in_flight=lambda: in_flight, usage_status=lambda: usage)
    s = scrape(metrics)
    assert total(s, "stellara_in_flight_requests") == 3
    assert total(s, "stellara_usage_records_pending") == 40
    assert total(s, "stellara_usage_records_dropped_total") == 0
    in_flight, usage = 0, {**usage, "pending": 0, "dropped": 12}
    s = scrape(metrics)
    assert total(s, "stellara_in_flight_requests") == 0
    assert total(s, "stellara_usage_records_pending") == 0
    assert total(s, "stellara_usage_records_dropped_total") == 12


def test_metrics_single_process_exports_process_metrics_in_its_own_registry(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    other = attached(bus)  # a second gateway in the same process
    publish(bus, [request_event()])
    assert metrics.multiprocess_dir is None
    assert metrics.registry is registry
    s = scrape(metrics)
    assert total(s, "stellara_requests_total") == 0  # not attached: the other one counted
    assert total(scrape(other), "stellara_requests_total") == 1
    assert total(s, "process_cpu_seconds_total") > 0
    assert total(s, "python_info") == 1
