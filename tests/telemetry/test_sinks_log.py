"""The JSON event log, and what every sink shares: event patterns and the bounded queue."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import pytest

from stellara.config.models import EventLogConfig
from stellara.telemetry.events import Event, EventBus
from stellara.telemetry.sinks import EventPatterns, iso_time
from stellara.telemetry.sinks.log import LOGGER_NAME, EventLogSink

START = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER_NAME]


@pytest.fixture
def caplog_events(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    return caplog


async def test_log_sink_writes_one_json_line_per_event_without_content(caplog_events):
    bus, clock = EventBus(), FakeClock()
    sink = EventLogSink(EventLogConfig(enabled=True), clock=clock)
    sink.attach(bus)
    sink.start()
    facts = {
        "request_id": "r1",
        "user": "alice",
        "status": 429,
        "error": "rate_limit_exceeded",
        "message": "You said: my secret prompt",
        "prompt": "my secret prompt",
        "completion": "an answer",
        "attempt_spans": [{"provider": "p", "model": "m", "start_ms": 1.5, "duration_ms": 2.0}],
    }
    bus.publish(Event("request.failed", facts))
    clock.now += 2
    bus.publish(Event("cache.cleared", {"scope": None, "model": "m", "removed": 3}))
    await sink.close(1.0)

    lines = log_lines(caplog_events)
    assert lines == [
        {
            "event": "request.failed",
            "at": "2026-01-01T00:00:00.250Z",
            "request_id": "r1",
            "user": "alice",
            "status": 429,
            "error": "rate_limit_exceeded",
            "attempt_spans": [{"provider": "p", "model": "m", "start_ms": 1.5, "duration_ms": 2.0}],
        },
        {
            "event": "cache.cleared",
            "at": "2026-01-01T00:00:02.250Z",
            "scope": None,
            "model": "m",
            "removed": 3,
        },
    ]
    assert "secret prompt" not in caplog_events.text
    assert sink.status() == {"pending": 0, "written": 2, "dropped": 0}


async def test_log_sink_writes_facts_json_lacks_as_text(caplog_events):
    bus = EventBus()
    sink = EventLogSink(EventLogConfig(enabled=True), clock=FakeClock())
    sink.attach(bus)
    sink.start()
    bus.publish(Event("x", {"when": datetime(2026, 1, 2), "ids": {1: "a"}, "obj": object()}))
    await sink.close(1.0)
    [line] = log_lines(caplog_events)
    assert line["when"] == "2026-01-02T00:00:00"
    assert line["ids"] == {"1": "a"}
    assert str(line["obj"]).startswith("<object object")


async def test_log_sink_takes_only_the_events_its_patterns_name(caplog_events):
    bus = EventBus()
    config = EventLogConfig(enabled=True, events=["request.*", "cache.cleared"])
    sink = EventLogSink(config, clock=FakeClock())
    sink.attach(bus)
    sink.start()
    for name in ("request.completed", "request.retry", "requests.x", "cache.cleared", "cache.x"):
        bus.publish(Event(name, {}))
    await sink.close(1.0)
    assert [line["event"] for line in log_lines(caplog_events)] == [
        "request.completed",
        "request.retry",
        "cache.cleared",
    ]


async def test_log_sink_drops_the_oldest_when_its_queue_is_full(caplog_events):
    bus = EventBus()
    sink = EventLogSink(EventLogConfig(enabled=True), clock=FakeClock(), queue_max=3)
    sink.attach(bus)
    for i in range(5):  # before start: nothing takes them off the queue yet
        bus.publish(Event("n", {"i": i}))
    assert sink.pending == 3
    assert sink.dropped == 2
    sink.start()
    await sink.close(1.0)
    assert [line["i"] for line in log_lines(caplog_events)] == [2, 3, 4]
    overflow = [r for r in caplog_events.records if "dropped events" in r.getMessage()]
    assert len(overflow) == 1  # once per episode, not once per event


async def test_log_sink_counts_events_published_after_close_as_dropped(caplog_events):
    bus = EventBus()
    sink = EventLogSink(EventLogConfig(enabled=True), clock=FakeClock())
    sink.attach(bus)
    sink.start()
    await sink.close(1.0)
    bus.publish(Event("late", {}))
    assert sink.dropped == 1
    assert log_lines(caplog_events) == []


async def test_log_sink_encodes_nothing_when_its_logger_is_off(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    bus = EventBus()
    sink = EventLogSink(EventLogConfig(enabled=True), clock=FakeClock())
    sink.attach(bus)
    sink.start()
    bus.publish(Event("x", {}))
    await sink.close(1.0)
    assert sink.written == 0
    assert sink.pending == 0


def test_event_patterns_subscribe_by_name_unless_a_pattern_needs_every_event():
    exact, prefixed = EventBus(), EventBus()
    EventPatterns(["request.completed", "quota.exceeded"]).subscribe(exact, lambda e: None)
    assert exact.has_subscribers("request.completed")
    assert exact.has_subscribers("quota.exceeded")
    # publishers skip building events nobody asked for
    assert not exact.has_subscribers("request.retry")

    EventPatterns(["request.*"]).subscribe(prefixed, lambda e: None)
    assert prefixed.has_subscribers("anything")


def test_event_patterns_match_names_prefixes_and_star():
    patterns = EventPatterns(["request.*", "cache.cleared"])
    assert patterns.matches("request.failed")
    assert patterns.matches("cache.cleared")
    assert not patterns.matches("request")
    assert not patterns.matches("cache.cleared.x")
    assert EventPatterns(["*"]).matches("whatever")


def test_iso_time_is_utc_with_milliseconds():
    assert iso_time(START) == "2026-01-01T00:00:00.250Z"
