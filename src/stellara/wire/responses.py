"""OpenAI Responses API wire types (`/v1/responses`), as msgspec structs.

The shapes are those of OpenAI's published OpenAPI description (components `CreateResponse`,
`Response`, `ItemResource`, `ResponseStreamEvent`); the inbound Responses dialect translates
them to and from the canonical chat types.

Decoding a request is in two steps, because the API lets a message item leave out its `type`
(`{"role": "user", "content": "hi"}`) and msgspec's tagged unions need the tag: the request
keeps its `input` items raw, and `inbound.responses.input_items` decodes each one with
`item_decoders`, after reading its `type` with `item_type_decoder`.

Unknown top-level request fields are refused (a parameter is never dropped in silence); inside
items and content parts unknown fields are ignored, so that items a client got from any
Responses server can be sent back as they are. `ToolParam` and `ToolChoiceParam` are one struct
for every tool type so that a tool the gateway cannot run decodes and is refused by name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

OpaqueJSON = Raw | UnsetType
ItemStatus = Literal["in_progress", "completed", "incomplete"]

# ---------------------------------------------------------------- content parts


class InputText(Struct, tag_field="type", tag="input_text"):
    text: str


class InputImage(Struct, tag_field="type", tag="input_image"):
    # No omit_defaults: the spec requires `detail`, and null URLs and file ids are its own form.
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] = "auto"


class InputFile(Struct, tag_field="type", tag="input_file", omit_defaults=True):
    file_id: str | None = None
    filename: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class OutputText(Struct, tag_field="type", tag="output_text"):
    text: str
    # Both required by the spec, even when empty; citations are relayed as the client sent them.
    annotations: list[Raw] = []
    logprobs: list[Raw] = []


class Refusal(Struct, tag_field="type", tag="refusal"):
    refusal: str


class SummaryText(Struct, tag_field="type", tag="summary_text"):
    text: str


class ReasoningText(Struct, tag_field="type", tag="reasoning_text"):
    text: str


InputContent = InputText | InputImage | InputFile
OutputContent = OutputText | Refusal
MessageContent = InputText | InputImage | InputFile | OutputText | Refusal

# ---------------------------------------------------------------- items


class MessageItem(Struct, tag_field="type", tag="message", omit_defaults=True):
    """A message in a request's `input` (and, with its id and status, as stored)."""

    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[MessageContent]
    id: str | None = None
    status: ItemStatus | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class OutputMessage(Struct, tag_field="type", tag="message"):
    """The assistant's message in a response's `output`."""

    id: str
    status: ItemStatus
    role: Literal["assistant"]
    content: list[OutputContent]


class FunctionCall(Struct, tag_field="type", tag="function_call", omit_defaults=True):
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: ItemStatus | None = None


class FunctionCallOutput(Struct, tag_field="type", tag="function_call_output", omit_defaults=True):
    output: str | list[InputContent]
    call_id: str | None = None  # nullable in the spec; the gateway requires it
    id: str | None = None
    status: ItemStatus | None = None


class ReasoningItem(Struct, tag_field="type", tag="reasoning", omit_defaults=True):
    id: str
    summary: list[SummaryText]
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: ItemStatus | None = None


class ItemReference(Struct, tag_field="type", tag="item_reference"):
    id: str


InputItem = MessageItem | FunctionCall | FunctionCallOutput | ReasoningItem | ItemReference
OutputItem = OutputMessage | FunctionCall | ReasoningItem


class ItemType(Struct):
    """An input item's `type` alone; a message may leave it out."""

    type: str | None = None


# ---------------------------------------------------------------- request


class ToolParam(Struct, omit_defaults=True):
    """A tool of any type; only `function` tools are translated, the others refused by name."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema, relayed as given
    strict: bool | None = None
    defer_loading: bool | None = None
    output_schema: dict[str, Any] | None = None
    allowed_callers: list[Raw] | None = None


class AllowedTool(Struct, omit_defaults=True):
    type: str
    name: str | None = None


class ToolChoiceParam(Struct, omit_defaults=True):
    """A tool choice object of any type: `function` (with `name`), `allowed_tools` (with
    `mode` and `tools`), or a built-in tool's."""

    type: str
    name: str | None = None
    mode: Literal["auto", "required"] | None = None
    tools: list[AllowedTool] | None = None


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceParam


class TextFormat(Struct, tag_field="type", tag="text", forbid_unknown_fields=True):
    pass


