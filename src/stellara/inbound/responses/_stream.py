"""Canonical chunks → Responses stream events, one writer per streamed answer."""

from __future__ import annotations

from typing import Literal

import msgspec

from stellara.errors import RateLimitedError, StellaraError, UpstreamRateLimitedError
from stellara.inbound.responses._answer import base_response, ended, item_status, usage_of
from stellara.inbound.responses._items import output_id
from stellara.inbound.responses._reasoning import reasoning_item, wants_encrypted_content
from stellara.schema.chat import ChatCompletionChunk, Delta, ThinkingBlock, ToolCallDelta, Usage
from stellara.wire import responses as wire

_PartKind = Literal["text", "refusal"]


class _OpenMessage:
    """The streamed message item: its content parts, in the order they opened."""

    __slots__ = ("item_id", "output_index", "parts")

    def __init__(self, item_id: str, output_index: int) -> None:
        self.item_id = item_id
        self.output_index = output_index
        self.parts: list[tuple[_PartKind, list[str]]] = []

    def part_index(self, kind: _PartKind) -> int | None:
        for at, (part_kind, _) in enumerate(self.parts):
            if part_kind == kind:
                return at
        return None


class _OpenCall:
    """A streamed function_call item."""

    __slots__ = ("arguments", "call_id", "item_id", "name", "output_index")

    def __init__(self, item_id: str, output_index: int, call_id: str, name: str) -> None:
        self.item_id = item_id
        self.output_index = output_index
        self.call_id = call_id
        self.name = name
        self.arguments: list[str] = []


class _OpenReasoning:
    """A streamed reasoning item: its summary text so far, and once its block closed (a
    signed block came, `schema.chat.ThinkingBlock`) the item as done."""

    __slots__ = ("done", "item_id", "output_index", "texts")

    def __init__(self, item_id: str, output_index: int) -> None:
        self.item_id = item_id
        self.output_index = output_index
        self.texts: list[str] = []
        self.done: wire.ReasoningItem | None = None


_OpenItem = _OpenMessage | _OpenCall | _OpenReasoning


