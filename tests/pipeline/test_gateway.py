"""The gateway and its stream relay without sockets: scripted providers, a manual clock.

Above all, every way a request can end (answer, upstream error, no healthy provider, a
cancelled call, a client gone mid-stream, a stream broken upstream, an encoder failure, a bug)
records it exactly once, settles its limits exactly once and leaves nothing in flight; and a
stream that ends without the provider's usage is charged what it consumed, as an estimate.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from stellara._clock import Clock
from stellara.errors import (
    InvalidRequestError,
    NoHealthyProviderError,
    RateLimitedError,
    UpstreamProtocolError,
    UpstreamUnavailableError,
)
from stellara.events import EventBus, RequestCompleted, RequestEnded, RequestFailed
from stellara.pipeline.context import RequestContext
from stellara.pipeline.gateway import ChunkStream, Gateway
from stellara.schema.chat import (
    ChatCompletionChunk,
    ChatRequest,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    StreamOptions,
    ToolCallDelta,
)
from stellara.schema.embeddings import EmbeddingsRequest
from stellara.state.base import Amounts, Limit
from stellara.state.memory import MemoryBackend, MemoryLimitStore
from stellara.testing import (
    Answer,
    EventRecorder,
    ManualClock,
    ScriptedAdapter,
    ScriptedCall,
    ScriptedEmbeddingsAdapter,
    ScriptedStream,
    Stall,
    chat_completion,
    chat_request,
    request_context,
    scripted_gateway,
    stream_chunks,
    usage,
)
from stellara.tokens import TokenCounter

TOKENS = TokenCounter()  # shared: each encoding takes 0.1-0.3 s to load
DOWN = UpstreamUnavailableError("upstream said 503", provider="a", upstream_status=503)
ANSWER = chat_completion("The capital of France is Paris.", usage=usage(12, 7))
# Enough of everything that no test is refused by accident; a ticket to settle every time.
ROOMY = {"tiers": {"default": {"rate": {"requests": 100, "tokens": 1_000_000, "cost_usd": 100}}}}
GPT_4O_USD_PER_TOKEN = (2.5e-6, 10e-6)  # the catalog's input and output prices


class SettleCountingStore(MemoryLimitStore):
    """The memory limit store, counting the settles of each reservation (a request id)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.settles: Counter[str] = Counter()

    async def settle(
        self, scope: str, limits: Sequence[Limit], reservation: str, actual: Amounts
    ) -> None:
        self.settles[reservation] += 1
        await super().settle(scope, limits, reservation, actual)


class SettleCountingBackend(MemoryBackend):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self._counting = SettleCountingStore(clock)

    @property
    def limits(self) -> SettleCountingStore:
        return self._counting


@dataclass
class Rig:
    """A gateway over scripted providers, with what a test reads of it."""

    gateway: Gateway
    clock: ManualClock
    events: EventRecorder
    store: SettleCountingStore

    def context(self, request_id: str = "req_1") -> RequestContext:
        return request_context(self.clock, request_id=request_id)

    async def ended_once(self, ctx: RequestContext) -> RequestEnded:
        """The request's one record, once its background settle ran: nothing is left in
        flight and its reservation was settled exactly once."""
        await self.gateway.drain()
        (record,) = self.events.of(RequestEnded)
        assert record.request_id == ctx.request_id
        assert self.gateway.in_flight == 0
        assert self.store.settles == {ctx.request_id: 1}
        assert ctx.ticket is not None
        assert ctx.ticket.is_settled
        return record

    async def used(self, dimension: str) -> float:
        """Alice's use of her rate window in `dimension` (requests, tokens, cost_usd)."""
        limiter = self.gateway.limiter
        assert limiter is not None
        _, states, _ = await limiter.status("alice", None, "rate", session_id=None)
        (state,) = (s for s in states if s.name == f"rate:{dimension}")
        return state.used


def rig(*adapters: ScriptedAdapter, **config: Any) -> Rig:
    """`config` holds config sections; `limits` is `ROOMY` unless given."""
    clock = ManualClock()
    bus = EventBus()
    state = SettleCountingBackend(clock)
    gateway = scripted_gateway(
        *adapters,
        config={"limits": ROOMY, **config},
        clock=clock,
        events=bus,
        state=state,
        tokens=TOKENS,
    )
    return Rig(gateway, clock, EventRecorder(bus), state.limits)


