"""The one owner of a request's end.

A model call is counted in flight from the moment its public model is resolved until it ends,
and its end does three things exactly once: it publishes the request's record
(`request.completed` or `request.failed`, which usage records, metrics and statistics take),
it settles the limits the request reserved, and it leaves the in-flight count. A
`RequestScope` does them, whichever way the request ends (answer, error, cancellation, client
gone, broken stream, a bug): the first `succeed` or `fail` wins and later ones do nothing.
A stream holds its request's scope until the stream itself ends.

A stream that ends without the provider's usage (cut short, or from a provider that never
reports it) is charged what it consumed: the scope counts what was relayed
(`charge_relayed`), and its record says the numbers are estimates (`usage_estimated`).

`Recorder` is what every scope of a gateway shares: the bus, the clock, the prices, the
background tasks that settle after the answer is sent, and the in-flight count.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from stellara._clock import Clock
from stellara._tasks import BackgroundTasks
from stellara.catalog import Catalog
from stellara.errors import ClientDisconnectedError, InternalError, StellaraError
from stellara.events import Attempt, EventBus, RequestCompleted, RequestEnded, RequestFailed
from stellara.pipeline.context import RequestContext
from stellara.pipeline.relayed import RelayedUsage
from stellara.schema.chat import ChatCompletion

R = TypeVar("R", bound=RequestEnded)


class Recorder:
    """Records and settles the requests of one gateway (see the module docstring).

    `log_content` puts prompt and answer text into the request events (for usage records);
    off by default, as they may hold personal data.
    """

    def __init__(
        self,
        events: EventBus,
        clock: Clock,
        catalog: Catalog,
        background: BackgroundTasks,
        *,
        log_content: bool = False,
    ) -> None:
        self.events = events
        self.clock = clock
        self.catalog = catalog
        self.background = background
        self.log_content = log_content
        self.in_flight = 0  # requests between model resolution and their recorded end

    def open(self, ctx: RequestContext) -> RequestScope:
        """The scope of `ctx`, counted in flight until it ends. The caller ends it: `succeed`,
        or `end_by(exc)` for whatever escapes the request's code (a plain try/except, not a
        context manager: this is on every request's path, where one costs microseconds)."""
        self.in_flight += 1
        return RequestScope(self, ctx)

    def record(
        self, kind: type[R], ctx: RequestContext, status: int, error: StellaraError | None
    ) -> None:
        ctx.cost_usd = self._cost_usd(ctx)
        if self.events.has_subscribers(kind):
            self.events.publish(self._event(kind, ctx, status, error))
        ticket = ctx.ticket
        if ticket is not None:
            # After the answer: it need not wait a state round trip. `Gateway.drain` waits for
            # the pending ones on shutdown, so none is lost.
            self.background.run(ticket.settle(ctx.usage, ctx.cost_usd))

    def _cost_usd(self, ctx: RequestContext) -> float:
        if not ctx.provider_type:
            return 0.0  # failed before a target was chosen
        return self.catalog.cost_usd(ctx.provider_type, ctx.provider_model, ctx.usage)

    def _event(
        self, kind: type[R], ctx: RequestContext, status: int, error: StellaraError | None
    ) -> R:
        """What usage records, metrics and webhooks know of a finished request."""
        usage = ctx.usage
        details = usage.prompt_tokens_details if usage else None
        reasoning = usage.completion_tokens_details if usage else None
        principal = ctx.principal
        started_at = ctx.started_at
        first_byte_at = ctx.first_byte_at
        return kind(
            request_id=ctx.request_id,
            started_at=ctx.started_epoch_s,
            user=principal.user,
            team=principal.team,
            key_id=principal.key_id,
            key_prefix=principal.key_prefix,
            tier=ctx.ticket.policy.tier if ctx.ticket is not None else principal.tier,
            session_id=ctx.session_id,
            endpoint=ctx.endpoint,
            model=ctx.public_model,
            provider=ctx.provider_id,
            provider_model=ctx.provider_model,
            attempts=ctx.attempts,
            retries=ctx.retries,
            fallbacks=ctx.fallbacks,
            cache=ctx.cache_status,
            stream=ctx.is_streaming,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=(details.cached_tokens or 0) if details else 0,
            cache_write_tokens=(details.cache_write_tokens or 0) if details else 0,
            reasoning_tokens=(reasoning.reasoning_tokens or 0) if reasoning else 0,
            cost_usd=ctx.cost_usd,
            usage_estimated=ctx.usage_estimated,
            latency_ms=(self.clock.monotonic() - started_at) * 1000.0,
            ttfb_ms=(first_byte_at - started_at) * 1000.0 if first_byte_at else None,
            status=status,
            error=(error.code or error.error_type) if error is not None else None,
            attempt_spans=tuple(
                Attempt(
                    provider=span.provider,
                    model=span.model,
                    start_ms=(span.started_at - started_at) * 1000.0,
                    duration_ms=(span.ended_at - span.started_at) * 1000.0,
                    error=span.error,
                )
                for span in ctx.attempt_spans
            ),
            dropped_params=ctx.dropped_params,
            experiment=ctx.experiment if ctx.in_experiment else None,
            variant=ctx.variant if ctx.in_experiment else None,
            prompt=ctx.prompt_text,  # set only with `log_content`
            completion=ctx.completion_text,
            message=error.message if error is not None else None,
        )


