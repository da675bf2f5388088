"""Gemini stream events → canonical chunks: a fresh parser per request (pure, no I/O).

`streamGenerateContent?alt=sse` sends each piece of the answer as a whole
`GenerateContentResponse` in one `data:` event. There is no `[DONE]`: the answer is complete once
every candidate has carried a `finishReason`, and usage comes with the last events. Each event's
`logprobsResult` covers the tokens of that event, so it becomes that chunk's `logprobs`.
"""

from __future__ import annotations

import msgspec

from stellara.errors import UpstreamError, UpstreamProtocolError
from stellara.providers.google.chat import (
    candidate_index,
    finish_reason,
    raise_if_blocked,
    split_parts,
    to_usage,
)
from stellara.providers.google.errors import error_from_status, parse_error_body
from stellara.providers.google.logprobs import openai_logprobs
from stellara.schema.chat import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from stellara.wire.google import (
    Candidate,
    GenerateContentResponse,
    UsageMetadata,
    response_decoder,
)


class GeminiStreamParser:
    """Turns the `data:` payloads of one Gemini SSE stream into `ChatCompletionChunk`s.

    Each candidate's first chunk carries `role: assistant`; function calls arrive whole, so each
    becomes one complete tool call delta. `finish` raises if the stream ended before every
    candidate finished, so a cut stream is never mistaken for a finished answer.

    Args:
        provider: The provider id, for error messages.
        fallback_id: The `chatcmpl-…` id of every chunk when the first event has no
            `responseId` (else `chatcmpl-<responseId>`, as for a whole answer); tool call ids
            derive from it.
        created: Unix time put on every chunk.
        model: The model asked for, until Gemini names its `modelVersion`.
    """

    def __init__(self, provider: str, *, fallback_id: str, created: int, model: str) -> None:
        self._provider = provider
        self._id = fallback_id
        self._created = created
        self._model = model
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._call_counts: dict[int, int] = {}
        self._usage: UsageMetadata | None = None

    @property
    def is_done(self) -> bool:
        """Whether every candidate seen so far has finished."""
        return bool(self._finished) and self._started <= self._finished

    def feed(self, data: bytes) -> list[ChatCompletionChunk]:
        """The chunks for one event's data: one per candidate that said something new.

        Raises:
            ContentFilterError: Gemini blocked the prompt.
            UpstreamError: The event is an error, or not a `GenerateContentResponse`.
        """
        response = self._decode(data)
        raise_if_blocked(response, self._provider)
        if response.usage_metadata is not None:
            self._usage = response.usage_metadata
        if response.model_version:
            self._model = response.model_version
        if response.response_id and not self._started:
            self._id = f"chatcmpl-{response.response_id}"
        chunks = []
        for position, candidate in enumerate(response.candidates):
            choice = self._choice(candidate, position)
            if choice is not None:
                chunks.append(self._chunk([choice]))
        return chunks

    def finish(self) -> ChatCompletionChunk | None:
        """Call when the upstream closed the stream; returns the usage chunk, if usage came.

        Raises:
            UpstreamProtocolError: The stream ended before every candidate finished.
        """
        if not self.is_done:
            raise UpstreamProtocolError(
                f"provider {self._provider!r} ended the stream before it was complete",
                provider=self._provider,
            )
        if self._usage is None:
            return None
        return self._chunk([], usage=to_usage(self._usage))

    def _decode(self, data: bytes) -> GenerateContentResponse:
        try:
            response = response_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise self._error_event(data) or UpstreamProtocolError(
                f"provider {self._provider!r} sent an invalid stream event: {exc}",
                provider=self._provider,
            ) from exc
        # An `{"error": …}` event decodes as an empty response: every field is optional.
        if not response.candidates and response.prompt_feedback is None:
            error = self._error_event(data)
            if error is not None:
                raise error
        return response

    def _error_event(self, data: bytes) -> UpstreamError | None:
        detail = parse_error_body(data)
        if detail is None:
            return None
        return error_from_status(detail.code or 500, detail.status, provider=self._provider)

    def _choice(self, candidate: Candidate, position: int) -> ChunkChoice | None:
        index = candidate_index(candidate, position)
        parts = candidate.content.parts if candidate.content is not None else []
        first_call = self._call_counts.get(index, 0)
        texts, calls = split_parts(parts, self._id, index, first_call)
        self._call_counts[index] = first_call + len(calls)
        reason = None
        if candidate.finish_reason:
            has_calls = self._call_counts[index] > 0
            reason = finish_reason(candidate.finish_reason, has_tool_calls=has_calls)
            self._finished.add(index)
        is_first = index not in self._started
        result = candidate.logprobs_result
        if not (is_first or texts or calls or reason or result):
            return None  # a thought, or a part the gateway does not relay
        self._started.add(index)
        delta = Delta(
            role="assistant" if is_first else None,
            content="".join(texts) if texts else None,
            tool_calls=_call_deltas(calls, first_call) or None,
        )
        choice = ChunkChoice(index=index, delta=delta, finish_reason=reason)
        if result is not None:
            choice.logprobs = openai_logprobs(result)
        return choice

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id,
            object="chat.completion.chunk",
            created=self._created,
            model=self._model,
            choices=choices,
            usage=usage,
        )


def _call_deltas(calls: list[ToolCall], first_call: int) -> list[ToolCallDelta]:
    return [
        ToolCallDelta(
            index=first_call + k,
            id=call.id,
            type="function",
            function=FunctionCallDelta(name=call.function.name, arguments=call.function.arguments),
        )
        for k, call in enumerate(calls)
    ]
