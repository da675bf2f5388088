"""Pure translation between canonical chat types and Anthropic's Messages API.

Where the two APIs do not line up, this module decides:

* `system` and `developer` messages, wherever they stand, become the top-level `system` prompt
  (Anthropic has no system turn inside the conversation), joined by blank lines; when a part
  of them carries `cache_control`, the system prompt is a list of text blocks instead, one per
  message or part, so each breakpoint stays where the client put it.
* `cache_control` (the canonical `CacheControl`) goes on the block made from the part, tool
  call, tool message or tool that carried it, unchanged.
* Consecutive turns of the same role are merged into one: Anthropic would combine them anyway,
  and compatible servers that predate that rule reject them. `tool` messages become
  `tool_result` blocks of a user turn, so a run of tool answers is one user turn.
* A conversation that starts with an assistant turn is sent as it is: the current API reference
  no longer requires a leading user turn, and a model that does gets to say so with a 400 the
  client sees, rather than the gateway inventing a user message. Likewise a conversation that
  ends with an assistant turn goes as it is, which Anthropic reads as a prefill to continue (and
  models without prefill refuse with a 400) where OpenAI would start a new turn.
* `temperature` is sent as given, not scaled, so the values clients tune for both vendors (0, 0.2,
  0.7, 1) keep their meaning; above 1, Anthropic's maximum, the parameter policy refuses it or
  drops it before it gets here (`params.py`).
  API version 2026-10-21 refuses `temperature` and `top_p` outright (even at their defaults), so
  with that version they are not sent at all (`allows_sampling=False`).
* `response_format` (JSON mode) becomes a forced *answer tool* whose input is the answer, given
  back as the message's text content; `tools` holds the rules, also for client tools beside it.
* `n > 1`, audio input and deprecated `function` messages are refused with a 400; parameters
  Anthropic lacks (`seed`, penalties, `logit_bias`, `logprobs`, …) are not sent.
* Extended thinking (`thinking`, or `reasoning_effort` as a budget) and its blocks in the
  history: see `thinking`. In answers, thinking blocks become the message's
  `reasoning_content` (their text) and `thinking_blocks` (the signed blocks, to hand back);
  Anthropic's count of thinking tokens, when it gives one, is the usage's `reasoning_tokens`.
* `top_k` is sent as it came (not with API version 2026-10-21, which refuses it).
* A stop on one of the request's stop sequences is finish reason "stop" with the sequence in
  the choice's `stop_reason` (the field OpenAI-compatible servers such as vLLM use for it).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from stellara import _json
from stellara.errors import InvalidRequestError, UpstreamProtocolError
from stellara.providers.anthropic.thinking import (
    canonical_thinking_blocks,
    check_forced_tool,
    thinking_blocks_of,
    thinking_of,
)
from stellara.providers.anthropic.tools import cache_control_of, tools_of
from stellara.schema.chat import (
    AssistantMessage,
    CacheControl,
    ChatCompletion,
    ChatRequest,
    Choice,
    CompletionTokensDetails,
    DeveloperMessage,
    FilePart,
    FileRef,
    FunctionCall,
    ImagePart,
    Message,
    PromptTokensDetails,
    ResponseMessage,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    Usage,
    UserContentPart,
    UserMessage,
)
from stellara.wire import anthropic as wire

Role = Literal["user", "assistant"]

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # Only server tools pause a turn, and the gateway sends none; the text so far is the answer.
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# ---------------------------------------------------------------- request


def build_messages_request(
    request: ChatRequest,
    model: str,
    *,
    default_max_tokens: int,
    allows_sampling: bool = True,
    strict_tools: bool = False,
) -> wire.MessagesRequest:
    """The Messages API request asking `model`; raises `InvalidRequestError` for what it lacks.

    Args:
        request: The canonical request.
        model: The provider's model name.
        default_max_tokens: `max_tokens` when the client gave none; Anthropic requires one.
        allows_sampling: Whether the API version takes `temperature` and `top_p`.
        strict_tools: Whether the models take `strict` on tools (see `tools`).
    """
    if request.n is not None and request.n > 1:
        raise InvalidRequestError(
            "this model's provider returns one choice per request; n must be 1", param="n"
        )
    system, messages = _conversation(request.messages)
    tools, tool_choice = tools_of(request, strict_tools=strict_tools)
    thinking, max_tokens = thinking_of(
        request,
        max_tokens=request.max_completion_tokens or request.max_tokens,
        default_max_tokens=default_max_tokens,
    )
    check_forced_tool(request, thinking, tool_choice)
    user = request.user or request.safety_identifier
    temperature = request.temperature if allows_sampling else None
    return wire.MessagesRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        system=_system(system),
        stop_sequences=[request.stop] if isinstance(request.stop, str) else request.stop,
        stream=True if request.is_streaming else None,
        temperature=temperature,
        top_p=request.top_p if allows_sampling else None,
        top_k=request.top_k if allows_sampling else None,
        tools=tools,
        tool_choice=tool_choice,
        thinking=thinking,
        metadata=msgspec.Raw(_json.encode(wire.MetadataParam(user_id=user))) if user else UNSET,
    )


def build_messages_body(
    request: ChatRequest,
    model: str,
    *,
    default_max_tokens: int,
    allows_sampling: bool = True,
    strict_tools: bool = False,
) -> bytes:
    """The JSON body for `POST /v1/messages`; see `build_messages_request`."""
    messages_request = build_messages_request(
        request,
        model,
        default_max_tokens=default_max_tokens,
        allows_sampling=allows_sampling,
        strict_tools=strict_tools,
    )
    return _json.encode(messages_request)


def _conversation(
    messages: list[Message],
) -> tuple[list[wire.TextBlock], list[wire.MessageParam]]:
    system: list[wire.TextBlock] = []
    turns: list[tuple[Role, list[wire.RequestBlock]]] = []
    for at, message in enumerate(messages):
        if isinstance(message, SystemMessage | DeveloperMessage):
            system.extend(_system_blocks(message.content))
            continue
        role, blocks = _turn(message, at)
        if not blocks:
            continue  # Anthropic refuses empty turns; an empty message says nothing anyway
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return system, [_message_param(r, b) for r, b in turns]


def _system_blocks(content: str | list[TextPart]) -> list[wire.TextBlock]:
    if isinstance(content, str) or not any(part.cache_control for part in content):
        text = _plain_text(content)
        return [wire.TextBlock(text)] if text else []
    return [
        wire.TextBlock(part.text, cache_control=cache_control_of(part.cache_control))
        for part in content
        if part.text
    ]


def _system(blocks: list[wire.TextBlock]) -> str | list[wire.TextBlock] | None:
    if any(block.cache_control for block in blocks):
        return blocks
    return "\n\n".join(block.text for block in blocks) or None


def _message_param(role: Role, blocks: list[wire.RequestBlock]) -> wire.MessageParam:
    # A lone text block goes as a plain string, as Anthropic's own examples write it.
    if len(blocks) == 1 and isinstance(blocks[0], wire.TextBlock) and not blocks[0].cache_control:
        return wire.MessageParam(role, blocks[0].text)
    return wire.MessageParam(role, blocks)


def _turn(message: Message, at: int) -> tuple[Role, list[wire.RequestBlock]]:
    if isinstance(message, UserMessage):
        return "user", _user_blocks(message.content, at)
    if isinstance(message, AssistantMessage):
        return "assistant", _assistant_blocks(message, at)
    if isinstance(message, ToolMessage):
        return "user", [_tool_result(message)]
    raise InvalidRequestError(
        "deprecated `function` messages are not supported by this model's provider; "
        "use `tool` messages",
        param=f"messages[{at}]",
    )


def _tool_result(message: ToolMessage) -> wire.ToolResultBlock:
    content = message.content
    result: str | list[wire.TextBlock | wire.ImageBlock | wire.DocumentBlock]
    if isinstance(content, str):
        result = content
    else:
        # Anthropic takes cache_control on the tool_result only, never inside its content.
        result = [wire.TextBlock(part.text) for part in content if part.text]
    breakpoint_ = message.cache_control or _lastcache_control_of(content)
    # An empty result is sent without content: Anthropic refuses empty text blocks.
    return wire.ToolResultBlock(
        message.tool_call_id, content=result or UNSET, cache_control=cache_control_of(breakpoint_)
    )


def _lastcache_control_of(content: str | list[TextPart]) -> CacheControl | None:
    if isinstance(content, str):
        return None
    return next((part.cache_control for part in reversed(content) if part.cache_control), None)


def _plain_text(content: str | list[TextPart]) -> str:
    return content if isinstance(content, str) else "\n".join(part.text for part in content)


def _user_blocks(content: str | list[UserContentPart], at: int) -> list[wire.RequestBlock]:
    if isinstance(content, str):
        return [wire.TextBlock(content)] if content else []
    blocks: list[wire.RequestBlock] = []
    for index, part in enumerate(content):
        param = f"messages[{at}].content[{index}]"
        if isinstance(part, TextPart):
            if part.text:  # Anthropic refuses empty text blocks
                blocks.append(wire.TextBlock(part.text, cache_control_of(part.cache_control)))
        elif isinstance(part, ImagePart):
            source = _image_source(part.image_url.url, param)
            blocks.append(wire.ImageBlock(source, cache_control_of(part.cache_control)))
        elif isinstance(part, FilePart):
            document = _document(part.file, param)
            document.cache_control = cache_control_of(part.cache_control)
            blocks.append(document)
        else:
            raise InvalidRequestError(
                "audio input is not supported by this model's provider", param=param
            )
    return blocks


def _image_source(url: str, param: str) -> wire.ImageSource:
    if url.startswith("data:"):
        media_type, data = _data_url(url, param)
        return wire.Base64ImageSource(media_type, data)
    if url.startswith(("https://", "http://")):
        return wire.URLImageSource(url)
    raise InvalidRequestError("an image URL must be an http(s) URL or a data URL", param=param)


def _document(file: FileRef, param: str) -> wire.DocumentBlock:
    # OpenAI file ids name files in OpenAI's storage; only inline data can travel.
    if file.file_data is None:
        raise InvalidRequestError(
            "this model's provider only takes files given inline as `file_data`", param=param
        )
    media_type, data = _data_url(file.file_data, param)
    if media_type != "application/pdf":
        raise InvalidRequestError(
            f"this model's provider takes PDF files only, not {media_type}", param=param
        )
    source = msgspec.Raw(_json.encode(wire.Base64PDFSource("application/pdf", data)))
    return wire.DocumentBlock(source, title=file.filename)


def _data_url(url: str, param: str) -> tuple[str, str]:
    """`(media_type, base64 data)` of a `data:<media type>;base64,<data>` URL."""
    header, comma, data = url.removeprefix("data:").partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or not media_type or encoding != "base64" or not data:
        raise InvalidRequestError(
            "a data URL must have the form data:<media type>;base64,<data>", param=param
        )
    return media_type, data


def _assistant_blocks(message: AssistantMessage, at: int) -> list[wire.RequestBlock]:
    if message.function_call is not None:
        raise InvalidRequestError(
            "deprecated `function_call` is not supported by this model's provider; "
            "use `tool_calls`",
            param=f"messages[{at}].function_call",
        )
    content = message.content
    texts: list[wire.TextBlock] = []
    if isinstance(content, str):
        texts.append(wire.TextBlock(content))
    elif content is not None:
        # A refusal in the history is what the assistant said, so it stays in the conversation.
        texts.extend(
            wire.TextBlock(part.text, cache_control_of(part.cache_control))
            if isinstance(part, TextPart)
            else wire.TextBlock(part.refusal)
            for part in content
        )
    if message.refusal:
        texts.append(wire.TextBlock(message.refusal))
    blocks = thinking_blocks_of(message)
    blocks.extend(block for block in texts if block.text)
    for index, call in enumerate(message.tool_calls or ()):
        param = f"messages[{at}].tool_calls[{index}].function.arguments"
        arguments = _arguments(call.function.arguments, param)
        cache_control = cache_control_of(call.cache_control)
        blocks.append(wire.ToolUseBlock(call.id, call.function.name, arguments, cache_control))
    return blocks


def _arguments(arguments: str, param: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}  # some clients send "" for a tool without parameters
    try:
        value = _json.loads(arguments)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        raise InvalidRequestError(
            "tool call arguments must be a JSON object, and these are not valid JSON", param=param
        ) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("tool call arguments must be a JSON object", param=param)
    return value


# ---------------------------------------------------------------- response


def parse_message(
    body: bytes, provider: str, *, created: int, answer_tool: str | None = None
) -> ChatCompletion:
    """Decode a `message` answer into a `chat.completion`; anything else breaks the protocol.

    Args:
        body: The HTTP body of a 200 answer.
        provider: The provider id, for errors.
        created: The completion's Unix time; the caller owns the clock.
        answer_tool: The name of the request's answer tool (`tools.answer_tool_name`), whose
            input is the answer's text.
    """
    try:
        message = wire.message_decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise UpstreamProtocolError(
            f"provider {provider!r} sent an invalid message: {exc}", provider=provider
        ) from exc
    return completion_from_message(message, created=created, answer_tool=answer_tool)


def completion_from_message(
    message: wire.Message, *, created: int, answer_tool: str | None = None
) -> ChatCompletion:
    """The `chat.completion` for an Anthropic `message`; see `parse_message`."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    thoughts: list[wire.ThinkingBlock | wire.RedactedThinkingBlock] = []
    for block in message.content:
        if isinstance(block, wire.TextBlock):
            texts.append(block.text)
        elif isinstance(block, wire.ToolUseBlock):
            arguments = _json.dumps(block.input).decode()
            if block.name == answer_tool:
                texts.append(arguments)
            else:
                calls.append(ToolCall(block.id, "function", FunctionCall(block.name, arguments)))
        else:
            thoughts.append(block)
    # OpenAI's convention: content is null when the answer is only tool calls.
    content = "".join(texts) if texts or not calls else None
    reasoning = "".join(b.thinking for b in thoughts if isinstance(b, wire.ThinkingBlock))
    answer = ResponseMessage(
        "assistant",
        content,
        tool_calls=calls or None,
        reasoning_content=reasoning or None,
        thinking_blocks=canonical_thinking_blocks(thoughts) or None,
    )
    return ChatCompletion(
        id=completion_id(message.id),
        object="chat.completion",
        created=created,
        model=message.model,
        choices=[
            Choice(
                0,
                answer,
                finish_reason_of(message.stop_reason, has_tool_calls=bool(calls)),
                stop_reason=stop_sequence_of(message.stop_reason, message.stop_sequence),
            )
        ],
        usage=canonical_usage(message.usage),
    )


