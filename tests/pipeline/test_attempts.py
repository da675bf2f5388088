"""The attempt runner without sockets: scripted providers, a manual clock, recorded events.

Retry waits are a millisecond (the runner sleeps on the event loop's clock); everything the
runner decides by time (deadline, breakers) reads the manual clock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from stellara.catalog import Catalog
from stellara.config.models import ModelConfig, Strategy, TargetConfig
from stellara.errors import (
    ContentFilterError,
    ContextWindowExceededError,
    InvalidRequestError,
    NoHealthyProviderError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from stellara.events import EventBus, RequestFellBack, RequestRetried
from stellara.limits import RequestEstimate
from stellara.pipeline.attempts import AttemptRunner
from stellara.pipeline.context import AttemptSpan, RequestContext
from stellara.routing.breaker import BreakerBoard, BreakerSettings
from stellara.routing.health import HealthBoard
from stellara.routing.models import ModelTable, Target
from stellara.routing.retry import RetryPolicy
from stellara.routing.stats import RouterStats
from stellara.schema.chat import ChatCompletion, ChatRequest
from stellara.testing import (
    Answer,
    EventRecorder,
    ManualClock,
    ScriptedAdapter,
    ScriptedCall,
    Stall,
    chat_completion,
    chat_request,
    request_context,
)

DOWN = UpstreamUnavailableError("upstream said 503", provider="a", upstream_status=503)
TOO_LONG = ContextWindowExceededError("prompt too long", provider="a", upstream_status=400)
BAD = UpstreamBadRequestError("unknown field", provider="a", upstream_status=400)
BLOCKED = ContentFilterError("blocked", provider="a", upstream_status=400)
TIMED_OUT = UpstreamTimeoutError("no answer in time", provider="a")
ANSWER = chat_completion("scripted answer")
TIMEOUT_S = 30.0
OPEN_S = 30.0


@dataclass
class Rig:
    """A runner over scripted providers, as the gateway drives it for chat requests."""

    runner: AttemptRunner
    table: ModelTable
    clock: ManualClock
    events: EventRecorder
    request: ChatRequest

    async def run(
        self,
        model: str = "smart",
        ctx: RequestContext | None = None,
        *,
        strategy: Strategy | None = None,
        providers: frozenset[str] | None = None,
    ) -> ChatCompletion:
        ctx = ctx or self.context()
        public = self.table.get(model)
        assert public is not None

        async def call(target: Target, timeout_s: float) -> ChatCompletion:
            return await target.adapter.chat(self.request, target.model, timeout_s=timeout_s)

        price = RequestEstimate(lambda _: 10, 20, None, self.runner.catalog)
        chain = self.runner.chain(public)
        return await self.runner.run(
            ctx, chain, call, price=price, strategy=strategy, providers=providers
        )

    def context(self, timeout_s: float = TIMEOUT_S) -> RequestContext:
        return request_context(self.clock, timeout_s=timeout_s)

    def open_breaker(self, provider: str) -> None:
        self.runner.breakers.get(provider, "any").force_open(self.clock.monotonic())


def rig(
    *adapters: ScriptedAdapter,
    models: dict[str, list[str]] | None = None,
    fallbacks: dict[str, list[str]] | None = None,
    max_attempts: int = 2,
    max_total_attempts: int = 6,
    failure_threshold: int = 5,
    scrub: bool = False,
) -> Rig:
    """`models` maps each public model to its providers' ids, each serving `gpt-4o` (by
    default `smart`, served by every adapter in order)."""
    clock = ManualClock()
    bus = EventBus()
    models = models or {"smart": [a.id for a in adapters]}
    table = ModelTable(
        [
            ModelConfig(
                name=name,
                targets=[TargetConfig(provider=p, model="gpt-4o") for p in providers],
                fallbacks=(fallbacks or {}).get(name, []),
            )
            for name, providers in models.items()
        ],
        {a.id: a for a in adapters},
        {a.id: "openai" for a in adapters},
    )
    breakers = BreakerBoard(BreakerSettings(failure_threshold, open_s=OPEN_S), clock)
    runner = AttemptRunner(
        table,
        breakers,
        HealthBoard([a.id for a in adapters], clock, breakers),
        RouterStats(),
        RetryPolicy(max_attempts, 0.001, 0.001, False, max_total_attempts),
        clock,
        catalog=Catalog([]),
        events=bus,
        scrub=(lambda text: text.replace("sk-SECRET", "***")) if scrub else None,
    )
    return Rig(runner, table, clock, EventRecorder(bus), chat_request())


async def test_attempts_first_target_answers_first_time() -> None:
    a, b = ScriptedAdapter("a", ANSWER), ScriptedAdapter("b")
    r = rig(a, b)
    ctx = r.context()
    assert await r.run(ctx=ctx) == ANSWER
    assert (len(a.calls), len(b.calls)) == (1, 0)
    assert (ctx.attempts, ctx.retries, ctx.fallbacks) == (1, 0, 0)
    assert (ctx.provider_id, ctx.provider_type, ctx.provider_model) == ("a", "openai", "gpt-4o")
    now = r.clock.monotonic()
    assert ctx.attempt_spans == [AttemptSpan("a", "gpt-4o", now, now, None)]
    assert ctx.route == "smart: priority: a/gpt-4o, first available in config order"
    assert r.events.events == []


async def test_attempts_retry_a_retryable_error_on_the_same_target_then_answer() -> None:
    a = ScriptedAdapter("a", DOWN, ANSWER)
    r = rig(a, max_attempts=3)
    ctx = r.context()
    assert await r.run(ctx=ctx) == ANSWER
    assert (len(a.calls), ctx.attempts, ctx.retries) == (2, 2, 1)
    assert ctx.failures == ["a/gpt-4o: upstream_unavailable: upstream said 503"]
    assert [span.error for span in ctx.attempt_spans] == ["upstream_unavailable", None]
    (retried,) = r.events.of(RequestRetried)
    assert retried == RequestRetried(
        request_id=ctx.request_id,
        provider="a",
        model="gpt-4o",
        attempt=1,
        error="upstream_unavailable",
        delay_ms=1.0,
    )


async def test_attempts_move_to_the_next_target_once_its_attempts_are_used() -> None:
    a, b = ScriptedAdapter("a", DOWN), ScriptedAdapter("b", ANSWER)
    r = rig(a, b, max_attempts=2)
    ctx = r.context()
    assert await r.run(ctx=ctx) == ANSWER
    assert (len(a.calls), len(b.calls)) == (2, 1)  # max_attempts counts attempts per target
    assert (ctx.attempts, ctx.retries, ctx.provider_id) == (3, 1, "b")
    assert len(r.events.of(RequestRetried)) == 1  # no retry event for moving on


async def test_attempts_try_the_fallback_models_in_order() -> None:
    a, b, c = ScriptedAdapter("a", DOWN), ScriptedAdapter("b", DOWN), ScriptedAdapter("c")
    r = rig(
        a,
        b,
        c,
        models={"smart": ["a"], "backup": ["b"], "last": ["c"]},
        fallbacks={"smart": ["backup", "last"]},
        max_attempts=1,
    )
    ctx = r.context()
    answer = await r.run(ctx=ctx)
    assert answer.model == "gpt-4o"
    assert [len(x.calls) for x in (a, b, c)] == [1, 1, 1]
    assert ctx.fallbacks == 2
    moves = [(e.from_model, e.to_model, e.error) for e in r.events.of(RequestFellBack)]
    assert moves == [
        ("smart", "backup", "upstream_unavailable"),
        ("backup", "last", "upstream_unavailable"),
    ]
    assert ctx.route.split("; fallback ") == [
        "smart: priority: a/gpt-4o, only target",
        "backup: priority: b/gpt-4o, only target",
        "last: priority: c/gpt-4o, only target",
    ]


async def test_attempts_stop_at_once_on_the_clients_bad_request() -> None:
    a, b = ScriptedAdapter("a", BAD), ScriptedAdapter("b")
    r = rig(a, b, models={"smart": ["a", "b"], "backup": ["b"]}, fallbacks={"smart": ["backup"]})
    with pytest.raises(UpstreamBadRequestError) as caught:
        await r.run()
    assert caught.value.status_code == 400
    assert (len(a.calls), len(b.calls)) == (1, 0)  # every target would refuse it
    assert r.events.events == []


async def test_attempts_context_window_error_skips_to_the_fallbacks() -> None:
    a, b, large = ScriptedAdapter("a", TOO_LONG), ScriptedAdapter("b"), ScriptedAdapter("large")
    r = rig(
        a,
        b,
        large,
        models={"smart": ["a", "b"], "long": ["large"]},
        fallbacks={"smart": ["long"]},
    )
    ctx = r.context()
    await r.run(ctx=ctx)
    assert [len(x.calls) for x in (a, b, large)] == [1, 0, 1]  # b has the same window as a
    (move,) = r.events.of(RequestFellBack)
    assert (move.to_model, move.error) == ("long", "context_length_exceeded")


async def test_attempts_content_filter_skips_every_target_of_that_provider() -> None:
    a = ScriptedAdapter("a", BLOCKED)
    b = ScriptedAdapter("b", ANSWER)
    r = rig(a, b, models={"smart": ["a", "b"], "other": ["a"]}, fallbacks={"smart": ["other"]})
    assert await r.run() == ANSWER
    assert (len(a.calls), len(b.calls)) == (1, 1)


async def test_attempts_timeout_moves_to_the_next_target_without_retrying() -> None:
    a, b = ScriptedAdapter("a", TIMED_OUT), ScriptedAdapter("b", ANSWER)
    r = rig(a, b, max_attempts=3)
    await r.run()
    assert (len(a.calls), len(b.calls)) == (1, 1)


async def test_attempts_open_breaker_costs_no_attempt_and_is_skipped() -> None:
    a, b = ScriptedAdapter("a", DOWN), ScriptedAdapter("b", ANSWER)
    r = rig(a, b, max_attempts=2, failure_threshold=2)
    await r.run()  # a fails twice: its breaker opens
    assert r.runner.breakers.states() == {"a": "open", "b": "closed"}
    ctx = r.context()
    await r.run(ctx=ctx)
    assert (len(a.calls), len(b.calls)) == (2, 2)
    assert ctx.attempts == 1
    assert ctx.route.endswith("only available target; skipped unavailable: a/gpt-4o")


async def test_attempts_all_breakers_open_refuse_with_the_wait_until_one_half_opens() -> None:
    a, b = ScriptedAdapter("a"), ScriptedAdapter("b")
    r = rig(a, b)
    r.open_breaker("a")
    r.clock.advance(10)
    r.open_breaker("b")
    ctx = r.context()
    with pytest.raises(NoHealthyProviderError) as caught:
        await r.run(ctx=ctx)
    assert caught.value.retry_after_s == OPEN_S - 10  # a half-opens first
    assert (len(a.calls), len(b.calls), ctx.attempts) == (0, 0, 0)


async def test_attempts_half_of_the_time_left_per_attempt_while_another_target_may_answer() -> None:
    a, b = ScriptedAdapter("a", TIMED_OUT), ScriptedAdapter("b", ANSWER)
    r = rig(a, b)
    await r.run()
    assert (a.calls[0].timeout_s, b.calls[0].timeout_s) == (TIMEOUT_S / 2, TIMEOUT_S)


async def test_attempts_stop_after_max_total_attempts_across_targets() -> None:
    a = ScriptedAdapter("a", DOWN)
    b = ScriptedAdapter("b", UpstreamUnavailableError("b is down", provider="b"))
    c = ScriptedAdapter("c", ANSWER)
    r = rig(a, b, c, max_attempts=2, max_total_attempts=3)
    ctx = r.context()
    with pytest.raises(UpstreamUnavailableError, match="b is down"):
        await r.run(ctx=ctx)
    assert ([len(x.calls) for x in (a, b, c)], ctx.attempts) == ([2, 1, 0], 3)


async def test_attempts_stop_when_the_deadline_passes_during_an_attempt() -> None:
    r: Rig

    def slow_failure(call: ScriptedCall[ChatRequest]) -> Answer:
        r.clock.advance(TIMEOUT_S)
        return DOWN

    a, b = ScriptedAdapter("a", slow_failure), ScriptedAdapter("b")
    r = rig(a, b, max_attempts=3)
    ctx = r.context()
    with pytest.raises(UpstreamUnavailableError):
        await r.run(ctx=ctx)
    assert (len(a.calls), len(b.calls)) == (1, 0)
    assert (ctx.retries, r.events.of(RequestRetried)) == (0, [])  # no retry it cannot make


async def test_attempts_past_the_deadline_make_no_call_and_time_out() -> None:
    a = ScriptedAdapter("a")
    r = rig(a)
    ctx = r.context(timeout_s=5.0)
    r.clock.advance(5.0)
    with pytest.raises(UpstreamTimeoutError, match="deadline or attempt budget"):
        await r.run(ctx=ctx)
    assert (a.calls, ctx.attempts) == ([], 0)


async def test_attempts_providers_filter_naming_no_provider_of_the_model_is_a_400() -> None:
    a, b = ScriptedAdapter("a"), ScriptedAdapter("b")
    r = rig(a, b)
    with pytest.raises(InvalidRequestError, match=r"its providers: a, b") as caught:
        await r.run(providers=frozenset({"elsewhere"}))
    assert caught.value.param == "routing.providers"
    assert a.calls == b.calls == []


async def test_attempts_providers_filter_keeps_the_other_targets_out() -> None:
    a, b = ScriptedAdapter("a"), ScriptedAdapter("b")
    r = rig(a, b)
    await r.run(providers=frozenset({"b"}))
    assert (len(a.calls), len(b.calls)) == (0, 1)


async def test_attempts_scrub_provider_secrets_from_error_messages() -> None:
    leaky = UpstreamUnavailableError("bad key sk-SECRET", provider="a", upstream_status=503)
    a = ScriptedAdapter("a", leaky)
    r = rig(a, max_attempts=1, scrub=True)
    ctx = r.context()
    with pytest.raises(UpstreamError, match=r"bad key \*\*\*") as caught:
        await r.run(ctx=ctx)
    assert str(caught.value) == "bad key ***"
    assert ctx.failures == ["a/gpt-4o: upstream_unavailable: bad key ***"]


async def test_attempts_scrub_the_field_a_provider_error_names() -> None:
    leaky = UpstreamBadRequestError("bad", provider="a", upstream_status=400, param="sk-SECRET")
    r = rig(ScriptedAdapter("a", leaky), max_attempts=1, scrub=True)
    with pytest.raises(UpstreamError) as caught:
        await r.run()
    assert caught.value.param == "***"


async def test_attempts_scrub_the_error_that_breaks_a_started_stream() -> None:
    r = rig(ScriptedAdapter("a"), scrub=True)
    ctx = r.context()
    await r.run(ctx=ctx)
    broken = UpstreamBadRequestError("echoed sk-SECRET", provider="a", param="sk-SECRET")
    r.runner.stream_broke(ctx, broken)  # its message is the stream's last event
    assert (broken.message, str(broken), broken.param) == ("echoed ***", "echoed ***", "***")


async def test_attempts_cancelled_call_gives_no_verdict_on_the_provider() -> None:
    stalled = asyncio.Event()

    def stall(call: ScriptedCall[ChatRequest]) -> Answer:
        stalled.set()
        return Stall()

    a = ScriptedAdapter("a", stall)
    r = rig(a, failure_threshold=1)
    task = asyncio.create_task(r.run())
    await stalled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert r.runner.breakers.states() == {"a": "closed"}
    assert r.runner.stats.get("a/gpt-4o").in_flight == 0


async def test_attempts_stream_broken_after_its_first_chunk_counts_against_the_provider() -> None:
    a = ScriptedAdapter("a")
    r = rig(a, failure_threshold=1)
    ctx = r.context()
    await r.run(ctx=ctx)
    r.runner.stream_broke(ctx, DOWN)
    assert r.runner.breakers.states() == {"a": "open"}
    assert r.runner.health.report()["a"]["last_error"] is not None
