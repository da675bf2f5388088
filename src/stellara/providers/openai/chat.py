"""Pure translation between canonical chat types and OpenAI's wire bodies.

The canonical request is OpenAI's, plus `cache_control` on parts, tool calls, tool messages and
tools (`schema.chat.CacheControl`) and Anthropic's signed `thinking_blocks` on assistant
messages. OpenAI (and Azure) cache every prompt prefix of 1024 tokens or more by themselves and
refuse fields they do not know, so the cache marks are taken off: the prefix they name is still
cached, automatically. Thinking blocks only the provider that signed them can read; they are
taken off too, as OpenAI keeps its own reasoning apart.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stellara import _json
from stellara.errors import UpstreamProtocolError
from stellara.schema.chat import (
    AssistantMessage,
    ChatCompletion,
    ChatRequest,
    Message,
    StreamOptions,
    ToolMessage,
    completion_decoder,
)

_INCLUDE_USAGE = StreamOptions(include_usage=True)


def build_chat_body(request: ChatRequest, model: str) -> bytes:
    """The JSON body for `POST /chat/completions` asking `model`.

    Streams always ask for usage, so the gateway can account for every streamed token; the
    extra usage chunk is withheld from clients that did not ask for it.
    """
    if request.is_streaming:
        request = msgspec.structs.replace(request, model=model, stream_options=_INCLUDE_USAGE)
    else:
        request = msgspec.structs.replace(request, model=model)
    if _has_extensions(request):
        request = _without_extensions(request)
    unknown = request.unknown_params
    if not unknown:
        return _json.encode(request)
    # Fields the canonical schema does not declare go at the top level, as the client sent
    # them: the server decides (OpenAI refuses them by name; vLLM takes its own).
    body = _json.encode(msgspec.structs.replace(request, unknown_params=None))
    fields = b",".join(_json.encode(name) + b":" + bytes(raw) for name, raw in unknown.items())
    return body[:-1] + b"," + fields + b"}"


def _has_extensions(request: ChatRequest) -> bool:
    if any(tool.cache_control for tool in request.tools or ()):
        return True
    for message in request.messages:
        if isinstance(message, ToolMessage) and message.cache_control:
            return True
        if isinstance(message, AssistantMessage) and (
            message.thinking_blocks or any(c.cache_control for c in message.tool_calls or ())
        ):
            return True
        content = getattr(message, "content", None)
        if isinstance(content, list) and any(getattr(p, "cache_control", None) for p in content):
            return True
    return False


def _without_extensions(request: ChatRequest) -> ChatRequest:
    """A copy of `request` with no `cache_control` or `thinking_blocks` (rare: only then is it
    rebuilt)."""
    tools = request.tools and [
        msgspec.structs.replace(tool, cache_control=None) for tool in request.tools
    ]
    messages = [
        _message_without_extensions(message)
        for message in request.messages
        if not _is_only_thinking(message)
    ]
    return msgspec.structs.replace(request, messages=messages, tools=tools)


def _is_only_thinking(message: Message) -> bool:
    """An assistant turn of thinking alone says nothing OpenAI could read (and it refuses an
    empty assistant message)."""
    return (
        isinstance(message, AssistantMessage)
        and bool(message.thinking_blocks)
        and not (message.content or message.tool_calls or message.function_call or message.refusal)
    )


def _message_without_extensions(message: Message) -> Message:
    changes: dict[str, Any] = {}
    if isinstance(message, ToolMessage):
        changes["cache_control"] = None
    if isinstance(message, AssistantMessage):
        changes["thinking_blocks"] = None
        calls = message.tool_calls
        if calls:
            changes["tool_calls"] = [msgspec.structs.replace(c, cache_control=None) for c in calls]
    content = message.content
    if isinstance(content, list):
        changes["content"] = [
            msgspec.structs.replace(part, cache_control=None)
            if getattr(part, "cache_control", None)
            else part
            for part in content
        ]
    return msgspec.structs.replace(message, **changes) if changes else message


def parse_chat_response(body: bytes, provider: str) -> ChatCompletion:
    """Decode a `chat.completion`; anything else is the provider breaking the protocol."""
    try:
        return completion_decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise UpstreamProtocolError(
            f"provider {provider!r} sent an invalid chat.completion: {exc}", provider=provider
        ) from exc
