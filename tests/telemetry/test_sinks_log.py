"""The JSON event log, and what every sink shares: event patterns and the bounded queue."""

from __future__ import annotations

import json
import logging
from typing import ClassVar

import msgspec
import pytest

from stellara.config.models import EventLogConfig
from stellara.events import (
    Attempt,
    BreakerChanged,
    CacheCleared,
    Event,
    EventBus,
    QuotaExceeded,
    QuotaWarning,
    RequestCompleted,
    RequestRetried,
)
from stellara.telemetry.sinks import EventPatterns, iso_time
from stellara.telemetry.sinks.log import LOGGER_NAME, EventLogSink
from stellara.testing import ManualClock
from tests.store.test_usage_writer import failed

START = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z


class Empty(Event, frozen=True, kw_only=True):
    name: ClassVar[str] = "test.empty"


def named(name: str, **facts: int) -> Event:
    """An event of a kind made up for the test, under `name`."""
    fields = [(fact, int) for fact in facts]
    namespace = {"name": name}
    kind = msgspec.defstruct("Named", fields, bases=(Event,), namespace=namespace, frozen=True)
    event = kind(**facts)
    assert isinstance(event, Event)
    return event


def log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER_NAME]


@pytest.fixture
def caplog_events(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    return caplog


async def test_log_sink_writes_one_json_line_per_event_without_content(caplog_events):
    bus, clock = EventBus(), ManualClock(START)
    sink = EventLogSink(EventLogConfig(enabled=True), clock=clock)
    sink.attach(bus)
    sink.start()
    spans = (Attempt(provider="p", model="m", start_ms=1.5, duration_ms=2.0, error="x"),)
    event = failed(
        "r1",
        status=429,
        error="rate_limit_exceeded",
        message="You said: my secret prompt",
        prompt="my secret prompt",
        completion="an answer",
        attempt_spans=spans,
    )
    bus.publish(event)
    clock.advance(2)
    bus.publish(CacheCleared(scope=None, model="m", removed=3))
    await sink.close(1.0)

    lines = log_lines(caplog_events)
    assert lines == [
        {
            "event": "request.failed",
            "at": "2026-01-01T00:00:00.250Z",
            "request_id": "r1",
            "started_at": 1_767_225_600.0,
            "user": "alice",
            "team": "research",
            "key_id": "key_1",
            "key_prefix": "sk-stl-abcde",
            "tier": None,
            "session_id": None,
            "endpoint": "/v1/chat/completions",
            "model": "test-model",
            "provider": "sim",
            "provider_model": "gpt-4o-mini",
            "attempts": 1,
            "retries": 0,
            "fallbacks": 0,
            "cache": "miss",
            "stream": False,
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "cost_usd": 0.001,
            "usage_estimated": False,
            "latency_ms": 12.5,
            "ttfb_ms": None,
            "status": 429,
            "error": "rate_limit_exceeded",
            "attempt_spans": [
                {"provider": "p", "model": "m", "start_ms": 1.5, "duration_ms": 2.0, "error": "x"}
            ],
            "dropped_params": [],
            "experiment": None,
            "variant": None,
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
    assert "an answer" not in caplog_events.text
    assert sink.status() == {"pending": 0, "written": 2, "dropped": 0}


async def test_log_sink_line_is_the_event_json_after_its_name_and_time(caplog_events):
    bus = EventBus()
    sink = EventLogSink(EventLogConfig(enabled=True), clock=ManualClock(START))
    sink.attach(bus)
    sink.start()
    bus.publish(BreakerChanged(breaker="openai/gpt-4o", from_state="closed", to_state="open"))
    bus.publish(Empty())
    await sink.close(1.0)
    assert [r.getMessage() for r in caplog_events.records if r.name == LOGGER_NAME] == [
        '{"event":"circuit_breaker.state_changed","at":"2026-01-01T00:00:00.250Z",'
        '"breaker":"openai/gpt-4o","from":"closed","to":"open"}',
        '{"event":"test.empty","at":"2026-01-01T00:00:00.250Z"}',
    ]


async def test_log_sink_takes_only_the_events_its_patterns_name(caplog_events):
    bus = EventBus()
    config = EventLogConfig(enabled=True, events=["request.*", "cache.cleared"])
    sink = EventLogSink(config, clock=ManualClock(START))
    sink.attach(bus)
    sink.start()
    for name in ("request.completed", "request.retry", "requests.x", "cache.cleared", "cache.x"):
        bus.publish(named(name))
    await sink.close(1.0)
    assert [line["event"] for line in log_lines(caplog_events)] == [
        "request.completed",
        "request.retry",
        "cache.cleared",
    ]


async def test_log_sink_drops_the_oldest_when_its_queue_is_full(caplog_events):
    bus = EventBus()
    sink = EventLogSink(EventLogConfig(enabled=True), clock=ManualClock(START), queue_max=3)
    sink.attach(bus)
    for i in range(5):  # before start: nothing takes them off the queue yet
        bus.publish(named("n", i=i))
    assert sink.pending == 3
    assert sink.dropped == 2
    sink.start()
    await sink.close(1.0)
    assert [line["i"] for line in log_lines(caplog_events)] == [2, 3, 4]
    overflow = [r for r in caplog_events.records if "dropped events" in r.getMessage()]
    assert len(overflow) == 1  # once per episode, not once per event


async def test_log_sink_counts_events_published_after_close_as_dropped(caplog_events):
    bus = EventBus()
    sink = EventLogSink(EventLogConfig(enabled=True), clock=ManualClock(START))
    sink.attach(bus)
    sink.start()
    await sink.close(1.0)
    bus.publish(Empty())
    assert sink.dropped == 1
    assert log_lines(caplog_events) == []


async def test_log_sink_encodes_nothing_when_its_logger_is_off(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    bus = EventBus()
    sink = EventLogSink(EventLogConfig(enabled=True), clock=ManualClock(START))
    sink.attach(bus)
    sink.start()
    bus.publish(Empty())
    await sink.close(1.0)
    assert sink.written == 0
    assert sink.pending == 0


def test_event_patterns_subscribe_to_the_kinds_they_match_only():
    exact, prefixed, every = EventBus(), EventBus(), EventBus()
    EventPatterns(["request.completed", "quota.exceeded"]).subscribe(exact, lambda e: None)
    assert exact.has_subscribers(RequestCompleted)
    assert exact.has_subscribers(QuotaExceeded)
    # publishers skip building events nobody asked for
    assert not exact.has_subscribers(RequestRetried)

    EventPatterns(["request.*"]).subscribe(prefixed, lambda e: None)
    assert prefixed.has_subscribers(RequestRetried)
    assert not prefixed.has_subscribers(QuotaWarning)

    EventPatterns(["*"]).subscribe(every, lambda e: None)
    assert every.has_subscribers(QuotaWarning)


def test_event_patterns_match_names_prefixes_and_star():
    patterns = EventPatterns(["request.*", "cache.cleared"])
    assert patterns.matches("request.failed")
    assert patterns.matches("cache.cleared")
    assert not patterns.matches("request")
    assert not patterns.matches("cache.cleared.x")
    assert EventPatterns(["*"]).matches("whatever")


def test_iso_time_is_utc_with_milliseconds():
    assert iso_time(START) == "2026-01-01T00:00:00.250Z"
