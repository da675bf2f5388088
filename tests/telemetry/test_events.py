import logging

from stellara.telemetry.events import REQUEST_COMPLETED, REQUEST_FAILED, Event, EventBus


def test_event_bus_delivers_to_named_subscribers_only():
    bus = EventBus()
    completed: list[Event] = []
    failed: list[Event] = []
    bus.subscribe(REQUEST_COMPLETED, completed.append)
    bus.subscribe(REQUEST_FAILED, failed.append)
    event = Event(REQUEST_COMPLETED, {"provider": "p1"})
    bus.publish(event)
    assert completed == [event]
    assert failed == []


def test_event_bus_star_receives_every_event():
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe("*", lambda e: seen.append(e.name))
    bus.publish(Event(REQUEST_COMPLETED))
    bus.publish(Event("cache.hit"))
    assert seen == [REQUEST_COMPLETED, "cache.hit"]


def test_event_bus_named_before_star():
    bus = EventBus()
    order: list[str] = []
    bus.subscribe("*", lambda e: order.append("star"))
    bus.subscribe("x", lambda e: order.append("first"))
    bus.subscribe("x", lambda e: order.append("second"))
    bus.publish(Event("x"))
    assert order == ["first", "second", "star"]


def test_event_bus_unsubscribe_stops_delivery():
    bus = EventBus()
    seen: list[Event] = []
    unsubscribe = bus.subscribe("x", seen.append)
    bus.publish(Event("x"))
    unsubscribe()
    bus.publish(Event("x"))
    assert len(seen) == 1


def test_event_bus_unsubscribe_removes_only_that_subscriber():
    bus = EventBus()
    a: list[Event] = []
    b: list[Event] = []
    unsubscribe_a = bus.subscribe("x", a.append)
    bus.subscribe("x", b.append)
    unsubscribe_a()
    bus.publish(Event("x"))
    assert a == []
    assert len(b) == 1


def test_event_bus_unsubscribe_during_publish_is_safe():
    bus = EventBus()
    seen: list[str] = []

    def once(event: Event) -> None:
        seen.append("self")
        unsubscribe()

    unsubscribe = bus.subscribe("x", once)
    bus.subscribe("x", lambda e: seen.append("other"))
    bus.publish(Event("x"))
    bus.publish(Event("x"))
    assert seen == ["self", "other", "other"]


def test_event_bus_has_subscribers():
    bus = EventBus()
    assert bus.has_subscribers("x") is False
    unsubscribe = bus.subscribe("x", lambda e: None)
    assert bus.has_subscribers("x") is True
    assert bus.has_subscribers("y") is False
    unsubscribe()
    assert bus.has_subscribers("x") is False


def test_event_bus_has_subscribers_true_for_any_name_with_star():
    bus = EventBus()
    bus.subscribe("*", lambda e: None)
    assert bus.has_subscribers("anything") is True


def test_event_bus_raising_subscriber_logged_and_others_still_run(caplog):
    bus = EventBus()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe("x", broken)
    bus.subscribe("x", lambda e: seen.append("named"))
    bus.subscribe("*", lambda e: seen.append("star"))
    with caplog.at_level(logging.ERROR, logger="stellara.telemetry.events"):
        bus.publish(Event("x"))
    assert seen == ["named", "star"]
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "x" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_event_default_data_not_shared():
    first = Event("x")
    second = Event("x")
    first.data["k"] = 1
    assert second.data == {}