async def read(stream: ChunkStream, count: int | None = None) -> list[ChatCompletionChunk]:
    """The first `count` chunks the stream relays (every one when None), as a client reads."""
    chunks: list[ChatCompletionChunk] = []
    relay: AsyncIterator[ChatCompletionChunk] = aiter(stream)
    while count is None or len(chunks) < count:
        try:
            chunks.append(await anext(relay))
        except StopAsyncIteration:
            break
    return chunks


def text_of(chunks: Sequence[ChatCompletionChunk]) -> str:
    return "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)


def cost_usd(prompt_tokens: int, completion_tokens: int) -> float:
    input_usd, output_usd = GPT_4O_USD_PER_TOKEN
    return prompt_tokens * input_usd + completion_tokens * output_usd


async def assert_charged_as_relayed(
    r: Rig, record: RequestEnded, request: ChatRequest, relayed: str
) -> None:
    """`record` charges the prompt and `relayed` counted with gpt-4o's tokenizer, says they
    are estimates, and the limits settled to them."""
    prompt = TOKENS.count_prompt(request, "gpt-4o")
    completion = TOKENS.count_text(relayed, "gpt-4o") if relayed else 0
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, completion)
    assert record.prompt_tokens > 0
    assert record.usage_estimated
    assert record.cost_usd == pytest.approx(cost_usd(prompt, completion))
    assert await r.used("tokens") == prompt + completion
    assert await r.used("cost_usd") == pytest.approx(record.cost_usd)


def stalling(started: asyncio.Event) -> Answer:
    started.set()
    return Stall()


# -- the three kinds of call ------------------------------------------------------------------


async def test_gateway_complete_answers_and_records_the_providers_usage() -> None:
    a = ScriptedAdapter("a", ANSWER)
    r = rig(a)
    ctx = r.context()
    assert await r.gateway.complete(ctx, chat_request()) == ANSWER
    record = await r.ended_once(ctx)
    assert isinstance(record, RequestCompleted)
    assert (record.status, record.model, record.provider, record.provider_model) == (
        200,
        "smart",
        "a",
        "gpt-4o",
    )
    assert (record.prompt_tokens, record.completion_tokens, record.stream) == (12, 7, False)
    assert record.cost_usd == pytest.approx(cost_usd(12, 7))
    assert not record.usage_estimated
    assert await r.used("tokens") == 19  # the reservation settled to what was used


async def test_gateway_records_the_endpoint_the_call_came_through() -> None:
    r = rig(ScriptedAdapter("a", ANSWER))
    ctx = request_context(r.clock, endpoint="/v1/messages")
    await r.gateway.complete(ctx, chat_request())
    record = await r.ended_once(ctx)
    assert record.endpoint == "/v1/messages"


async def test_gateway_stream_relays_every_chunk_and_keeps_the_usage_it_withholds() -> None:
    chunks = stream_chunks("one two three", usage=usage(9, 3))
    a = ScriptedAdapter("a", ScriptedStream(chunks))
    r = rig(a)
    ctx = r.context()
    stream = await r.gateway.open_stream(ctx, chat_request(stream=True))
    relayed = await read(stream)
    await stream.aclose()  # as the HTTP relay does however the answer ended: a no-op here
    assert relayed == chunks[:-1]  # the client did not ask for the usage chunk
    record = await r.ended_once(ctx)
    assert isinstance(record, RequestCompleted)
    assert (record.stream, record.prompt_tokens, record.completion_tokens) == (True, 9, 3)
    assert not record.usage_estimated  # the provider's own numbers
    assert a.calls[0].ending == "finished"


async def test_gateway_stream_forwards_the_usage_chunk_when_asked() -> None:
    chunks = stream_chunks("one two", usage=usage(9, 2))
    r = rig(ScriptedAdapter("a", ScriptedStream(chunks)))
    request = chat_request(stream=True, stream_options=StreamOptions(include_usage=True))
    stream = await r.gateway.open_stream(r.context(), request)
    assert await read(stream) == chunks


async def test_gateway_embed_records_the_inputs_tokens() -> None:
    a = ScriptedEmbeddingsAdapter("a")
    r = rig(a)
    ctx = r.context()
    response = await r.gateway.embed(ctx, EmbeddingsRequest(model="smart", input=["hi", "yo"]))
    assert len(response.data) == 2
    record = await r.ended_once(ctx)
    assert (record.status, record.prompt_tokens, record.completion_tokens) == (200, 2, 0)
    assert len(a.embed_calls) == 1


