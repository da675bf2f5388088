"""Anthropic Messages API wire types (`POST /v1/messages`), as msgspec structs.

Used both ways: by the Anthropic provider adapter (gateway → Anthropic) and by the inbound
Anthropic dialect and route (Anthropic SDK → gateway). Block and event unions are tagged by `type`.
Fields the gateway never interprets (`citations`, `metadata`) are opaque JSON.

A Messages request refuses fields it does not declare, at its top level and in its tools and
settings (`forbid_unknown_fields`), as Anthropic's API does: a field the gateway cannot carry to
the model is refused by name (the route words it as the API does), never dropped in silence.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

OpaqueJSON = Raw | UnsetType

# ---------------------------------------------------------------- content blocks


class CacheControl(Struct, omit_defaults=True):
    """A prompt-cache breakpoint; `ttl` "5m" (the default) or "1h"."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class Base64ImageSource(Struct, tag_field="type", tag="base64"):
    media_type: str
    data: str


class URLImageSource(Struct, tag_field="type", tag="url"):
    url: str


ImageSource = Base64ImageSource | URLImageSource


class Base64PDFSource(Struct, tag_field="type", tag="base64"):
    """A `document` block's source for an inline PDF (`DocumentBlock.source` holds it raw)."""

    media_type: Literal["application/pdf"]
    data: str


class PlainTextSource(Struct, tag_field="type", tag="text"):
    """A `document` block's source for inline plain text."""

    data: str
    media_type: str = "text/plain"


class TextBlock(Struct, tag_field="type", tag="text", omit_defaults=True):
    text: str
    cache_control: CacheControl | None = None
    citations: OpaqueJSON = UNSET


class ImageBlock(Struct, tag_field="type", tag="image", omit_defaults=True):
    source: ImageSource
    cache_control: CacheControl | None = None


class DocumentBlock(Struct, tag_field="type", tag="document", omit_defaults=True):
    source: Raw
    title: str | None = None
    context: str | None = None
    citations: OpaqueJSON = UNSET
    cache_control: CacheControl | None = None


class ToolUseBlock(Struct, tag_field="type", tag="tool_use", omit_defaults=True):
    id: str
    name: str
    # The tool's input is, by definition, whatever JSON object the tool's schema describes.
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(Struct, tag_field="type", tag="tool_result", omit_defaults=True):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock | DocumentBlock] | UnsetType = UNSET
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(Struct, tag_field="type", tag="thinking"):
    thinking: str
    # Always written (clients' types require it), empty at a streamed block's start, where
    # older API versions leave it out.
    signature: str = ""


class RedactedThinkingBlock(Struct, tag_field="type", tag="redacted_thinking"):
    data: str


RequestBlock = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
)
ResponseBlock = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock

# ---------------------------------------------------------------- request


class MessageParam(Struct):
    role: Literal["user", "assistant"]
    content: str | list[RequestBlock]


class ToolParam(Struct, omit_defaults=True, forbid_unknown_fields=True):
    """A client tool. (Server tools such as web search carry another `type` and are refused.)"""

    name: Annotated[str, Meta(min_length=1, max_length=128)]
    input_schema: dict[str, Any]
    description: str | None = None
    # Guaranteed schema conformance; only models with structured outputs take the field.
    strict: bool | None = None
    cache_control: CacheControl | None = None
    type: Literal["custom"] | None = None


class ToolChoiceParam(Struct, omit_defaults=True, forbid_unknown_fields=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class MetadataParam(Struct, omit_defaults=True):
    """The request's `metadata` (`MessagesRequest.metadata` holds it raw)."""

    user_id: str | None = None


class ThinkingParam(Struct, omit_defaults=True, forbid_unknown_fields=True):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class JSONOutputFormat(Struct, tag_field="type", tag="json_schema", forbid_unknown_fields=True):
    """Anthropic's structured outputs: the answer's text is JSON valid against `schema`."""

    # A JSON Schema: free-form by definition.
    schema: dict[str, Any]


class OutputConfig(Struct, omit_defaults=True, forbid_unknown_fields=True):
    """The request's `output_config`; of it, only the answer's `format` is carried."""

    format: JSONOutputFormat | None = None


class MessagesRequest(Struct, omit_defaults=True, forbid_unknown_fields=True):
    model: Annotated[str, Meta(min_length=1)]
    messages: list[MessageParam]
    max_tokens: Annotated[int, Meta(ge=1)]
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    metadata: OpaqueJSON = UNSET
    thinking: ThinkingParam | None = None
    service_tier: str | None = None
    output_config: OutputConfig | None = None
    # Marks the last cacheable block of the request (the API's shorthand for doing it by hand).
    cache_control: CacheControl | None = None


# ---------------------------------------------------------------- response


# The token counts have no default so that `omit_defaults` never drops a zero: clients read
# a missing count as None.
class OutputTokensDetails(Struct):
    thinking_tokens: int  # within output_tokens


class Usage(Struct, omit_defaults=True):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    service_tier: str | None = None
    output_tokens_details: OutputTokensDetails | None = None


StopReason = str  # end_turn | max_tokens | stop_sequence | tool_use | pause_turn | refusal


class Message(Struct):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ResponseBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: Usage


# ---------------------------------------------------------------- stream events


class MessageStartEvent(Struct, tag_field="type", tag="message_start"):
    message: Message


class ContentBlockStartEvent(Struct, tag_field="type", tag="content_block_start"):
    index: int
    content_block: ResponseBlock


class TextDelta(Struct, tag_field="type", tag="text_delta"):
    text: str


class InputJSONDelta(Struct, tag_field="type", tag="input_json_delta"):
    partial_json: str


class ThinkingDelta(Struct, tag_field="type", tag="thinking_delta"):
    thinking: str


class SignatureDelta(Struct, tag_field="type", tag="signature_delta"):
    signature: str


class CitationsDelta(Struct, tag_field="type", tag="citations_delta"):
    citation: Raw


BlockDelta = TextDelta | InputJSONDelta | ThinkingDelta | SignatureDelta | CitationsDelta


class ContentBlockDeltaEvent(Struct, tag_field="type", tag="content_block_delta"):
    index: int
    delta: BlockDelta


class ContentBlockStopEvent(Struct, tag_field="type", tag="content_block_stop"):
    index: int


class MessageDeltaBody(Struct):
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None


class DeltaUsage(Struct, omit_defaults=True):
    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: OutputTokensDetails | None = None


class MessageDeltaEvent(Struct, tag_field="type", tag="message_delta"):
    delta: MessageDeltaBody
    usage: DeltaUsage


class MessageStopEvent(Struct, tag_field="type", tag="message_stop"):
    pass


class PingEvent(Struct, tag_field="type", tag="ping"):
    pass


class ErrorDetail(Struct):
    type: str
    message: str


class ErrorEvent(Struct, tag_field="type", tag="error"):
    """Also the shape of Anthropic's HTTP error body: `{"type": "error", "error": {...}}`."""

    error: ErrorDetail


StreamEvent = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | PingEvent
    | ErrorEvent
)

# ---------------------------------------------------------------- codecs

request_decoder = msgspec.json.Decoder(MessagesRequest)
message_decoder = msgspec.json.Decoder(Message)
event_decoder = msgspec.json.Decoder(StreamEvent)
error_decoder = msgspec.json.Decoder(ErrorEvent)
