"""Anthropic stream events → canonical chunks: a fresh parser per request (pure, no I/O).

Anthropic streams typed events (`message_start`, `content_block_*`, `message_delta`,
`message_stop`, `ping`, `error`); the gateway speaks OpenAI chunks. The mapping:

* `message_start` → the first chunk, `delta: {role: "assistant", content: ""}`.
* a `tool_use` block start → a tool call delta with its id, name and empty arguments; its
  `input_json_delta`s → argument fragments. Tool call `index` counts tool_use blocks from 0,
  whatever Anthropic's block index (text and thinking blocks count there too).
* the answer tool's block (`tools`: a JSON `response_format`) → nothing at its start, and its
  `input_json_delta`s → content: the answer is text, never a tool call.
* `text_delta` → content. Thinking, signature and citation deltas are dropped, as in
  `chat.completion_from_message`.
* `message_delta` carries the stop reason, the stop sequence and usage; they are held until
  `message_stop`, which yields the chunk with `finish_reason` (and `stop_reason`, the matched
  stop sequence) and then a usage-only chunk (`choices: []`). Holding them means a stream cut
  before `message_stop` never shows the client a normal finish.
"""

from __future__ import annotations

from typing import get_args

import msgspec

from stellara.errors import UpstreamProtocolError
from stellara.providers.anthropic.chat import (
    canonical_usage,
    completion_id,
    finish_reason_of,
    stop_sequence_of,
)
from stellara.providers.anthropic.errors import error_from_event
from stellara.schema.chat import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ToolCallDelta,
)
from stellara.wire import anthropic as wire

Chunks = tuple[ChatCompletionChunk, ...]
_NOTHING: Chunks = ()


def _tags(union: object) -> frozenset[str]:
    return frozenset(str(member.__struct_config__.tag) for member in get_args(union))


_KNOWN_EVENTS = _tags(wire.StreamEvent)
_KNOWN_BLOCKS = _tags(wire.ResponseBlock)
_KNOWN_DELTAS = _tags(wire.BlockDelta)


class _Typed(msgspec.Struct):
    type: str = ""  # `message_delta`'s delta has no type


class _EventPeek(msgspec.Struct):
    type: str
    content_block: _Typed | None = None
    delta: _Typed | None = None


_peek_decoder = msgspec.json.Decoder(_EventPeek)