async def test_gateway_exact_cache_hit_answers_without_the_provider() -> None:
    a = ScriptedAdapter("a", ANSWER)
    r = rig(a, cache={})
    request = chat_request(temperature=0)
    await r.gateway.complete(r.context("req_1"), request)
    await r.gateway.drain()  # the answer is stored after it was sent
    ctx = r.context("req_2")
    assert await r.gateway.complete(ctx, request) == ANSWER
    await r.gateway.drain()
    _, second = r.events.of(RequestCompleted)
    assert (second.request_id, second.cache, second.provider, second.cost_usd) == (
        "req_2",
        "hit",
        "cache",
        0.0,
    )
    assert len(a.calls) == 1
    assert r.gateway.in_flight == 0
    assert r.store.settles == {"req_1": 1, "req_2": 1}


async def test_gateway_streamed_cache_hit_replays_the_stored_answer() -> None:
    a = ScriptedAdapter("a", ANSWER)
    r = rig(a, cache={})
    await r.gateway.complete(r.context("req_1"), chat_request())
    await r.gateway.drain()
    ctx = r.context("req_2")
    stream = await r.gateway.open_stream(ctx, chat_request(stream=True))
    assert text_of(await read(stream)) == "The capital of France is Paris."
    await stream.aclose()
    assert len(a.calls) == 1
    assert ctx.cache_status == "hit"
    assert r.gateway.in_flight == 0


async def test_gateway_limits_refusal_is_recorded_and_never_reaches_the_provider() -> None:
    a = ScriptedAdapter("a")
    r = rig(a, limits={"tiers": {"default": {"rate": {"window_s": 60, "requests": 1}}}})
    await r.gateway.complete(r.context("req_1"), chat_request())
    ctx = r.context("req_2")
    with pytest.raises(RateLimitedError) as refused:
        await r.gateway.complete(ctx, chat_request())
    assert refused.value.retry_after_s == 60
    await r.gateway.drain()
    refusal = r.events.of(RequestEnded)[-1]
    assert isinstance(refusal, RequestFailed)
    assert (refusal.request_id, refusal.status, refusal.error) == (
        "req_2",
        429,
        "rate_limit_exceeded",
    )
    assert len(a.calls) == 1
    assert r.gateway.in_flight == 0
    assert r.store.settles == {"req_1": 1}  # a refusal reserved nothing
    assert ctx.ticket is not None
    assert ctx.ticket.is_settled


# -- every way a request ends: one record, one settle, nothing in flight ---------------------


async def test_gateway_upstream_error_ends_the_request_once() -> None:
    r = rig(ScriptedAdapter("a", DOWN), resilience={"retry": {"max_attempts": 1}})
    ctx = r.context()
    with pytest.raises(UpstreamUnavailableError):
        await r.gateway.complete(ctx, chat_request())
    record = await r.ended_once(ctx)
    assert (record.status, record.error, record.attempts) == (502, "upstream_unavailable", 1)
    assert (record.prompt_tokens, record.cost_usd) == (0, 0.0)


async def test_gateway_no_healthy_provider_ends_the_request_once() -> None:
    a = ScriptedAdapter("a")
    r = rig(a)
    r.gateway.attempts.breakers.get("a", "gpt-4o").force_open(r.clock.monotonic())
    ctx = r.context()
    with pytest.raises(NoHealthyProviderError):
        await r.gateway.complete(ctx, chat_request())
    record = await r.ended_once(ctx)
    assert (record.status, record.error, record.provider) == (503, "no_healthy_provider", "")
    assert a.calls == []


async def test_gateway_call_cancelled_mid_call_ends_as_the_client_leaving() -> None:
    started = asyncio.Event()
    r = rig(ScriptedAdapter("a", lambda call: stalling(started)))
    ctx = r.context()
    call = asyncio.create_task(r.gateway.complete(ctx, chat_request()))
    await started.wait()
    assert r.gateway.in_flight == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    record = await r.ended_once(ctx)
    assert (record.status, record.error) == (499, "client_closed_request")


async def test_gateway_stream_cancelled_before_its_first_chunk_ends_once() -> None:
    started = asyncio.Event()
    r = rig(ScriptedAdapter("a", lambda call: stalling(started)))
    ctx = r.context()
    opening = asyncio.create_task(r.gateway.open_stream(ctx, chat_request(stream=True)))
    await started.wait()
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    record = await r.ended_once(ctx)
    assert (record.status, record.stream) == (499, True)


