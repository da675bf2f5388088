"""What a Gemini API client (`google-genai`) sends the gateway, and the Gemini answers only
the gateway gives (model list, token count, one embedding).

The request types are strict (`forbid_unknown_fields`): they declare exactly the part of
Gemini's request the canonical form can carry, so anything else a client sends (`topK`,
`safetySettings`, `thinkingConfig`, a `googleSearch` tool, an `executableCode` part, …) fails
to decode with its path, and the route answers a 400 naming it instead of dropping it. Google
refuses unknown fields too. They are apart from `wire.google`'s, which the outbound provider
builds and which must stay lenient where they decode Google's answers (`Part`, `Content`).

Field names are read in either spelling (`ProtoJSONDecoder`), as Google's proto-JSON parser
reads them. Answers reuse `wire.google`'s response types (`GenerateContentResponse`,
`Candidate`, …). Ranges follow the canonical request's, which the translation must pass.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from stellara.wire.google import ContentEmbedding

T = TypeVar("T")


class _Param(Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True):
    """Base of the request types: camelCase names, unknown fields refused."""


class _Answer(Struct, rename="camel", omit_defaults=True):
    """Base of the answer types."""


# ---------------------------------------------------------------- content


class BlobParam(_Param):
    mime_type: str
    data: str  # base64


class FileDataParam(_Param):
    file_uri: str
    mime_type: str | None = None


class FunctionCallParam(_Param):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    args: dict[str, Any] | None = None
    id: str | None = None


class FunctionResponseParam(_Param):
    name: str
    response: dict[str, Any]
    id: str | None = None


class PartParam(_Param):
    """One part: exactly one of its fields is set (a protobuf `oneof`)."""

    text: str | None = None
    inline_data: BlobParam | None = None
    file_data: FileDataParam | None = None
    function_call: FunctionCallParam | None = None
    function_response: FunctionResponseParam | None = None


class ContentParam(_Param):
    parts: list[PartParam]
    role: str | None = None  # "user" | "model"; absent: "user"


# ---------------------------------------------------------------- request


class FunctionDeclarationParam(_Param):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    description: str | None = None
    parameters: dict[str, Any] | None = None  # Gemini's `Schema` (an OpenAPI 3.0 subset)
    parameters_json_schema: dict[str, Any] | None = None  # a JSON Schema


class ToolParam(_Param):
    function_declarations: list[FunctionDeclarationParam]


FunctionCallingMode = Literal["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE"]


class FunctionCallingConfigParam(_Param):
    mode: FunctionCallingMode | None = None
    allowed_function_names: list[str] | None = None


class ToolConfigParam(_Param):
    function_calling_config: FunctionCallingConfigParam | None = None


Penalty = Annotated[float, Meta(ge=-2, le=2)]


class GenerationConfigParam(_Param):
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_output_tokens: Annotated[int, Meta(ge=1)] | None = None
    stop_sequences: list[str] | None = None
    candidate_count: Annotated[int, Meta(ge=1)] | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None  # Gemini's `Schema`
    response_json_schema: dict[str, Any] | None = None  # a JSON Schema
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None


class GenerateContentParams(_Param):
    """`POST /v1beta/models/{model}:generateContent` (and `:streamGenerateContent`)."""

    contents: list[ContentParam]
    system_instruction: ContentParam | None = None
    tools: list[ToolParam] | None = None
    tool_config: ToolConfigParam | None = None
    generation_config: GenerationConfigParam | None = None
    model: str | None = None  # only inside `countTokens`' `generateContentRequest`


class CountTokensParams(_Param):
    """`:countTokens`: `contents`, or a whole `generateContentRequest` (one of the two)."""

    contents: list[ContentParam] | None = None
    generate_content_request: GenerateContentParams | None = None


class EmbedContentParams(_Param):
    """`:embedContent`, and each entry of `:batchEmbedContents`."""

    content: ContentParam
    model: str | None = None  # "models/{model}"; in a batch, the URL's model
    output_dimensionality: Annotated[int, Meta(ge=1)] | None = None


class BatchEmbedContentsParams(_Param):
    requests: Annotated[list[EmbedContentParams], Meta(min_length=1, max_length=100)]  # as Google


# ---------------------------------------------------------------- answers


class CountTokensResponse(_Answer):
    total_tokens: int


class EmbedContentResponse(_Answer):
    embedding: ContentEmbedding


class Model(_Answer):
    """A public model as Gemini describes a model (`GET /v1beta/models`)."""

    name: str  # "models/{public name}"
    base_model_id: str
    version: str
    display_name: str
    supported_generation_methods: list[str]
    input_token_limit: int | None = None
    output_token_limit: int | None = None


class ListModelsResponse(_Answer):
    models: list[Model]
    next_page_token: str | None = None


# ---------------------------------------------------------------- decoding

# Values that are free-form JSON: their keys are names (function arguments, a schema's
# properties), never renamed. The Gemini `Schema` ones are read with either spelling by the
# translator.
_FREE_FORM = frozenset(
    {"args", "response", "parameters", "parametersJsonSchema", "responseSchema",
     "responseJsonSchema"}
)  # fmt: skip


class ProtoJSONDecoder(Generic[T]):
    """Decodes a request as Google's proto-JSON parser reads it: a field may be spelled
    `mimeType` or `mime_type` (google-genai sends both kinds, `inlineData.mime_type` among
    them). Raises `msgspec.DecodeError` (or its `ValidationError`) as a msgspec decoder does.
    """

    def __init__(self, kind: type[T]) -> None:
        self._kind = kind

    def decode(self, buf: bytes, /) -> T:
        return msgspec.convert(_camel_keys(msgspec.json.decode(buf), "$"), self._kind)


def _camel_keys(value: Any, path: str) -> Any:
    if isinstance(value, list):
        return [_camel_keys(item, f"{path}[{at}]") for at, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = camel_case(key)
        if name in out:
            raise msgspec.ValidationError(f"Field `{name}` is given twice - at `{path}`")
        out[name] = item if name in _FREE_FORM else _camel_keys(item, f"{path}.{name}")
    return out


def camel_case(name: str) -> str:
    """`mime_type` → `mimeType`; a name without `_` stays as it is."""
    if "_" not in name.strip("_"):
        return name
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


generate_decoder = ProtoJSONDecoder(GenerateContentParams)
count_tokens_decoder = ProtoJSONDecoder(CountTokensParams)
embed_decoder = ProtoJSONDecoder(EmbedContentParams)
batch_embed_decoder = ProtoJSONDecoder(BatchEmbedContentsParams)