class JSONObjectFormat(Struct, tag_field="type", tag="json_object", forbid_unknown_fields=True):
    pass


class JSONSchemaFormat(
    Struct, tag_field="type", tag="json_schema", omit_defaults=True, forbid_unknown_fields=True
):
    name: Annotated[str, Meta(pattern="^[a-zA-Z0-9_-]+$", max_length=64)]
    schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


class TextParam(Struct, omit_defaults=True, forbid_unknown_fields=True):
    format: TextFormat | JSONObjectFormat | JSONSchemaFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
SummaryMode = Literal["auto", "concise", "detailed"]


class ReasoningParam(Struct, omit_defaults=True, forbid_unknown_fields=True):
    effort: Effort | None = None
    summary: SummaryMode | None = None
    generate_summary: SummaryMode | None = None  # deprecated spelling of `summary`
    mode: str | None = None
    context: Literal["auto", "current_turn", "all_turns"] | None = None


class StreamOptionsParam(Struct, omit_defaults=True, forbid_unknown_fields=True):
    include_obfuscation: bool | None = None


Include = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
ServiceTier = Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"]
Metadata = Annotated[
    dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]],
    Meta(max_length=16),
]


class ResponsesRequest(Struct, omit_defaults=True, forbid_unknown_fields=True):
    """`POST /v1/responses`. Every field of the spec's `CreateResponse` is declared, so each
    one a client sends is either honoured or refused by name (see `inbound.responses`)."""

    model: Annotated[str, Meta(min_length=1)]
    input: str | list[Raw] = []
    instructions: str | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    reasoning: ReasoningParam | None = None
    max_output_tokens: Annotated[int, Meta(ge=16)] | None = None
    max_tool_calls: Annotated[int, Meta(ge=0)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    metadata: Metadata | None = None
    user: str | None = None
    safety_identifier: Annotated[str, Meta(max_length=64)] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: OpaqueJSON = UNSET
    service_tier: ServiceTier | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    include: list[Include] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    stream: bool | None = None
    stream_options: StreamOptionsParam | None = None
    background: bool | None = None
    prompt: OpaqueJSON = UNSET
    conversation: OpaqueJSON = UNSET
    context_management: OpaqueJSON = UNSET
    moderation: OpaqueJSON = UNSET

    @property
    def is_streaming(self) -> bool:
        return bool(self.stream)


# ---------------------------------------------------------------- response


class FunctionTool(Struct, tag_field="type", tag="function"):
    """A function tool as a response echoes it (`parameters` and `strict` required, nullable)."""

    name: str
    parameters: dict[str, Any] | None
    strict: bool | None
    description: str | None = None


class ResponseError(Struct):
    code: str  # one of the spec's `ResponseErrorCode`
    message: str


class IncompleteDetails(Struct):
    reason: Literal["max_output_tokens", "content_filter"]


class InputTokensDetails(Struct):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(Struct):
    reasoning_tokens: int


class Usage(Struct):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]