class ResponsesStreamWriter:
    """Turns one request's canonical chunks into Responses stream events.

    Use a fresh writer per request: `start` as soon as the stream opens (or let the first
    `feed` do it), `feed` every chunk in order, then `finish` once the stream ended normally,
    or `fail` once it broke. Each item opens when its first fragment arrives and all close at
    the end, in output order, so fragments of parallel tool calls may interleave; a reasoning
    item (thinking, see `_reasoning`) closes as soon as its signed block arrives, as the
    thinking it holds is over before the answer begins.
    `sequence_number` counts every event from 0. `response` is the response as the last
    event showed it: the final one, for storing, after `finish` or `fail`.

    Args:
        request: The request, whose parameters the response echoes.
        response_id: `resp_<32 hex>`; output item ids are derived from it.
        created_at: When the request arrived, in Unix seconds.
        store: Whether the response is stored (see `to_response`).
    """

    def __init__(
        self, request: wire.ResponsesRequest, *, response_id: str, created_at: int, store: bool
    ) -> None:
        self._response = base_response(
            request, response_id=response_id, created_at=created_at, store=store
        )
        self._sequence = 0
        self._is_started = False
        self._items: list[_OpenItem] = []
        self._message: _OpenMessage | None = None
        self._reasoning: _OpenReasoning | None = None
        self._with_encrypted = wants_encrypted_content(request)
        self._calls: dict[int, _OpenCall] = {}  # by canonical tool-call index
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._service_tier: str | None = None

    @property
    def response(self) -> wire.Response:
        return self._response

    def start(self) -> list[wire.StreamEvent]:
        """`response.created` and `response.in_progress` (nothing when already started)."""
        if self._is_started:
            return []
        self._is_started = True
        return [
            wire.ResponseCreatedEvent(self._response, self._next()),
            wire.ResponseInProgressEvent(self._response, self._next()),
        ]

    def feed(self, chunk: ChatCompletionChunk) -> list[wire.StreamEvent]:
        """The events for one chunk (none for a usage-only or empty chunk)."""
        events = self.start()
        if chunk.usage is not None:
            self._usage = chunk.usage
        if chunk.service_tier is not None:
            self._service_tier = chunk.service_tier
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # the route asks for one choice
            delta = choice.delta
            if delta.reasoning_content or delta.thinking_blocks:
                self._feed_reasoning(delta, events)
            if delta.content:
                self._feed_part("text", delta.content, events)
            if delta.refusal:
                self._feed_part("refusal", delta.refusal, events)
            for call in delta.tool_calls or ():
                self._feed_call(call, events)
            if choice.finish_reason:
                self._finish_reason = choice.finish_reason
        return events

    def finish(self, *, completed_at: int | None = None) -> list[wire.StreamEvent]:
        """The `.done` events of every item, then `response.completed` (or
        `response.incomplete`, when the answer was cut by its length or a content filter).

        Args:
            completed_at: When the stream ended, in Unix seconds.
        """
        events = self.start()
        status = item_status(self._finish_reason)
        output = [self._close(item, status, events) for item in self._items]  # in output order
        self._response = ended(
            self._response,
            output,
            self._finish_reason,
            self._usage,
            self._service_tier,
            completed_at,
        )
        if self._response.status == "completed":
            events.append(wire.ResponseCompletedEvent(self._response, self._next()))
        else:
            events.append(wire.ResponseIncompleteEvent(self._response, self._next()))
        return events

    def fail(self, error: StellaraError) -> list[wire.StreamEvent]:
        """An `error` event, then `response.failed` with the output so far (incomplete).

        Args:
            error: Why the stream broke; its message reaches the client.
        """
        events = self.start()
        events.append(wire.ErrorEvent(error.code, error.message, error.param, self._next()))
        self._response = msgspec.structs.replace(
            self._response,
            status="failed",
            error=wire.ResponseError(_failure_code(error), error.message),
            output=[_item(item, "incomplete") for item in self._items],
            usage=usage_of(self._usage),
        )
        events.append(wire.ResponseFailedEvent(self._response, self._next()))
        return events

    def _next(self) -> int:
        number = self._sequence
        self._sequence += 1
        return number

    def _feed_reasoning(self, delta: Delta, events: list[wire.StreamEvent]) -> None:
        if delta.reasoning_content:
            self._feed_summary(delta.reasoning_content, events)
        for block in delta.thinking_blocks or ():
            if isinstance(block, ThinkingBlock) and not block.signature:
                continue  # a signature closes a block; text alone comes as reasoning_content
            reasoning = self._open_reasoning(events)
            if isinstance(block, ThinkingBlock):
                if block.thinking:
                    self._feed_summary(block.thinking, events)
                block = ThinkingBlock("".join(reasoning.texts), block.signature)
            self._reasoning = None
            reasoning.done = reasoning_item(
                reasoning.item_id,
                block,
                with_encrypted_content=self._with_encrypted,
                status="completed",
            )
            self._close_reasoning(reasoning, events)

    def _feed_summary(self, text: str, events: list[wire.StreamEvent]) -> None:
        reasoning = self._open_reasoning(events)
        reasoning.texts.append(text)
        where = (reasoning.item_id, reasoning.output_index, 0)
        events.append(wire.ReasoningSummaryTextDeltaEvent(*where, text, self._next()))

    def _open_reasoning(self, events: list[wire.StreamEvent]) -> _OpenReasoning:
        if self._reasoning is not None:
            return self._reasoning
        output_index = len(self._items)
        item_id = output_id("rs", self._response.id, output_index)
        reasoning = self._reasoning = _OpenReasoning(item_id, output_index)
        self._items.append(reasoning)
        item = wire.ReasoningItem(item_id, [], status="in_progress")
        events.append(wire.OutputItemAddedEvent(output_index, item, self._next()))
        events.append(
            wire.ReasoningSummaryPartAddedEvent(
                item_id, output_index, 0, wire.SummaryText(""), self._next()
            )
        )
        return reasoning

    def _close_reasoning(self, reasoning: _OpenReasoning, events: list[wire.StreamEvent]) -> None:
        item = reasoning.done or _reasoning_item(reasoning, "completed")
        reasoning.done = item
        where = (reasoning.item_id, reasoning.output_index, 0)
        text = "".join(reasoning.texts)
        events.append(wire.ReasoningSummaryTextDoneEvent(*where, text, self._next()))
        part = wire.SummaryText(text)
        events.append(wire.ReasoningSummaryPartDoneEvent(*where, part, self._next()))
        events.append(wire.OutputItemDoneEvent(reasoning.output_index, item, self._next()))

    def _feed_part(self, kind: _PartKind, text: str, events: list[wire.StreamEvent]) -> None:
        message = self._message
        if message is None:
            output_index = len(self._items)
            item_id = output_id("msg", self._response.id, output_index)
            message = self._message = _OpenMessage(item_id, output_index)
            self._items.append(message)
            item = wire.OutputMessage(item_id, "in_progress", "assistant", [])
            events.append(wire.OutputItemAddedEvent(output_index, item, self._next()))
        at = message.part_index(kind)
        if at is None:
            at = len(message.parts)
            message.parts.append((kind, []))
            events.append(
                wire.ContentPartAddedEvent(
                    message.item_id, message.output_index, at, _part(kind, ""), self._next()
                )
            )
        message.parts[at][1].append(text)
        if kind == "text":
            delta: wire.StreamEvent = wire.OutputTextDeltaEvent(
                message.item_id, message.output_index, at, text, self._next()
            )
        else:
            delta = wire.RefusalDeltaEvent(
                message.item_id, message.output_index, at, text, self._next()
            )
        events.append(delta)

    def _feed_call(self, delta: ToolCallDelta, events: list[wire.StreamEvent]) -> None:
        function = delta.function
        call = self._calls.get(delta.index)
        if call is None:
            output_index = len(self._items)
            response_id = self._response.id
            item_id = output_id("fc", response_id, output_index)
            call_id = delta.id or output_id("call", response_id, output_index)
            name = (function.name if function else None) or ""
            call = self._calls[delta.index] = _OpenCall(item_id, output_index, call_id, name)
            self._items.append(call)
            item = wire.FunctionCall(call_id, name, "", id=item_id, status="in_progress")
            events.append(wire.OutputItemAddedEvent(output_index, item, self._next()))
        elif function is not None and function.name and not call.name:
            call.name = function.name  # some providers name the call after its first fragment
        if function is not None and function.arguments:
            call.arguments.append(function.arguments)
            events.append(
                wire.FunctionCallArgumentsDeltaEvent(
                    call.item_id, call.output_index, function.arguments, self._next()
                )
            )

    def _close(
        self,
        open_item: _OpenItem,
        status: wire.ItemStatus,
        events: list[wire.StreamEvent],
    ) -> wire.OutputItem:
        item: wire.OutputItem
        if isinstance(open_item, _OpenReasoning):
            if open_item.done is None:  # reasoning without a signed block (not Anthropic's)
                self._close_reasoning(open_item, events)
            return open_item.done or _reasoning_item(open_item, status)
        if isinstance(open_item, _OpenCall):
            item = _call_item(open_item, status)
            events.append(
                wire.FunctionCallArgumentsDoneEvent(
                    open_item.item_id,
                    open_item.output_index,
                    item.name,
                    item.arguments,
                    self._next(),
                )
            )
        else:
            item = _message_item(open_item, status)
            self._close_parts(open_item, item, events)
        events.append(wire.OutputItemDoneEvent(open_item.output_index, item, self._next()))
        return item

    def _close_parts(
        self, message: _OpenMessage, item: wire.OutputMessage, events: list[wire.StreamEvent]
    ) -> None:
        where = (message.item_id, message.output_index)
        for at, part in enumerate(item.content):
            done: wire.StreamEvent
            if isinstance(part, wire.OutputText):
                done = wire.OutputTextDoneEvent(*where, at, part.text, self._next())
            else:
                done = wire.RefusalDoneEvent(*where, at, part.refusal, self._next())
            events.append(done)
            events.append(wire.ContentPartDoneEvent(*where, at, part, self._next()))


