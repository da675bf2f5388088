"""The Gemini request as the simulator reads it, and the checks Gemini makes on any request.

Gemini refuses fields it does not know ("Invalid JSON payload received. Unknown name"), so the
request types forbid unknown fields; schema keywords its OpenAPI-subset ``Schema`` lacks, an
``OBJECT`` without properties, empty ``parts`` and unknown roles are refused with Google's
messages. A schema sent both as ``Schema`` and as JSON Schema is refused, and so is JSON Schema
(``responseJsonSchema``, ``parametersJsonSchema``) to a model before Gemini 2.5, which Google
documents it for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from stellara.sim.google_thinking import is_thinking

_UNKNOWN_FIELD = re.compile(
    r"Object contains unknown field `(?P<field>[^`]+)`(?: - at `\$\.?(?P<at>[^`]*)`)?"
)

_SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})

_SCHEMA_KEYS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
        "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
        "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
    }
)  # fmt: skip


class RequestRefusedError(Exception):
    """Gemini answers 400 ``INVALID_ARGUMENT`` with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------- request


class _Strict(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Gemini refuses fields it does not know: "Invalid JSON payload received. Unknown name"."""


class _Blob(_Strict):
    mime_type: str
    data: str


class _FileData(_Strict):
    file_uri: str
    mime_type: str | None = None


class _FunctionCall(_Strict):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class _FunctionResponse(_Strict):
    name: str
    response: dict[str, Any]
    id: str | None = None


class _Part(_Strict):
    text: str | None = None
    inline_data: _Blob | None = None
    file_data: _FileData | None = None
    function_call: _FunctionCall | None = None
    function_response: _FunctionResponse | None = None
    thought: bool | None = None
    thought_signature: str | None = None
    executable_code: msgspec.Raw | None = None
    code_execution_result: msgspec.Raw | None = None
    video_metadata: msgspec.Raw | None = None


class Content(_Strict):
    parts: list[_Part] = msgspec.field(default_factory=list)
    role: str | None = None


class FunctionDeclaration(_Strict):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None
    response: msgspec.Raw | None = None
    behavior: str | None = None


class _Tool(_Strict):
    function_declarations: list[FunctionDeclaration] | None = None
    google_search: msgspec.Raw | None = None
    code_execution: msgspec.Raw | None = None
    url_context: msgspec.Raw | None = None


class _FunctionCallingConfig(_Strict):
    mode: str = "AUTO"
    allowed_function_names: list[str] | None = None


class _ToolConfig(_Strict):
    function_calling_config: _FunctionCallingConfig | None = None


class ThinkingConfig(_Strict):
    thinking_budget: int | None = None
    thinking_level: str | None = None
    include_thoughts: bool | None = None


class GenerationConfig(_Strict):
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    candidate_count: int | None = None
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_logprobs: bool | None = None
    logprobs: int | None = None
    response_modalities: list[str] | None = None
    thinking_config: ThinkingConfig | None = None
    media_resolution: str | None = None
    speech_config: msgspec.Raw | None = None


class GenerateContentRequest(_Strict):
    contents: list[Content] = msgspec.field(default_factory=list)
    system_instruction: Content | None = None
    tools: list[_Tool] | None = None
    tool_config: _ToolConfig | None = None
    generation_config: GenerationConfig | None = None
    safety_settings: list[dict[str, Any]] | None = None
    cached_content: str | None = None
    labels: dict[str, str] | None = None


def _json_schema_problem(body: GenerateContentRequest, model: str) -> str | None:
    """A schema sent both ways, or JSON Schema to a model before Gemini 2.5."""
    config = body.generation_config or GenerationConfig()
    functions = [f for tool in body.tools or [] for f in tool.function_declarations or []]
    if config.response_schema is not None and config.response_json_schema is not None:
        return "response_schema and response_json_schema cannot both be set."
    if any(f.parameters is not None and f.parameters_json_schema is not None for f in functions):
        return "parameters and parameters_json_schema cannot both be set."
    sends_json_schema = config.response_json_schema is not None or any(
        f.parameters_json_schema is not None for f in functions
    )
    # JSON Schema came with the 2.5 generation, the first that thinks.
    if sends_json_schema and not is_thinking(model):
        return "JSON schema is not supported for this model; use response_schema."
    return None


_decoder = msgspec.json.Decoder(GenerateContentRequest)


def decode_request(raw: bytes) -> GenerateContentRequest:
    """The request in ``raw``; raises ``RequestRefusedError`` with Google's message if invalid."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        unknown = _UNKNOWN_FIELD.search(str(exc))
        if unknown is not None:
            at = unknown.group("at") or ""
            message = (
                f'Invalid JSON payload received. Unknown name "{unknown.group("field")}" '
                f"at '{at}': Cannot find field."
            )
            raise RequestRefusedError(message) from exc
        raise RequestRefusedError(f"Invalid JSON payload received. {exc}") from exc
    except msgspec.DecodeError as exc:
        raise RequestRefusedError(f"Invalid JSON payload received. {exc}") from exc


def validate_request(body: GenerateContentRequest, model: str) -> None:
    """Refuse what Gemini refuses in any request to ``model``."""
    if not body.contents:
        raise RequestRefusedError("* GenerateContentRequest.contents: contents is not specified")
    for at, content in enumerate(body.contents):
        if content.role not in (None, "user", "model"):
            raise RequestRefusedError("Please use a valid role: user, model.")
        if not content.parts:
            raise RequestRefusedError(
                f"* GenerateContentRequest.contents[{at}].parts: contents.parts must not be empty."
            )
    for t, tool in enumerate(body.tools or []):
        for f, function in enumerate(tool.function_declarations or []):
            if function.parameters is not None:
                where = f"tools[{t}].function_declarations[{f}].parameters"
                _validate_schema(function.parameters, where)
    config = body.generation_config
    if config is not None and config.response_schema is not None:
        _validate_schema(config.response_schema, "generation_config.response_schema")
    problem = _json_schema_problem(body, model)
    if problem is not None:
        raise RequestRefusedError(problem)


def _validate_schema(schema: Mapping[str, Any], where: str) -> None:
    """Refuse what Gemini's OpenAPI-subset ``Schema`` refuses, with Google's messages."""
    for key in schema:
        if key not in _SCHEMA_KEYS:
            raise RequestRefusedError(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                "Cannot find field."
            )
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.lower() not in _SCHEMA_TYPES):
        raise RequestRefusedError(
            f"Invalid JSON payload received. Invalid value at '{where}.type' ({kind!r})"
        )
    properties = schema.get("properties")
    if isinstance(kind, str) and kind.lower() == "object" and not properties:
        raise RequestRefusedError(
            f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
        )
    subschemas = [(f"{where}.items", schema.get("items"))]
    if isinstance(properties, Mapping):
        subschemas += [(f"{where}.properties[{n}].value", s) for n, s in properties.items()]
    options = schema.get("anyOf")
    if isinstance(options, list):
        subschemas += [(f"{where}.any_of[{k}]", option) for k, option in enumerate(options)]
    for sub_where, sub in subschemas:
        if isinstance(sub, Mapping):
            _validate_schema(sub, sub_where)
