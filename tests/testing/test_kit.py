"""The testing kit keeps its promises: what users build their tests on must not drift."""

from __future__ import annotations

import asyncio
import inspect
from types import ModuleType

import pytest

import stellara.testing
from stellara.cache.assemble import StreamAssembler
from stellara.errors import UpstreamProtocolError, UpstreamUnavailableError
from stellara.events import BreakerChanged, EventBus, RequestCompleted, RequestFailed
from stellara.providers.base import EmbeddingsAdapter, ProviderAdapter
from stellara.schema.chat import ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest
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
    embeddings_response,
    request_completed,
    request_context,
    request_failed,
    scripted_gateway,
    stream_chunks,
)

DOWN = UpstreamUnavailableError("down", provider="p", upstream_status=503)


def private_modules() -> list[ModuleType]:
    return [
        module
        for name, module in inspect.getmembers(stellara.testing, inspect.ismodule)
        if name.startswith("_")
    ]


def test_kit_all_is_sorted_and_names_every_public_name() -> None:
    names = stellara.testing.__all__
    assert names == sorted(names)
    exported = {name for name in dir(stellara.testing) if not name.startswith("_")}
    assert set(names) == exported
    for module in private_modules():
        defined = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__
        }
        assert defined <= set(names), module.__name__


def test_kit_imports_no_test_framework() -> None:
    for module in private_modules():
        assert "pytest" not in inspect.getsource(module), module.__name__


def test_manual_clock_moves_only_when_told_and_keeps_its_clocks_apart() -> None:
    clock = ManualClock()
    wall, mono = clock.time(), clock.monotonic()
    assert wall != mono  # mixing them up shows
    assert (clock.time(), clock.monotonic()) == (wall, mono)
    clock.advance(2.5)
    assert (clock.time(), clock.monotonic()) == (wall + 2.5, mono + 2.5)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)


def test_manual_clock_set_time_moves_the_date_but_not_the_monotonic_clock() -> None:
    clock = ManualClock(100.0, monotonic_s=5.0)
    clock.set_time(50.0)
    assert (clock.time(), clock.monotonic()) == (50.0, 5.0)


async def test_scripted_adapter_plays_steps_in_order_and_repeats_the_last() -> None:
    adapter = ScriptedAdapter("p", DOWN, chat_completion("second"))
    with pytest.raises(UpstreamUnavailableError):
        await adapter.chat(chat_request(), "m1", timeout_s=3.0)
    for _ in range(2):
        answer = await adapter.chat(chat_request(), "m2", timeout_s=2.0)
        assert answer.choices[0].message.content == "second"
    assert [(c.kind, c.model, c.timeout_s) for c in adapter.calls] == [
        ("chat", "m1", 3.0),
        ("chat", "m2", 2.0),
        ("chat", "m2", 2.0),
    ]


async def test_scripted_adapter_without_a_script_always_answers() -> None:
    adapter = ScriptedAdapter("p")
    answer = await adapter.chat(chat_request(), "gpt-4o-mini", timeout_s=1.0)
    assert answer.model == "gpt-4o-mini"
    chunks = [c async for c in adapter.chat_stream(chat_request(), "m", timeout_s=1.0)]
    assert chunks[-1].usage is not None
    assert adapter.calls[-1].ending == "finished"


async def test_scripted_adapter_raises_a_fresh_copy_of_a_scripted_error() -> None:
    adapter = ScriptedAdapter("p", DOWN)
    raised = []
    for _ in range(2):
        with pytest.raises(UpstreamUnavailableError) as caught:
            await adapter.chat(chat_request(), "m", timeout_s=1.0)
        raised.append(caught.value)
    assert raised[0] is not raised[1]
    assert DOWN not in raised
    assert (raised[0].message, raised[0].provider, raised[0].upstream_status) == ("down", "p", 503)
    assert DOWN.__traceback__ is None


async def test_scripted_adapter_then_plays_after_the_repeating_last_step() -> None:
    adapter = ScriptedAdapter("p", DOWN)
    for _ in range(3):
        with pytest.raises(UpstreamUnavailableError):
            await adapter.chat(chat_request(), "m", timeout_s=1.0)
    adapter.then(chat_completion("recovered"))
    answer = await adapter.chat(chat_request(), "m", timeout_s=1.0)
    assert answer.choices[0].message.content == "recovered"


async def test_scripted_adapter_function_step_sees_the_call() -> None:
    clock = ManualClock()

    def slow_echo(call: ScriptedCall[ChatRequest]) -> Answer:
        clock.advance(2.0)
        return chat_completion(f"{call.model} after 2 s")

    adapter = ScriptedAdapter("p", slow_echo)
    answer = await adapter.chat(chat_request(), "m", timeout_s=1.0)
    assert answer.choices[0].message.content == "m after 2 s"
    assert clock.monotonic() == ManualClock().monotonic() + 2.0


async def test_scripted_adapter_streams_a_completion_as_chunks_that_assemble_back() -> None:
    completion = chat_completion("The capital is Paris.", model="gpt-4o")
    adapter = ScriptedAdapter("p", completion)
    assembler = StreamAssembler()
    async for chunk in adapter.chat_stream(chat_request(stream=True), "gpt-4o", timeout_s=1.0):
        assembler.feed(chunk)
    assert assembler.result() == completion


async def test_scripted_stream_breaks_after_n_chunks() -> None:
    adapter = ScriptedAdapter("p", ScriptedStream(stream_chunks("a b c d"), break_after=2))
    stream = adapter.chat_stream(chat_request(), "m", timeout_s=1.0)
    assert [await anext(stream) for _ in range(2)] == stream_chunks("a b c d")[:2]
    with pytest.raises(UpstreamProtocolError, match="broke off"):
        await anext(stream)
    assert (adapter.calls[0].chunks_sent, adapter.calls[0].ending) == (2, "broke")