def _item(open_item: _OpenItem, status: wire.ItemStatus) -> wire.OutputItem:
    if isinstance(open_item, _OpenReasoning):
        return open_item.done or _reasoning_item(open_item, status)
    if isinstance(open_item, _OpenCall):
        return _call_item(open_item, status)
    return _message_item(open_item, status)


def _reasoning_item(reasoning: _OpenReasoning, status: wire.ItemStatus) -> wire.ReasoningItem:
    """A reasoning item with its text and no signed block: nothing to hand back."""
    text = "".join(reasoning.texts)
    summary = [wire.SummaryText(text)] if text else []
    return wire.ReasoningItem(reasoning.item_id, summary, status=status)


def _call_item(call: _OpenCall, status: wire.ItemStatus) -> wire.FunctionCall:
    arguments = "".join(call.arguments)
    return wire.FunctionCall(call.call_id, call.name, arguments, id=call.item_id, status=status)


def _message_item(message: _OpenMessage, status: wire.ItemStatus) -> wire.OutputMessage:
    content = [_part(kind, "".join(chunks)) for kind, chunks in message.parts]
    return wire.OutputMessage(message.item_id, status, "assistant", content)


def _part(kind: _PartKind, text: str) -> wire.OutputContent:
    return wire.OutputText(text) if kind == "text" else wire.Refusal(text)


def _failure_code(error: StellaraError) -> str:
    """The spec's `ResponseErrorCode` for why a stream broke."""
    if isinstance(error, RateLimitedError | UpstreamRateLimitedError):
        return "rate_limit_exceeded"
    return "server_error"
