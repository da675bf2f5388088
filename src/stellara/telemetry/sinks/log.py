"""Events as JSON lines on the `stellara.events` logger, for log shippers.

One line per event: `{"event": name, "at": ISO time, ...facts}`. The logging configuration
decides where lines go; they are written by the sink's task, off the request path.
"""

from __future__ import annotations

import asyncio
import logging

from stellara._clock import Clock
from stellara.config.models import EventLogConfig
from stellara.telemetry.sinks import (
    PRIVATE_FACTS,
    EventPatterns,
    Queued,
    QueueSink,
    iso_time,
    to_json,
)

LOGGER_NAME = "stellara.events"
_SKIPPED = PRIVATE_FACTS | {"event", "at"}  # `event` and `at` name the line itself
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
        for name, at, data in batch:
            line: dict[str, object] = {"event": name, "at": iso_time(at)}
            line.update((k, v) for k, v in data.items() if k not in _SKIPPED)
            self._log.info(to_json(line).decode())
        self._written += len(batch)
        await asyncio.sleep(0)
