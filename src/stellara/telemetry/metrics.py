"""Prometheus metrics of one gateway: counters moved by events, readings pulled when scraped.

Two kinds of source feed them. Events (`attach`) move counters and histograms on the request
path: each handler updates children cached by label tuple, a few microseconds per request.
Readings the gateway keeps itself (breaker states, requests in flight, cache counts, the usage
writer's buffer, the event bus's subscriber failures) are pulled by `refresh`, which the
`/metrics` route calls before rendering.

Labels stay bounded: provider ids, public model names, tiers, breaker ids and limit names all
come from the config, event names and endpoints (the model routes' declared paths) from
the code; user ids, keys, prompts, error messages and requested paths never become labels.

One process (`stellara serve`): `registry` holds the metrics and prometheus-client's process,
platform and GC collectors. Several (`--workers N`): prometheus-client's multiprocess mode, set
up by `prepare_multiprocess_dir` in the parent before the workers start. Every worker writes
its values to files there; the scraped worker sums them (`MultiProcessCollector`), so counters
and histograms cover all workers. Pulled readings are per worker, so each worker refreshes its
own every `REFRESH_S` (the routes run that loop) and the scrape combines them: in-flight
requests and pending usage records are summed over live workers, a breaker shows its worst
state on any live worker, a provider is healthy only if every live worker finds it so. Process
metrics (CPU, memory) are not exported then: prometheus-client cannot sum them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
)

from stellara.events import (
    BreakerChanged,
    EventBus,
    FeedbackReceived,
    LimitRefused,
    ProviderHealthChanged,
    ProviderHealthy,
    QuotaExceeded,
    QuotaWarning,
    RequestEnded,
    RequestFellBack,
    RequestRetried,
    StateBackendFailed,
)
from stellara.schema.chat import ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REFRESH_S = 1.0  # how stale another worker's pulled readings may be in a scrape
# 1 ms (a cache hit) to 120 s (a long generation), 2 to 3 times apart.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0
)  # fmt: skip
BREAKER_LEVELS = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
CACHE_LEVELS = frozenset(("l1", "l2", "semantic"))
_KEY_SUFFIX = "@key:"  # per-key limits end in @key:<key_id>: one series per key otherwise
_BLOCKED = "blocked"  # the limit that refuses a user blocked after a burst spike

BreakerStates = Callable[[], Mapping[str, str]]
CacheStats = Callable[[], Mapping[str, Any]]
LocalLimitsReading = Callable[[], tuple[bool, Mapping[str, int]]]
UsageStatus = Callable[[], Mapping[str, Any]]

_DECLARED_PARAMS = frozenset(ChatRequest.__struct_fields__) | frozenset(
    EmbeddingsRequest.__struct_fields__
)


def prepare_multiprocess_dir() -> Path:
    """Make a fresh, empty directory for the workers' metric files and point
    `PROMETHEUS_MULTIPROC_DIR` at it. Call it in the parent before starting any worker (they
    inherit the variable, and prometheus-client reads it when imported); a variable inherited
    from elsewhere is replaced, since files of another run would be summed in. The caller
    removes the directory when the workers are gone."""
    path = Path(tempfile.mkdtemp(prefix="stellara-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def worker_exited(pid: int) -> None:
    """Forget the live gauges of a worker that exited (its counters stay in the sums)."""
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def multiprocess_dir() -> Path | None:
    """The directory of multiprocess mode, when this process runs in it."""
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


class _RequestSeries(NamedTuple):
    duration: Histogram
    ttfb: Histogram


class _UsageSeries(NamedTuple):
    prompt: Counter
    completion: Counter
    cached: Counter
    cache_write: Counter
    reasoning: Counter
    cost: Counter


class _CountFollower:
    """Moves a counter along with a count kept elsewhere (a cache's hits, the writer's drops):
    each reading adds what was counted since the last one, so it stays a counter and sums
    across workers."""

    __slots__ = ("_counter", "_last")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._last = 0.0

    def follow(self, total: float) -> None:
        added = total - self._last if total >= self._last else total  # the source restarted
        self._last = total
        if added > 0:
            self._counter.inc(added)


class GatewayMetrics:
    """The metrics of one gateway, built once by `create_app` (several may live in one process:
    each has its own registry).

    Args:
        registry: filled with the metrics (a fresh one when None); in multiprocess mode it gets
            the collector of every worker's files instead. `/metrics` renders it.
        providers: provider ids, reported healthy until an event says otherwise.
        breaker_states: each breaker's state by id (`BreakerBoard.states`).
        cache_stats: `AnswerCache.stats`, when a cache is configured.
        in_flight: the number of requests in flight.
        usage_status: `UsageWriter.status`.
        local_limits: whether this process enforces limits on its own now (the state backend
            is down), and how many requests it admitted so, by tier (`limits.fallback`).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        providers: Iterable[str] = (),
        breaker_states: BreakerStates | None = None,
        cache_stats: CacheStats | None = None,
        in_flight: Callable[[], int] | None = None,
        usage_status: UsageStatus | None = None,
        local_limits: LocalLimitsReading | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir()
        self._breaker_states = breaker_states
        self._cache_stats = cache_stats
        self._in_flight_reading = in_flight
        self._usage_status = usage_status
        self._local_limits = local_limits
        own_registry = None if self.multiprocess_dir else self.registry
        self._define_traffic(own_registry)
        self._define_state(own_registry)
        if self.multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        else:
            path = str(self.multiprocess_dir)
            multiprocess.MultiProcessCollector(self.registry, path)  # type: ignore[no-untyped-call]
        for provider in providers:
            self.provider_healthy.labels(provider).set(1)
        # Children by label tuple: `.labels()` costs more than the update itself.
        self._requests: dict[tuple[str, str, int, str, str], Counter] = {}
        self._request_series: dict[tuple[str, str], _RequestSeries] = {}
        self._usage: dict[tuple[str, str, str | None], _UsageSeries] = {}
        self._retries: dict[str, Counter] = {}
        self._followers: dict[tuple[Counter, str | None], _CountFollower] = {}
        self._bus: EventBus | None = None  # set by `attach`: its subscriber failures are read

    def _define_traffic(self, registry: CollectorRegistry | None) -> None:
        """The metrics events move on every request. In multiprocess mode they are registered
        nowhere (the files are what gets scraped), as are those of `_define_state`."""
        counter = partial(Counter, registry=registry)
        histogram = partial(Histogram, buckets=LATENCY_BUCKETS_S, registry=registry)
        self.requests = counter(
            "stellara_requests",
            "Model calls by public model, provider id (cache: answered from the cache; empty: "
            "none chosen), HTTP status, cache outcome and endpoint (the inbound API's path)",
            ["model", "provider", "status", "cache", "endpoint"],
        )
        self.request_duration = histogram(
            "stellara_request_duration_seconds",
            "Model calls from arrival to the last byte, by provider id and endpoint",
            ["provider", "endpoint"],
        )
        self.time_to_first_byte = histogram(
            "stellara_time_to_first_byte_seconds",
            "Model calls from arrival to the first byte of the answer, by provider id",
            ["provider"],
        )
        self.tokens = counter(
            "stellara_tokens",
            "Tokens the providers reported, by kind: prompt, completion, cached and cache_write "
            "(of the prompt: read from and written to the provider's cache), reasoning (of the "
            "completion)",
            ["provider", "model", "tier", "kind"],
        )
        self.cost = counter(
            "stellara_cost_usd", "Cost of model calls in US dollars", ["provider", "model", "tier"]
        )
        self.retries = counter(
            "stellara_retries", "Retries of a failed attempt on the same target", ["provider"]
        )
        self.fallbacks = counter(
            "stellara_fallbacks",
            "Moves from a public model to one of its fallback models",
            ["from_model", "to_model"],
        )
        self.experiment_requests = counter(
            "stellara_experiment_requests",
            "Model calls counted in an experiment, by experiment, variant and HTTP status",
            ["experiment", "variant", "status"],
        )
        self.experiment_cost = counter(
            "stellara_experiment_cost_usd",
            "Cost of the model calls counted in an experiment, by experiment and variant",
            ["experiment", "variant"],
        )
        self.experiment_duration = histogram(
            "stellara_experiment_request_duration_seconds",
            "Model calls counted in an experiment, arrival to last byte, by variant",
            ["experiment", "variant"],
        )
        self.feedback = counter(
            "stellara_feedback",
            "Feedback reported (the first value per request and metric), by metric, and the "
            "experiment and variant that served the rated request (empty outside experiments)",
            ["metric", "experiment", "variant"],
        )
        self.feedback_value = counter(
            "stellara_feedback_value",
            "The sum of the values `stellara_feedback` counts (booleans as 1 and 0)",
            ["metric", "experiment", "variant"],
        )
        self.dropped_params = counter(
            "stellara_dropped_params",
            "Request parameters not sent to the provider id that answered or failed last, as "
            "it cannot honour them and the model drops them (drop_unsupported_params)",
            ["provider", "param"],
        )

    def _define_state(self, registry: CollectorRegistry | None) -> None:
        """Breakers, health, limits, the state backend, and the readings `refresh` pulls."""
        counter = partial(Counter, registry=registry)
        gauge = partial(Gauge, registry=registry)
        self.breaker_transitions = counter(
            "stellara_circuit_breaker_transitions",
            "Circuit breaker state changes, by new state",
            ["breaker", "to"],
        )
        self.breaker_state = gauge(
            "stellara_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["breaker"],
            multiprocess_mode="livemax",
        )
        self.provider_healthy = gauge(
            "stellara_provider_healthy",
            "1 unless the provider is unhealthy (degraded counts as 1)",
            ["provider"],
            multiprocess_mode="livemin",
        )
        self.limit_rejections = counter(
            "stellara_limit_rejections",
            "Requests refused by a limit; kind rate, burst or quota; limit e.g. rate:requests",
            ["kind", "limit"],
        )
        self.limit_shadow_rejections = counter(
            "stellara_limit_shadow_rejections",
            "Requests a limit in shadow mode would have refused (they were served)",
            ["kind", "limit"],
        )
        self.quota_warnings = counter(
            "stellara_quota_warnings", "Quotas that crossed limits.warn_at", ["limit"]
        )
        self.state_backend_errors = counter(
            "stellara_state_backend_errors", "Failed state backend calls", ["operation"]
        )
        self.limits_local = gauge(
            "stellara_limits_local",
            "1 while this process enforces limits on its own (the state backend is down)",
            multiprocess_mode="livemax",
        )
        self.limits_local_admissions = counter(
            "stellara_limits_local_admissions",
            "Requests admitted on a process's own limits while the state backend was down",
            ["tier"],
        )
        self.cache_hits = counter("stellara_cache_hits", "Answer cache hits", ["level"])
        self.cache_misses = counter("stellara_cache_misses", "Answer cache misses", ["level"])
        self.cache_evictions = counter(
            "stellara_cache_evictions", "Answer cache evictions", ["level"]
        )
        self.in_flight = gauge(
            "stellara_in_flight_requests", "Model calls being served", multiprocess_mode="livesum"
        )
        self.usage_pending = gauge(
            "stellara_usage_records_pending",
            "Usage records waiting to be written",
            multiprocess_mode="livesum",
        )
        self.usage_dropped = counter(
            "stellara_usage_records_dropped", "Usage records dropped (buffer full, writer closed)"
        )
        self.event_subscriber_failures = counter(
            "stellara_event_subscriber_failures",
            "Events a subscriber failed to take (a bug; the log has its traceback), by event",
            ["event"],
        )

    def attach(self, events: EventBus) -> None:
        """Subscribe to the gateway's events; call once, before serving."""
        events.subscribe(RequestEnded, self._on_request)
        events.subscribe(FeedbackReceived, self._on_feedback)
        events.subscribe(RequestRetried, self._on_retry)
        events.subscribe(RequestFellBack, self._on_fallback)
        events.subscribe(BreakerChanged, self._on_breaker)
        events.subscribe(ProviderHealthChanged, self._on_health)
        events.subscribe(LimitRefused, self._on_refusal)
        events.subscribe(QuotaWarning, self._on_quota_warning)
        events.subscribe(StateBackendFailed, self._on_backend_error)
        self._bus = events

    def refresh(self) -> None:
        """Pull the readings the gateway keeps itself. Runs on the event loop (the sources
        are not thread-safe); cheap: a few dictionary reads."""
        if self._breaker_states is not None:
            for breaker, state in self._breaker_states().items():
                self.breaker_state.labels(breaker).set(BREAKER_LEVELS[state])
        if self._in_flight_reading is not None:
            self.in_flight.set(self._in_flight_reading())
        if self._bus is not None:
            for name, failures in self._bus.subscriber_failures().items():
                self._follow(self.event_subscriber_failures, name, failures)
        if self._local_limits is not None:
            is_local, by_tier = self._local_limits()
            self.limits_local.set(1 if is_local else 0)
            for tier, admitted in by_tier.items():
                self._follow(self.limits_local_admissions, tier, admitted)
        if self._usage_status is not None:
            status = self._usage_status()
            self.usage_pending.set(status["pending"])
            self._follow(self.usage_dropped, None, status["dropped"])
        if self._cache_stats is not None:
            for level, counts in self._cache_stats()["levels"].items():
                if level not in CACHE_LEVELS:
                    continue
                hits = counts["hits"]
                # The semantic level counts lookups and hits.
                misses = counts["misses"] if "misses" in counts else counts["lookups"] - hits
                self._follow(self.cache_hits, level, hits)
                self._follow(self.cache_misses, level, misses)
                if "evictions" in counts:
                    self._follow(self.cache_evictions, level, counts["evictions"])

    def _follow(self, counter: Counter, label: str | None, total: float) -> None:
        follower = self._followers.get((counter, label))
        if follower is None:
            child = counter if label is None else counter.labels(label)
            follower = self._followers[(counter, label)] = _CountFollower(child)
        follower.follow(total)

    def _on_request(self, event: RequestEnded) -> None:
        model, provider, tier, status = event.model, event.provider, event.tier, event.status
        endpoint = event.endpoint
        key = (model, provider, status, event.cache, endpoint)
        requests = self._requests.get(key)
        if requests is None:
            requests = self._requests[key] = self.requests.labels(
                model, provider, str(status), event.cache, endpoint
            )
        requests.inc()
        series = self._request_series.get((provider, endpoint))
        if series is None:
            series = self._request_series[(provider, endpoint)] = _RequestSeries(
                self.request_duration.labels(provider, endpoint),
                self.time_to_first_byte.labels(provider),
            )
        series.duration.observe(event.latency_ms / 1000.0)
        experiment = event.experiment
        if experiment is not None:
            self._on_experiment_request(experiment, event)
        for param in event.dropped_params:
            # A client names its undeclared fields: one label for them keeps the series few.
            label = param if param in _DECLARED_PARAMS else "unknown_params"
            self.dropped_params.labels(provider, label).inc()
        ttfb_ms = event.ttfb_ms
        if ttfb_ms is not None:
            series.ttfb.observe(ttfb_ms / 1000.0)
        prompt, completion = event.prompt_tokens, event.completion_tokens
        cached, cost = event.cached_tokens, event.cost_usd
        cache_write, reasoning = event.cache_write_tokens, event.reasoning_tokens
        if not (prompt or completion or cached or cache_write or cost):
            return  # refused or failed before any token: no usage series for it
        usage = self._usage.get((provider, model, tier))
        if usage is None:
            usage = self._usage[(provider, model, tier)] = self._usage_series(provider, model, tier)
        if prompt:
            usage.prompt.inc(prompt)
        if completion:
            usage.completion.inc(completion)
        if cached:
            usage.cached.inc(cached)
        if cache_write:
            usage.cache_write.inc(cache_write)
        if reasoning:
            usage.reasoning.inc(reasoning)
        if cost:
            usage.cost.inc(cost)

    def _on_experiment_request(self, experiment: str, event: RequestEnded) -> None:
        variant = event.variant or ""
        self.experiment_requests.labels(experiment, variant, str(event.status)).inc()
        self.experiment_duration.labels(experiment, variant).observe(event.latency_ms / 1000.0)
        if event.cost_usd:
            self.experiment_cost.labels(experiment, variant).inc(event.cost_usd)

    def _on_feedback(self, event: FeedbackReceived) -> None:
        if not event.is_first:
            return  # a changed value: the SQL report has it, a counter cannot take one back
        labels = (event.metric, event.experiment or "", event.variant or "")
        self.feedback.labels(*labels).inc()
        if event.value:
            self.feedback_value.labels(*labels).inc(event.value)

    def _usage_series(self, provider: str, model: str, tier: str | None) -> _UsageSeries:
        tier_label = tier or ""
        return _UsageSeries(
            self.tokens.labels(provider, model, tier_label, "prompt"),
            self.tokens.labels(provider, model, tier_label, "completion"),
            self.tokens.labels(provider, model, tier_label, "cached"),
            self.tokens.labels(provider, model, tier_label, "cache_write"),
            self.tokens.labels(provider, model, tier_label, "reasoning"),
            self.cost.labels(provider, model, tier_label),
        )

    def _on_retry(self, event: RequestRetried) -> None:
        provider = event.provider
        retries = self._retries.get(provider)
        if retries is None:
            retries = self._retries[provider] = self.retries.labels(provider)
        retries.inc()

    def _on_fallback(self, event: RequestFellBack) -> None:
        self.fallbacks.labels(event.from_model, event.to_model).inc()

    def _on_breaker(self, event: BreakerChanged) -> None:
        breaker, state = event.breaker, event.to_state
        self.breaker_transitions.labels(breaker, state).inc()
        # At once, not only at the next refresh: other workers' scrapes see it too.
        self.breaker_state.labels(breaker).set(BREAKER_LEVELS[state])

    def _on_health(self, event: ProviderHealthChanged) -> None:
        is_healthy = isinstance(event, ProviderHealthy)
        self.provider_healthy.labels(event.provider).set(1 if is_healthy else 0)

    def _on_refusal(self, event: LimitRefused) -> None:
        name = _bounded_limit(event.limit)
        if isinstance(event, QuotaExceeded):
            kind = "quota"
        elif name == _BLOCKED or name.startswith("burst:"):
            kind = "burst"
        else:
            kind = "rate"
        counter = self.limit_shadow_rejections if event.shadow else self.limit_rejections
        counter.labels(kind, name).inc()

    def _on_quota_warning(self, event: QuotaWarning) -> None:
        self.quota_warnings.labels(_bounded_limit(event.limit)).inc()

    def _on_backend_error(self, event: StateBackendFailed) -> None:
        self.state_backend_errors.labels(event.operation).inc()


def _bounded_limit(name: str) -> str:
    """The limit's name without the key it may be counted for."""
    cut = name.find(_KEY_SUFFIX)
    return name if cut < 0 else name[:cut]