class RequestScope:
    """One request's end, owned once (see the module docstring)."""

    __slots__ = ("_has_ended", "_recorder", "_relayed", "ctx")

    def __init__(self, recorder: Recorder, ctx: RequestContext) -> None:
        self._recorder = recorder
        self.ctx = ctx
        self._has_ended = False
        self._relayed: RelayedUsage | None = None

    @property
    def has_ended(self) -> bool:
        return self._has_ended

    def charge_relayed(self, relayed: RelayedUsage) -> None:
        """Charge what `relayed` counts if the request ends without the provider's usage:
        call it once a provider's stream has started (it consumed the prompt by then)."""
        self._relayed = relayed

    def succeed(self, completion: ChatCompletion | None = None) -> None:
        """The request was answered in full; `completion` is the answer (for `log_content`)."""
        if not self._leave():
            return
        if self._recorder.log_content and completion is not None:
            self.ctx.completion_text = _answer_text(completion)
        self._record(RequestCompleted, 200, None)

    def fail(self, error: StellaraError) -> None:
        """The request ended in `error`. A stream cut after its first chunk is still charged
        what it consumed: the provider's usage if it came before the cut, else an estimate."""
        if self._leave():
            self._record(RequestFailed, error.status_code, error)

    def end_by(self, exc: BaseException) -> None:
        """End by what escaped the request's code: a `StellaraError` as itself, a
        cancellation as the client leaving, anything else as a bug (500)."""
        if isinstance(exc, StellaraError):
            self.fail(exc)
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self.fail(client_left())
        else:
            self.fail(InternalError.of_request(self.ctx.request_id))

    def _leave(self) -> bool:
        """True once: the first end leaves the in-flight count; later ones are no-ops."""
        if self._has_ended:
            return False
        self._has_ended = True
        self._recorder.in_flight -= 1
        self.ctx.release()
        return True

    def _record(self, kind: type[R], status: int, error: StellaraError | None) -> None:
        """Record the end; a started stream without the provider's usage is charged what it
        relayed (never in place of usage the provider did report)."""
        ctx = self.ctx
        if ctx.usage is None and self._relayed is not None:
            ctx.usage = self._relayed.usage(ctx.provider_model)
            ctx.usage_estimated = True
        self._recorder.record(kind, ctx, status, error)


def client_left() -> ClientDisconnectedError:
    return ClientDisconnectedError(
        "the client closed the connection before the answer was complete"
    )


def _answer_text(completion: ChatCompletion) -> str | None:
    """The answer's text (every choice's, in order), for `log_content`."""
    texts = [c.message.content for c in completion.choices if c.message.content]
    return "\n".join(texts) if texts else None
