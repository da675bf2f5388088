"""What happens in the gateway, as typed events, and the in-process bus that delivers them.

One frozen `msgspec.Struct` per kind of event, each named by its dotted `name`; subscribers
read fields, so mypy checks every reader. The pipeline publishes (`request.completed`,
`request.failed`, …); metrics, usage records, statistics, tracing and the sinks (log, webhooks,
Redis) subscribe. The sinks encode the structs as they are: field names are the JSON keys
users consume, so renaming a field changes that contract.

Publishing is synchronous and cheap: a subscriber that needs I/O hands the event to its own
bounded queue rather than block the request path, and publishers ask `has_subscribers` before
building an event, so an event nobody listens to costs nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import ClassVar, Self, TypeVar, cast

import msgspec

# Not `__name__`: `stellara.events` is the event log sink's logger, whose lines are events.
logger = logging.getLogger("stellara.event_bus")


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The base of every event. A concrete kind sets `name`; an abstract one (a family that
    subscribers take whole, such as `RequestEnded`) leaves it unset.

    Every subclass repeats `frozen=True, kw_only=True`: msgspec applies `kw_only` to the
    fields a class declares, and mypy wants `frozen` on each; `gc=False` is inherited (no
    event holds a container that could close a cycle).
    """

    name: ClassVar[str]

    def public(self) -> Self:
        """This event as it may leave the process: without facts that may echo a prompt."""
        return self


