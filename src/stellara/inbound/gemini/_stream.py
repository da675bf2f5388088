"""Canonical chunks → the `GenerateContentResponse` pieces of a Gemini stream."""

from __future__ import annotations

from dataclasses import dataclass, field

from stellara.inbound.gemini._answer import (
    finish_reason,
    function_call_part,
    response_id,
    usage_metadata,
)
from stellara.schema.chat import (
    ChatCompletionChunk,
    ChunkChoice,
    FunctionCall,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from stellara.wire.google import Candidate, Content, GenerateContentResponse, Part


@dataclass(slots=True)
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Choice:
    calls: dict[int, _PendingCall] = field(default_factory=dict)
    finish_reason: str | None = None
    is_refused: bool = False


class GeminiStreamWriter:
    """Turns one request's canonical chunks into Gemini stream pieces.

    Use a fresh writer per request: `feed` every chunk in order, then `finish` once the stream
    ended normally. Text goes out as it comes; function calls go out whole (as Gemini sends
    them), with the finish reasons and the usage, in the last piece, as Google's own stream
    ends.

    Args:
        model: The public model name the client asked for (`modelVersion`).
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._response_id = ""
        self._choices: dict[int, _Choice] = {}
        self._usage: Usage | None = None

    def feed(self, chunk: ChatCompletionChunk) -> list[GenerateContentResponse]:
        """The pieces for one chunk: one with the new text, or none."""
        if not self._response_id:
            self._response_id = response_id(chunk.id)
        if chunk.usage is not None:
            self._usage = chunk.usage
        candidates = [
            candidate
            for choice in chunk.choices
            if (candidate := self._feed_choice(choice)) is not None
        ]
        return [self._piece(candidates)] if candidates else []

    def finish(self) -> list[GenerateContentResponse]:
        """The last piece: pending function calls, every finish reason, the usage."""
        if not self._choices:
            self._choices[0] = _Choice(finish_reason="stop")
        candidates = []
        for index, choice in sorted(self._choices.items()):
            parts = [function_call_part(_tool_call(call)) for call in choice.calls.values()]
            candidates.append(
                Candidate(
                    content=Content(parts=parts, role="model") if parts else None,
                    finish_reason=finish_reason(
                        choice.finish_reason or "stop", refused=choice.is_refused
                    ),
                    index=index,
                )
            )
        return [self._piece(candidates, is_last=True)]

    def _feed_choice(self, delta_choice: ChunkChoice) -> Candidate | None:
        choice = self._choices.setdefault(delta_choice.index, _Choice())
        delta = delta_choice.delta
        if delta_choice.finish_reason:
            choice.finish_reason = delta_choice.finish_reason
        if delta.refusal:
            choice.is_refused = True
        for call in delta.tool_calls or []:
            _add_fragment(choice.calls.setdefault(call.index, _PendingCall()), call)
        texts = [text for text in (delta.content, delta.refusal) if text]
        if not texts:
            return None
        content = Content(parts=[Part(text="".join(texts))], role="model")
        return Candidate(content=content, index=delta_choice.index)

    def _piece(
        self, candidates: list[Candidate], *, is_last: bool = False
    ) -> GenerateContentResponse:
        return GenerateContentResponse(
            candidates=candidates,
            usage_metadata=usage_metadata(self._usage) if is_last else None,
            model_version=self._model,
            response_id=self._response_id,
        )


def _add_fragment(pending: _PendingCall, delta: ToolCallDelta) -> None:
    if delta.id:
        pending.id = delta.id
    function = delta.function
    if function is None:
        return
    if function.name:
        pending.name = function.name
    if function.arguments:
        pending.arguments.append(function.arguments)


def _tool_call(pending: _PendingCall) -> ToolCall:
    return ToolCall(pending.id, "function", FunctionCall(pending.name, "".join(pending.arguments)))
