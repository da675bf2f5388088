"""The Prometheus metrics of one gateway, and the refresh loop they need with `--workers`."""

from __future__ import annotations

import asyncio
import logging

from stellara._tasks import BackgroundTasks
from stellara.config.models import StellaraConfig
from stellara.events import EventBus
from stellara.pipeline.gateway import Gateway
from stellara.store.usage import UsageWriter
from stellara.telemetry.metrics import REFRESH_S, GatewayMetrics, LocalLimitsReading

logger = logging.getLogger(__name__)


def build_metrics(
    config: StellaraConfig, gateway: Gateway, usage: UsageWriter, events: EventBus
) -> GatewayMetrics | None:
    """The metrics `GET /metrics` serves, subscribed to the gateway's events; None when
    `telemetry.metrics` is off."""
    if not config.telemetry.metrics:
        return None
    metrics = GatewayMetrics(
        providers=[p.id for p in config.providers],
        breaker_states=gateway.attempts.breakers.states,
        cache_stats=gateway.cache.stats if gateway.cache is not None else None,
        in_flight=lambda: gateway.in_flight,
        usage_status=usage.status,
        local_limits=_local_limits(gateway),
    )
    metrics.attach(events)
    return metrics


def _local_limits(gateway: Gateway) -> LocalLimitsReading | None:
    limiter = gateway.limiter
    if limiter is None:
        return None
    return lambda: (limiter.circuit.is_open, limiter.fallback.admissions_by_tier())


class MetricsRefresh:
    """With `--workers`, keeps this worker's pulled readings (in-flight, breakers, cache)
    fresh in the shared files, for scrapes another worker answers."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._background = BackgroundTasks()

    async def start(self) -> None:
        self._background.run(self._refresh_forever())

    async def stop(self) -> None:
        await self._background.cancel()

    async def _refresh_forever(self) -> None:
        while True:
            refresh(self._metrics)
            await asyncio.sleep(REFRESH_S)


def refresh(metrics: GatewayMetrics) -> None:
    """Pull the gateway's readings into `metrics`; a broken reading costs its own series, not
    the whole scrape."""
    try:
        metrics.refresh()
    except Exception:  # logged with its traceback; the scrape goes on
        logger.exception("metrics: reading the gateway's state failed")
