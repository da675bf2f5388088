"""Tracing: a request's events become a `stellara.request` span with its attempts as
children, with the original times, on the SDK (in memory here)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from stellara._clock import SystemClock
from stellara.config.models import EventLogConfig, TelemetryConfig, TracingConfig
from stellara.errors import ConfigError
from stellara.events import (
    Attempt,
    EventBus,
    RequestCompleted,
    RequestEnded,
    RequestFailed,
    RequestRetried,
)
from stellara.server.app import RUNTIME
from stellara.sim import RunningSimulator
from stellara.state.memory import MemoryBackend
from stellara.telemetry.setup import attach_sinks
from stellara.telemetry.tracing import OTLP_MODULE, RequestTracer, build_tracer
from stellara.testing import request_completed, request_failed
from tests.conftest import USER_KEY, StartGateway, gateway_config, set_faults

STARTED_AT = 1_767_225_600.5
MS = 1_000_000  # ns


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


# A request answered on its second attempt: openai timed out, then claude answered.
ANSWERED_SECOND: dict[str, Any] = {
    "request_id": "req-1",
    "started_at": STARTED_AT,
    "tier": "pro",
    "provider": "claude",
    "provider_model": "claude-3-5-sonnet",
    "attempts": 2,
    "prompt_tokens": 12,
    "completion_tokens": 34,
    "latency_ms": 250.0,
    "ttfb_ms": 240.0,
    "attempt_spans": (
        Attempt(provider="openai", model="gpt-4o", start_ms=5.0, duration_ms=100.0,
                error="upstream_timeout"),
        Attempt(provider="claude", model="claude-3-5-sonnet", start_ms=110.0,
                duration_ms=130.0, error=None),
    ),
}  # fmt: skip


def completed(**overrides: Any) -> RequestCompleted:
    return request_completed(**{**ANSWERED_SECOND, **overrides})


async def trace_events(provider: TracerProvider, *events: RequestEnded) -> RequestTracer:
    bus = EventBus()
    tracer = RequestTracer(provider, clock=SystemClock())
    tracer.attach(bus)
    tracer.start()
    for event in events:
        bus.publish(event)
    await tracer.close(1.0)
    return tracer


def times(span: ReadableSpan) -> tuple[int, int]:
    assert span.start_time is not None
    assert span.end_time is not None
    return span.start_time, span.end_time


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_tracer_makes_a_request_span_with_attempt_children(provider, exporter):
    tracer = await trace_events(provider, completed())
    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "stellara.request")
    first, second = by_name(spans, "stellara.attempt")

    start = int(STARTED_AT * 1e9)
    assert request.kind is SpanKind.SERVER
    assert request.start_time == start
    assert request.end_time == start + 250 * MS
    assert request.status.status_code is StatusCode.UNSET
    assert request.parent is None
    assert dict(request.attributes or {}) == {
        "gen_ai.request.model": "smart",
        "gen_ai.response.model": "claude-3-5-sonnet",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "gen_ai.usage.cache_read.input_tokens": 0,
        "gen_ai.usage.cache_creation.input_tokens": 0,
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "stellara.request_id": "req-1",
        "stellara.user": "alice",
        "stellara.tier": "pro",
        "stellara.provider": "claude",
        "stellara.cache": "miss",
        "stellara.stream": False,
        "stellara.attempts": 2,
        "stellara.retries": 0,
        "stellara.fallbacks": 0,
        "stellara.cost_usd": 0.001,
        "stellara.usage_estimated": False,
        "stellara.ttfb_ms": 240.0,
    }

    assert request.context is not None
    for child in (first, second):
        assert child.kind is SpanKind.CLIENT
        assert child.parent is not None
        assert child.parent.span_id == request.context.span_id
        assert child.context is not None
        assert child.context.trace_id == request.context.trace_id
    assert (first.start_time, first.end_time) == (start + 5 * MS, start + 105 * MS)
    assert (second.start_time, second.end_time) == (start + 110 * MS, start + 240 * MS)
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "upstream_timeout"
    assert dict(first.attributes or {}) == {
        "gen_ai.request.model": "gpt-4o",
        "stellara.provider": "openai",
        "error.type": "upstream_timeout",
    }
    assert second.status.status_code is StatusCode.UNSET
    assert tracer.status() == {"pending": 0, "traced": 1, "dropped": 0}


async def test_tracer_marks_failed_requests_without_their_message(provider, exporter):
    no_provider = {"provider": "", "attempt_spans": ()}
    failed = request_failed(
        **{**ANSWERED_SECOND, **no_provider}, message="upstream said: my secret prompt"
    )
    await trace_events(provider, failed)
    [request] = exporter.get_finished_spans()
    assert request.status.status_code is StatusCode.ERROR
    assert request.status.description == "upstream_unavailable"
    attributes = dict(request.attributes or {})
    assert attributes["error.type"] == "upstream_unavailable"
    assert attributes["http.response.status_code"] == 502
    assert "stellara.provider" not in attributes  # none was chosen
    assert "my secret prompt" not in repr(attributes)


async def test_tracer_takes_only_finished_requests(provider, exporter):
    bus = EventBus()
    RequestTracer(provider, clock=SystemClock()).attach(bus)
    assert bus.has_subscribers(RequestCompleted)
    assert bus.has_subscribers(RequestFailed)
    assert not bus.has_subscribers(RequestRetried)  # retries are not built for the tracer


async def test_tracing_is_off_by_default():
    bus = EventBus()
    sinks = attach_sinks(bus, TelemetryConfig(), state=MemoryBackend(), clock=SystemClock())
    assert sinks.tracer is None
    assert sinks.all == []
    assert not bus.has_subscribers(RequestCompleted)


async def test_tracer_exporter_none_records_on_the_hosts_provider(provider, exporter, monkeypatch):
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    config = TelemetryConfig(tracing=TracingConfig(enabled=True))
    bus = EventBus()
    sinks = attach_sinks(bus, config, state=MemoryBackend(), clock=SystemClock())
    await sinks.start()
    bus.publish(completed())
    await sinks.close(1.0)
    assert len(by_name(exporter.get_finished_spans(), "stellara.request")) == 1


async def test_tracer_console_exporter_prints_spans_by_close(capsys):
    tracer = build_tracer(
        TracingConfig(enabled=True, exporter="console", service_name="gw-test"),
        clock=SystemClock(),
    )
    bus = EventBus()
    tracer.attach(bus)
    tracer.start()
    bus.publish(completed())
    await tracer.close(2.0)  # the batch processor exports on shutdown
    out = capsys.readouterr().out
    assert out.count('"name": "stellara.attempt"') == 2
    assert '"name": "stellara.request"' in out
    assert '"service.name": "gw-test"' in out


def test_tracer_otlp_without_its_package_is_a_clear_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, OTLP_MODULE, None)  # import fails as if not installed
    with pytest.raises(ConfigError) as caught:
        build_tracer(TracingConfig(enabled=True, exporter="otlp"), clock=SystemClock())
    assert caught.value.problems == [
        "telemetry.tracing.exporter: otlp needs the OTLP exporter; install it with "
        "`pip install opentelemetry-exporter-otlp-proto-http`"
    ]


def test_tracing_without_opentelemetry_is_a_clear_config_error(monkeypatch):
    monkeypatch.delitem(sys.modules, "stellara.telemetry.tracing")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    bus = EventBus()
    config = TelemetryConfig(
        tracing=TracingConfig(enabled=True), log_events=EventLogConfig(enabled=True)
    )
    with pytest.raises(ConfigError, match=r"pip install 'stellara\[tracing\]'"):
        attach_sinks(bus, config, state=MemoryBackend(), clock=SystemClock())
    assert not bus.has_subscribers(RequestCompleted)  # nothing half-attached


async def test_tracer_on_a_gateway_times_each_attempt_inside_its_request(
    sim: RunningSimulator, start_gateway: StartGateway, provider, exporter, http
):
    gateway = await start_gateway(gateway_config(sim.url))
    tracer = RequestTracer(provider, clock=SystemClock())
    tracer.attach(gateway.app[RUNTIME].events)
    tracer.start()
    await set_faults(sim, {"kind": "status", "status": 503, "times": 1})
    async with http.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "test-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {USER_KEY}"},
    ) as response:
        assert response.status == 200
        request_id = response.headers["x-stellara-request-id"]
    await tracer.close(1.0)

    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "stellara.request")
    failed, answered = sorted(by_name(spans, "stellara.attempt"), key=times)
    assert request.attributes is not None
    assert request.attributes["stellara.request_id"] == request_id
    assert request.attributes["stellara.attempts"] == 2
    assert request.context is not None
    begin, end = times(request)
    for attempt in (failed, answered):
        assert attempt.parent is not None
        assert attempt.parent.span_id == request.context.span_id
        assert begin <= times(attempt)[0] <= times(attempt)[1] <= end
    assert times(failed)[1] <= times(answered)[0]  # the retry came after the failure
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "upstream_unavailable"
    assert answered.status.status_code is StatusCode.UNSET
