"""What the gateway publishes, for tests: an `EventRecorder` of a bus, and builders of the
request events that usage records, metrics, statistics, tracing and the sinks consume.

Use `EventRecorder` to assert what a part published (a retry, a fallback, exactly one
`RequestFailed`); use `request_completed` / `request_failed` to feed a subscriber the events
it reads without running a request.
"""

from __future__ import annotations

from typing import Any, TypeVar

from stellara.events import Attempt, Event, EventBus, RequestCompleted, RequestEnded, RequestFailed
from stellara.testing._clock import DEFAULT_EPOCH_S
from stellara.testing._values import COMPLETION_TOKENS, PROMPT_TOKENS

E = TypeVar("E", bound=Event)
R = TypeVar("R", bound=RequestEnded)


class EventRecorder:
    """Keeps every event published on a bus, in order, until `close`.

    Listening to every kind makes publishers build the events they skip when nobody listens
    (`EventBus.has_subscribers`): a test sees everything the code would publish.
    """

    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        self._unsubscribe = bus.subscribe_all(self.events.append)

    def of(self, kind: type[E]) -> list[E]:
        """The recorded events of `kind` (its subclasses included), in order."""
        return [event for event in self.events if isinstance(event, kind)]

    @property
    def names(self) -> list[str]:
        """The recorded events' names (`request.retry`, …), in order."""
        return [event.name for event in self.events]

    def close(self) -> None:
        """Stop recording; what was recorded stays."""
        self._unsubscribe()


def request_completed(**facts: Any) -> RequestCompleted:
    """A `request.completed` event of one answered call: alice asked `smart` through
    `/v1/chat/completions`, openai's `gpt-4o` answered in 120 ms. `facts` replaces any field;
    the one attempt span follows the provider, model and latency given unless `attempt_spans`
    is passed too."""
    return _ended(RequestCompleted, facts)


def request_failed(**facts: Any) -> RequestFailed:
    """A `request.failed` event: as `request_completed`, but openai answered 502
    `upstream_unavailable` and no tokens were used."""
    failure = {
        "status": 502,
        "error": "upstream_unavailable",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
    }
    return _ended(RequestFailed, {**failure, **facts})


def _ended(kind: type[R], facts: dict[str, Any]) -> R:
    values: dict[str, Any] = {
        "request_id": "req_1",
        "started_at": DEFAULT_EPOCH_S,
        "user": "alice",
        "team": None,
        "key_id": "key_1",
        "key_prefix": None,
        "tier": None,
        "session_id": None,
        "endpoint": "/v1/chat/completions",
        "model": "smart",
        "provider": "openai",
        "provider_model": "gpt-4o",
        "attempts": 1,
        "retries": 0,
        "fallbacks": 0,
        "cache": "miss",
        "stream": False,
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.001,
        "usage_estimated": False,
        "dropped_params": (),
        "experiment": None,
        "variant": None,
        "latency_ms": 120.0,
        "ttfb_ms": None,
        "status": 200,
        "error": None,
        **facts,
    }
    if "attempt_spans" not in facts:
        values["attempt_spans"] = (
            Attempt(
                provider=values["provider"],
                model=values["provider_model"],
                start_ms=0.0,
                duration_ms=values["latency_ms"],
                error=values["error"],
            ),
        )
    return kind(**values)
