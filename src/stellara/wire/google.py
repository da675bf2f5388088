"""Gemini API wire types (`models/{model}:generateContent`, `:streamGenerateContent`,
`:batchEmbedContents`), as msgspec structs.

Field names are camelCase on the wire (`rename="camel"`). A Gemini `Part` is a protobuf
`oneof`, not a tagged union, so it is one struct whose fields are all optional; parts the
gateway does not interpret (`executableCode`, `videoMetadata`, …) decode to a part with none of
the known fields set and are skipped. Unknown fields are ignored everywhere, as Google adds them
often. Function arguments and JSON schemas are free-form by definition and stay `dict[str, Any]`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct


class _Wire(Struct, rename="camel", omit_defaults=True):
    """Base of every Gemini struct: camelCase names, absent fields left out."""


# ---------------------------------------------------------------- content


class Blob(_Wire):
    mime_type: str
    data: str  # base64


class FileData(_Wire):
    file_uri: str
    mime_type: str | None = None


class FunctionCall(_Wire):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class FunctionResponse(_Wire):
    name: str
    response: dict[str, Any]
    id: str | None = None


class Part(_Wire):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought: bool | None = None
    thought_signature: str | None = None


class Content(_Wire):
    parts: list[Part] = msgspec.field(default_factory=list)
    role: str | None = None  # "user" | "model"; absent on a system instruction


# ---------------------------------------------------------------- request


class FunctionDeclaration(_Wire):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # Gemini's OpenAPI-subset `Schema`
    parameters_json_schema: dict[str, Any] | None = None  # standard JSON Schema (Gemini 2.5+)


class GeminiTool(_Wire):
    function_declarations: list[FunctionDeclaration]


class FunctionCallingConfig(_Wire):
    mode: str  # "AUTO" | "ANY" | "NONE"
    allowed_function_names: list[str] | None = None


class ToolConfig(_Wire):
    function_calling_config: FunctionCallingConfig


class ThinkingConfig(_Wire):
    thinking_budget: int | None = None  # tokens; 0 is off, -1 lets the model decide (2.5)
    thinking_level: str | None = None  # "MINIMAL" | "LOW" | "MEDIUM" | "HIGH" (Gemini 3)
    include_thoughts: bool | None = None


class GenerationConfig(_Wire):
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    candidate_count: int | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_logprobs: bool | None = None
    logprobs: int | None = None  # how many top candidates per step, with `response_logprobs`
    thinking_config: ThinkingConfig | None = None


class SafetySetting(_Wire):
    category: str
    threshold: str


class GenerateContentRequest(_Wire):
    contents: list[Content]
    system_instruction: Content | None = None
    tools: list[GeminiTool] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None
    safety_settings: list[SafetySetting] | None = None


# ---------------------------------------------------------------- response


class SafetyRating(_Wire):
    category: str = ""
    probability: str = ""
    blocked: bool | None = None


class LogprobsCandidate(_Wire):
    token: str = ""
    log_probability: float = 0.0
    token_id: int | None = None


class TopCandidates(_Wire):
    candidates: list[LogprobsCandidate] = msgspec.field(default_factory=list)


class LogprobsResult(_Wire):
    """One entry per decoding step in each list: the token chosen and the most likely ones."""

    chosen_candidates: list[LogprobsCandidate] = msgspec.field(default_factory=list)
    top_candidates: list[TopCandidates] = msgspec.field(default_factory=list)


class Candidate(_Wire):
    content: Content | None = None
    finish_reason: str | None = None
    safety_ratings: list[SafetyRating] | None = None
    index: int | None = None  # often absent when there is one candidate
    logprobs_result: LogprobsResult | None = None


class PromptFeedback(_Wire):
    block_reason: str | None = None
    safety_ratings: list[SafetyRating] | None = None


class UsageMetadata(_Wire):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    total_token_count: int = 0
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0


class GenerateContentResponse(_Wire):
    candidates: list[Candidate] = msgspec.field(default_factory=list)
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None


# ---------------------------------------------------------------- embeddings (`batchEmbedContents`)


class EmbedContentRequest(_Wire):
    model: str  # "models/{model}"
    content: Content
    output_dimensionality: int | None = None


class BatchEmbedRequest(_Wire):
    requests: list[EmbedContentRequest]


class ContentEmbedding(_Wire):
    values: list[float]


class BatchEmbedResponse(_Wire):
    embeddings: list[ContentEmbedding]


# ---------------------------------------------------------------- error


class ErrorDetail(_Wire):
    """One entry of `error.details`: a `google.rpc` message named by its `@type`.

    Only the fields the gateway reads are declared: `retryDelay` (`RetryInfo`) and `reason`
    (`ErrorInfo`, e.g. `API_KEY_INVALID`).
    """

    type: str = msgspec.field(default="", name="@type")
    retry_delay: str | None = None
    reason: str | None = None


class GoogleErrorDetail(_Wire):
    code: int = 0
    message: str = ""
    status: str = ""
    details: list[ErrorDetail] = msgspec.field(default_factory=list)


class GoogleErrorBody(_Wire):
    error: GoogleErrorDetail


request_encoder = msgspec.json.Encoder()
response_decoder = msgspec.json.Decoder(GenerateContentResponse)
batch_embed_response_decoder = msgspec.json.Decoder(BatchEmbedResponse)
# Google's REST front end answers `{"error": …}`; some of its proxies wrap it in a list.
error_body_decoder = msgspec.json.Decoder(GoogleErrorBody | list[GoogleErrorBody])
