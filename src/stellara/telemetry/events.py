"""A small in-process publish/subscribe bus for what happens to requests.

The pipeline publishes (`request.completed`, `request.failed`, …); metrics, usage records,
webhooks and the dashboard subscribe. Publishing is synchronous and cheap: a subscriber that
needs I/O must hand the event to its own bounded queue rather than block the request path.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

REQUEST_COMPLETED = "request.completed"
REQUEST_FAILED = "request.failed"
REQUEST_RETRY = "request.retry"
REQUEST_FALLBACK = "request.fallback"
PROVIDER_UNHEALTHY = "provider.unhealthy"
PROVIDER_HEALTHY = "provider.healthy"
CACHE_CLEARED = "cache.cleared"
STATE_BACKEND_ERROR = "state_backend.error"
BREAKER_CHANGED = "circuit_breaker.state_changed"
RATE_LIMIT_EXCEEDED = "rate_limit.exceeded"
QUOTA_EXCEEDED = "quota.exceeded"
QUOTA_WARNING = "quota.warning"
BURST_DETECTED = "burst.detected"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: a dotted `name` and its facts."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers each event to the subscribers of its name and to those of every event (`*`)."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[str, list[Subscriber]] = defaultdict(list)

    def subscribe(self, name: str, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` for each event named `name` (or `*` for all); returns unsubscribe."""
        self._subscribers[name].append(subscriber)
        return lambda: self._subscribers[name].remove(subscriber)

    def has_subscribers(self, name: str) -> bool:
        """Lets publishers skip building an event nobody listens to."""
        return bool(self._subscribers.get(name) or self._subscribers.get("*"))

    def publish(self, event: Event) -> None:
        """Deliver `event`; a failing subscriber is logged and never fails the request."""
        for subscriber in (*self._subscribers.get(event.name, ()), *self._subscribers.get("*", ())):
            try:
                subscriber(event)
            except Exception:  # a subscriber's bug must not fail the request
                logger.exception("event subscriber failed on %s", event.name)