async def test_scripted_stream_raises_the_scripted_error_after_every_chunk() -> None:
    chunks = stream_chunks("cut")[:2]
    adapter = ScriptedAdapter("p", ScriptedStream(chunks, error=DOWN))
    stream = adapter.chat_stream(chat_request(), "m", timeout_s=1.0)
    assert [await anext(stream) for _ in range(2)] == chunks
    with pytest.raises(UpstreamUnavailableError):
        await anext(stream)


async def test_scripted_stream_stalls_until_its_consumer_closes_it() -> None:
    adapter = ScriptedAdapter("p", ScriptedStream(stream_chunks(), stall_after=1))
    stream = adapter.chat_stream(chat_request(), "m", timeout_s=1.0)
    await anext(stream)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await anext(stream)
    assert adapter.calls[0].ending == "closed"  # cancelled by the timeout


async def test_scripted_stream_closed_by_its_consumer_is_recorded_as_closed() -> None:
    adapter = ScriptedAdapter("p", chat_completion("one two three"))
    stream = adapter.chat_stream(chat_request(), "m", timeout_s=1.0)
    await anext(stream)
    await stream.aclose()
    assert (adapter.calls[0].chunks_sent, adapter.calls[0].ending) == (1, "closed")


async def test_scripted_stream_failing_before_its_first_chunk_broke() -> None:
    adapter = ScriptedAdapter("p", DOWN)
    with pytest.raises(UpstreamUnavailableError):
        await anext(adapter.chat_stream(chat_request(), "m", timeout_s=1.0))
    assert (adapter.calls[0].chunks_sent, adapter.calls[0].ending) == (0, "broke")


async def test_scripted_stall_waits_until_cancelled() -> None:
    adapter = ScriptedAdapter("p", Stall())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await adapter.chat(chat_request(), "m", timeout_s=1.0)


async def test_scripted_adapter_refuses_a_step_it_cannot_play() -> None:
    adapter = ScriptedAdapter("p", ScriptedStream(stream_chunks()))
    with pytest.raises(AssertionError, match="a chat call of 'm'"):
        await adapter.chat(chat_request(), "m", timeout_s=1.0)


def test_scripted_stream_breaks_or_stalls_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        ScriptedStream(stream_chunks(), break_after=1, stall_after=1)


async def test_scripted_adapters_serve_embeddings_only_when_they_say_so() -> None:
    plain, embedder = ScriptedAdapter("p"), ScriptedEmbeddingsAdapter("e")
    adapters: list[ProviderAdapter] = [plain, embedder]
    assert [isinstance(a, EmbeddingsAdapter) for a in adapters] == [False, True]
    request = EmbeddingsRequest(model="emb", input=["a", "b"])
    answer = await embedder.embed(request, "text-embedding-3-small", timeout_s=1.0)
    assert [e.index for e in answer.data] == [0, 1]
    assert [(c.kind, c.request.input) for c in embedder.embed_calls] == [("embed", ["a", "b"])]
    embedder.then(embeddings_response([0.5, 0.5]))
    assert (await embedder.embed(request, "m", timeout_s=1.0)).data[0].embedding == [0.5, 0.5]
    await embedder.close()
    assert embedder.is_closed


def test_event_recorder_keeps_every_event_in_order_until_closed() -> None:
    bus = EventBus()
    recorder = EventRecorder(bus)
    assert bus.has_subscribers(RequestCompleted)
    bus.publish(request_completed())
    bus.publish(BreakerChanged(breaker="p", from_state="closed", to_state="open"))
    assert recorder.names == ["request.completed", "circuit_breaker.state_changed"]
    assert recorder.of(BreakerChanged)[0].to_state == "open"
    recorder.close()
    bus.publish(request_failed())
    assert len(recorder.events) == 2


def test_request_events_have_spans_that_follow_the_facts() -> None:
    failed = request_failed(provider="claude", provider_model="sonnet", latency_ms=30.0)
    assert isinstance(failed, RequestFailed)
    (span,) = failed.attempt_spans
    assert (span.provider, span.model, span.duration_ms, span.error) == (
        "claude",
        "sonnet",
        30.0,
        "upstream_unavailable",
    )
    assert failed.public() is failed  # no content unless given
    assert request_completed(attempt_spans=()).attempt_spans == ()


def test_request_context_starts_now_and_is_due_after_its_timeout() -> None:
    clock = ManualClock()
    ctx = request_context(clock, timeout_s=5.0, session_id="s1")
    assert (ctx.started_at, ctx.deadline) == (clock.monotonic(), clock.monotonic() + 5.0)
    assert (ctx.started_epoch_s, ctx.principal.user, ctx.session_id) == (
        clock.time(),
        "alice",
        "s1",
    )


async def test_scripted_gateway_serves_smart_on_every_adapter_in_order() -> None:
    a, b = ScriptedAdapter("a", DOWN), ScriptedAdapter("b")
    gateway = scripted_gateway(a, b, config={"resilience": {"retry": {"max_attempts": 1}}})
    ctx = request_context(ManualClock())
    await gateway.complete(ctx, chat_request())
    assert (len(a.calls), len(b.calls), ctx.public_model, ctx.provider_id) == (1, 1, "smart", "b")
    assert ctx.provider_type == "openai"  # priced as OpenAI's models


def test_scripted_gateway_takes_its_providers_from_the_adapters_only() -> None:
    with pytest.raises(ValueError, match="providers come from the adapters"):
        scripted_gateway(ScriptedAdapter("a"), config={"providers": []})