class AnthropicStreamParser:
    """Turns the `data:` payloads of one Anthropic SSE stream into `ChatCompletionChunk`s.

    A stream is complete only after `message_stop`; `finish` raises if the upstream stopped
    before, so a cut stream is never mistaken for a finished answer.

    Args:
        provider: The provider id, for errors.
        created: The chunks' Unix time; the caller owns the clock.
        answer_tool: The name of the request's answer tool, whose input is streamed as content.
    """

    __slots__ = (
        "_answer_blocks",
        "_answer_tool",
        "_created",
        "_id",
        "_model",
        "_provider",
        "_stopped_by",
        "_tool_indexes",
        "_usage",
        "is_done",
    )

    def __init__(self, provider: str, *, created: int, answer_tool: str | None = None) -> None:
        self._provider = provider
        self._created = created
        self._answer_tool = answer_tool
        self._id = ""  # set by message_start; empty means it has not come yet
        self._model = ""
        self._usage = wire.Usage(input_tokens=0, output_tokens=0)
        self._stopped_by = wire.MessageDeltaBody()
        self._tool_indexes: dict[int, int] = {}  # Anthropic block index → tool call index
        self._answer_blocks: set[int] = set()  # Anthropic block indexes of the answer tool
        self.is_done = False

    def feed(self, data: bytes) -> Chunks:
        """The chunks for one event's data: none, one, or (at `message_stop`) two.

        Raises:
            UpstreamError: The event is an `error` event (mapped by its type), or breaks the
                protocol (`UpstreamProtocolError`).
        """
        event = self._decode(data)
        if event is None or isinstance(event, wire.PingEvent | wire.ContentBlockStopEvent):
            return _NOTHING
        if isinstance(event, wire.ErrorEvent):
            raise error_from_event(event.error, provider=self._provider)
        if isinstance(event, wire.MessageStartEvent):
            return self._start(event.message)
        if not self._id:
            raise self._protocol_error(f"sent {type(event).__name__} before message_start")
        if isinstance(event, wire.ContentBlockStartEvent):
            return self._block_start(event)
        if isinstance(event, wire.ContentBlockDeltaEvent):
            return self._block_delta(event)
        if isinstance(event, wire.MessageDeltaEvent):
            self._message_delta(event)
            return _NOTHING
        return self._stop()

    def finish(self) -> None:
        """Call when the upstream closed the stream."""
        if not self.is_done:
            raise self._protocol_error("ended the stream before it was complete")

    def _decode(self, data: bytes) -> wire.StreamEvent | None:
        try:
            event: wire.StreamEvent = wire.event_decoder.decode(data)
        except msgspec.DecodeError as exc:
            if _is_newer_kind(data):
                # Anthropic's versioning policy: new event, block and delta types may appear
                # at any time, and clients are to skip what they do not know.
                return None
            raise self._protocol_error(f"sent an invalid stream event: {exc}") from exc
        return event

    def _start(self, message: wire.Message) -> Chunks:
        self._id = completion_id(message.id)
        self._model = message.model
        self._usage = message.usage
        return (self._chunk(Delta(role="assistant", content="")),)

    def _block_start(self, event: wire.ContentBlockStartEvent) -> Chunks:
        block = event.content_block
        if isinstance(block, wire.ToolUseBlock) and block.name == self._answer_tool:
            self._answer_blocks.add(event.index)
        elif isinstance(block, wire.ToolUseBlock):
            index = len(self._tool_indexes)
            self._tool_indexes[event.index] = index
            function = FunctionCallDelta(name=block.name, arguments="")
            call = ToolCallDelta(index, id=block.id, type="function", function=function)
            return (self._chunk(Delta(tool_calls=[call])),)
        if isinstance(block, wire.TextBlock) and block.text:
            return (self._chunk(Delta(content=block.text)),)
        return _NOTHING

    def _block_delta(self, event: wire.ContentBlockDeltaEvent) -> Chunks:
        delta = event.delta
        if isinstance(delta, wire.TextDelta):
            return (self._chunk(Delta(content=delta.text)),) if delta.text else _NOTHING
        if isinstance(delta, wire.InputJSONDelta):
            if event.index in self._answer_blocks:
                return (
                    (self._chunk(Delta(content=delta.partial_json)),)
                    if delta.partial_json
                    else _NOTHING
                )
            index = self._tool_indexes.get(event.index)
            if index is None:
                return _NOTHING  # input of a block the gateway does not relay (a server tool)
            call = ToolCallDelta(index, function=FunctionCallDelta(arguments=delta.partial_json))
            return (self._chunk(Delta(tool_calls=[call])),)
        return _NOTHING

    def _message_delta(self, event: wire.MessageDeltaEvent) -> None:
        self._stopped_by = event.delta
        # message_delta's counts are cumulative; input counts appear there only when they
        # changed since message_start (server tools), so the start's stay otherwise.
        usage, start = event.usage, self._usage
        self._usage = wire.Usage(
            input_tokens=start.input_tokens if usage.input_tokens is None else usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=_newer(
                usage.cache_creation_input_tokens, start.cache_creation_input_tokens
            ),
            cache_read_input_tokens=_newer(
                usage.cache_read_input_tokens, start.cache_read_input_tokens
            ),
        )

    def _stop(self) -> Chunks:
        self.is_done = True
        stop = self._stopped_by
        reason = finish_reason_of(stop.stop_reason, has_tool_calls=bool(self._tool_indexes))
        finish = self._chunk(Delta(), reason)
        finish.choices[0].stop_reason = stop_sequence_of(stop.stop_reason, stop.stop_sequence)
        usage = ChatCompletionChunk(
            id=self._id,
            object="chat.completion.chunk",
            created=self._created,
            model=self._model,
            choices=[],
            usage=canonical_usage(self._usage),
        )
        return finish, usage

    def _chunk(self, delta: Delta, finish_reason: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id,
            object="chat.completion.chunk",
            created=self._created,
            model=self._model,
            choices=[ChunkChoice(0, delta, finish_reason)],
        )

    def _protocol_error(self, what: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"provider {self._provider!r} {what}", provider=self._provider)


def _newer(value: int | None, previous: int | None) -> int | None:
    return previous if value is None else value


def _is_newer_kind(data: bytes) -> bool:
    """Whether an undecodable event is a kind this gateway predates, rather than garbage."""
    try:
        peek = _peek_decoder.decode(data)
    except msgspec.DecodeError:
        return False
    if peek.type not in _KNOWN_EVENTS:
        return True
    if peek.type == "content_block_start" and peek.content_block is not None:
        return peek.content_block.type not in _KNOWN_BLOCKS
    if peek.type == "content_block_delta" and peek.delta is not None:
        return peek.delta.type not in _KNOWN_DELTAS
    return False