async def test_gateway_client_gone_mid_stream_ends_once_and_stops_the_provider() -> None:
    a = ScriptedAdapter("a", ScriptedStream(stream_chunks("one two three four five")))
    r = rig(a)
    ctx = r.context()
    request = chat_request(stream=True)
    stream = await r.gateway.open_stream(ctx, request)
    relayed = text_of(await read(stream, 3))
    assert r.gateway.in_flight == 1  # the stream holds the request
    await stream.aclose()
    await stream.aclose()  # a second close changes nothing
    record = await r.ended_once(ctx)
    assert (record.status, record.error) == (499, "client_closed_request")
    assert a.calls[0].ending == "closed"
    assert relayed == "one two"
    await assert_charged_as_relayed(r, record, request, relayed)


async def test_gateway_stream_broken_upstream_ends_once_and_counts_against_the_provider() -> None:
    a = ScriptedAdapter("a", ScriptedStream(stream_chunks("one two three four"), break_after=3))
    r = rig(a, resilience={"circuit_breaker": {"failure_threshold": 1}})
    ctx = r.context()
    request = chat_request(stream=True)
    stream = await r.gateway.open_stream(ctx, request)
    with pytest.raises(UpstreamProtocolError):
        await read(stream)
    await stream.aclose()
    record = await r.ended_once(ctx)
    assert (record.status, record.error) == (502, "upstream_protocol_error")
    assert r.gateway.attempts.breakers.states() == {"a": "open"}
    await assert_charged_as_relayed(r, record, request, "one two")


async def test_gateway_stream_stalled_upstream_then_closed_ends_once() -> None:
    a = ScriptedAdapter("a", ScriptedStream(stream_chunks("one two three"), stall_after=2))
    r = rig(a)
    ctx = r.context()
    stream = await r.gateway.open_stream(ctx, chat_request(stream=True))
    relay = aiter(stream)
    await anext(relay)
    await anext(relay)
    waiting = asyncio.ensure_future(anext(relay))
    await asyncio.sleep(0)  # the task runs until the provider stalls
    assert not waiting.done()
    waiting.cancel()  # a client that gave up waiting
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await stream.aclose()
    record = await r.ended_once(ctx)
    assert record.status == 499
    assert a.calls[0].ending == "closed"
    await assert_charged_as_relayed(r, record, chat_request(stream=True), "one")


async def test_gateway_encoder_failure_ends_the_stream_as_that_error() -> None:
    r = rig(ScriptedAdapter("a", ScriptedStream(stream_chunks("one two three"))))
    ctx = r.context()
    request = chat_request(stream=True)
    stream = await r.gateway.open_stream(ctx, request)
    await read(stream, 2)
    stream.fail(InvalidRequestError("this dialect cannot carry that chunk"))
    await stream.aclose()
    record = await r.ended_once(ctx)
    assert (record.status, record.error) == (400, "invalid_request_error")
    await assert_charged_as_relayed(r, record, request, "one")


async def test_gateway_bug_is_recorded_as_an_internal_error() -> None:
    def bug(call: ScriptedCall[ChatRequest]) -> Answer:
        raise RuntimeError("a bug, not a provider failure")

    r = rig(ScriptedAdapter("a", bug))
    ctx = r.context()
    with pytest.raises(RuntimeError):
        await r.gateway.complete(ctx, chat_request())
    record = await r.ended_once(ctx)
    assert (record.status, record.error) == (500, "api_error")
    assert record.message == "Internal error; the gateway log has the details of req_1."


async def test_gateway_bug_before_a_streams_first_chunk_is_an_internal_error() -> None:
    def bug(call: ScriptedCall[ChatRequest]) -> Answer:
        raise RuntimeError("a bug, not a provider failure")

    r = rig(ScriptedAdapter("a", bug))
    ctx = r.context()
    with pytest.raises(RuntimeError):
        await r.gateway.open_stream(ctx, chat_request(stream=True))
    record = await r.ended_once(ctx)
    assert (record.status, record.stream) == (500, True)


# -- a stream that ends without the provider's usage is charged what it consumed -------------


