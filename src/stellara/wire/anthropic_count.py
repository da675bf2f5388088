"""Anthropic's token counting wire types (`POST /v1/messages/count_tokens`), both ways.

A count takes the prompt of a Messages request (model, messages, system, tools, tool choice,
thinking) and none of its generation settings; it answers `{"input_tokens": N}`.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct

from stellara.wire.anthropic import (
    MessageParam,
    MessagesRequest,
    TextBlock,
    ThinkingParam,
    ToolChoiceParam,
    ToolParam,
)

GENERATION_FIELDS = (
    "max_tokens",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "service_tier",
)
"""Fields of a Messages request that a count refuses, as Anthropic's API does."""


class CountTokensRequest(MessagesRequest):
    """What an Anthropic client sends to count: a Messages request's prompt. Decoded as one,
    so it translates as one; `max_tokens` is not required here, and refused when sent (with
    the other `GENERATION_FIELDS`)."""

    max_tokens: int | None = None  # type: ignore[assignment]  # a count has none


class CountTokensBody(Struct, omit_defaults=True):
    """What the gateway sends Anthropic to count a prompt."""

    model: str
    messages: list[MessageParam]
    system: str | list[TextBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = None


class MessageTokensCount(Struct):
    """The answer, from Anthropic and from the gateway alike."""

    input_tokens: int


count_request_decoder = msgspec.json.Decoder(CountTokensRequest)
count_decoder = msgspec.json.Decoder(MessageTokensCount)
