"""Bounds on the shape of a model call: how many messages, content parts, tools and options.

Each item a request holds is work for the gateway, on the event loop that serves every other
request: decoding and translating the dialect, estimating tokens, hashing the cache key,
building the provider's body. Measured per item, that is 2-15 µs (Anthropic and Gemini
bodies take the most), so a 3.5 MB body of 110,000 tiny content blocks held the loop for
~200 ms before it was refused. The counts are checked right after the body is decoded,
before any of that work: a request over a bound gets a 400 naming it, in the route's
dialect. The body's size in bytes is bounded before, by `server.max_body_bytes` (413), and
its nesting depth by the decoder.

The bounds are generous for real workloads, and fixed: no real client needs more. The
longest agent transcript a 1M-token context holds, 100-token tool rounds, is 10,000 rounds:
20,000 messages, in OpenAI's format as in Anthropic's.
"""

from __future__ import annotations

from collections.abc import Sized

from stellara.errors import InvalidRequestError
from stellara.schema.chat import AssistantMessage, ChatRequest
from stellara.schema.completions import CompletionRequest
from stellara.schema.embeddings import EmbeddingsRequest
from stellara.wire import anthropic as wire
from stellara.wire import google_inbound as gemini
from stellara.wire import responses

MAX_MESSAGES = 20_000
# Across all messages: content parts and tool calls (OpenAI), or content blocks, system
# blocks and the blocks inside tool results (Anthropic); two per message of that transcript.
MAX_CONTENT_PARTS = 40_000
# OpenAI takes up to 128 functions; agents with many MCP servers load a few hundred.
MAX_TOOLS = 512
# OpenAI takes up to 4 stop sequences and Gemini 5.
MAX_STOP_SEQUENCES = 64
# Options that name a few things each; unbounded, each entry is decoded and hashed.
MAX_LOGIT_BIAS = 1024  # one entry per biased token
MAX_METADATA = 64  # OpenAI takes 16 pairs
MAX_MODALITIES = 16  # "text", "audio"

ERROR_CODE = "array_above_max_length"  # OpenAI's code for a list that is too long


def check_bounds(
    request: ChatRequest
    | wire.MessagesRequest
    | responses.ResponsesRequest
    | EmbeddingsRequest
    | gemini.GenerateContentParams
    | gemini.CountTokensParams
    | gemini.EmbedContentParams
    | gemini.BatchEmbedContentsParams
    | CompletionRequest,
) -> None:
    """Refuse a decoded request that holds more than the bounds allow.

    Embeddings requests are bounded by their schema (2,048 inputs). A Responses request's
    content parts are counted as its items are decoded (`inbound.responses.input_items`).

    Raises:
        InvalidRequestError: 400 naming the field, how many it holds and the bound.
    """
    if isinstance(request, ChatRequest):
        _check_chat(request)
    elif isinstance(request, wire.MessagesRequest):
        _check_messages(request)
    elif isinstance(request, responses.ResponsesRequest):
        if isinstance(request.input, list):
            _at_most("input", "items", request.input, MAX_MESSAGES)
        _at_most("tools", "tools", request.tools, MAX_TOOLS)
    elif isinstance(request, CompletionRequest):
        if isinstance(request.stop, list):
            _at_most("stop", "stop sequences", request.stop, MAX_STOP_SEQUENCES)
        _at_most("logit_bias", "entries", request.logit_bias, MAX_LOGIT_BIAS)
    elif isinstance(request, gemini.CountTokensParams):
        if request.generate_content_request is not None:
            _check_gemini(request.generate_content_request)
        _check_gemini_contents(request.contents or [])
    elif isinstance(request, gemini.GenerateContentParams):
        _check_gemini(request)


def _check_gemini(request: gemini.GenerateContentParams) -> None:
    _check_gemini_contents(request.contents)
    tools = sum(len(tool.function_declarations) for tool in request.tools or [])
    _at_most("tools", "function declarations", tools, MAX_TOOLS)
    config = request.generation_config
    stop = config.stop_sequences if config is not None else None
    _at_most("generationConfig.stopSequences", "stop sequences", stop, MAX_STOP_SEQUENCES)


def _check_gemini_contents(contents: list[gemini.ContentParam]) -> None:
    _at_most("contents", "contents", contents, MAX_MESSAGES)
    parts = sum(len(content.parts) for content in contents)
    _at_most("contents", "parts in all", parts, MAX_CONTENT_PARTS)


def _check_chat(request: ChatRequest) -> None:
    messages = request.messages
    _at_most("messages", "messages", messages, MAX_MESSAGES)
    parts = 0
    for message in messages:
        if isinstance(message.content, list):
            parts += len(message.content)
        if isinstance(message, AssistantMessage) and message.tool_calls:
            parts += len(message.tool_calls)
    _at_most("messages", "content parts and tool calls in all", parts, MAX_CONTENT_PARTS)
    _at_most("tools", "tools", request.tools, MAX_TOOLS)
    if isinstance(request.stop, list):
        _at_most("stop", "stop sequences", request.stop, MAX_STOP_SEQUENCES)
    _at_most("logit_bias", "entries", request.logit_bias, MAX_LOGIT_BIAS)
    _at_most("metadata", "entries", request.metadata, MAX_METADATA)
    _at_most("modalities", "modalities", request.modalities, MAX_MODALITIES)


def _check_messages(request: wire.MessagesRequest) -> None:
    messages = request.messages
    _at_most("messages", "messages", messages, MAX_MESSAGES)
    blocks = len(request.system) if isinstance(request.system, list) else 0
    for message in messages:
        if isinstance(message.content, list):
            blocks += len(message.content)
    _at_most("messages", "content blocks in all", blocks, MAX_CONTENT_PARTS)
    for message in messages:  # blocks inside tool results: now a bounded walk
        if isinstance(message.content, list):
            blocks += sum(
                len(block.content)
                for block in message.content
                if isinstance(block, wire.ToolResultBlock) and isinstance(block.content, list)
            )
    _at_most("messages", "content blocks in all", blocks, MAX_CONTENT_PARTS)
    _at_most("tools", "tools", request.tools, MAX_TOOLS)
    _at_most("stop_sequences", "stop sequences", request.stop_sequences, MAX_STOP_SEQUENCES)


def _at_most(param: str, what: str, items: Sized | int | None, limit: int) -> None:
    count = items if isinstance(items, int) else len(items) if items is not None else 0
    if count > limit:
        raise InvalidRequestError(
            f"{param}: {count} {what}; at most {limit} are accepted.", param=param, code=ERROR_CODE
        )
