"""`ScriptedAdapter`: a provider adapter that answers from a script and records every call.

Use it wherever the gateway needs a provider (a `Target` of the attempt runner, a model of the
gateway, a health prober) and the test decides what the provider does: answer, fail with any
`UpstreamError`, stream chunks that end, break off or stall, or hang. Use the simulator
(`stellara.sim`) instead when the test is about the HTTP wire between the gateway and a
provider: a scripted adapter speaks canonical types and opens no socket.

A script is a list of steps, one per call, played in order; the last step plays again for
every later call, so a one-step script is a provider that always does the same thing, and an
empty script is a provider that always answers (`chat_completion()`, its chunks, or one
embedding per input). A step is what the call gets:

| step                 | `chat`     | `chat_stream`                  | `embed`    |
|----------------------|------------|--------------------------------|------------|
| `ChatCompletion`     | returned   | streamed as its chunks         | no         |
| `ScriptedStream`     | no         | streamed as scripted           | no         |
| `EmbeddingsResponse` | no         | no                             | returned   |
| an `UpstreamError`   | raised     | raised before the first chunk  | raised     |
| `Stall()`            | waits until cancelled (its timeout, a client gone)       |
| a function           | called with the `ScriptedCall`; what it returns is played |

A step played where it cannot be ("no") fails the test with an `AssertionError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Self, TypeVar

from stellara.errors import UpstreamError, UpstreamProtocolError
from stellara.schema.chat import ChatCompletion, ChatCompletionChunk, ChatRequest
from stellara.schema.embeddings import EmbeddingsRequest, EmbeddingsResponse
from stellara.testing._values import chat_completion, embeddings_response, stream_chunks

CallKind = Literal["chat", "stream", "embed"]
StreamEnding = Literal["finished", "broke", "closed"]
_E = TypeVar("_E", bound=BaseException)
RequestT = TypeVar("RequestT", ChatRequest, EmbeddingsRequest)


class Stall:
    """A step: the call never answers and waits until the caller cancels it (its own
    timeout, a client that left). Scripted adapters keep no timer of their own."""

    def __repr__(self) -> str:
        return "Stall()"


@dataclass(frozen=True, slots=True)
class ScriptedStream:
    """A step for `chat_stream`: send `chunks`, then end, break off or stall.

    Attributes:
        chunks: what the provider sends (see `stream_chunks`).
        break_after: send this many chunks, then raise `error`: a stream cut mid-answer.
        stall_after: send this many chunks, then wait until the consumer closes the stream or
            its task is cancelled: a provider that stops sending without hanging up.
        error: what a break raises (`break_after` None with an `error`: after every chunk).
            By default an `UpstreamProtocolError` of the adapter's provider.
    """

    chunks: Sequence[ChatCompletionChunk]
    break_after: int | None = None
    stall_after: int | None = None
    error: UpstreamError | None = None

    def __post_init__(self) -> None:
        if self.break_after is not None and self.stall_after is not None:
            raise ValueError("a scripted stream breaks or stalls, not both")
        if self.stall_after is not None and self.error is not None:
            raise ValueError("a stalled stream raises no error; use break_after")


Answer = ChatCompletion | ScriptedStream | EmbeddingsResponse | UpstreamError | Stall
"""What a step plays: the answer, the error or the stall a call gets."""


@dataclass(slots=True)
class ScriptedCall(Generic[RequestT]):
    """One call a `ScriptedAdapter` received, and how far a stream got.

    Attributes:
        ending: for a stream, how it ended: all chunks sent (`finished`), an `UpstreamError`
            raised, before the first chunk or after some (`broke`), or closed or cancelled by
            its consumer first (`closed`); None while it runs, and for other kinds of call.
    """

    kind: CallKind
    request: RequestT
    model: str
    timeout_s: float
    chunks_sent: int = 0
    ending: StreamEnding | None = None


Step = Answer | Callable[[ScriptedCall[Any]], Answer]
"""One entry of a script: an `Answer`, or a function of the call that returns one."""


class ScriptedAdapter:
    """A `ProviderAdapter` named `provider_id` that plays `script` (see the module docstring)
    and records each chat call (streamed or not) in `calls`, in the order they arrived.

    An error in the script is copied for each raise, so one error object may fail many calls
    without the attempt loop's edits (scrubbed messages) or tracebacks carrying over.
    """

    def __init__(self, provider_id: str, *script: Step) -> None:
        self.provider_id = provider_id
        self.calls: list[ScriptedCall[ChatRequest]] = []
        self.is_closed = False  # `close` was called
        self._script = list(script)
        self._next = 0  # the step of the next call; len(script): the last one again

    @property
    def id(self) -> str:
        return self.provider_id

    def then(self, *steps: Step) -> Self:
        """Play `steps` once those scripted are played (at once, if the last one is already
        repeating): a provider that recovers, or starts failing, midway through a test."""
        self._script.extend(steps)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.provider_id!r})"

    async def chat(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatCompletion:
        call = ScriptedCall("chat", request, model, timeout_s)
        self.calls.append(call)
        answer = await self._answer(call)
        if isinstance(answer, ChatCompletion):
            return answer
        if answer is None:
            return chat_completion(model=model)
        raise self._misplaced(answer, call)

    async def chat_stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        call = ScriptedCall("stream", request, model, timeout_s)
        self.calls.append(call)
        try:
            async for chunk in self._play_stream(call):
                yield chunk
        except UpstreamError:
            call.ending = "broke"
            raise
        else:
            call.ending = "finished"
        finally:
            if call.ending is None:  # closed by its consumer, or its task cancelled
                call.ending = "closed"

    async def close(self) -> None:
        self.is_closed = True

    async def _answer(self, call: ScriptedCall[Any]) -> Answer | None:
        """Play the step of `call`: raise an error, wait out a stall, or return the answer
        (None: the script is empty)."""
        await asyncio.sleep(0)  # a call is a suspension point, as a real one is
        answer = self._step(call)
        if isinstance(answer, UpstreamError):
            raise _fresh(answer)
        if isinstance(answer, Stall):
            await asyncio.Event().wait()
        return answer

    def _step(self, call: ScriptedCall[Any]) -> Answer | None:
        script = self._script
        if not script:
            return None
        step = script[min(self._next, len(script) - 1)]
        self._next = min(self._next + 1, len(script))
        return step(call) if callable(step) else step

    async def _play_stream(
        self, call: ScriptedCall[ChatRequest]
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        stream = await self._answer(call)
        if stream is None:
            stream = chat_completion(model=call.model)
        if isinstance(stream, ChatCompletion):
            stream = ScriptedStream(_chunks_of(stream))
        if not isinstance(stream, ScriptedStream):
            raise self._misplaced(stream, call)
        stop = stream.break_after if stream.break_after is not None else stream.stall_after
        for chunk in stream.chunks[:stop]:
            call.chunks_sent += 1
            yield chunk
        if stream.stall_after is not None:
            await asyncio.Event().wait()
        if stream.break_after is not None or stream.error is not None:
            raise _fresh(stream.error) if stream.error is not None else self._broke()

    def _broke(self) -> UpstreamProtocolError:
        return UpstreamProtocolError(
            f"provider {self.provider_id!r} broke off the stream (scripted)",
            provider=self.provider_id,
        )

    def _misplaced(self, answer: Answer, call: ScriptedCall[Any]) -> AssertionError:
        return AssertionError(
            f"ScriptedAdapter {self.provider_id!r}: a {call.kind} call of {call.model!r} "
            f"met a step it cannot play: {answer!r}"
        )


class ScriptedEmbeddingsAdapter(ScriptedAdapter):
    """A `ScriptedAdapter` that also serves embeddings (an `EmbeddingsAdapter`) and records
    those calls in `embed_calls`; a plain `ScriptedAdapter` has no `embed`, as a provider
    without embeddings has none. Chat and embeddings calls play steps of the one script."""

    def __init__(self, provider_id: str, *script: Step) -> None:
        super().__init__(provider_id, *script)
        self.embed_calls: list[ScriptedCall[EmbeddingsRequest]] = []

    async def embed(
        self, request: EmbeddingsRequest, model: str, *, timeout_s: float
    ) -> EmbeddingsResponse:
        call = ScriptedCall("embed", request, model, timeout_s)
        self.embed_calls.append(call)
        answer = await self._answer(call)
        if isinstance(answer, EmbeddingsResponse):
            return answer
        if answer is None:
            inputs = 1 if isinstance(request.input, str) else len(request.input)
            return embeddings_response(*([1.0, 0.0, 0.0] for _ in range(inputs)), model=model)
        raise self._misplaced(answer, call)


def _chunks_of(completion: ChatCompletion) -> list[ChatCompletionChunk]:
    """The chunks a provider would stream for `completion` (its first choice)."""
    choice = completion.choices[0]
    return stream_chunks(
        choice.message.content or "",
        model=completion.model,
        usage=completion.usage,
        finish_reason=choice.finish_reason or "stop",
        completion_id=completion.id,
    )


def _fresh(error: _E) -> _E:
    """A copy of `error` to raise (see `ScriptedAdapter`). `copy.copy` cannot do it: it
    calls the class with `args` alone, and `UpstreamError` needs its keywords."""
    fresh = type(error).__new__(type(error), *error.args)
    fresh.__dict__.update(error.__dict__)
    return fresh
