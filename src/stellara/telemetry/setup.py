"""`attach_sinks`: the event sinks and tracing that `telemetry` configures, for one app."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from stellara._clock import Clock
from stellara.config.models import TelemetryConfig, TracingConfig
from stellara.errors import ConfigError
from stellara.events import EventBus
from stellara.state.base import StateBackend
from stellara.telemetry.sinks import QueueSink
from stellara.telemetry.sinks.channel import ChannelEventSink
from stellara.telemetry.sinks.log import EventLogSink
from stellara.telemetry.sinks.webhook import WebhookClient, WebhookSink

if TYPE_CHECKING:
    from stellara.telemetry.tracing import RequestTracer

CLOSE_TIMEOUT_S = 5.0


class Sinks:
    """One app's event sinks. `start` them once its loop runs; `close` them at shutdown after
    the last request has published its events and before the state backend closes (the Redis
    sink publishes through its client)."""

    def __init__(
        self,
        *,
        log: EventLogSink | None,
        webhooks: list[WebhookSink],
        redis: ChannelEventSink | None,
        tracer: RequestTracer | None,
        client: WebhookClient,
    ) -> None:
        self.log = log
        self.webhooks = webhooks
        self.redis = redis
        self.tracer = tracer
        self._client = client

    @property
    def all(self) -> list[QueueSink]:
        optional = (self.log, self.redis, self.tracer)
        return [*(sink for sink in optional if sink is not None), *self.webhooks]

    async def start(self) -> None:
        for sink in self.all:
            sink.start()

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Deliver what waits, every sink at once, for `timeout_s` at most; drop the rest."""
        await asyncio.gather(*(sink.close(timeout_s) for sink in self.all))
        await self._client.close()

    def status(self) -> dict[str, Any]:
        """Each sink's counters (webhook URLs without credentials), for the admin API."""
        return {
            "log": self.log.status() if self.log else None,
            "webhooks": [hook.status() for hook in self.webhooks],
            "redis": self.redis.status() if self.redis else None,
            "tracing": self.tracer.status() if self.tracer else None,
        }


def attach_sinks(
    events: EventBus, config: TelemetryConfig, *, state: StateBackend, clock: Clock
) -> Sinks:
    """Build the sinks `config` asks for and subscribe them to `events`.

    Redis events need a state backend with an event channel (Redis); others have none. Raises
    `ConfigError` when tracing is on without the packages it needs; nothing is subscribed then.
    """
    log = EventLogSink(config.log_events, clock=clock) if config.log_events.enabled else None
    client = WebhookClient()  # opens its pool on the first POST
    webhooks = [WebhookSink(hook, client, clock=clock) for hook in config.webhooks]
    redis = None
    if config.redis_events:
        redis = _redis_sink(state, clock)
    tracer = _tracer(config.tracing, clock) if config.tracing.enabled else None
    sinks = Sinks(log=log, webhooks=webhooks, redis=redis, tracer=tracer, client=client)
    for sink in sinks.all:
        sink.attach(events)
    return sinks


def _redis_sink(state: StateBackend, clock: Clock) -> ChannelEventSink | None:
    channel = state.event_channel
    return None if channel is None else ChannelEventSink(channel, clock=clock)


def _tracer(config: TracingConfig, clock: Clock) -> RequestTracer:
    try:  # OpenTelemetry is an optional extra: loaded only when tracing is on
        from stellara.telemetry.tracing import build_tracer
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise ConfigError(
            [
                "telemetry.tracing.enabled: tracing needs OpenTelemetry; install it with "
                "`pip install 'stellara[tracing]'`"
            ]
        ) from exc
    return build_tracer(config, clock=clock)
