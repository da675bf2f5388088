"""The attempt loop: which target answers, with retries, breakers and fallback models.

For the requested public model, then each of its `fallbacks` in order: the strategy orders
the targets, skipping open breakers; each target is tried up to `retry.max_attempts` times
(backoff with full jitter, `Retry-After` honoured) while the request's deadline and its
total-attempt budget last. What the error says decides what follows (`RetryPolicy.decide`):
a client error stops at once, a content filter skips that provider, a context-window error
skips to the fallbacks. A breaker that refuses costs no attempt, and so does a target that
cannot honour a parameter of the request (`refuses`, the parameter policy). If no target could
be tried at all, the request is refused: with the policy's 400 when every target refused its
parameters, else with 503; otherwise the last provider error is raised.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stellara._clock import Clock
from stellara.catalog import Catalog
from stellara.config.models import Strategy
from stellara.errors import (
    InvalidRequestError,
    NoHealthyProviderError,
    StellaraError,
    UpstreamError,
    UpstreamTimeoutError,
)
from stellara.events import EventBus, RequestFellBack, RequestRetried
from stellara.pipeline.context import AttemptSpan, RequestContext
from stellara.routing.breaker import BreakerBoard
from stellara.routing.feedback import FeedbackBoard
from stellara.routing.health import HealthBoard
from stellara.routing.models import ModelTable, PublicModel, Target
from stellara.routing.retry import AttemptBudget, RetryPolicy
from stellara.routing.stats import RouterStats, target_key
from stellara.routing.strategies import STRATEGIES, RankInputs, RequestPrice, choose_order

T = TypeVar("T")
Call = Callable[[Target, float], Awaitable[T]]
Refuses = Callable[[Target], StellaraError | None]


class AttemptRunner:
    """Runs one request's attempts. One per app; state (breakers, stats) is shared."""

    def __init__(
        self,
        models: ModelTable,
        breakers: BreakerBoard,
        health: HealthBoard,
        stats: RouterStats,
        retry: RetryPolicy,
        clock: Clock,
        *,
        catalog: Catalog,
        feedback: FeedbackBoard | None = None,
        rng: random.Random | None = None,
        events: EventBus | None = None,
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        """`feedback` is what `cost`'s quality floor reads (a new, empty board by default):
        whoever hears feedback records it there. `scrub` removes secrets and internal
        addresses from the providers' error messages, which some providers echo (a key in a
        400's text), before the messages reach clients or events."""
        self.models = models
        self.breakers = breakers
        self.health = health
        self.stats = stats
        self.retry = retry
        self.catalog = catalog
        self.feedback = feedback if feedback is not None else FeedbackBoard()
        self._clock = clock
        self._rng = rng or random.Random()
        self._events = events or EventBus()
        self._scrub = scrub
        self._chains: dict[str, list[PublicModel]] = {}

    def chain(self, public: PublicModel) -> list[PublicModel]:
        """The model, then its fallbacks (and theirs), each once. The config is fixed for the
        app's life, so each chain is worked out once per name; an experiment's variant (the
        same name served by other targets) heads its model's chain."""
        chain = self._chains.get(public.name)
        if chain is None:
            chain = self._chains[public.name] = self._walk(public)
        if chain[0] is not public:
            return [public, *chain[1:]]
        return chain

    def _walk(self, public: PublicModel) -> list[PublicModel]:
        chain, seen, queue = [], {public.name}, [public]
        while queue:
            model = queue.pop(0)
            chain.append(model)
            for name in model.fallbacks:
                fallback = self.models.get(name)
                if fallback is not None and name not in seen:
                    seen.add(name)
                    queue.append(fallback)
        return chain

    async def run(
        self,
        ctx: RequestContext,
        models: list[PublicModel],
        call: Call[T],
        *,
        price: RequestPrice,
        stream: bool = False,
        strategy: Strategy | None = None,
        providers: frozenset[str] | None = None,
        refuses: Refuses | None = None,
    ) -> T:
        """`call(target, timeout_s)` on targets in turn until one answers.

        `price` is this request's price estimate, for `cost` (on the fallback models too).
        `refuses(target)` is why the request cannot be sent to `target` (None: it can).
        """
        if providers is not None and not any(
            t.adapter.id in providers for model in models for t in model.targets
        ):
            serving = sorted({t.adapter.id for model in models for t in model.targets})
            raise InvalidRequestError(
                f"routing.providers names no provider of the model {models[0].name!r} "
                f"(its providers: {', '.join(serving)}).",
                param="routing.providers",
            )
        budget = AttemptBudget(self.retry, ctx.started_at, ctx.deadline - ctx.started_at)
        last_error: UpstreamError | None = None
        skipped_providers: set[str] = set()
        refusals: list[StellaraError] = []
        was_any_available = False  # a target not refused: tried, or skipped by its breaker
        for index, model in enumerate(models):
            if index:
                self._fell_back(ctx, models[index - 1].name, model.name, last_error)
            targets = [t for t in model.targets if providers is None or t.adapter.id in providers]
            now = self._clock.monotonic()
            choice = choose_order(
                STRATEGIES[strategy or model.strategy],
                targets,
                RankInputs(
                    model.name,
                    self.stats,
                    price,
                    now,
                    self._rng,
                    stream,
                    self.feedback,
                    model.cost_floor,
                ),
                is_available=lambda t: (
                    t.adapter.id not in skipped_providers
                    and not self.breakers.is_open(t.adapter.id, t.model)
                ),
            )
            route = f"{model.name}: {choice.reason}"
            ctx.route = f"{ctx.route}; fallback {route}" if ctx.route else route
            was_any_available |= bool(choice.skipped)
            for position, target in enumerate(choice.order):
                refusal = refuses(target) if refuses is not None else None
                if refusal is not None:
                    refusals.append(refusal)
                    ctx.route += f"; skipped {target_key(target)}: {refusal.param} unsupported"
                    continue
                was_any_available = True
                has_alternatives = position + 1 < len(choice.order) or model is not models[-1]
                result, error, next_step = await self._try_target(
                    ctx, target, call, budget, has_alternatives=has_alternatives
                )
                if error is None:
                    return result  # type: ignore[return-value]
                last_error = error or last_error
                if next_step == "stop" and error is not None:
                    raise error
                if next_step == "next_provider":
                    skipped_providers.add(target.adapter.id)
                if next_step == "larger_window":
                    break  # only the fallback models may have a larger window
        if last_error is None:
            if refusals and not was_any_available:
                raise refusals[0]
            raise NoHealthyProviderError(
                f"No healthy provider for the model {models[0].name!r}: every circuit breaker "
                "is open.",
                retry_after_s=self._breakers_wait_s(models, providers),
            )
        raise last_error

    def _breakers_wait_s(
        self, models: list[PublicModel], providers: frozenset[str] | None
    ) -> float | None:
        """Seconds until the first breaker guarding a target of `models` (of `providers`) may
        let a call through: when a request every breaker refused is worth sending again."""
        waits = [
            self.breakers.wait_s(t.adapter.id, t.model)
            for model in models
            for t in model.targets
            if providers is None or t.adapter.id in providers
        ]
        return min(waits, default=None)

    async def _try_target(
        self,
        ctx: RequestContext,
        target: Target,
        call: Call[T],
        budget: AttemptBudget,
        *,
        has_alternatives: bool,
    ) -> tuple[T | None, UpstreamError | None, str]:
        """Attempts on one target: (result, None, "") or (None, last error, what next).

        While another target could still answer, one attempt may use at most half of the
        time left, so a provider that never answers leaves time for the next one.
        """
        provider, model = target.adapter.id, target.model
        error: UpstreamError | None = None
        for retry in range(self.retry.max_attempts):
            if not self.breakers.allow(provider, model):
                return None, error, "next_target"  # an open breaker costs no attempt
            now = self._clock.monotonic()
            if not budget.take(now):
                return None, error or _out_of_time(provider), "stop"
            ctx.attempts += 1
            ctx.provider_id, ctx.provider_type, ctx.provider_model = (
                provider,
                target.provider_type,
                model,
            )
            self.stats.started(target)
            timeout_s = budget.remaining_s(now)
            if has_alternatives:
                timeout_s /= 2
            try:
                result = await call(target, timeout_s)
            except UpstreamError as exc:
                self.scrub_error(exc)
                error = exc
                ctx.failures.append(f"{provider}/{model}: {exc.code}: {exc.message}")
                ended = self._record(target, now, exc)
                code = exc.code or exc.error_type
                ctx.attempt_spans.append(AttemptSpan(provider, model, now, ended, code))
                step = self.retry.decide(exc, retry + 1, remaining_s=budget.remaining_s(ended))
                if step != "retry_same":
                    return None, exc, step
                delay = self.retry.delay_s(
                    retry, exc, self._rng, remaining_s=budget.remaining_s(self._clock.monotonic())
                )
                ctx.retries += 1
                if self._events.has_subscribers(RequestRetried):
                    retried = RequestRetried(
                        request_id=ctx.request_id,
                        provider=provider,
                        model=model,
                        attempt=retry + 1,
                        error=code,
                        delay_ms=delay * 1000.0,
                    )
                    self._events.publish(retried)
                await asyncio.sleep(delay)
                continue
            except BaseException as exc:  # cancelled, client gone: no verdict on the provider
                self.stats.finished(target, self._clock.monotonic(), ok=False)
                self.breakers.record(provider, model, exc)  # hands back a half-open permit
                raise
            ended = self._record(target, now, None)
            ctx.attempt_spans.append(AttemptSpan(provider, model, now, ended, None))
            return result, None, ""
        return None, error, "next_target"

    def _fell_back(
        self, ctx: RequestContext, from_model: str, to_model: str, error: UpstreamError | None
    ) -> None:
        ctx.fallbacks += 1
        if self._events.has_subscribers(RequestFellBack):
            fell_back = RequestFellBack(
                request_id=ctx.request_id,
                from_model=from_model,
                to_model=to_model,
                error=(error.code or error.error_type) if error is not None else None,
            )
            self._events.publish(fell_back)

    def stream_broke(self, ctx: RequestContext, error: UpstreamError) -> None:
        """The stream of the attempt that answered broke off after its first chunk: a failure
        of that provider, though the attempt was recorded as a success when it started."""
        self.scrub_error(error)  # its message goes to the client as the stream's last event
        if not ctx.attempt_spans:
            return  # a replayed cache hit: no provider was involved
        span = ctx.attempt_spans[-1]
        self.breakers.record_broken_stream(span.provider, span.model, error)
        latency_s = self._clock.monotonic() - span.started_at
        self.health.record_call(span.provider, span.model, latency_s, error)

    def scrub_error(self, error: UpstreamError) -> None:
        """Scrub what of `error` a client reads: its message and the field it names (no
        provider secret reaches a client, whatever a provider puts in its errors)."""
        if self._scrub is None:
            return
        error.message = self._scrub(error.message)
        error.args = (error.message,)
        if error.param is not None:
            error.param = self._scrub(error.param)

    def _record(self, target: Target, started: float, error: UpstreamError | None) -> float:
        """Feed the attempt's outcome to routing stats, breakers and health; returns when it
        ended."""
        now = self._clock.monotonic()
        elapsed = now - started
        provider, model = target.adapter.id, target.model
        self.stats.finished(target, now, ok=error is None, total_s=elapsed, ttfb_s=elapsed)
        self.breakers.record(provider, model, error, latency_s=elapsed)
        self.health.record_call(provider, model, elapsed, error)
        return now


def _out_of_time(provider: str) -> UpstreamTimeoutError:
    return UpstreamTimeoutError(
        "the request's deadline or attempt budget ran out", provider=provider
    )
