"""Rebuild the non-streaming answer from the chunks of a streamed one, so it can be cached.

A streamed answer is stored as the `ChatCompletion` a non-streaming request would have got;
`replay_chunks` turns it back into a stream for the next streaming hit. Feed `StreamAssembler`
every canonical chunk while relaying it, then ask for `result()` once the stream has ended.

How the pieces merge, per choice ``index``:

- ``content`` and ``refusal``: fragments concatenated; ``null`` when no delta carried the
  field at all (a tool-call-only answer), ``""`` when only empty fragments did.
- ``tool_calls``: merged by their ``index``; ``id``, ``type`` and ``function.name`` come from
  the first delta that has them (some servers repeat them), ``arguments`` fragments are
  concatenated. The deprecated ``function_call`` merges the same way.
- ``finish_reason`` and ``stop_reason``: from the chunk that carries a finish reason.
- ``usage``: from the last chunk that carries one (the ``choices: []`` chunk of
  ``include_usage``; servers that repeat a running total end with the final one).
- ``id``, ``created``, ``model``, ``system_fingerprint``, ``service_tier``: from the first chunk
  that has a non-empty value (Azure's first chunk, for its prompt filter results, has an empty
  id and model).

Not rebuilt: ``logprobs`` (a stream's are per chunk and opaque here), and the message's
``annotations`` and ``audio``, which a delta cannot carry.

`result()` is None for a stream that must not be stored: one that has not ended (a choice
without ``finish_reason``, or no choice at all), a tool call without an id or a name, or one
that passed the size bound. The bound counts characters of content, refusal, tool-call ids,
names and arguments, plus a fixed charge per choice and per tool call (so a stream of empty
deltas with ever new indices is bounded too); past it the assembler drops what it holds and
ignores the rest of the stream. Text is accumulated in `io.StringIO` buffers, not lists of
fragments, so memory stays near the text's size however finely it was cut. A choice that never
appeared in any chunk cannot be noticed (a stream does not announce ``n``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from msgspec import UNSET

from stellara.schema.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    FunctionCall,
    FunctionCallDelta,
    ResponseMessage,
    StopReason,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = ["DEFAULT_MAX_CHARS", "StreamAssembler"]

DEFAULT_MAX_CHARS = 4 * 1024 * 1024
# What a new choice or tool call costs against the bound, whatever text it brings.
_ENTRY_CHARS = 64


class _Text:
    """A text arriving in fragments; None until the first fragment, even an empty one."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer: io.StringIO | None = None

    def add(self, fragment: str) -> int:
        if self._buffer is None:
            self._buffer = io.StringIO()
        return self._buffer.write(fragment)

    @property
    def value(self) -> str | None:
        return None if self._buffer is None else self._buffer.getvalue()


@dataclass(slots=True)
class _Call:
    """A tool call (or the legacy function call) being merged from its deltas."""

    id: str | None = None
    name: str | None = None
    arguments: _Text = field(default_factory=_Text)

    def add(self, call_id: str | None, function: FunctionCallDelta | None) -> int:
        taken = 0
        if self.id is None and call_id is not None:
            self.id = call_id
            taken += len(call_id)
        if function is not None:
            if self.name is None and function.name is not None:
                self.name = function.name
                taken += len(function.name)
            if function.arguments is not None:
                taken += self.arguments.add(function.arguments)
        return taken

    def function(self) -> FunctionCall | None:
        if self.name is None:
            return None
        return FunctionCall(name=self.name, arguments=self.arguments.value or "")


