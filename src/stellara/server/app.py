"""`create_app(config)`: build every part of one gateway and the aiohttp app that serves it.

Nothing lives at module level: tests build as many apps as they like in one process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

from aiohttp import web

from stellara._clock import Clock, SystemClock
from stellara._secrets import SecretScrubber
from stellara.cache.exact import ExactCache
from stellara.cache.l1 import L1Cache
from stellara.cache.stage import AnswerCache
from stellara.catalog import Catalog
from stellara.config.models import StateConfig, StellaraConfig
from stellara.errors import MethodNotAllowedError, RouteNotFoundError
from stellara.limits import Limiter, LimitEvents, LimitsPolicy
from stellara.pipeline.attempts import AttemptRunner
from stellara.pipeline.auth import Authenticator
from stellara.pipeline.gateway import Gateway
from stellara.providers import create_adapter
from stellara.providers.base import ProviderAdapter
from stellara.routing.breaker import BreakerBoard, BreakerSettings
from stellara.routing.health import HealthBoard
from stellara.routing.models import ModelTable
from stellara.routing.probe import HealthProber
from stellara.routing.retry import RetryPolicy
from stellara.routing.strategies import RouterStats
from stellara.server import openapi, routes_health
from stellara.server.errors import error_response
from stellara.server.routes_anthropic import AnthropicRoutes
from stellara.server.routes_cache import CacheRoutes
from stellara.server.routes_dashboard import DashboardRoutes
from stellara.server.routes_keys import KeyRoutes
from stellara.server.routes_management import ManagementRoutes
from stellara.server.routes_metrics import MetricsRoutes
from stellara.server.routes_monitoring import MonitoringRoutes, MonitoringService
from stellara.server.routes_openai import OpenAIRoutes
from stellara.server.routes_orchestration import OrchestrationRoutes
from stellara.server.routes_rebuild import QuotaRebuildRoutes
from stellara.server.routes_usage import UsageRoutes
from stellara.state.base import StateBackend
from stellara.state.memory import MemoryBackend
from stellara.store.db import Database
from stellara.store.keys import KeyStore
from stellara.store.migrate import upgrade
from stellara.store.usage import UsageWriter
from stellara.store.usage_query import UsageQuery
from stellara.store.usage_totals import UsageTotals
from stellara.telemetry.events import (
    BREAKER_CHANGED,
    PROVIDER_HEALTHY,
    PROVIDER_UNHEALTHY,
    Event,
    EventBus,
)
from stellara.telemetry.metrics import GatewayMetrics
from stellara.telemetry.setup import Sinks, attach_sinks
from stellara.telemetry.stats import StatsCollector
from stellara.tokens import TokenCounter

logger = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
AUTH = web.AppKey("auth", Authenticator)
EVENTS = web.AppKey("events", EventBus)
CONFIG = web.AppKey("config", StellaraConfig)
TOKENS = web.AppKey("tokens", TokenCounter)
STATE = web.AppKey("state", StateBackend)
USAGE = web.AppKey("usage", UsageWriter)
SINKS = web.AppKey("sinks", Sinks)
MONITORING = web.AppKey("monitoring", MonitoringService)
# A gateway starts even when its database is down (requests need no SQL): the schema is
# then brought up to date in the background, retrying at this pace.
MIGRATION_TIMEOUT_S = 15.0
MIGRATION_RETRY_FIRST_S = 0.1  # doubling: gateways racing to create one SQLite schema
MIGRATION_RETRY_MAX_S = 5.0  # settle in a few tries; a database that is down is retried
MIGRATION_STARTUP_WAIT_S = 3.0


def create_app(
    config: StellaraConfig,
    *,
    clock: Clock | None = None,
    events: EventBus | None = None,
    state_backend: StateBackend | None = None,
) -> web.Application:
    """The gateway for `config`; `state_backend` overrides the configured one (tests)."""
    events = events or EventBus()
    clock = clock or SystemClock()
    adapters = {p.id: create_adapter(p) for p in config.providers}
    provider_types = {p.id: p.type for p in config.providers}
    tokens = TokenCounter()
    state = state_backend or build_state_backend(config.state, clock)
    limiter = build_limiter(config, state, events, clock)
    models = ModelTable(config.models, adapters, provider_types)
    catalog = Catalog.from_config(config)
    gateway = Gateway(
        models,
        events,
        clock,
        catalog,
        tokens,
        attempts=build_attempt_runner(config, models, catalog, events, clock, state),
        limiter=limiter,
        cache=build_answer_cache(config, state, clock),
        log_content=config.usage_store.log_content,
    )
    database = Database(config.usage_store.url)
    key_store = KeyStore(database)
    master_key = config.server.master_key.get_secret_value() if config.server.master_key else None
    auth = Authenticator(
        master_key,
        config.keys,
        store=key_store,
        sync=state.keys,
        clock=clock,
        cache_ttl_s=config.usage_store.key_cache_ttl_s,
        master_key_model_calls=config.server.master_key_model_calls,
    )
    usage = UsageWriter(database, config.usage_store, clock=clock)
    usage.attach(events)
    sinks = attach_sinks(events, config.telemetry, state=state, clock=clock)

    # aiohttp enforces the body limit itself for bodies without a Content-Length (the routes
    # answer its error in the OpenAI body); the slack keeps its limit from firing first.
    app = web.Application(client_max_size=config.server.max_body_bytes + 1)
    app[GATEWAY] = gateway
    app[AUTH] = auth
    app[EVENTS] = events
    app[CONFIG] = config
    app[TOKENS] = tokens
    app[STATE] = state
    app[USAGE] = usage
    app[SINKS] = sinks

    OpenAIRoutes(
        gateway,
        auth,
        max_body_bytes=config.server.max_body_bytes,
        timeout_s=config.resilience.timeout_s,
    ).register(app)
    AnthropicRoutes(
        gateway,
        auth,
        max_body_bytes=config.server.max_body_bytes,
        timeout_s=config.resilience.timeout_s,
    ).register(app)
    KeyRoutes(key_store, auth, config, clock).register(app)
    UsageRoutes(UsageQuery(database), usage, auth).register(app)
    ManagementRoutes(limiter, auth).register(app)
    QuotaRebuildRoutes(
        limiter.policy, state.limits, UsageTotals(database), key_store, auth, clock
    ).register(app)
    CacheRoutes(
        gateway.cache, auth, clock, events, max_body_bytes=config.server.max_body_bytes
    ).register(app)
    OrchestrationRoutes(
        gateway,
        auth,
        max_body_bytes=config.server.max_body_bytes,
        timeout_s=config.resilience.timeout_s,
        fallback_message=config.resilience.fallback_message,
    ).register(app)
    routes_health.register(app, state, config.state.on_failure, usage)
    monitoring = build_monitoring(app, state, events, clock, config.telemetry.stats_interval_s)
    app[MONITORING] = monitoring
    MonitoringRoutes(monitoring, auth).register(app)
    DashboardRoutes(
        master_key,
        monitoring,
        lambda: {
            "providers": gateway.attempts.health.report(),
            "breakers": gateway.attempts.breakers.snapshot(),
        },
        gateway.cache,
        limiter,
        clock,
    ).register(app)
    if config.telemetry.metrics:
        metrics = GatewayMetrics(
            providers=[p.id for p in config.providers],
            breaker_states=gateway.attempts.breakers.states,
            cache_stats=gateway.cache.stats if gateway.cache is not None else None,
            in_flight=lambda: gateway.in_flight,
            usage_status=usage.status,
        )
        metrics.attach(events)
        MetricsRoutes(metrics).register(app)
    openapi.register(app)
    app.router.add_route("*", "/{tail:.*}", _not_found)

    async def close_pools(_: web.Application) -> None:  # provider pools, state, database
        await gateway.drain()  # pending settles still need the state backend
        # Every request has published its record by now.
        await usage.close(config.usage_store.shutdown_flush_s)
        await sinks.close()  # before the state backend: the Redis sink publishes through it
        await auth.close()
        for adapter in adapters.values():
            await adapter.close()
        await state.close()
        await database.close()

    prober = build_prober(config, adapters, gateway.attempts.health, state, clock)
    if prober is not None:

        async def start_probes(_: web.Application) -> None:
            prober.start()

        async def stop_probes(_: web.Application) -> None:
            await prober.stop()

        app.on_startup.append(start_probes)
        app.on_cleanup.insert(0, stop_probes)
    listen_for_breakers(app, state)

    async def start_sinks(_: web.Application) -> None:
        await sinks.start()

    app.on_startup.append(start_sinks)
    open_store(app, database, usage, auth)
    restore_semantic_cache(app, gateway.cache)
    app.on_cleanup.append(close_pools)
    return app


def build_monitoring(
    app: web.Application,
    state: StateBackend,
    events: EventBus,
    clock: Clock,
    share_interval_s: float,
) -> MonitoringService:
    """The monitoring stats of this process, shared with every process on the same Redis
    (each writes its snapshot there every few seconds; readers merge them)."""
    collector = StatsCollector(clock)
    collector.attach(events)
    from stellara.state.redis import RedisBackend  # as in build_state_backend
    from stellara.state.redis.stats import RedisStatsShare

    shared = None
    if isinstance(state, RedisBackend):
        shared = RedisStatsShare(state.client, key_prefix=state.key_prefix)
    monitoring = MonitoringService(collector, shared, write_interval_s=share_interval_s)

    async def start_monitoring(_: web.Application) -> None:
        await monitoring.start()

    async def stop_monitoring(_: web.Application) -> None:
        await monitoring.close()

    app.on_startup.append(start_monitoring)
    app.on_cleanup.insert(0, stop_monitoring)  # before close_pools closes the Redis client
    return monitoring


def listen_for_breakers(app: web.Application, state: StateBackend) -> None:
    """Subscribe to the other processes' breaker changes at start-up, when the backend shares
    them: a process that never changes a breaker itself must still hear them."""
    sync = state.breakers
    if sync is None:
        return

    async def start_breaker_sync(_: web.Application) -> None:
        if not await sync.start():
            logger.warning("breaker changes of other processes unheard yet; still trying")

    app.on_startup.append(start_breaker_sync)


def open_store(
    app: web.Application, database: Database, usage: UsageWriter, auth: Authenticator
) -> None:
    """At start-up: bring the schema up to date, start writing usage records, and listen
    for key changes. A database that is down delays none of it: the schema is retried in the
    background while records wait in the writer's buffer."""
    running: set[asyncio.Task[None]] = set()

    async def migrate_until_done() -> None:
        delay_s = MIGRATION_RETRY_FIRST_S
        while True:
            try:
                await asyncio.wait_for(upgrade(database), MIGRATION_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - any failure: the database is not ready
                log = logger.error if delay_s >= MIGRATION_RETRY_MAX_S else logger.info
                log(
                    "usage store %s not ready (%s); retrying in %.1f s",
                    database.where,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    delay_s,
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, MIGRATION_RETRY_MAX_S)
            else:
                return

    async def start_store(_: web.Application) -> None:
        migration = asyncio.create_task(migrate_until_done())
        try:  # usually quick: wait, so the first requests find the tables
            await asyncio.wait_for(asyncio.shield(migration), MIGRATION_STARTUP_WAIT_S)
        except TimeoutError:
            running.add(migration)
            migration.add_done_callback(running.discard)
        usage.start()
        await auth.start()

    async def stop_migration(_: web.Application) -> None:
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    app.on_startup.append(start_store)
    app.on_cleanup.insert(0, stop_migration)


def restore_semantic_cache(app: web.Application, cache: AnswerCache | None) -> None:
    """Rebuild the semantic index from the shared L2 in the background at start-up (serving
    does not wait: until it is done, lookups only miss more)."""
    if cache is None or cache.semantic is None or cache.exact.l2 is None:
        return
    running: set[asyncio.Task[None]] = set()

    async def restore() -> None:
        restored = await cache.restore_shared()
        logger.info("semantic cache: %d entries restored from the shared cache", restored)

    async def start_restore(_: web.Application) -> None:
        _in_background(restore(), running)

    async def stop_restore(_: web.Application) -> None:
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    app.on_startup.append(start_restore)
    app.on_cleanup.insert(0, stop_restore)


def build_state_backend(config: StateConfig, clock: Clock) -> StateBackend:
    """The configured state backend; memory runs on the app's clock."""
    if config.backend == "redis":
        # Imported here so the memory default needs no Redis client library installed.
        from stellara.state.redis import RedisBackend

        assert config.redis_url is not None  # the loader requires it for this backend
        return RedisBackend(config.redis_url)
    return MemoryBackend(clock)


def build_limiter(
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
    )


async def _not_found(request: web.Request) -> web.Response:
    """Unknown routes and wrong methods answer in the OpenAI error format, never HTML."""
    allowed = _allowed_methods(request)
    if allowed:
        error = MethodNotAllowedError(
            f"Method {request.method} is not allowed on {request.path}; use {', '.join(allowed)}."
        )
        return error_response(error, {"Allow": ", ".join(allowed)})
    return error_response(RouteNotFoundError(f"Unknown route {request.method} {request.path}."))


def _allowed_methods(request: web.Request) -> list[str]:
    methods: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == "/{tail}":
            continue
        match = resource.get_info().get("path") or resource.canonical
        if match == request.path:
            methods.update(route.method for route in resource)
    return sorted(methods - {"HEAD"})


def build_answer_cache(
    config: StellaraConfig, state: StateBackend, clock: Clock
) -> AnswerCache | None:
    """The answer cache `config.cache` describes: L1, plus L2 when the state backend shares
    one, plus the semantic level when enabled (its model loads on first use)."""
    settings = config.cache
    if settings is None:
        return None
    l1 = L1Cache(settings.l1.max_entries, settings.l1.max_bytes, clock)
    l2 = state.cache if settings.l2.enabled else None
    semantic = None
    if settings.semantic.enabled:
        # Imported here: numpy and the tokenizer cost every other gateway memory and start-up.
        from stellara.cache.embedder import SentenceEmbedder
        from stellara.cache.semantic import SemanticCache

        semantic = SemanticCache(
            SentenceEmbedder(),
            threshold=settings.semantic.threshold,
            max_entries=settings.semantic.max_entries,
            clock=clock,
        )
    return AnswerCache(settings, ExactCache(l1, l2, clock), semantic, clock)


def build_attempt_runner(
    config: StellaraConfig,
    models: ModelTable,
    catalog: Catalog,
    events: EventBus,
    clock: Clock,
    state: StateBackend | None = None,
) -> AttemptRunner:
    """Breakers, health, routing stats and the retry policy, shared by every request.

    With a state backend that shares breakers (Redis), every local breaker change is also
    broadcast in the background, and changes heard from other processes are applied to this
    board (`BreakerBoard.apply_remote`): they publish events here too, but are not broadcast
    again.
    """
    sync = state.breakers if state is not None else None
    publishing: set[asyncio.Task[None]] = set()

    def transition(breaker_id: str, old: str, new: str) -> None:
        events.publish(Event(BREAKER_CHANGED, {"breaker": breaker_id, "from": old, "to": new}))
        health.check(breaker_id.partition("/")[0])  # a breaker's provider may change status
        if sync is not None and not breakers.applying_remote:
            opened_at = breakers.opened_at_epoch_s(breaker_id) if new == "open" else None
            _in_background(sync.publish(breaker_id, new, opened_at), publishing)

    def health_changed(provider: str, old: str, new: str, reason: str) -> None:
        name = PROVIDER_UNHEALTHY if new == "unhealthy" else PROVIDER_HEALTHY
        if old == "unhealthy" or new == "unhealthy":  # degraded ↔ healthy is not news
            facts = {"provider": provider, "previous": old, "status": new, "reason": reason}
            events.publish(Event(name, facts))

    breakers = BreakerBoard(
        BreakerSettings.from_config(config.resilience.circuit_breaker), clock, transition
    )
    if sync is not None:
        sync.on_remote(breakers.apply_remote)
    health = HealthBoard(
        [p.id for p in config.providers], clock, breakers, on_change=health_changed
    )
    return AttemptRunner(
        models,
        breakers,
        health,
        RouterStats(),
        RetryPolicy.from_config(config.resilience),
        clock,
        catalog=catalog,
        events=events,
        scrub=SecretScrubber(
            p.api_key.get_secret_value() for p in config.providers if p.api_key is not None
        ),
    )


def _in_background(work: Coroutine[Any, Any, None], running: set[asyncio.Task[None]]) -> None:
    """Run `work` as a task of the running loop, held in `running` until done (so it is never
    collected mid-way); without a running loop (no request can be running), drop it."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        work.close()
        return
    task = loop.create_task(work)
    running.add(task)
    task.add_done_callback(running.discard)


def build_prober(
    config: StellaraConfig,
    adapters: Mapping[str, ProviderAdapter],
    health: HealthBoard,
    state: StateBackend,
    clock: Clock,
) -> HealthProber | None:
    """Active probes of each provider that has a model to ask (see `probe_model`)."""
    settings = config.resilience.health_check
    if not settings.enabled:
        return None
    probe_models: dict[str, str] = {}
    for provider in config.providers:
        if provider.probe_model is False:
            continue
        if isinstance(provider.probe_model, str):
            probe_models[provider.id] = provider.probe_model
            continue
        for model in config.models:
            target = next((t for t in model.targets if t.provider == provider.id), None)
            if target is not None:
                probe_models[provider.id] = target.model
                break
    return HealthProber(adapters, probe_models, health, settings, clock, lock=state.limits)
