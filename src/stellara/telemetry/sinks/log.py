"""Events as JSON lines on the `stellara.events` logger, for log shippers.

One line per event: `{"event": name, "at": ISO time, ...facts}`. The logging configuration
decides where lines go; they are written by the sink's task, off the request path.
"""

from __future__ import annotations

import asyncio
import logging

from stellara import _json
from stellara._clock import Clock
from stellara.config.models import EventLogConfig
from stellara.telemetry.sinks import EventPatterns, Queued, QueueSink, iso_time

LOGGER_NAME = "stellara.events"
_LINES_PER_TURN = 100  # a burst is written in slices, letting requests run in between


class EventLogSink(QueueSink):
    """Writes each event the config names as one JSON line, at INFO."""

    def __init__(
        self,
        config: EventLogConfig,
        *,
        clock: Clock,
        queue_max: int = 10_000,
        log: logging.Logger | None = None,
    ) -> None:
        super().__init__(
            "event log",
            EventPatterns(config.events),
            clock=clock,
            queue_max=queue_max,
            batch_max=_LINES_PER_TURN,
        )
        self._log = log or logging.getLogger(LOGGER_NAME)
        self._written = 0

    @property
    def written(self) -> int:
        return self._written

    def status(self) -> dict[str, int]:
        return {"pending": self.pending, "written": self._written, "dropped": self.dropped}

    async def _send(self, batch: list[Queued]) -> None:
        if not self._log.isEnabledFor(logging.INFO):  # nobody would read them: no encoding
            return
        for queued in batch:
            self._log.info(_line(queued).decode())
        self._written += len(batch)
        await asyncio.sleep(0)


def _line(queued: Queued) -> bytes:
    """`{"event": name, "at": ISO time, ...facts}`: the event's own JSON, its name and time
    put first."""
    event = queued.event
    head = b'{"event":%s,"at":"%s"' % (_json.encode(event.name), iso_time(queued.at).encode())
    facts = _json.encode(event.public())
    return head + (b"," + facts[1:] if len(facts) > 2 else b"}")