@dataclass(slots=True)
class _ChoiceState:
    content: _Text = field(default_factory=_Text)
    refusal: _Text = field(default_factory=_Text)
    tool_calls: dict[int, _Call] = field(default_factory=dict)
    function_call: _Call | None = None
    finish_reason: str | None = None
    stop_reason: StopReason = UNSET

    def add(self, choice: ChunkChoice) -> int:
        """Merge one chunk's delta for this choice; return the characters it cost."""
        delta, taken = choice.delta, 0
        if delta.content is not None:
            taken += self.content.add(delta.content)
        if delta.refusal is not None:
            taken += self.refusal.add(delta.refusal)
        for call in delta.tool_calls or ():
            taken += self._add_tool_call(call)
        if delta.function_call is not None:
            if self.function_call is None:
                self.function_call = _Call()
                taken += _ENTRY_CHARS
            taken += self.function_call.add(None, delta.function_call)
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason
            self.stop_reason = choice.stop_reason
        return taken

    def _add_tool_call(self, delta: ToolCallDelta) -> int:
        call = self.tool_calls.get(delta.index)
        taken = 0
        if call is None:
            call = self.tool_calls[delta.index] = _Call()
            taken = _ENTRY_CHARS
        return taken + call.add(delta.id, delta.function)

    def build(self, index: int) -> Choice | None:
        """The finished choice, or None if this choice cannot be stored."""
        tool_calls: list[ToolCall] = []
        for position in sorted(self.tool_calls):
            call = self.tool_calls[position]
            function = call.function()
            if call.id is None or function is None:
                return None
            tool_calls.append(ToolCall(id=call.id, type="function", function=function))
        legacy = None if self.function_call is None else self.function_call.function()
        if self.function_call is not None and legacy is None:
            return None
        message = ResponseMessage(
            role="assistant",
            content=self.content.value,
            refusal=self.refusal.value,
            tool_calls=tool_calls or None,
            function_call=legacy,
        )
        return Choice(
            index=index,
            message=message,
            finish_reason=self.finish_reason,
            stop_reason=self.stop_reason,
        )


class StreamAssembler:
    """Rebuilds the `ChatCompletion` equivalent to a stream of canonical chunks.

    Create one per streamed request, `feed` it every chunk relayed to the client, and call
    `result` after the stream ends; a None result means the answer must not be cached.

    Args:
        max_chars: The size bound (see the module docstring); past it the assembler gives up
            and `result` is None. Defaults to 4 Mi characters.
    """

    def __init__(self, *, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self._max_chars = max_chars
        self._chars = 0
        self._is_over_limit = False
        self._id = ""
        self._created = 0
        self._model = ""
        self._system_fingerprint: str | None = None
        self._service_tier: str | None = None
        self._usage: Usage | None = None
        self._choices: dict[int, _ChoiceState] = {}

    @property
    def is_over_limit(self) -> bool:
        """Whether the stream passed the size bound, so nothing more is assembled."""
        return self._is_over_limit

    def feed(self, chunk: ChatCompletionChunk) -> None:
        """Merge one chunk, in stream order.

        Args:
            chunk: The next canonical chunk of the stream.
        """
        if self._is_over_limit:
            return
        self._id = self._id or chunk.id
        self._created = self._created or chunk.created
        self._model = self._model or chunk.model
        self._system_fingerprint = self._system_fingerprint or chunk.system_fingerprint
        self._service_tier = self._service_tier or chunk.service_tier
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = _ChoiceState()
                self._chars += _ENTRY_CHARS
            self._chars += state.add(choice)
            if self._chars > self._max_chars:
                self._is_over_limit = True
                self._choices.clear()
                return

    def result(self) -> ChatCompletion | None:
        """The assembled completion, or None if the stream is not one to store.

        Returns:
            The completion with its choices ordered by index, or None when the stream has not
            ended (a choice lacks ``finish_reason``), had no choice, passed the size bound, or
            left a tool call without an id or a name.
        """
        if self._is_over_limit or not self._choices:
            return None
        choices: list[Choice] = []
        for index in sorted(self._choices):
            state = self._choices[index]
            choice = state.build(index) if state.finish_reason is not None else None
            if choice is None:
                return None
            choices.append(choice)
        return ChatCompletion(
            id=self._id,
            object="chat.completion",
            created=self._created,
            model=self._model,
            choices=choices,
            usage=self._usage,
            system_fingerprint=self._system_fingerprint,
            service_tier=self._service_tier,
        )
