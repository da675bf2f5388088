"""OpenTelemetry spans for finished requests (`telemetry.tracing`), made after the fact.

No span stays open on the request path. A request's `request.completed` / `request.failed`
event says when it started, how long it took and how each provider attempt went
(`attempt_spans`); the tracer's task turns it into a `stellara.request` span with one
`stellara.attempt` child per attempt, all with their original times. The request pays one
queue append; a batch span processor exports from its own thread.

Attributes follow the OpenTelemetry GenAI conventions where they fit (`gen_ai.request.model`
is the public model, `gen_ai.response.model` the provider's); the rest are `stellara.*`. The
error's message never becomes an attribute: it may echo the prompt.

This module needs OpenTelemetry's API and SDK (the `stellara[tracing]` extra): import it only
when tracing is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from stellara import __version__
from stellara._clock import Clock
from stellara.config.models import TracingConfig
from stellara.errors import ConfigError
from stellara.events import Attempt, RequestCompleted, RequestEnded, RequestFailed
from stellara.telemetry.sinks import EventPatterns, Queued, QueueSink

OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
_SPANS_PER_TURN = 100  # a burst is traced in slices, letting requests run in between


def _request_attributes(event: RequestEnded) -> dict[str, Any]:
    return _present(
        {
            "gen_ai.request.model": event.model,
            "gen_ai.response.model": event.provider_model,
            "gen_ai.usage.input_tokens": event.prompt_tokens,
            "gen_ai.usage.output_tokens": event.completion_tokens,
            "gen_ai.usage.cache_read.input_tokens": event.cached_tokens,
            "gen_ai.usage.cache_creation.input_tokens": event.cache_write_tokens,
            "http.route": event.endpoint,
            "http.response.status_code": event.status,
            "error.type": event.error,
            "stellara.request_id": event.request_id,
            "stellara.user": event.user,
            "stellara.team": event.team,
            "stellara.tier": event.tier,
            "stellara.provider": event.provider,
            "stellara.cache": event.cache,
            "stellara.stream": event.stream,
            "stellara.attempts": event.attempts,
            "stellara.retries": event.retries,
            "stellara.fallbacks": event.fallbacks,
            "stellara.cost_usd": event.cost_usd,
            "stellara.usage_estimated": event.usage_estimated,
            "stellara.ttfb_ms": event.ttfb_ms,
        }
    )


def _attempt_attributes(attempt: Attempt) -> dict[str, Any]:
    return _present(
        {
            "gen_ai.request.model": attempt.model,
            "stellara.provider": attempt.provider,
            "error.type": attempt.error,
        }
    )


def _present(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes whose fact is known: neither None nor empty."""
    return {name: value for name, value in attributes.items() if value not in (None, "")}


class RequestTracer(QueueSink):
    """Records a span tree per finished request on `provider`.

    Args:
        provider: where spans go: the process's global provider, or one of our own.
        clock: stamps the events.
        owned: the provider, when this tracer made it and must shut it down (flushing it).
    """

    def __init__(
        self,
        provider: trace.TracerProvider,
        *,
        clock: Clock,
        owned: TracerProvider | None = None,
        queue_max: int = 10_000,
    ) -> None:
        super().__init__(
            "request tracer",
            EventPatterns([RequestCompleted.name, RequestFailed.name]),
            clock=clock,
            queue_max=queue_max,
            batch_max=_SPANS_PER_TURN,
        )
        self._tracer = provider.get_tracer("stellara", __version__)
        self._owned = owned
        self._traced = 0

    def status(self) -> dict[str, int]:
        return {"pending": self.pending, "traced": self._traced, "dropped": self.dropped}

    async def close(self, timeout_s: float) -> None:
        """Trace what is queued, then flush and stop our own provider, within `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        await super().close(timeout_s)
        if self._owned is not None:
            await _shut_down(self._owned, max(0.0, deadline - loop.time()))

    async def _send(self, batch: list[Queued]) -> None:
        for at, event in batch:
            assert isinstance(event, RequestEnded)  # the only kinds its patterns take
            self._trace(event, at)
        self._traced += len(batch)
        await asyncio.sleep(0)

    def _trace(self, event: RequestEnded, at: float) -> None:
        latency_ns = int(event.latency_ms * 1e6)
        started_at = event.started_at
        start_ns = int(started_at * 1e9) if started_at else int(at * 1e9) - latency_ns
        span = self._tracer.start_span(
            "stellara.request",
            kind=SpanKind.SERVER,
            start_time=start_ns,
            attributes=_request_attributes(event),
        )
        if isinstance(event, RequestFailed):
            span.set_status(Status(StatusCode.ERROR, event.error))
        parent = trace.set_span_in_context(span)
        for attempt in event.attempt_spans:
            begin_ns = start_ns + int(attempt.start_ms * 1e6)
            child = self._tracer.start_span(
                "stellara.attempt",
                context=parent,
                kind=SpanKind.CLIENT,
                start_time=begin_ns,
                attributes=_attempt_attributes(attempt),
            )
            if attempt.error:
                child.set_status(Status(StatusCode.ERROR, attempt.error))
            child.end(end_time=begin_ns + int(attempt.duration_ms * 1e6))
        span.end(end_time=start_ns + latency_ns)


def build_tracer(config: TracingConfig, *, clock: Clock) -> RequestTracer:
    """The tracer `config` asks for. `exporter: none` records on the process's global provider
    (set up by the host, e.g. `opentelemetry-instrument`); the others get a provider of their
    own. Raises `ConfigError` when the OTLP exporter package is missing."""
    if config.exporter == "none":
        return RequestTracer(trace.get_tracer_provider(), clock=clock)
    if config.exporter == "console":
        exporter: SpanExporter = ConsoleSpanExporter(out=sys.stdout)  # today's stdout
    else:
        exporter = _otlp_exporter(config.otlp_endpoint)
    resource = Resource.create({"service.name": config.service_name})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # close() shuts it
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return RequestTracer(provider, clock=clock, owned=provider)


def _otlp_exporter(endpoint: str | None) -> SpanExporter:
    try:  # an optional package of an optional extra: looked up by name
        module = importlib.import_module(OTLP_MODULE)
    except ImportError as exc:
        raise ConfigError(
            [
                "telemetry.tracing.exporter: otlp needs the OTLP exporter; install it with "
                "`pip install opentelemetry-exporter-otlp-proto-http`"
            ]
        ) from exc
    # endpoint None: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else http://localhost:4318/v1/traces
    otlp: SpanExporter = module.OTLPSpanExporter(endpoint=endpoint)
    return otlp


async def _shut_down(provider: TracerProvider, timeout_s: float) -> None:
    """`provider.shutdown()` (it exports what is left, blocking) in a daemon thread, awaited
    for `timeout_s` at most: an unreachable collector must not hold the process's exit."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def shut_down() -> None:
        try:
            provider.shutdown()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits
                loop.call_soon_threadsafe(done.set)

    threading.Thread(target=shut_down, name="stellara-tracing-shutdown", daemon=True).start()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await done.wait()
