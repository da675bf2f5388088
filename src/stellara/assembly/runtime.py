"""`build_runtime(config)`: every part of one gateway, built from its config, as one object.

Parts are built in the order they depend on one another, and each part with a lifetime is
added to the `Lifecycle` right after it is built, so start-up follows that order and shutdown
runs in reverse by construction:

    database ─ state backend ─ provider pools ─ schema migration ─ usage writer ─ key listener
    ─ event sinks ─ breaker listener ─ monitoring ─ experiments ─ metrics refresh
    ─ health probes ─ semantic restore ─ gateway (drains pending settles and cache writes on
    the way down)

`Runtime.running()` is that lifecycle; the HTTP app enters it at start-up (see
`stellara.server.app`), and nothing outside this package builds a domain object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from stellara._clock import Clock, SystemClock
from stellara._tasks import BackgroundTasks
from stellara.assembly.cache import SemanticRestore, build_answer_cache
from stellara.assembly.environment import check_environment
from stellara.assembly.lifecycle import Lifecycle, Step
from stellara.assembly.observability import MetricsRefresh, build_metrics
from stellara.assembly.resilience import build_attempt_runner, build_prober, listen_for_breakers
from stellara.assembly.store import MIGRATION_STARTUP_WAIT_S, MIGRATION_TIMEOUT_S, SchemaMigration
from stellara.cache.stage import AnswerCache
from stellara.catalog import Catalog
from stellara.config.models import StellaraConfig
from stellara.events import EventBus
from stellara.experiments.book import ExperimentBook
from stellara.experiments.feedback import FeedbackDesk
from stellara.limits import Limiter, LimitEvents, LimitsPolicy
from stellara.pipeline.attempts import AttemptRunner
from stellara.pipeline.auth import Authenticator
from stellara.pipeline.gateway import Gateway
from stellara.pipeline.params import ParamGuard
from stellara.pipeline.responses import StoredResponses
from stellara.pipeline.sessions import DashboardSessions
from stellara.providers import create_adapter
from stellara.providers.base import ProviderAdapter
from stellara.routing.models import ModelTable
from stellara.state import open_state_backend
from stellara.state.base import StateBackend
from stellara.store.db import Database
from stellara.store.experiment_report import ExperimentReportQuery
from stellara.store.experiments import ExperimentStore
from stellara.store.feedback import FeedbackStore
from stellara.store.keys import KeyStore
from stellara.store.usage import UsageWriter
from stellara.store.usage_query import UsageQuery
from stellara.store.usage_totals import UsageTotals
from stellara.telemetry.metrics import GatewayMetrics
from stellara.telemetry.monitoring import MonitoringService
from stellara.telemetry.setup import Sinks, attach_sinks
from stellara.telemetry.stats import StatsCollector
from stellara.tokens import TokenCounter


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """One running gateway: its config and every part built from it (see the module
    docstring for the order). Routes read the parts they need from here."""

    config: StellaraConfig
    clock: Clock
    started_at: float  # monotonic, when it was built (the dashboard's uptime)
    events: EventBus
    tokens: TokenCounter
    catalog: Catalog
    database: Database
    state: StateBackend
    adapters: Mapping[str, ProviderAdapter]
    models: ModelTable
    limiter: Limiter
    cache: AnswerCache | None
    attempts: AttemptRunner
    gateway: Gateway
    key_store: KeyStore
    experiments: ExperimentBook
    experiment_store: ExperimentStore
    experiment_report: ExperimentReportQuery
    feedback: FeedbackDesk
    auth: Authenticator
    sessions: DashboardSessions
    responses: StoredResponses
    usage: UsageWriter
    usage_query: UsageQuery
    usage_totals: UsageTotals
    sinks: Sinks
    monitoring: MonitoringService
    metrics: GatewayMetrics | None
    lifecycle: Lifecycle

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Runtime]:
        """Start every part, yield, stop them in reverse (a failed start unwinds)."""
        async with self.lifecycle.running():
            yield self


def build_runtime(
    config: StellaraConfig,
    *,
    clock: Clock | None = None,
    events: EventBus | None = None,
    state_backend: StateBackend | None = None,
) -> Runtime:
    """Build (not start) the gateway `config` describes; `clock`, `events` and
    `state_backend` replace the configured ones (tests). Raises `ConfigError` first when a
    feature it turns on cannot run in this installation."""
    check_environment(config)
    clock = clock or SystemClock()
    events = events or EventBus()
    lifecycle = Lifecycle()
    catalog = Catalog.from_config(config)

    database = Database(config.usage_store.url)
    lifecycle.add("database", stop=database.close)
    state = state_backend or open_state_backend(config.state, clock)
    lifecycle.add("state backend", stop=state.close)
    adapters = {p.id: create_adapter(p) for p in config.providers}
    lifecycle.add("provider pools", stop=_closing(adapters))
    store_wait_s = MIGRATION_TIMEOUT_S if config.usage_store.required else MIGRATION_STARTUP_WAIT_S
    migration = SchemaMigration(database, required=config.usage_store.required, wait_s=store_wait_s)
    lifecycle.add("schema migration", start=migration.start, stop=migration.stop)
    usage = UsageWriter(database, config.usage_store, clock=clock)
    usage.attach(events)
    flush_s = config.usage_store.shutdown_flush_s
    lifecycle.add("usage writer", start=_started(usage.start), stop=partial(usage.close, flush_s))
    key_store = KeyStore(database)
    auth = _authenticator(config, key_store, state, clock)
    lifecycle.add("key listener", start=auth.start, stop=auth.close)
    sinks = attach_sinks(events, config.telemetry, state=state, clock=clock)
    lifecycle.add("event sinks", start=sinks.start, stop=sinks.close)

    models = ModelTable(
        config.models,
        adapters,
        {p.id: p.type for p in config.providers},
        drop_unsupported_params=config.drop_unsupported_params,
    )
    background = BackgroundTasks()
    attempts = build_attempt_runner(
        config, models, catalog, events, clock, sync=state.breakers, background=background
    )
    if state.breakers is not None:
        listen = partial(listen_for_breakers, state.breakers)
        lifecycle.add("breaker listener", start=listen, stop=background.drain)
    collector = StatsCollector(clock)
    collector.attach(events)
    monitoring = MonitoringService(
        collector, state.stats, write_interval_s=config.telemetry.stats_interval_s
    )
    lifecycle.add("monitoring", start=monitoring.start, stop=monitoring.close)

    experiment_store = ExperimentStore(database)
    experiments = ExperimentBook(
        config.experiments,
        models,
        config.feedback,
        store=experiment_store,
        arms=state.arms,
        clock=clock,
        refresh_s=config.experiments_refresh_s,
    )
    lifecycle.add("experiments", start=_started(experiments.start), stop=experiments.stop)
    feedback = FeedbackDesk(
        config.feedback,
        FeedbackStore(database),
        usage,
        experiments,
        attempts.feedback,
        events,
        clock,
    )
    tokens = TokenCounter()
    limiter = _limiter(config, state, events, clock)
    cache = build_answer_cache(config, state, clock)
    gateway = Gateway(
        models,
        events,
        clock,
        catalog,
        tokens,
        attempts=attempts,
        params=ParamGuard.for_registry(),
        limiter=limiter,
        cache=cache,
        experiments=experiments,
        log_content=config.usage_store.log_content,
    )
    metrics = build_metrics(config, gateway, usage, events)
    if metrics is not None and metrics.multiprocess_dir is not None:
        refresh = MetricsRefresh(metrics)
        lifecycle.add("metrics refresh", start=refresh.start, stop=refresh.stop)
    prober = build_prober(config, adapters, attempts, clock, lock=state.limits)
    if prober is not None:
        lifecycle.add("health probes", start=_started(prober.start), stop=prober.stop)
    if cache is not None and SemanticRestore.needed(cache):
        restore = SemanticRestore(cache)
        lifecycle.add("semantic restore", start=restore.start, stop=restore.stop)
    responses = StoredResponses(state.responses, config.responses)
    lifecycle.add("stored responses", stop=responses.drain)  # after the requests that write
    lifecycle.add("gateway", stop=gateway.drain)
    return Runtime(
        config=config,
        clock=clock,
        started_at=clock.monotonic(),
        events=events,
        tokens=tokens,
        catalog=catalog,
        database=database,
        state=state,
        adapters=adapters,
        models=models,
        limiter=limiter,
        cache=cache,
        attempts=attempts,
        gateway=gateway,
        key_store=key_store,
        experiments=experiments,
        experiment_store=experiment_store,
        experiment_report=ExperimentReportQuery(database),
        feedback=feedback,
        auth=auth,
        sessions=DashboardSessions(_master_key(config), state.sessions),
        responses=responses,
        usage=usage,
        usage_query=UsageQuery(database),
        usage_totals=UsageTotals(database),
        sinks=sinks,
        monitoring=monitoring,
        metrics=metrics,
        lifecycle=lifecycle,
    )


def _master_key(config: StellaraConfig) -> str | None:
    secret = config.server.master_key
    return secret.get_secret_value() if secret is not None else None


def _authenticator(
    config: StellaraConfig, key_store: KeyStore, state: StateBackend, clock: Clock
) -> Authenticator:
    return Authenticator(
        _master_key(config),
        config.keys,
        store=key_store,
        sync=state.keys,
        clock=clock,
        cache_ttl_s=config.usage_store.key_cache_ttl_s,
        master_key_model_calls=config.server.master_key_model_calls,
    )


def _limiter(
    config: StellaraConfig, state: StateBackend, events: EventBus, clock: Clock
) -> Limiter:
    """The limits stage. Built even when no tier is configured: a virtual key may carry
    limits of its own (a caller with none costs one dictionary lookup, no state call)."""
    limits = config.limits
    key_tiers: dict[str, str] = {}
    for key in config.keys:
        if key.tier is not None:
            key_tiers.setdefault(key.user, key.tier)
    return Limiter(
        LimitsPolicy(limits, key_tiers),
        state.limits,
        LimitEvents(events, warn_at=limits.warn_at, backend=state.name),
        clock,
        on_failure=config.state.on_failure,
        fallback_share=config.state.fallback_share,
    )


def _started(start: Callable[[], None]) -> Step:
    """A lifecycle step for a part whose start only schedules its tasks (no await)."""

    async def step() -> None:
        start()

    return step


def _closing(adapters: Mapping[str, ProviderAdapter]) -> Step:
    async def close() -> None:
        for adapter in adapters.values():
            await adapter.close()

    return close