class Response(Struct, kw_only=True):
    """The response object. No omit_defaults: the spec requires its nullable fields present.
    `usage` is left out until it is known (the spec's usage is an object, never null); `user`
    when the request had none (the spec's user is a string, never null)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: ResponseStatus
    background: bool
    completed_at: int | None
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: str | None
    prompt_cache_key: str | None
    reasoning: ReasoningParam | None
    safety_identifier: str | None
    service_tier: str | None
    store: bool
    temperature: float | None
    text: TextParam
    tool_choice: ToolChoice
    tools: list[FunctionTool]
    top_p: float | None
    truncation: Literal["auto", "disabled"]
    usage: Usage | UnsetType = UNSET
    user: str | UnsetType = UNSET
    metadata: dict[str, str]


# ---------------------------------------------------------------- stream events


class ResponseCreatedEvent(Struct, tag_field="type", tag="response.created"):
    response: Response
    sequence_number: int


class ResponseInProgressEvent(Struct, tag_field="type", tag="response.in_progress"):
    response: Response
    sequence_number: int


class ResponseCompletedEvent(Struct, tag_field="type", tag="response.completed"):
    response: Response
    sequence_number: int


class ResponseIncompleteEvent(Struct, tag_field="type", tag="response.incomplete"):
    response: Response
    sequence_number: int


class ResponseFailedEvent(Struct, tag_field="type", tag="response.failed"):
    response: Response
    sequence_number: int


class OutputItemAddedEvent(Struct, tag_field="type", tag="response.output_item.added"):
    output_index: int
    item: OutputItem
    sequence_number: int


class OutputItemDoneEvent(Struct, tag_field="type", tag="response.output_item.done"):
    output_index: int
    item: OutputItem
    sequence_number: int


class ContentPartAddedEvent(Struct, tag_field="type", tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputContent
    sequence_number: int


class ContentPartDoneEvent(Struct, tag_field="type", tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputContent
    sequence_number: int


class OutputTextDeltaEvent(Struct, tag_field="type", tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    sequence_number: int
    logprobs: list[Raw] = []


class OutputTextDoneEvent(Struct, tag_field="type", tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    sequence_number: int
    logprobs: list[Raw] = []


class RefusalDeltaEvent(Struct, tag_field="type", tag="response.refusal.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    sequence_number: int


class RefusalDoneEvent(Struct, tag_field="type", tag="response.refusal.done"):
    item_id: str
    output_index: int
    content_index: int
    refusal: str
    sequence_number: int


class FunctionCallArgumentsDeltaEvent(
    Struct, tag_field="type", tag="response.function_call_arguments.delta"
):
    item_id: str
    output_index: int
    delta: str
    sequence_number: int


class FunctionCallArgumentsDoneEvent(
    Struct, tag_field="type", tag="response.function_call_arguments.done"
):
    item_id: str
    output_index: int
    name: str
    arguments: str
    sequence_number: int


class ReasoningSummaryPartAddedEvent(
    Struct, tag_field="type", tag="response.reasoning_summary_part.added"
):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText
    sequence_number: int


class ReasoningSummaryPartDoneEvent(
    Struct, tag_field="type", tag="response.reasoning_summary_part.done"
):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText
    sequence_number: int


class ReasoningSummaryTextDeltaEvent(
    Struct, tag_field="type", tag="response.reasoning_summary_text.delta"
):
    item_id: str
    output_index: int
    summary_index: int
    delta: str
    sequence_number: int


class ReasoningSummaryTextDoneEvent(
    Struct, tag_field="type", tag="response.reasoning_summary_text.done"
):
    item_id: str
    output_index: int
    summary_index: int
    text: str
    sequence_number: int


class ErrorEvent(Struct, tag_field="type", tag="error"):
    code: str | None
    message: str
    param: str | None
    sequence_number: int


StreamEvent = (
    ResponseCreatedEvent
    | ResponseInProgressEvent
    | ResponseCompletedEvent
    | ResponseIncompleteEvent
    | ResponseFailedEvent
    | OutputItemAddedEvent
    | OutputItemDoneEvent
    | ContentPartAddedEvent
    | ContentPartDoneEvent
    | OutputTextDeltaEvent
    | OutputTextDoneEvent
    | RefusalDeltaEvent
    | RefusalDoneEvent
    | FunctionCallArgumentsDeltaEvent
    | FunctionCallArgumentsDoneEvent
    | ReasoningSummaryPartAddedEvent
    | ReasoningSummaryPartDoneEvent
    | ReasoningSummaryTextDeltaEvent
    | ReasoningSummaryTextDoneEvent
    | ErrorEvent
)

# ---------------------------------------------------------------- codecs


class InputItemList(Struct, kw_only=True):
    """A page of a stored response's input items (`GET /v1/responses/{id}/input_items`);
    `first_id` and `last_id` are empty for an empty page (the spec's are strings)."""

    object: Literal["list"] = "list"
    data: list[InputItem]
    first_id: str
    last_id: str
    has_more: bool


request_decoder = msgspec.json.Decoder(ResponsesRequest)
response_decoder = msgspec.json.Decoder(Response)
event_decoder = msgspec.json.Decoder(StreamEvent)
items_decoder = msgspec.json.Decoder(list[InputItem])
"""Stored input items: each carries its `type`, so the tagged union decodes them."""
item_type_decoder = msgspec.json.Decoder(ItemType)
item_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    "message": msgspec.json.Decoder(MessageItem),
    "function_call": msgspec.json.Decoder(FunctionCall),
    "function_call_output": msgspec.json.Decoder(FunctionCallOutput),
    "reasoning": msgspec.json.Decoder(ReasoningItem),
    "item_reference": msgspec.json.Decoder(ItemReference),
}
"""A decoder per input item `type` (a message may leave `type` out)."""