class Attempt(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One provider call of a finished request, in milliseconds from the request's start."""

    provider: str
    model: str
    start_ms: float
    duration_ms: float
    error: str | None  # the error's code; None when it answered


class RequestEnded(Event, frozen=True, kw_only=True, omit_defaults=True):
    """What usage records, metrics, statistics, tracing and webhooks know of a finished model
    call: exactly one `RequestCompleted` or `RequestFailed` per call.

    The content facts (`prompt`, `completion`, `message`) may hold personal data: `public`
    clears them, and `omit_defaults` then leaves them out of the JSON (every other field is
    required, so nothing else is ever left out).
    """

    request_id: str
    started_at: float  # epoch s
    user: str
    team: str | None
    key_id: str
    key_prefix: str | None
    tier: str | None
    session_id: str | None
    endpoint: str  # the inbound API's declared path (/v1/messages, …); empty: not through HTTP
    model: str  # the public model; empty when the request failed before naming a valid one
    provider: str  # the provider id that answered or failed last; "cache"; empty: none chosen
    provider_model: str
    attempts: int
    retries: int  # attempts repeated on the same target
    fallbacks: int  # moves to a fallback model
    cache: str  # miss, hit or semantic
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # of the prompt, read from the provider's cache
    cache_write_tokens: int  # of the prompt, written to the provider's cache
    reasoning_tokens: int  # of the completion: thinking the client may not see
    cost_usd: float
    usage_estimated: bool  # no usage from the provider: tokens and cost are the gateway's count
    latency_ms: float
    ttfb_ms: float | None
    status: int
    error: str | None  # the error's code; None when answered
    attempt_spans: tuple[Attempt, ...]
    # Parameters the provider that answered (or failed last) was not sent: it cannot honour
    # them and the model drops them (`drop_unsupported_params`).
    dropped_params: tuple[str, ...]
    # The experiment and variant it counts towards (None: none; pinned requests are not counted).
    experiment: str | None
    variant: str | None
    prompt: str | None = None  # only with `usage_store.log_content`
    completion: str | None = None  # only with `usage_store.log_content`
    message: str | None = None  # the error's message, for failed requests

    def public(self) -> Self:
        if self.prompt is None and self.completion is None and self.message is None:
            return self
        return msgspec.structs.replace(self, prompt=None, completion=None, message=None)


class RequestCompleted(RequestEnded, frozen=True, kw_only=True):
    name: ClassVar[str] = "request.completed"


class RequestFailed(RequestEnded, frozen=True, kw_only=True):
    name: ClassVar[str] = "request.failed"

    error: str


class RequestRetried(Event, frozen=True, kw_only=True):
    """An attempt failed and the same target is tried again after `delay_ms`."""

    name: ClassVar[str] = "request.retry"

    request_id: str
    provider: str
    model: str
    attempt: int  # the failed attempt's number on this target, from 1
    error: str
    delay_ms: float


class RequestFellBack(Event, frozen=True, kw_only=True):
    """The request moved on to a fallback model."""

    name: ClassVar[str] = "request.fallback"

    request_id: str
    from_model: str
    to_model: str
    error: str | None  # the last error's code before the move


class ProviderHealthChanged(Event, frozen=True, kw_only=True):
    """A provider became unhealthy or stopped being so (degraded ↔ healthy is not news)."""

    provider: str
    previous: str
    status: str
    reason: str


class ProviderUnhealthy(ProviderHealthChanged, frozen=True, kw_only=True):
    name: ClassVar[str] = "provider.unhealthy"


class ProviderHealthy(ProviderHealthChanged, frozen=True, kw_only=True):
    name: ClassVar[str] = "provider.healthy"


class BreakerChanged(Event, frozen=True, kw_only=True):
    """A circuit breaker (`<provider>/<model>`) changed state."""

    name: ClassVar[str] = "circuit_breaker.state_changed"

    breaker: str
    from_state: str = msgspec.field(name="from")
    to_state: str = msgspec.field(name="to")


class CacheCleared(Event, frozen=True, kw_only=True):
    name: ClassVar[str] = "cache.cleared"

    scope: str | None  # one user's cache scope; None: every user
    model: str | None
    removed: int


class FeedbackReceived(Event, frozen=True, kw_only=True):
    """A client reported a feedback metric on an answer (`POST /v1/feedback`)."""

    name: ClassVar[str] = "feedback.received"

    request_id: str
    user: str
    metric: str
    value: float  # booleans as 1 and 0
    is_first: bool  # False: it replaced an earlier value of the same request and metric
    experiment: str | None  # the experiment and variant that served the request
    variant: str | None
    model: str | None  # the public model and provider that answered
    provider: str | None


class StateBackendFailed(Event, frozen=True, kw_only=True):
    name: ClassVar[str] = "state_backend.error"

    backend: str
    operation: str  # admit, settle, block


class LimitEvent(Event, frozen=True, kw_only=True):
    """The limits stage's events: for whom, and whether the tier is in shadow mode (`shadow`:
    reported, not enforced)."""

    request_id: str
    user: str
    tier: str
    shadow: bool


class LimitRefused(LimitEvent, frozen=True, kw_only=True):
    """A limit refused the request (or would have, in shadow mode)."""

    limit: str
    used: float | None  # None: refused while a burst block holds (`limit` is `blocked`)
    limit_value: float | None
    reset_at: float  # epoch s
    retry_after_s: float


class RateLimitExceeded(LimitRefused, frozen=True, kw_only=True):
    name: ClassVar[str] = "rate_limit.exceeded"


class QuotaExceeded(LimitRefused, frozen=True, kw_only=True):
    name: ClassVar[str] = "quota.exceeded"


class QuotaWarning(LimitEvent, frozen=True, kw_only=True):
    """A request took a quota across `warn_at` of its limit."""

    name: ClassVar[str] = "quota.warning"

    limit: str
    used: float
    limit_value: float
    warn_at: float
    reset_at: float


class BurstDetected(LimitEvent, frozen=True, kw_only=True):
    """A burst: the burst limit refused (`BurstLimited`) or the rate spiked (`BurstSpiked`)."""

    name: ClassVar[str] = "burst.detected"

    reason: str


class BurstLimited(BurstDetected, frozen=True, kw_only=True):
    """The `burst:requests` limit refused; the facts of its `RateLimitExceeded`."""

    reason: str = "limit"
    limit: str
    used: float | None
    limit_value: float | None
    reset_at: float
    retry_after_s: float


class BurstSpiked(BurstDetected, frozen=True, kw_only=True):
    """The user's burst-window rate spiked against their own recent rate."""

    reason: str = "spike"
    recent_rate_per_s: float
    baseline_rate_per_s: float
    blocked_s: float


E = TypeVar("E", bound=Event)
Subscriber = Callable[[E], None]
_Deliver = Callable[[Event], None]


class EventBus:
    """Delivers each event to the subscribers of its kind (or of a family it belongs to, such
    as `RequestEnded`), then to those of every event.

    Who receives a kind is worked out once per kind and kept until the subscriptions change,
    so `has_subscribers` and `publish` cost a dictionary lookup.
    """

    def __init__(self) -> None:
        self._by_kind: dict[type[Event], list[_Deliver]] = {}
        self._every: list[tuple[_Deliver, Callable[[str], bool] | None]] = []
        self._routes: dict[type[Event], tuple[_Deliver, ...]] = {}
        self._failures: Counter[str] = Counter()

    def subscribe(self, kind: type[E], subscriber: Subscriber[E]) -> Callable[[], None]:
        """Call `subscriber` with each event of `kind` or of a subclass; returns unsubscribe."""
        subscribers = self._by_kind.setdefault(kind, [])
        deliver = cast(_Deliver, subscriber)  # `publish` hands it only events of `kind`
        subscribers.append(deliver)
        self._routes.clear()

        def unsubscribe() -> None:
            subscribers.remove(deliver)
            self._routes.clear()

        return unsubscribe

    def subscribe_all(
        self, subscriber: Subscriber[Event], *, matching: Callable[[str], bool] | None = None
    ) -> Callable[[], None]:
        """Call `subscriber` with every event, or with those whose name `matching` accepts
        (the kinds it rejects stay unbuilt when nobody else wants them); returns unsubscribe.
        """
        entry = (subscriber, matching)
        self._every.append(entry)
        self._routes.clear()

        def unsubscribe() -> None:
            self._every.remove(entry)
            self._routes.clear()

        return unsubscribe

    def has_subscribers(self, kind: type[Event]) -> bool:
        """Lets publishers skip building an event nobody listens to."""
        route = self._routes.get(kind)
        if route is None:
            route = self._route(kind)
        return bool(route)

    def publish(self, event: Event) -> None:
        """Deliver `event`; a failing subscriber is logged and counted, and never fails the
        publisher nor keeps the event from the other subscribers."""
        kind = type(event)
        route = self._routes.get(kind)
        if route is None:
            route = self._route(kind)
        for subscriber in route:
            try:
                subscriber(event)
            except Exception:  # a subscriber's bug must not fail the request
                self._failures[kind.name] += 1
                logger.exception("event subscriber %r failed on %s", subscriber, kind.name)

    def subscriber_failures(self) -> Mapping[str, int]:
        """How many deliveries raised, by event name, since the bus was made."""
        return dict(self._failures)

    def _route(self, kind: type[Event]) -> tuple[_Deliver, ...]:
        by_kind = self._by_kind
        route = [s for cls in kind.__mro__ for s in by_kind.get(cls, ())]
        name = getattr(kind, "name", "")
        route.extend(s for s, matching in self._every if matching is None or matching(name))
        found = self._routes[kind] = tuple(route)
        return found
