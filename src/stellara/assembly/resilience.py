"""The resilience parts shared by every request, and how they tell one another:

    breaker changes ─▶ event `circuit_breaker.state_changed`
                    ─▶ health re-check of the breaker's provider ─▶ `provider.(un)healthy`
                    ─▶ broadcast to the other processes (state backend), unless heard from one

Breakers, health, routing stats and the retry policy form the `AttemptRunner`; active health
probes (`HealthProber`) feed the same health board.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from stellara._clock import Clock
from stellara._secrets import UpstreamMessageScrubber
from stellara._tasks import BackgroundTasks
from stellara.catalog import Catalog
from stellara.config.models import StellaraConfig
from stellara.config.secrets import secret_values
from stellara.events import BreakerChanged, EventBus, ProviderHealthy, ProviderUnhealthy
from stellara.pipeline.attempts import AttemptRunner
from stellara.providers.base import ProviderAdapter
from stellara.routing.breaker import BreakerBoard, BreakerSettings
from stellara.routing.health import HealthBoard
from stellara.routing.models import ModelTable
from stellara.routing.probe import HealthProber
from stellara.routing.retry import RetryPolicy
from stellara.routing.stats import RouterStats
from stellara.state.base import BreakerSync, LimitStore

logger = logging.getLogger(__name__)


def build_attempt_runner(
    config: StellaraConfig,
    models: ModelTable,
    catalog: Catalog,
    events: EventBus,
    clock: Clock,
    *,
    sync: BreakerSync | None,
    background: BackgroundTasks,
) -> AttemptRunner:
    """The attempt runner with its breakers and health board wired as the module docstring
    draws. With a `sync` (a state backend shared by several processes), changes heard from
    other processes are applied here too (`BreakerBoard.apply_remote`) and publish events, but
    are not broadcast again."""

    def transition(breaker_id: str, old: str, new: str) -> None:
        events.publish(BreakerChanged(breaker=breaker_id, from_state=old, to_state=new))
        health.check(breaker_id.partition("/")[0])  # a breaker's provider may change status
        if sync is not None and not breakers.applying_remote:
            opened_at = breakers.opened_at_epoch_s(breaker_id) if new == "open" else None
            background.run(sync.publish(breaker_id, new, opened_at))

    def health_changed(provider: str, old: str, new: str, reason: str) -> None:
        kind = ProviderUnhealthy if new == "unhealthy" else ProviderHealthy
        if old == "unhealthy" or new == "unhealthy":  # degraded ↔ healthy is not news
            events.publish(kind(provider=provider, previous=old, status=new, reason=reason))

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
        scrub=UpstreamMessageScrubber(secret_values(config)),
    )


async def listen_for_breakers(sync: BreakerSync) -> None:
    """Subscribe to the other processes' breaker changes at start-up: a process that never
    changes a breaker itself must still hear them."""
    if not await sync.start():
        logger.warning("breaker changes of other processes unheard yet; still trying")


def build_prober(
    config: StellaraConfig,
    adapters: Mapping[str, ProviderAdapter],
    runner: AttemptRunner,
    clock: Clock,
    *,
    lock: LimitStore,
) -> HealthProber | None:
    """Active probes of each provider that has a model to ask (see `probe_model`); None when
    health checks are off. `lock` is the state backend's limit store: with Redis, one process
    of the deployment probes each provider per interval."""
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
    return HealthProber(adapters, probe_models, runner.health, settings, clock, lock=lock)
