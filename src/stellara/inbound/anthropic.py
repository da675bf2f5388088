"""The Anthropic Messages dialect ⇄ the canonical (OpenAI-shaped) chat types.

Pure translators for `POST /v1/messages`: `to_chat_request` for the request, `to_message` for a
whole answer, and `AnthropicStreamWriter` (one per request) for a streamed one. They never do
I/O; the HTTP layer decodes, encodes and writes SSE.

Where the two formats do not line up, these choices hold:

- `thinking` and `top_k` become the canonical extensions of the same names; thinking blocks in
  an assistant turn become its `thinking_blocks` (only Anthropic reads them; others ignore
  them). In answers, `thinking_blocks` come back as thinking and redacted_thinking blocks
  ahead of the text (streamed as `thinking_delta` and `signature_delta`). `service_tier` has
  no canonical equivalent (OpenAI's takes other values) and is not relayed.
- `cache_control` stays on the part, tool call, tool message or tool made from the block that
  carried it (the canonical `CacheControl`); system blocks stay separate parts when one of them
  carries it. The request-level `cache_control` marks the last block of the last message, which
  is what Anthropic does with it.
- Text blocks of an assistant turn are concatenated as they are (Anthropic splits one answer
  into several blocks around citations); system blocks and a tool result's text blocks are
  joined with newlines, as they are separate pieces of text.
- A `tool_result` with `is_error: true` becomes a tool message whose text starts with
  `"Error: "`, because OpenAI tool messages have no error flag and the model must still learn
  that the call failed.
- Images and documents inside a tool result cannot go into an OpenAI tool message; they move
  to the user message that follows the tool messages, in their original order.
- Document blocks: a base64 PDF becomes a `file` part (data URL), a plain-text source a text
  part; other sources (URLs, content lists, files) are refused with a 400.
- Tool-call arguments that are not a JSON object (a model's malformed output) become
  `{"_raw_arguments": "<text>"}` rather than `{}`, so a tool with no required argument is
  never silently run with none; empty arguments become `{}`.
- A finish reason `stop` is `stop_sequence`, with the sequence, when the choice's
  `stop_reason` names the stop sequence that matched (Anthropic and vLLM-style servers report
  it); otherwise `end_turn`, which is all an OpenAI upstream lets the gateway know.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import msgspec
from msgspec import Raw, UnsetType

from stellara.errors import InvalidRequestError, UpstreamProtocolError
from stellara.schema.chat import (
    AssistantContentPart,
    AssistantMessage,
    CacheControl,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Delta,
    FilePart,
    FileRef,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    JSONSchemaFormat,
    Message,
    NamedToolChoice,
    RedactedThinkingBlock,
    ResponseFormat,
    StopReason,
    StreamOptions,
    SystemMessage,
    TextPart,
    ThinkingBlock,
    ThinkingBlocks,
    ThinkingConfig,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceFunction,
    ToolMessage,
    Usage,
    UserContentPart,
    UserMessage,
)
from stellara.wire import anthropic as wire

RAW_ARGUMENTS_KEY = "_raw_arguments"
PARAM_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "stop": "stop_sequences",
        "user": "metadata.user_id",
        "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
        "response_format": "output_config.format",
    }
)
"""This dialect's names of the canonical parameters it sets under another name, so a refused
or dropped parameter is named as the client sent it."""
"""Where a tool_use block keeps tool-call arguments that were not a JSON object."""

_encode_compact = msgspec.json.Encoder().encode

# ---------------------------------------------------------------- request


_document_source_decoder = msgspec.json.Decoder(wire.Base64PDFSource | wire.PlainTextSource)
_MEDIA_BLOCKS = (wire.ImageBlock, wire.DocumentBlock)
_THINKING_BLOCKS = (wire.ThinkingBlock, wire.RedactedThinkingBlock)
_metadata_decoder = msgspec.json.Decoder(wire.MetadataParam)


def to_chat_request(request: wire.MessagesRequest) -> ChatRequest:
    """The canonical request for an Anthropic Messages request.

    A streaming request asks for the usage chunk (`stream_options.include_usage`), because the
    Anthropic stream reports usage in its `message_delta` event.

    Raises:
        InvalidRequestError: The request is well-formed JSON but cannot be translated (no
            messages, a block in a role that cannot hold it, an unsupported document source).
    """
    if not request.messages:
        raise InvalidRequestError("messages: at least one message is required.", param="messages")
    messages: list[Message] = []
    system = _system_content(request.system)
    if system:
        messages.append(SystemMessage(content=system))
    if request.cache_control is not None:
        _mark_last_block(request.messages[-1], request.cache_control)
    for at, param in enumerate(request.messages):
        messages.extend(_translate_message(param, f"messages[{at}]"))
    if not messages:
        raise InvalidRequestError("messages: every message is empty.", param="messages")
    tools = [_tool(tool) for tool in request.tools] if request.tools else None
    # OpenAI refuses tool_choice and parallel_tool_calls without tools.
    choice = request.tool_choice if tools else None
    return ChatRequest(
        model=request.model,
        messages=messages,
        max_tokens=request.max_tokens,
        stop=request.stop_sequences or None,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        thinking=_thinking(request.thinking),
        user=_user_id(request.metadata),
        stream=True if request.stream else None,
        stream_options=StreamOptions(include_usage=True) if request.stream else None,
        tools=tools,
        tool_choice=_tool_choice(choice) if choice else None,
        parallel_tool_calls=False if choice and choice.disable_parallel_tool_use else None,
        response_format=_response_format(request.output_config),
        service_tier=request.service_tier,
    )


def _system_content(system: str | list[wire.TextBlock] | None) -> str | list[TextPart]:
    if system is None or isinstance(system, str):
        return system or ""
    if any(block.cache_control for block in system):
        return [TextPart(block.text, _cache_control(block.cache_control)) for block in system]
    return "\n".join(block.text for block in system)


def _response_format(config: wire.OutputConfig | None) -> ResponseFormat | None:
    """Anthropic's structured outputs as OpenAI's: a strict JSON schema the answer's text
    follows (OpenAI requires a name; Anthropic's format has none)."""
    if config is None or config.format is None:
        return None
    schema = JSONSchemaFormat("output", schema=config.format.schema, strict=True)
    return ResponseFormat("json_schema", schema)


def _thinking(thinking: wire.ThinkingParam | None) -> ThinkingConfig | None:
    if thinking is None:
        return None
    return ThinkingConfig(thinking.type, thinking.budget_tokens)


def _cache_control(cache_control: wire.CacheControl | None) -> CacheControl | None:
    if cache_control is None:
        return None
    return CacheControl(cache_control.type, cache_control.ttl)


def _mark_last_block(param: wire.MessageParam, cache_control: wire.CacheControl) -> None:
    if isinstance(param.content, str):
        param.content = [wire.TextBlock(param.content, cache_control=cache_control)]
    elif param.content and not isinstance(param.content[-1], _THINKING_BLOCKS):
        param.content[-1].cache_control = cache_control


def _translate_message(param: wire.MessageParam, path: str) -> list[Message]:
    if isinstance(param.content, str):
        if param.role == "assistant":
            return [AssistantMessage(content=param.content)]
        return [UserMessage(content=param.content)]
    if param.role == "assistant":
        assistant = _assistant_message(param.content, path)
        return [assistant] if assistant is not None else []
    return _user_messages(param.content, path)


def _assistant_message(blocks: list[wire.RequestBlock], path: str) -> AssistantMessage | None:
    texts: list[wire.TextBlock] = []
    calls: list[ToolCall] = []
    thoughts: ThinkingBlocks = []
    for at, block in enumerate(blocks):
        if isinstance(block, wire.TextBlock):
            texts.append(block)
        elif isinstance(block, wire.ThinkingBlock):
            thoughts.append(ThinkingBlock(block.thinking, block.signature))
        elif isinstance(block, wire.RedactedThinkingBlock):
            thoughts.append(RedactedThinkingBlock(block.data))
        elif isinstance(block, wire.ToolUseBlock):
            arguments = _encode_compact(block.input).decode()
            function = FunctionCall(block.name, arguments)
            calls.append(
                ToolCall(block.id, "function", function, _cache_control(block.cache_control))
            )
        else:
            raise _misplaced(block, "assistant", f"{path}.content[{at}]")
    if not texts and not calls and not thoughts:
        return None
    return AssistantMessage(
        content=_assistant_content(texts),
        tool_calls=calls or None,
        thinking_blocks=thoughts or None,
    )


def _assistant_content(texts: list[wire.TextBlock]) -> str | list[AssistantContentPart] | None:
    if not texts:
        return None
    if any(block.cache_control for block in texts):
        return [TextPart(block.text, _cache_control(block.cache_control)) for block in texts]
    return "".join(block.text for block in texts)


def _user_messages(blocks: list[wire.RequestBlock], path: str) -> list[Message]:
    """Tool results first (OpenAI wants them right after the assistant's calls), then the rest."""
    results: list[Message] = []
    moved: list[UserContentPart] = []
    parts: list[UserContentPart] = []
    # The common blocks first, and a block's path only when it is needed: this loop runs
    # once per block of the request (up to `bounds.MAX_CONTENT_PARTS`).
    for at, block in enumerate(blocks):
        if isinstance(block, wire.TextBlock):
            parts.append(TextPart(block.text, _cache_control(block.cache_control)))
        elif isinstance(block, wire.ToolResultBlock):
            results.append(_tool_message(block))
            if isinstance(block.content, list):
                moved.extend(_tool_result_media(block.content, f"{path}.content[{at}]"))
        elif isinstance(block, _MEDIA_BLOCKS):
            parts.append(_user_part(block, f"{path}.content[{at}]"))
        elif not isinstance(block, _THINKING_BLOCKS):
            raise _misplaced(block, "user", f"{path}.content[{at}]")
    if moved or parts:
        results.append(UserMessage(content=moved + parts))
    return results


def _tool_message(block: wire.ToolResultBlock) -> ToolMessage:
    content = block.content
    if isinstance(content, UnsetType):
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "\n".join(item.text for item in content if isinstance(item, wire.TextBlock))
    if block.is_error:
        text = f"Error: {text}" if text else "Error"
    return ToolMessage(
        content=text,
        tool_call_id=block.tool_use_id,
        cache_control=_cache_control(block.cache_control),
    )


def _tool_result_media(
    content: list[wire.TextBlock | wire.ImageBlock | wire.DocumentBlock], path: str
) -> list[UserContentPart]:
    return [
        _user_part(item, f"{path}.content[{at}]")
        for at, item in enumerate(content)
        if not isinstance(item, wire.TextBlock)
    ]


def _user_part(
    block: wire.TextBlock | wire.ImageBlock | wire.DocumentBlock, path: str
) -> UserContentPart:
    cache_control = _cache_control(block.cache_control)
    if isinstance(block, wire.TextBlock):
        return TextPart(block.text, cache_control)
    if isinstance(block, wire.ImageBlock):
        source = block.source
        if isinstance(source, wire.URLImageSource):
            return ImagePart(ImageURL(source.url), cache_control)
        data_url = f"data:{source.media_type};base64,{source.data}"
        return ImagePart(ImageURL(data_url), cache_control)
    part = _document_part(block, path)
    part.cache_control = cache_control
    return part


def _document_part(block: wire.DocumentBlock, path: str) -> TextPart | FilePart:
    try:
        source = _document_source_decoder.decode(block.source)
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(
            f"{path}.source: only base64 PDF and plain-text document sources are supported.",
            param=f"{path}.source",
        ) from exc
    if isinstance(source, wire.PlainTextSource):
        return TextPart(source.data)
    data_url = f"data:{source.media_type};base64,{source.data}"
    return FilePart(FileRef(file_data=data_url, filename=block.title or "document.pdf"))


def _misplaced(block: wire.RequestBlock, role: str, path: str) -> InvalidRequestError:
    kind = block.__struct_config__.tag
    return InvalidRequestError(
        f"{path}: a {kind} block is not allowed in a {role} message.", param=path
    )


def _tool(tool: wire.ToolParam) -> Tool:
    definition = FunctionDefinition(
        tool.name, tool.description, parameters=tool.input_schema, strict=tool.strict
    )
    return Tool("function", definition, _cache_control(tool.cache_control))


def _tool_choice(choice: wire.ToolChoiceParam) -> ToolChoice:
    match choice.type:
        case "auto":
            return "auto"
        case "any":
            return "required"
        case "none":
            return "none"
    if not choice.name:
        raise InvalidRequestError(
            "tool_choice.name is required when tool_choice.type is 'tool'.",
            param="tool_choice.name",
        )
    return NamedToolChoice("function", ToolChoiceFunction(choice.name))


def _user_id(metadata: Raw | UnsetType) -> str | None:
    if isinstance(metadata, UnsetType):
        return None
    try:
        return _metadata_decoder.decode(metadata).user_id
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(
            "metadata must be an object whose user_id is a string.", param="metadata"
        ) from exc


# ---------------------------------------------------------------- response


def to_message(completion: ChatCompletion, *, model: str) -> wire.Message:
    """The Anthropic answer for a canonical completion.

    Args:
        completion: The gateway's answer; only its first choice is used (the route never asks
            for more than one).
        model: The public model name the client asked for, reported back as Anthropic does.
    """
    content: list[wire.ResponseBlock] = []
    finish_reason: str | None = None
    stop_sequence: str | None = None
    if completion.choices:
        choice = completion.choices[0]
        message = choice.message
        content.extend(_thinking_blocks(message.thinking_blocks))
        content.extend(wire.TextBlock(text) for text in (message.content, message.refusal) if text)
        content.extend(
            wire.ToolUseBlock(call.id, call.function.name, tool_input(call.function.arguments))
            for call in message.tool_calls or []
        )
        finish_reason = "content_filter" if message.refusal else choice.finish_reason
        stop_sequence = _stop_sequence(choice.stop_reason)
    reason = stop_reason(finish_reason, stop_sequence=stop_sequence)
    return wire.Message(
        id=message_id(completion.id),
        type="message",
        role="assistant",
        model=model,
        content=content,
        stop_reason=reason,
        stop_sequence=stop_sequence if reason == "stop_sequence" else None,
        usage=usage_of(completion.usage),
    )


def _thinking_blocks(blocks: ThinkingBlocks | None) -> list[wire.ResponseBlock]:
    return [
        wire.ThinkingBlock(block.thinking, block.signature)
        if isinstance(block, ThinkingBlock)
        else wire.RedactedThinkingBlock(block.data)
        for block in blocks or ()
    ]


def message_id(completion_id: str) -> str:
    """A `msg_` id for a canonical completion id, stable so logs can be matched up."""
    if completion_id.startswith("msg_"):
        return completion_id
    return "msg_" + completion_id.removeprefix("chatcmpl-")


def stop_reason(finish_reason: str | None, *, stop_sequence: str | None = None) -> wire.StopReason:
    """The Anthropic `stop_reason` for a canonical `finish_reason`.

    Args:
        finish_reason: The canonical choice's finish reason.
        stop_sequence: The stop sequence that ended the answer, when the provider said.
    """
    match finish_reason:
        case "stop" if stop_sequence is not None:
            return "stop_sequence"
        case "length":
            return "max_tokens"
        case "tool_calls" | "function_call":
            return "tool_use"
        case "content_filter":
            return "refusal"
    return "end_turn"


def _stop_sequence(stop_reason: StopReason) -> str | None:
    # An int is a stop token id (vLLM), which Anthropic's `stop_sequence` cannot hold.
    return stop_reason if isinstance(stop_reason, str) else None


def usage_of(usage: Usage | None) -> wire.Usage:
    """Anthropic counts prompt tokens read from and written to the cache apart from
    `input_tokens`; OpenAI includes them."""
    if usage is None:
        return wire.Usage(
            input_tokens=0,
            output_tokens=0,
            cache_creation_input_tokens=0,
            cache_read_input_tokens=0,
        )
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    written = (details.cache_write_tokens or 0) if details else 0
    reasoning = usage.completion_tokens_details
    thinking = reasoning.reasoning_tokens if reasoning else None
    return wire.Usage(
        input_tokens=max(0, usage.prompt_tokens - cached - written),
        output_tokens=usage.completion_tokens,
        cache_creation_input_tokens=written,
        cache_read_input_tokens=cached,
        output_tokens_details=None if thinking is None else wire.OutputTokensDetails(thinking),
    )


def tool_input(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as a tool_use `input` object (see the module docstring)."""
    if not arguments.strip():
        return {}
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return {RAW_ARGUMENTS_KEY: arguments}
    if isinstance(value, dict):
        return value
    return {RAW_ARGUMENTS_KEY: arguments}


# ---------------------------------------------------------------- stream

_TEXT: Literal[-1] = -1  # the open block is a text block (tool calls have indexes ≥ 0)
_THINKING: Literal[-2] = -2  # the open block is a thinking block


class AnthropicStreamWriter:
    """Turns one request's canonical chunks into Anthropic stream events.

    Use a fresh writer per request: `feed` every chunk in order, then `finish` once the stream
    ended normally (never after a failure: the route sends an `error` event instead).
    Text and tool calls become content blocks with increasing indexes; a block is closed
    before the next one opens, as Anthropic's stream never interleaves blocks.

    Args:
        model: The public model name the client asked for.
        provider: The provider id, named in the error raised for an out-of-order stream.
    """

    def __init__(self, model: str, *, provider: str) -> None:
        self._model = model
        self._provider = provider
        self._is_started = False
        self._block_count = 0
        self._open: int | None = None  # _TEXT, a canonical tool-call index, or nothing
        self._closed_tools: set[int] = set()
        self._finish_reason: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None

    def feed(self, chunk: ChatCompletionChunk) -> list[wire.StreamEvent]:
        """The events for one chunk (often none, for a usage-only or empty chunk).

        Raises:
            UpstreamProtocolError: A tool call's fragments resumed after another block began,
                which Anthropic's block model cannot express.
        """
        events: list[wire.StreamEvent] = []
        if not self._is_started:
            events.append(self._start(chunk))
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # the route asks for one choice; others cannot be expressed anyway
            self._feed_delta(choice.delta, events)
            if choice.delta.refusal:
                self._finish_reason = "content_filter"
            elif choice.finish_reason and self._finish_reason != "content_filter":
                self._finish_reason = choice.finish_reason
                self._stop_sequence = _stop_sequence(choice.stop_reason)
        return events

    def finish(self) -> list[wire.StreamEvent]:
        """The closing events: the open block's stop, `message_delta`, `message_stop`."""
        events: list[wire.StreamEvent] = []
        if not self._is_started:
            events.append(self._start(None))
        self._close(events)
        usage = usage_of(self._usage)
        delta_usage = wire.DeltaUsage(output_tokens=usage.output_tokens)
        if self._usage is not None:  # message_start could only say 0: correct it here
            delta_usage.input_tokens = usage.input_tokens
            delta_usage.cache_read_input_tokens = usage.cache_read_input_tokens
            delta_usage.cache_creation_input_tokens = usage.cache_creation_input_tokens
        reason = stop_reason(self._finish_reason, stop_sequence=self._stop_sequence)
        stop_sequence = self._stop_sequence if reason == "stop_sequence" else None
        body = wire.MessageDeltaBody(stop_reason=reason, stop_sequence=stop_sequence)
        events.append(wire.MessageDeltaEvent(body, delta_usage))
        events.append(wire.MessageStopEvent())
        return events

    def _start(self, chunk: ChatCompletionChunk | None) -> wire.MessageStartEvent:
        self._is_started = True
        usage = usage_of(chunk.usage if chunk is not None else None)
        usage.output_tokens = 0  # output is counted in message_delta
        message = wire.Message(
            id=message_id(chunk.id if chunk is not None else ""),
            type="message",
            role="assistant",
            model=self._model,
            content=[],
            stop_reason=None,
            stop_sequence=None,
            usage=usage,
        )
        return wire.MessageStartEvent(message)

    def _feed_delta(self, delta: Delta, events: list[wire.StreamEvent]) -> None:
        if delta.reasoning_content or delta.thinking_blocks:
            self._feed_thinking(delta, events)
        for text in (delta.content, delta.refusal):
            if text:
                if self._open != _TEXT:
                    self._open_block(_TEXT, wire.TextBlock(""), events)
                events.append(self._block_delta(wire.TextDelta(text)))
        for call in delta.tool_calls or []:
            self._feed_tool_call(call, events)

    def _feed_thinking(self, delta: Delta, events: list[wire.StreamEvent]) -> None:
        """Reasoning text opens (or continues) a thinking block; a signed block with no text
        closes it with its `signature_delta`; a redacted block is a block of its own."""
        if delta.reasoning_content:
            if self._open != _THINKING:
                self._open_block(_THINKING, wire.ThinkingBlock("", ""), events)
            events.append(self._block_delta(wire.ThinkingDelta(delta.reasoning_content)))
        for block in delta.thinking_blocks or ():
            if isinstance(block, RedactedThinkingBlock):
                self._open_block(_THINKING, wire.RedactedThinkingBlock(block.data), events)
                self._close(events)
                continue
            if self._open != _THINKING:
                self._open_block(_THINKING, wire.ThinkingBlock(block.thinking, ""), events)
            elif block.thinking:
                events.append(self._block_delta(wire.ThinkingDelta(block.thinking)))
            if block.signature:
                events.append(self._block_delta(wire.SignatureDelta(block.signature)))
                self._close(events)

    def _feed_tool_call(self, call: ToolCallDelta, events: list[wire.StreamEvent]) -> None:
        function = call.function
        if self._open != call.index:
            if call.index in self._closed_tools:
                raise UpstreamProtocolError(
                    f"tool call {call.index} resumed after another block began",
                    provider=self._provider,
                )
            call_id = call.id or f"toolu_{self._block_count}"
            name = (function.name if function else None) or ""
            self._open_block(call.index, wire.ToolUseBlock(call_id, name, {}), events)
        if function is not None and function.arguments:
            events.append(self._block_delta(wire.InputJSONDelta(function.arguments)))

    def _open_block(
        self, key: int, block: wire.ResponseBlock, events: list[wire.StreamEvent]
    ) -> None:
        self._close(events)
        self._open = key
        events.append(wire.ContentBlockStartEvent(self._block_count, block))

    def _block_delta(self, delta: wire.BlockDelta) -> wire.ContentBlockDeltaEvent:
        return wire.ContentBlockDeltaEvent(self._block_count, delta)

    def _close(self, events: list[wire.StreamEvent]) -> None:
        if self._open is None:
            return
        if self._open >= 0:
            self._closed_tools.add(self._open)
        events.append(wire.ContentBlockStopEvent(self._block_count))
        self._open = None
        self._block_count += 1


__all__ = [
    "RAW_ARGUMENTS_KEY",
    "AnthropicStreamWriter",
    "message_id",
    "stop_reason",
    "to_chat_request",
    "to_message",
    "tool_input",
    "usage_of",
]
