"""Every event on the state backend's event channel (Redis: `<key_prefix>:events`), for
tools outside the gateway (`telemetry.redis_events`).

Pub/sub stores nothing: subscribers hear what is published while they listen, from every
gateway process sharing the backend. Each message is one JSON object `{"event", "at", "data"}`.
While the backend is down, batches are dropped and counted, never retried (the state backend
reports the outage itself).
"""

from __future__ import annotations

import asyncio
import logging

from stellara import _json
from stellara._clock import Clock
from stellara.errors import StateBackendError
from stellara.state.base import EventChannel
from stellara.telemetry.sinks import Envelope, EventPatterns, Queued, QueueSink

logger = logging.getLogger(__name__)


class ChannelEventSink(QueueSink):
    """Publishes every event on `channel`.

    Args:
        channel: the state backend's event channel; closing it is its owner's job.
        clock: stamps the events.
        pause_s: the wait after a failed batch, so a backend that is down costs little.
    """

    def __init__(
        self,
        channel: EventChannel,
        *,
        clock: Clock,
        queue_max: int = 10_000,
        batch_max: int = 100,
        pause_s: float = 1.0,
    ) -> None:
        super().__init__(
            f"event channel {channel.name}",
            EventPatterns(["*"]),
            clock=clock,
            queue_max=queue_max,
            batch_max=batch_max,
        )
        self._channel = channel
        self._pause_s = pause_s
        self._published = 0
        self._is_failing = False

    def status(self) -> dict[str, int | str]:
        return {
            "channel": self._channel.name,
            "pending": self.pending,
            "published": self._published,
            "dropped": self.dropped,
        }

    async def _send(self, batch: list[Queued]) -> None:
        try:
            await self._channel.publish([_json.encode(Envelope.of(queued)) for queued in batch])
        except StateBackendError as exc:
            self._dropped += len(batch)
            if not self._is_failing:
                self._is_failing = True
                logger.warning("%s: events dropped while it fails (%s)", self._what, exc.message)
            if not self._is_closed:
                await asyncio.sleep(self._pause_s)
            return
        self._published += len(batch)
        if self._is_failing:
            self._is_failing = False
            logger.info("%s: publishing again", self._what)