def completion_id(message_id: str) -> str:
    """`chatcmpl-…` from `msg_…`, so clients see the id shape they expect, still traceable."""
    return "chatcmpl-" + message_id.removeprefix("msg_")


def finish_reason_of(stop_reason: str | None, *, has_tool_calls: bool) -> str:
    """OpenAI's `finish_reason` for an Anthropic `stop_reason` (unknown ones read as "stop").

    A `tool_use` stop without a tool call for the client is the answer tool's: a plain "stop".
    """
    if stop_reason == "tool_use" and not has_tool_calls:
        return "stop"
    return _FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def stop_sequence_of(stop_reason: str | None, stop_sequence: str | None) -> str | UnsetType:
    """The canonical choice's `stop_reason`: the stop sequence that ended the answer, if any."""
    if stop_reason == "stop_sequence" and stop_sequence is not None:
        return stop_sequence
    return UNSET


def canonical_usage(usage: wire.Usage) -> Usage:
    """OpenAI-shaped usage: cached and cache-writing input tokens are prompt tokens too.

    Anthropic's `input_tokens` counts only the uncached part of the prompt, while OpenAI's
    `prompt_tokens` counts all of it and reports the cached part inside it.
    """
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    prompt = usage.input_tokens + cache_read + cache_write
    details = None
    if usage.cache_read_input_tokens is not None or cache_write:
        details = PromptTokensDetails(
            cached_tokens=cache_read, cache_write_tokens=cache_write or None
        )
    output_details = usage.output_tokens_details
    reasoning = None
    if output_details is not None:
        reasoning = CompletionTokensDetails(reasoning_tokens=output_details.thinking_tokens)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=usage.output_tokens,
        total_tokens=prompt + usage.output_tokens,
        prompt_tokens_details=details,
        completion_tokens_details=reasoning,
    )
