import logging
from typing import ClassVar

import msgspec
import pytest

from stellara.events import (
    BreakerChanged,
    BurstDetected,
    BurstLimited,
    BurstSpiked,
    CacheCleared,
    Event,
    EventBus,
    ProviderHealthChanged,
    ProviderHealthy,
    ProviderUnhealthy,
    QuotaWarning,
    RequestCompleted,
    RequestEnded,
    RequestFailed,
    RequestRetried,
)
from stellara.testing import request_failed


class Ping(Event, frozen=True, kw_only=True):
    name: ClassVar[str] = "test.ping"

    n: int = 0


class Pong(Event, frozen=True, kw_only=True):
    name: ClassVar[str] = "test.pong"


def healthy() -> ProviderHealthy:
    return ProviderHealthy(provider="p", previous="unhealthy", status="healthy", reason="ok")


def unhealthy() -> ProviderUnhealthy:
    return ProviderUnhealthy(provider="p", previous="healthy", status="unhealthy", reason="5xx")


def test_event_bus_delivers_each_kind_to_its_subscribers_only() -> None:
    bus = EventBus()
    pings: list[Ping] = []
    pongs: list[Pong] = []
    bus.subscribe(Ping, pings.append)
    bus.subscribe(Pong, pongs.append)
    ping = Ping(n=1)
    bus.publish(ping)
    assert pings == [ping]
    assert pongs == []


def test_event_bus_subscription_to_a_family_takes_every_kind_of_it() -> None:
    bus = EventBus()
    changes: list[ProviderHealthChanged] = []
    bus.subscribe(ProviderHealthChanged, changes.append)
    bus.publish(healthy())
    bus.publish(unhealthy())
    bus.publish(Ping())
    assert [type(change) for change in changes] == [ProviderHealthy, ProviderUnhealthy]


def test_event_bus_subscribe_all_receives_every_event() -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe_all(lambda e: seen.append(e.name))
    bus.publish(Ping())
    bus.publish(healthy())
    assert seen == ["test.ping", "provider.healthy"]


def test_event_bus_subscribe_all_matching_takes_only_the_names_it_accepts() -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe_all(lambda e: seen.append(e.name), matching=lambda name: name.startswith("test."))
    bus.publish(Ping())
    bus.publish(healthy())
    bus.publish(Pong())
    assert seen == ["test.ping", "test.pong"]
    assert bus.has_subscribers(Ping)
    assert not bus.has_subscribers(ProviderHealthy)


def test_event_bus_kind_subscribers_before_subscribers_of_all() -> None:
    bus = EventBus()
    order: list[str] = []
    bus.subscribe_all(lambda e: order.append("all"))
    bus.subscribe(Ping, lambda e: order.append("first"))
    bus.subscribe(Ping, lambda e: order.append("second"))
    bus.publish(Ping())
    assert order == ["first", "second", "all"]


def test_event_bus_unsubscribe_stops_delivery() -> None:
    bus = EventBus()
    seen: list[Ping] = []
    everything: list[Event] = []
    unsubscribe = bus.subscribe(Ping, seen.append)
    unsubscribe_all = bus.subscribe_all(everything.append)
    bus.publish(Ping())
    unsubscribe()
    unsubscribe_all()
    bus.publish(Ping())
    assert len(seen) == 1
    assert len(everything) == 1


def test_event_bus_unsubscribe_removes_only_that_subscriber() -> None:
    bus = EventBus()
    a: list[Ping] = []
    b: list[Ping] = []
    unsubscribe_a = bus.subscribe(Ping, a.append)
    bus.subscribe(Ping, b.append)
    unsubscribe_a()
    bus.publish(Ping())
    assert a == []
    assert len(b) == 1


def test_event_bus_unsubscribe_during_publish_is_safe() -> None:
    bus = EventBus()
    seen: list[str] = []

    def once(event: Ping) -> None:
        seen.append("self")
        unsubscribe()

    unsubscribe = bus.subscribe(Ping, once)
    bus.subscribe(Ping, lambda e: seen.append("other"))
    bus.publish(Ping())
    bus.publish(Ping())
    assert seen == ["self", "other", "other"]


def test_event_bus_has_subscribers_follows_subscriptions() -> None:
    bus = EventBus()
    assert bus.has_subscribers(Ping) is False
    unsubscribe = bus.subscribe(Ping, lambda e: None)
    assert bus.has_subscribers(Ping) is True
    assert bus.has_subscribers(Pong) is False
    unsubscribe()
    assert bus.has_subscribers(Ping) is False


def test_event_bus_has_subscribers_for_the_kinds_of_a_subscribed_family() -> None:
    bus = EventBus()
    bus.subscribe(BurstDetected, lambda e: None)
    assert bus.has_subscribers(BurstLimited)
    assert bus.has_subscribers(BurstSpiked)
    assert not bus.has_subscribers(QuotaWarning)


def test_event_bus_has_subscribers_true_for_any_kind_with_subscribe_all() -> None:
    bus = EventBus()
    bus.subscribe_all(lambda e: None)
    assert bus.has_subscribers(Ping) is True
    assert bus.has_subscribers(RequestRetried) is True


def test_event_bus_failing_subscriber_logged_counted_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: Ping) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(Ping, broken)
    bus.subscribe(Ping, lambda e: seen.append("kind"))
    bus.subscribe_all(lambda e: seen.append("all"))
    with caplog.at_level(logging.ERROR, logger="stellara.event_bus"):
        bus.publish(Ping())
        bus.publish(Ping())
        bus.publish(Pong())
    assert seen == ["kind", "all", "kind", "all", "all"]
    assert bus.subscriber_failures() == {"test.ping": 2}
    first = caplog.records[0]
    assert first.levelno == logging.ERROR
    assert "test.ping" in first.getMessage()
    assert first.exc_info is not None
    assert isinstance(first.exc_info[1], RuntimeError)
    assert len(caplog.records) == 2


def test_event_bus_subscriber_failures_empty_until_one_fails() -> None:
    bus = EventBus()
    bus.subscribe(Ping, lambda e: None)
    bus.publish(Ping())
    assert bus.subscriber_failures() == {}


def test_events_keep_the_names_subscribers_of_the_json_know() -> None:
    kinds: list[type[Event]] = [RequestCompleted, RequestFailed, BreakerChanged, CacheCleared]
    assert [kind.name for kind in kinds] == [
        "request.completed",
        "request.failed",
        "circuit_breaker.state_changed",
        "cache.cleared",
    ]
    assert BurstLimited.name == BurstSpiked.name == "burst.detected"


def test_breaker_changed_encodes_from_and_to() -> None:
    changed = BreakerChanged(breaker="openai/gpt-4o", from_state="closed", to_state="open")
    assert msgspec.json.decode(msgspec.json.encode(changed)) == {
        "breaker": "openai/gpt-4o",
        "from": "closed",
        "to": "open",
    }


def test_request_event_public_leaves_out_the_content_and_keeps_the_rest() -> None:
    event = request_failed(prompt="PROMPT", completion="ANSWER", message="echoes PROMPT")
    public = msgspec.json.decode(msgspec.json.encode(event.public()))
    assert not {"prompt", "completion", "message"} & public.keys()
    assert public["error"] == "upstream_unavailable"
    assert public["ttfb_ms"] is None
    assert list(public) == list(RequestEnded.__struct_fields__[:-3])
    assert event.message == "echoes PROMPT"  # the subscribers in the process still see it


def test_request_event_public_is_itself_without_content() -> None:
    event = request_failed()
    assert event.public() is event
