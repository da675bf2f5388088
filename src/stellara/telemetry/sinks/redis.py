"""Every event on the Redis channel `<key_prefix>:events`, for tools outside the gateway.

Pub/sub stores nothing: subscribers hear what is published while they listen, from every
gateway process sharing the Redis. Each message is one JSON object `{"event", "at", "data"}`.
Events go out in batches on the state backend's pipelined connection, whose short timeout
bounds each batch; while Redis is down, batches are dropped and counted, never retried (the
state backend reports the outage itself).
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from stellara._clock import Clock
from stellara.state.redis.pipelined import PipelinedRedis
from stellara.telemetry.sinks import (
    EventPatterns,
    Queued,
    QueueSink,
    iso_time,
    public_facts,
    to_json,
)

logger = logging.getLogger(__name__)


def events_channel(key_prefix: str) -> str:
    return f"{key_prefix}:events"


class RedisEventSink(QueueSink):
    """Publishes every event on `channel`.

    Args:
        commands: the state backend's pipelined connection; closing it is its owner's job.
        channel: see `events_channel`.
        clock: stamps the events.
        pause_s: the wait after a failed batch, so a Redis that is down costs little.
    """

    def __init__(
        self,
        commands: PipelinedRedis,
        channel: str,
        *,
        clock: Clock,
        queue_max: int = 10_000,
        batch_max: int = 100,
        pause_s: float = 1.0,
    ) -> None:
        super().__init__(
            f"Redis channel {channel}",
            EventPatterns(["*"]),
            clock=clock,
            queue_max=queue_max,
            batch_max=batch_max,
        )
        self._commands = commands
        self._channel = channel
        self._pause_s = pause_s
        self._published = 0
        self._is_failing = False

    def status(self) -> dict[str, int | str]:
        return {
            "channel": self._channel,
            "pending": self.pending,
            "published": self._published,
            "dropped": self.dropped,
        }

    async def _send(self, batch: list[Queued]) -> None:
        messages = [("PUBLISH", self._channel, _message(queued)) for queued in batch]
        try:
            await self._commands.execute_all(messages)
        except (RedisError, OSError) as exc:
            self._dropped += len(batch)
            if not self._is_failing:
                self._is_failing = True
                reason = str(exc) or type(exc).__name__
                logger.warning("%s: events dropped while Redis fails (%s)", self._what, reason)
            if not self._is_closed:
                await asyncio.sleep(self._pause_s)
            return
        self._published += len(batch)
        if self._is_failing:
            self._is_failing = False
            logger.info("%s: publishing again", self._what)


def _message(event: Queued) -> bytes:
    """The JSON message of one event, as subscribers read it."""
    return to_json(
        {"event": event.name, "at": iso_time(event.at), "data": public_facts(event.data)}
    )
