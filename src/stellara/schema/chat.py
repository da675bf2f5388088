"""OpenAI Chat Completions request, response and stream chunk, as msgspec structs.

These are the canonical form inside the gateway: inbound dialects are translated to them and
provider adapters translate from them. msgspec rather than pydantic because they sit on the hot
path (decode + encode of every request and every stream chunk). Parts the gateway never
interprets (logprobs, annotations, audio) stay `msgspec.Raw`: typed as "opaque JSON", relayed
byte for byte.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

# Opaque JSON the gateway relays untouched; absent stays absent (msgspec cannot put `Raw` in a
# union with `None`, so "absent" is UNSET and an explicit null is kept as raw `null`).
OpaqueJSON = Raw | UnsetType

# Constant fields such as `object` and `type` have no default on purpose: `omit_defaults`
# would drop them from the output, and clients rely on seeing them.
# Fields OpenAI's spec requires but lets be null (a message's `refusal`, a choice's `logprobs`)
# default through a factory instead: `omit_defaults` omits a value equal to a plain default,
# never one a factory made, so they go out as `null` while translators may leave them unset.


def _null() -> None:
    return None


def _raw_null() -> Raw:
    return Raw(b"null")


# ---------------------------------------------------------------- request: message content


class CacheControl(Struct, omit_defaults=True):
    """A prompt-cache breakpoint: cache the prompt up to and including the part that carries it.

    Not in OpenAI's schema: Anthropic's `cache_control`, which LiteLLM and OpenRouter also take
    on OpenAI-shaped content parts and tools. It may sit on text, image and file parts, on tool
    calls and tool messages (Anthropic's `tool_use` and `tool_result` blocks) and on tools.
    Anthropic targets receive it as it came; OpenAI, Azure and Gemini cache prompt prefixes by
    themselves, so it does not go to them (its meaning, "this prefix repeats", still holds).
    `ttl` is "5m" (Anthropic's default) or "1h".
    """

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class ImageURL(Struct, omit_defaults=True):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(Struct, tag_field="type", tag="text", omit_defaults=True):
    text: str
    cache_control: CacheControl | None = None


class ImagePart(Struct, tag_field="type", tag="image_url", omit_defaults=True):
    image_url: ImageURL
    cache_control: CacheControl | None = None


class InputAudio(Struct):
    data: str
    format: str


class AudioPart(Struct, tag_field="type", tag="input_audio", omit_defaults=True):
    input_audio: InputAudio


class FileRef(Struct, omit_defaults=True):
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None


class FilePart(Struct, tag_field="type", tag="file", omit_defaults=True):
    file: FileRef
    cache_control: CacheControl | None = None


class RefusalPart(Struct, tag_field="type", tag="refusal", omit_defaults=True):
    refusal: str


UserContentPart = TextPart | ImagePart | AudioPart | FilePart
AssistantContentPart = TextPart | RefusalPart


class ThinkingBlock(Struct, tag_field="type", tag="thinking", omit_defaults=True):
    """A block of the model's reasoning with the provider's signature over it.

    Not in OpenAI's schema: Anthropic's thinking block, carried as LiteLLM does, in an
    assistant message's `thinking_blocks` (answers and requests alike), so a client can hand
    it back on the next turn, as Anthropic requires within a tool loop. In a stream delta, a
    block with an empty `thinking` and its `signature` closes the block whose text came in
    `reasoning_content` deltas.
    """

    thinking: str
    signature: str = ""


class RedactedThinkingBlock(Struct, tag_field="type", tag="redacted_thinking"):
    """Reasoning the provider encrypted (`data`); handed back as it came."""

    data: str


ThinkingBlocks = list[ThinkingBlock | RedactedThinkingBlock]

# ---------------------------------------------------------------- request: tools


class FunctionCall(Struct):
    name: str
    arguments: str


class ToolCall(Struct, omit_defaults=True):
    id: str
    type: Literal["function"]
    function: FunctionCall
    cache_control: CacheControl | None = None  # in requests only; see `CacheControl`


class FunctionDefinition(Struct, omit_defaults=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    description: str | None = None
    # A JSON Schema: free-form by definition, relayed as given.
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Struct, omit_defaults=True):
    type: Literal["function"]
    function: FunctionDefinition
    cache_control: CacheControl | None = None  # see `CacheControl`


class ToolChoiceFunction(Struct):
    name: str


class NamedToolChoice(Struct):
    type: Literal["function"]
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice
# Deprecated by OpenAI in favour of `tool_choice`; see `ChatRequest.functions`.
FunctionChoice = Literal["none", "auto"] | ToolChoiceFunction

# ---------------------------------------------------------------- request: messages


class SystemMessage(Struct, tag_field="role", tag="system", omit_defaults=True):
    content: str | list[TextPart]
    name: str | None = None


class DeveloperMessage(Struct, tag_field="role", tag="developer", omit_defaults=True):
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(Struct, tag_field="role", tag="user", omit_defaults=True):
    content: str | list[UserContentPart]
    name: str | None = None


class AssistantMessage(Struct, tag_field="role", tag="assistant", omit_defaults=True):
    content: str | list[AssistantContentPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    audio: OpaqueJSON = UNSET
    function_call: FunctionCall | None = None
    thinking_blocks: ThinkingBlocks | None = None  # see `ThinkingBlock`


class ToolMessage(Struct, tag_field="role", tag="tool", omit_defaults=True):
    content: str | list[TextPart]
    tool_call_id: str
    cache_control: CacheControl | None = None  # see `CacheControl`


class FunctionMessage(Struct, tag_field="role", tag="function", omit_defaults=True):
    """Deprecated by OpenAI in favour of tool messages; still accepted and relayed."""

    content: str | None
    name: str


Message = (
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage
)

# ---------------------------------------------------------------- request


class JSONSchemaFormat(Struct, omit_defaults=True):
    name: str
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormat(Struct, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(Struct, omit_defaults=True):
    include_usage: bool | None = None


class ThinkingConfig(Struct, omit_defaults=True):
    """Extended thinking, as Anthropic's `thinking` (not in OpenAI's schema).

    `enabled` thinks within `budget_tokens` (at least 1024, below `max_tokens`), `adaptive`
    lets the model decide how much, `disabled` turns it off. Sent by `/v1/messages` clients
    (and accepted from OpenAI-shaped ones, as LiteLLM takes it); OpenAI's `reasoning_effort`
    asks for the same thing in levels.
    """

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Annotated[int, Meta(ge=1)] | None = None


Temperature = Annotated[float, Meta(ge=0, le=2)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
PositiveInt = Annotated[int, Meta(ge=1)]


class ChatRequest(Struct, omit_defaults=True):
    """An OpenAI Chat Completions request; the known fields are validated by type and range.
    Top-level fields it does not declare, which OpenAI's SDK and OpenAI-compatible servers add
    faster than any gateway, are kept raw in `unknown_params` (`ChatRequestDecoder`); unknown
    fields inside messages and tools are ignored."""

    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[Message], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    n: PositiveInt | None = None
    stop: str | list[str] | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    audio: OpaqueJSON = UNSET
    prediction: OpaqueJSON = UNSET
    web_search_options: OpaqueJSON = UNSET
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # Not in OpenAI's schema: Anthropic's (see `ThinkingConfig`), and top-k sampling, which
    # Anthropic, Gemini and vLLM take.
    thinking: ThinkingConfig | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    # Deprecated by OpenAI in favour of `tools` and `tool_choice`, into which the route
    # translates them (`inbound.functions`) before any provider sees the request.
    functions: Annotated[list[FunctionDefinition], Meta(min_length=1)] | None = None
    function_call: FunctionChoice | None = None
    # Top-level fields this schema does not declare (`min_p`, `repetition_penalty`,
    # `chat_template_kwargs`, ... of OpenAI-compatible servers), as they came: relayed to
    # OpenAI-type targets, refused or dropped for others by the parameter policy. Set by
    # `ChatRequestDecoder`, never encoded in place (OpenAI's adapter splices them in).
    unknown_params: dict[str, Raw] | None = None

    @property
    def is_streaming(self) -> bool:
        return bool(self.stream)

    @property
    def wants_stream_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# ---------------------------------------------------------------- response


class PromptTokensDetails(Struct, omit_defaults=True):
    cached_tokens: int | None = None  # read from the provider's prompt cache
    audio_tokens: int | None = None
    # Written to the provider's prompt cache (Anthropic bills them above the input rate).
    cache_write_tokens: int | None = None


class CompletionTokensDetails(Struct, omit_defaults=True):
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(Struct, omit_defaults=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class ResponseMessage(Struct, omit_defaults=True):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = msgspec.field(default_factory=_null)
    tool_calls: list[ToolCall] | None = None
    annotations: OpaqueJSON = UNSET
    audio: OpaqueJSON = UNSET
    function_call: FunctionCall | None = None
    # Not in OpenAI's schema: the model's reasoning text, as DeepSeek, vLLM and LiteLLM name
    # it, and the signed blocks it came in (see `ThinkingBlock`).
    reasoning_content: str | None = None
    thinking_blocks: ThinkingBlocks | None = None


FinishReason = str  # "stop" | "length" | "tool_calls" | "content_filter" | "function_call"

# Which stop ended the answer, beside finish_reason "stop": the stop sequence (a string) or, from
# vLLM, a stop token id. Not in OpenAI's schema: the name and meaning are vLLM's, so answers of
# OpenAI-compatible servers carry it in; Anthropic reports its `stop_sequence` here. Absent when
# unknown (OpenAI itself never says), so OpenAI-shaped answers are unchanged.
StopReason = str | int | None | UnsetType


class Choice(Struct):
    index: int
    message: ResponseMessage
    finish_reason: FinishReason | None = None
    logprobs: OpaqueJSON = msgspec.field(default_factory=_raw_null)
    stop_reason: StopReason = UNSET


class ChatCompletion(Struct, omit_defaults=True):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


# ---------------------------------------------------------------- stream chunk


class FunctionCallDelta(Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(Struct, omit_defaults=True):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class Delta(Struct, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: FunctionCallDelta | None = None
    reasoning_content: str | None = None  # see `ResponseMessage`
    thinking_blocks: ThinkingBlocks | None = None


class ChunkChoice(Struct):
    index: int
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: OpaqueJSON = UNSET
    stop_reason: StopReason = UNSET


class ChatCompletionChunk(Struct, omit_defaults=True):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


# ---------------------------------------------------------------- codecs


class _KnownOnlyChatRequest(ChatRequest, forbid_unknown_fields=True):
    """A `ChatRequest` whose decoding fails on an undeclared field: the common request then
    decodes in one pass, and only one with such a field takes `ChatRequestDecoder`'s slow path."""


_DECLARED = frozenset(ChatRequest.__struct_fields__)
_fields_decoder = msgspec.json.Decoder(dict[str, Raw])
_lenient_request_decoder = msgspec.json.Decoder(ChatRequest)


class ChatRequestDecoder:
    """Decodes a Chat Completions request keeping its undeclared top-level fields, raw, in
    `unknown_params`, so that none is dropped in silence; a request without any is decoded in
    one pass, as by a plain decoder."""

    def __init__(self) -> None:
        self._known_only = msgspec.json.Decoder(_KnownOnlyChatRequest)

    def decode(self, body: bytes | str, /) -> ChatRequest:
        try:
            return self._known_only.decode(body)
        except msgspec.ValidationError as exc:
            if "unknown field" not in str(exc):
                raise
        fields = _fields_decoder.decode(body)
        known = {name: raw for name, raw in fields.items() if name in _DECLARED}
        unknown = {name: raw for name, raw in fields.items() if name not in _DECLARED}
        request = _lenient_request_decoder.decode(msgspec.json.encode(known))
        return msgspec.structs.replace(request, unknown_params=unknown or None)


request_decoder = ChatRequestDecoder()
completion_decoder = msgspec.json.Decoder(ChatCompletion)
chunk_decoder = msgspec.json.Decoder(ChatCompletionChunk)
