"""Where events go besides metrics and usage records: a JSON log, webhooks, Redis pub/sub.

Every sink has one shape (`QueueSink`): its subscriber runs on the request path and only
appends the event to a bounded queue, the oldest dropped and counted when it is full; one
background task per sink takes events off that queue and does the I/O. A slow or dead
destination therefore never slows a request: it only loses the events that no longer fit.
`telemetry.setup.attach_sinks` builds the configured sinks.

Facts that may echo a prompt (`message`, `prompt`, `completion`) never leave through a sink:
sinks encode `Event.public()`, on their task.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec

from stellara._clock import Clock
from stellara._tasks import finish_within
from stellara.events import Event, EventBus

logger = logging.getLogger(__name__)


class Queued(NamedTuple):
    """An event waiting in a sink's queue, stamped when it was published."""

    at: float  # epoch s
    event: Event


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """An event as webhooks and Redis subscribers receive it."""

    event: str
    at: str  # ISO 8601
    data: Event

    @classmethod
    def of(cls, queued: Queued) -> Envelope:
        """`queued` without its content facts (`Event.public`)."""
        event = queued.event
        return cls(event.name, iso_time(queued.at), event.public())


def iso_time(at: float) -> str:
    """`at` (epoch s) as ISO 8601 UTC with milliseconds, e.g. `2026-01-01T00:00:00.000Z`."""
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class EventPatterns:
    """Which events a sink takes: exact names, `*` for all, or prefixes written `request.*`."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        self._is_all = "*" in patterns
        self._names = frozenset(p for p in patterns if not p.endswith("*"))
        self._prefixes = tuple(p[:-1] for p in patterns if p.endswith("*") and p != "*")

    def matches(self, name: str) -> bool:
        return self._is_all or name in self._names or name.startswith(self._prefixes)

    def subscribe(self, bus: EventBus, subscriber: Callable[[Event], None]) -> None:
        """Subscribe to the kinds the patterns match: publishers still skip building the
        others (unless `*` asks for every event)."""
        bus.subscribe_all(subscriber, matching=None if self._is_all else self.matches)


class QueueSink(abc.ABC):
    """A bounded queue fed by the bus, and the one task that empties it through `_send`.

    Call `attach` when building the app, `start` once its loop runs and `close` at shutdown.

    Args:
        what: names the sink in log lines (never with credentials).
        patterns: the events it takes.
        clock: stamps each event as it is published.
        queue_max: events that may wait; the oldest are dropped beyond.
        batch_max: events handed to one `_send` at most.
        interval_s: how long fewer than `batch_max` events wait for more (None: not at all).
    """

    def __init__(
        self,
        what: str,
        patterns: EventPatterns,
        *,
        clock: Clock,
        queue_max: int,
        batch_max: int,
        interval_s: float | None = None,
    ) -> None:
        self._what = what
        self._patterns = patterns
        self._clock = clock
        self._events: deque[Queued] = deque(maxlen=queue_max)
        self._batch_max = batch_max
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._is_closed = False
        self._in_flight = 0
        self._dropped = 0
        self._overflow_warned = False

    @property
    def pending(self) -> int:
        """Events queued or being sent."""
        return len(self._events) + self._in_flight

    @property
    def dropped(self) -> int:
        return self._dropped

    def attach(self, bus: EventBus) -> None:
        self._patterns.subscribe(bus, self._put)

    def _put(self, event: Event) -> None:
        """The subscriber: it runs on the request path, so it only appends."""
        if self._is_closed:
            self._drop(1, "published after the sink closed")
            return
        events = self._events
        if len(events) == events.maxlen:  # append drops the oldest
            self._drop(1, f"its queue of {events.maxlen} events is full")
        events.append(Queued(self._clock.time(), event))
        if len(events) >= self._batch_max or self._interval_s is None:
            self._wake.set()

    def _drop(self, count: int, why: str) -> None:
        self._dropped += count
        if not self._overflow_warned:
            self._overflow_warned = True
            logger.warning("%s dropped events (%s); counting them", self._what, why)

    def start(self) -> None:
        """Start the background task on the running loop (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._what)

    async def close(self, timeout_s: float) -> None:
        """Send what is queued for at most `timeout_s`; what is left then is dropped."""
        self._is_closed = True
        self._wake.set()
        if self._task is not None and not self._task.done():  # closing twice is harmless
            await finish_within(self._task, timeout_s)
        lost = self.pending
        if lost:
            self._dropped += lost
            self._events.clear()
            self._in_flight = 0
            logger.warning("%s closed with %d events unsent", self._what, lost)

    async def _run(self) -> None:
        while True:
            await self._wait()
            take = min(len(self._events), self._batch_max)
            if not take:
                if self._is_closed:
                    return
                continue
            batch = [self._events.popleft() for _ in range(take)]
            self._in_flight = take
            try:
                await self._send(batch)
            except Exception:  # a bug must not stop the sink for good
                logger.exception("%s failed; %d events lost", self._what, take)
                self._dropped += take
            self._in_flight = 0
            if not self._events:
                self._overflow_warned = False  # caught up: the next overflow is news

    async def _wait(self) -> None:
        """Until a batch is full, the interval has passed, or closing."""
        if len(self._events) >= self._batch_max or self._is_closed:
            return
        if self._events and self._interval_s is None:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._interval_s):
                await self._wake.wait()

    @abc.abstractmethod
    async def _send(self, batch: list[Queued]) -> None:
        """Deliver `batch` (oldest first), or count what it loses in `_dropped`."""