async def test_gateway_stream_cut_after_the_providers_usage_keeps_the_providers_numbers() -> None:
    chunks = stream_chunks("one two", usage=usage(9, 2))
    a = ScriptedAdapter("a", ScriptedStream(chunks, break_after=len(chunks)))
    r = rig(a)
    ctx = r.context()
    stream = await r.gateway.open_stream(ctx, chat_request(stream=True))
    with pytest.raises(UpstreamProtocolError):
        await read(stream)
    record = await r.ended_once(ctx)
    assert (record.status, record.prompt_tokens, record.completion_tokens) == (502, 9, 2)
    assert not record.usage_estimated


async def test_gateway_complete_stream_without_the_providers_usage_is_estimated() -> None:
    chunks = stream_chunks("one two three", usage=None)  # a provider that never reports it
    r = rig(ScriptedAdapter("a", ScriptedStream(chunks)))
    ctx = r.context()
    request = chat_request(stream=True)
    stream = await r.gateway.open_stream(ctx, request)
    await read(stream)
    record = await r.ended_once(ctx)
    assert record.status == 200
    await assert_charged_as_relayed(r, record, request, "one two three")


async def test_gateway_relayed_tool_call_names_and_arguments_are_counted() -> None:
    def call(function: FunctionCallDelta) -> ChatCompletionChunk:
        tool = ToolCallDelta(0, function=function)
        delta = Delta(tool_calls=[tool])
        return ChatCompletionChunk(
            "c", "chat.completion.chunk", 0, "gpt-4o", [ChunkChoice(0, delta)]
        )

    chunks = [
        call(FunctionCallDelta(name="get_weather", arguments="")),
        call(FunctionCallDelta(arguments='{"city": ')),
        call(FunctionCallDelta(arguments='"Paris"}')),
    ]
    r = rig(ScriptedAdapter("a", ScriptedStream(chunks, break_after=3)))
    ctx = r.context()
    request = chat_request(stream=True)
    stream = await r.gateway.open_stream(ctx, request)
    with pytest.raises(UpstreamProtocolError):
        await read(stream)
    record = await r.ended_once(ctx)
    await assert_charged_as_relayed(r, record, request, 'get_weather{"city": "Paris"}')


async def test_gateway_stream_failing_before_its_first_chunk_is_not_charged() -> None:
    r = rig(ScriptedAdapter("a", DOWN), resilience={"retry": {"max_attempts": 1}})
    ctx = r.context()
    with pytest.raises(UpstreamUnavailableError):
        await r.gateway.open_stream(ctx, chat_request(stream=True))
    record = await r.ended_once(ctx)
    assert (record.prompt_tokens, record.cost_usd, record.usage_estimated) == (0, 0.0, False)


async def test_gateway_replayed_cache_hit_closed_early_is_not_charged() -> None:
    r = rig(ScriptedAdapter("a", ANSWER), cache={})
    await r.gateway.complete(r.context("req_1"), chat_request())
    await r.gateway.drain()
    ctx = r.context("req_2")
    stream = await r.gateway.open_stream(ctx, chat_request(stream=True))
    await read(stream, 2)
    await stream.aclose()
    await r.gateway.drain()
    record = r.events.of(RequestEnded)[-1]
    assert (record.request_id, record.status, record.cache) == ("req_2", 499, "hit")
    assert (record.prompt_tokens, record.cost_usd, record.usage_estimated) == (0, 0.0, False)


@pytest.mark.parametrize(
    "limits",
    [ROOMY, {"tiers": {"default": {"rate": {"requests": 100}}}}],
    ids=["counted-for-admission", "counted-at-the-end"],
)
async def test_gateway_estimate_counts_the_prompt_once(
    limits: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limits stage counts the prompt when a token or cost limit applies; a stream cut
    short reuses that count, and counts it itself only when nothing had."""
    counted: list[str] = []
    count = TOKENS.count_prompt  # the gateway's counter is TOKENS

    def count_prompt(request: ChatRequest, model: str) -> int:
        counted.append(model)
        return count(request, model)

    r = rig(ScriptedAdapter("a", ScriptedStream(stream_chunks("one two three"))), limits=limits)
    monkeypatch.setattr(r.gateway.tokens, "count_prompt", count_prompt)
    ctx = r.context()
    request = chat_request(stream=True)
    stream = await r.gateway.open_stream(ctx, request)
    await read(stream, 2)
    await stream.aclose()
    record = await r.ended_once(ctx)
    assert record.prompt_tokens == count(request, "gpt-4o")
    assert counted == ["gpt-4o"]
